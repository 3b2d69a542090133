package docker

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// scriptInstance is an instance of the busybox image that runs script
// once, writing what it prints to /tmp/out, then serves that file to
// every connection to its port: it is ready once the script is done.
func scriptInstance(t *testing.T, ns, script string, egress ...string) job.ServiceInstance {
	t.Helper()
	inst := job.ServiceInstance{
		ID: "inst-" + randomHex(4), Namespace: ns, Service: ns + "/svc", Version: 1,
		Spec: job.ServiceSpec{Image: testImage, Port: 8080, StartTimeoutSeconds: 240,
			Command: []string{"sh", "-c", "(" + script + "\n) >/tmp/out 2>&1; echo '== done' >>/tmp/out; while true; do nc -l -p 8080 -e cat /tmp/out; done"}},
	}
	if len(egress) > 0 {
		inst.Spec.Network = &job.Network{Egress: egress}
	}
	return inst
}

// scriptOutput reads what the script of the ready instance id printed.
// nc serves one connection at a time: a dial between two is refused, and
// tried again.
func scriptOutput(t *testing.T, d *Docker, id string) string {
	t.Helper()
	var out string
	eventually(t, time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, _, err := d.DialInstance(ctx, id)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			return fmt.Errorf("read the instance's output: %v", err)
		}
		if !strings.Contains(string(b), "== done") {
			return fmt.Errorf("output %q", b)
		}
		out = string(b)
		return nil
	})
	return out
}

// startScript starts inst and returns its reports, which the caller
// must keep reading.
func startScript(t *testing.T, d *Docker, inst job.ServiceInstance) reports {
	t.Helper()
	r := make(reports, 64)
	if err := d.StartInstance(context.Background(), inst, r.report); err != nil {
		t.Fatalf("start: %v (%+v)", err, <-r)
	}
	r.next(t, job.InstanceReady)
	t.Cleanup(func() { _ = d.StopInstance(context.Background(), inst.ID, "test over") })
	return r
}

// section is the text of out between "== name" and the next "== ".
func section(out, name string) string {
	_, rest, _ := strings.Cut(out, "== "+name+"\n")
	s, _, _ := strings.Cut(rest, "== ")
	return strings.TrimSpace(s)
}

// TestServiceEgressFromInside attacks a service instance's egress from
// inside its container, against the real engine: what the instance and
// the owner allow passes through the proxy on 127.0.0.1:3128, by address,
// by name and by CONNECT; another port or host, a name that resolves to
// this machine (DNS rebinding), a private or metadata address, the
// engine's API, CONNECT to an unlisted address and every direct
// connection fail. The proxy is the namespace's only listener besides
// the instance's own port, and the refusals and records reach the
// instance's reports while it runs and when it exits. A second
// tenant's instance on the same worker cannot use the first's patterns,
// and an instance without egress has no listener and no proxy variables.
func TestServiceEgressFromInside(t *testing.T) {
	p := mirror(t)
	other := mirror(t)                              // listening here too, but on no list
	worker, err := net.Listen("tcp", "127.0.0.1:0") // a port of the worker's own
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()
	wport := worker.Addr().(*net.TCPAddr).Port
	lo := netip.MustParseAddr("127.0.0.1")
	res := mapResolver{
		"mirror.test":  {lo},
		"rebind.test":  {lo},
		"private.test": {netip.MustParseAddr("10.9.8.7")},
		"meta.test":    {netip.MustParseAddr("169.254.169.254")},
		"docker.test":  {netip.MustParseAddr("172.17.0.1")},
	}
	ps, ws := strconv.Itoa(p), strconv.Itoa(wport)
	d := serviceRuntime(t, func(c *Config) {
		c.EgressResolver = res
		// The owner names one address of this machine: the mirror's.
		c.Egress = []string{"127.0.0.1:" + ps, "*.test:" + ps, "*.test:" + ws, "*.test:80", "*.test:2375"}
	})
	script := `
		echo "== env"; env | grep -i _proxy | sort
		echo "== listeners"; ` + listeners + `
		echo "== interfaces"; ls /sys/class/net
		echo "== by address"; wget -q -O - http://127.0.0.1:PORT/file
		echo "== by name"; wget -q -O - http://mirror.test:PORT/file
		echo "== connect"; printf 'CONNECT mirror.test:PORT HTTP/1.1\r\nHost: mirror.test:PORT\r\n\r\nGET /file HTTP/1.0\r\nHost: mirror.test\r\n\r\n' | nc 127.0.0.1 3128
		echo "== refused"
		for u in http://example.com/ http://mirror.test:OTHER/file http://rebind.test:WPORT/ http://private.test:PORT/file http://meta.test/latest/meta-data/ http://docker.test:2375/version; do
			wget -q -O - $u 2>&1 && echo "REACHED $u"
		done
		echo "== connect to addresses"
		for a in 127.0.0.1:OTHER 127.0.0.1:WPORT 10.0.0.1:80 169.254.169.254:80 HOST:PORT; do
			printf 'CONNECT %s HTTP/1.1\r\n\r\n' $a | nc 127.0.0.1 3128 | head -n 1
		done
		echo "== direct"
		for a in 127.0.0.1 172.17.0.1 HOST; do
			for port in PORT OTHER WPORT 2375; do
				if echo x | nc -w 2 $a $port; then echo "REACHED $a:$port"; fi
			done
		done
		nslookup example.com 8.8.8.8 2>&1 && echo "REACHED dns 8.8.8.8"
		[ -e /var/run/docker.sock ] && echo "REACHED the docker socket"
		echo "== end"`
	r := strings.NewReplacer("WPORT", ws, "PORT", ps, "OTHER", strconv.Itoa(other), "HOST", hostAddress(t))
	inst := scriptInstance(t, "alice", r.Replace(script), "127.0.0.1:"+ps, "mirror.test:"+ps, "rebind.test:"+ws,
		"private.test:"+ps, "meta.test:80", "docker.test:2375", "mirror.test:"+strconv.Itoa(other))
	// The owner does not allow the other mirror's port: refused here.
	if err := d.StartInstance(context.Background(), inst, func(job.InstanceReport) {}); err == nil || !strings.Contains(err.Error(), "not allowed by this worker's owner") {
		t.Fatalf("egress the owner does not allow: %v", err)
	}
	inst.Spec.Network.Egress = inst.Spec.Network.Egress[:6]
	reps := startScript(t, d, inst)
	out := scriptOutput(t, d, inst.ID)
	t.Logf("output:\n%s", out)
	if !strings.Contains(out, "== end") {
		t.Fatalf("the script did not end:\n%s", out)
	}
	wantEnv := "HTTPS_PROXY=http://127.0.0.1:3128\nHTTP_PROXY=http://127.0.0.1:3128\nNO_PROXY=\nhttp_proxy=http://127.0.0.1:3128\nhttps_proxy=http://127.0.0.1:3128\nno_proxy="
	if got := section(out, "env"); got != wantEnv {
		t.Errorf("proxy variables:\n%s\nwant\n%s", got, wantEnv)
	}
	if got := section(out, "listeners"); got != "0100007F:0C38" {
		t.Errorf("listening in the namespace before the instance listens: %q, want the proxy's 127.0.0.1:3128 alone", got)
	}
	if got := section(out, "interfaces"); got != "lo" {
		t.Errorf("interfaces: %q, want lo alone", got)
	}
	if n := strings.Count(out, "hello from the mirror"); n != 3 {
		t.Errorf("fetched the file %d times through the proxy, want 3", n)
	}
	if !strings.Contains(section(out, "connect"), "200 Connection established") {
		t.Errorf("CONNECT was not established")
	}
	if got := section(out, "connect to addresses"); strings.Count(got, "HTTP/1.1 403") != 5 || strings.Contains(got, "200") {
		t.Errorf("CONNECT to addresses:\n%s", got)
	}
	if strings.Contains(out, "REACHED") {
		t.Errorf("a refused destination was reached")
	}

	// The refusals and records reach the reports of the ready instance.
	var logs string
	var recs []job.EgressRecord
	deadline := time.After(2 * time.Minute)
	wantLines := []string{
		"egress: refused example.com:80: not on the allow-list of this instance",
		"egress: refused mirror.test:" + strconv.Itoa(other) + ": not on the allow-list of this instance",
		"egress: refused rebind.test:" + ws + ": 127.0.0.1 is a loopback address",
		"egress: refused private.test:" + ps + ": 10.9.8.7 is a private address",
		"egress: refused meta.test:80: 169.254.169.254 is a link-local address",
		"egress: refused docker.test:2375: 172.17.0.1 is a private address",
		"egress: refused 10.0.0.1:80: not on the allow-list of this instance",
	}
	complete := func() bool {
		for _, w := range wantLines {
			if !strings.Contains(logs, w) {
				return false
			}
		}
		return len(recs) == 2
	}
	for !complete() {
		select {
		case rep := <-reps:
			if rep.State != job.InstanceReady {
				t.Fatalf("report %+v", rep)
			}
			logs += rep.Output
			if rep.Egress != nil {
				recs = rep.Egress
			}
		case <-deadline:
			t.Fatalf("reports lack refusals or records; logs:\n%s\nrecords %+v", logs, recs)
		}
	}
	got := map[string]job.EgressRecord{}
	for _, e := range recs {
		got[net.JoinHostPort(e.Host, strconv.Itoa(e.Port))] = e
	}
	if e := got["127.0.0.1:"+ps]; e.Connections != 1 || e.BytesSent == 0 || e.BytesReceived == 0 {
		t.Errorf("record of 127.0.0.1: %+v (all: %+v)", e, recs)
	}
	if e := got["mirror.test:"+ps]; e.Connections != 2 || e.BytesReceived == 0 {
		t.Errorf("record of mirror.test: %+v (all: %+v)", e, recs)
	}

	// A second tenant's instance, with egress of its own, on the same
	// worker: the first's patterns are not its.
	second := scriptInstance(t, "bob", r.Replace(`
		echo "== fetch"; wget -q -O - http://mirror.test:PORT/file 2>&1
		printf 'CONNECT 127.0.0.1:PORT HTTP/1.1\r\n\r\n' | nc 127.0.0.1 3128 | head -n 1
		echo "== end"`), "docker.test:80")
	startScript(t, d, second)
	out2 := scriptOutput(t, d, second.ID)
	if got := section(out2, "fetch"); strings.Contains(got, "hello from the mirror") || strings.Count(got, "403") != 2 {
		t.Errorf("the second tenant used the first's patterns:\n%s", out2)
	}

	// Without egress: no listener but the instance's, no proxy variables.
	bare := scriptInstance(t, "alice", "echo '== env'; env | grep -i _proxy; echo '== listeners'; "+listeners+"; echo '== proxy'; nc -w 2 127.0.0.1 3128 </dev/null && echo REACHED; echo '== end'")
	startScript(t, d, bare)
	out3 := scriptOutput(t, d, bare.ID)
	if section(out3, "env") != "" || section(out3, "listeners") != "" || strings.Contains(out3, "REACHED") {
		t.Errorf("an instance without egress:\n%s", out3)
	}

	// Its exit reports the records.
	if err := d.StopInstance(context.Background(), inst.ID, "test over"); err != nil {
		t.Fatal(err)
	}
	for {
		rep := <-reps
		if rep.State == job.InstanceExited {
			if len(rep.Egress) != 2 {
				t.Errorf("exit report records: %+v", rep.Egress)
			}
			break
		}
	}
}

// TestServiceEgressWindow: an instance's egress byte limit holds per
// window (Config.ServiceEgressWindow): a download past it is cut and
// later requests refused, saying why, while the window lasts.
func TestServiceEgressWindow(t *testing.T) {
	p := strconv.Itoa(mirror(t))
	d := serviceRuntime(t, func(c *Config) {
		c.Egress = []string{"127.0.0.1:" + p}
		c.EgressBytes = 1 << 20
		c.ServiceEgressWindow = time.Hour
	})
	inst := scriptInstance(t, "alice", fmt.Sprintf(`
		echo "== big"; wget -q -O /tmp/big http://127.0.0.1:%s/big 2>&1; ls -l /tmp/big | awk '{print $5}'
		echo "== small"; wget -q -O - http://127.0.0.1:%s/file 2>&1
		echo "== end"`, p, p), "127.0.0.1:"+p)
	reps := startScript(t, d, inst)
	out := scriptOutput(t, d, inst.ID)
	t.Logf("output:\n%s", out)
	if got := section(out, "small"); strings.Contains(got, "hello from the mirror") || !strings.Contains(got, "403") {
		t.Errorf("a request past the window's byte limit:\n%s", got)
	}
	var logs string
	for !strings.Contains(logs, "per 1h0m0s: its connections were cut") {
		rep := reps.next(t, job.InstanceReady)
		logs += rep.Output
	}
}
