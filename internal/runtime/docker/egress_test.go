package docker

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/zerverless/zerverless/internal/job"
)

// mapResolver answers names from a table, as a DNS server the job's
// requester controls would.
type mapResolver map[string][]netip.Addr

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := m[strings.TrimSuffix(host, ".")]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// mirror is a server of this machine that stands for the internet: it
// listens on every interface, serves /file and /big.
func mirror(t *testing.T) (port int) {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/file":
			fmt.Fprint(w, "hello from the mirror\n")
		case "/big":
			w.Write(make([]byte, 4<<20))
		default:
			http.NotFound(w, r)
		}
	})}}
	srv.Start()
	t.Cleanup(srv.Close)
	return l.Addr().(*net.TCPAddr).Port
}

func egressTask(script string, egress ...string) job.Task {
	tk := testTask(newJobID(), testImage, "sh", "-c", script)
	tk.Spec.Docker.Network = &job.Network{Egress: egress}
	return tk
}

// hostAddress is an address of this machine other than loopback, where
// the mirror listens too.
func hostAddress(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.Equal(net.IPv4(172, 17, 0, 1)) {
			return n.IP.String()
		}
	}
	return "172.17.0.1"
}

// TestEgressThroughTheProxy attacks a job's egress from inside its
// container: what is allowed passes through the proxy, by address, by
// name and by CONNECT; a host not on the list, a name that resolves to
// this machine, a private or metadata address, the engine's API and a
// direct connection that bypasses the proxy all fail, and each refusal
// is a line of the job's stderr.
func TestEgressThroughTheProxy(t *testing.T) {
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
	d := newTestRuntime(t, func(c *Config) {
		agentConfig(t)(c)
		c.EgressResolver = res
		// The owner names one address of this machine: the mirror's.
		c.Egress = []string{"127.0.0.1:" + ps, "*.test:" + ps, "*.test:" + ws, "*.test:80", "*.test:2375"}
	})
	script := `
		echo "== by address"; wget -q -O - http://127.0.0.1:PORT/file
		echo "== by name"; wget -q -O - http://mirror.test:PORT/file
		echo "== connect"; printf 'CONNECT mirror.test:PORT HTTP/1.1\r\nHost: mirror.test:PORT\r\n\r\nGET /file HTTP/1.0\r\nHost: mirror.test\r\n\r\n' | nc 127.0.0.1 3128
		echo "== not listed"; wget -q -O - http://example.com/ 2>&1
		echo "== refused"
		for u in http://rebind.test:WPORT/ http://private.test:PORT/file http://meta.test/latest/meta-data/ http://docker.test:2375/version; do
			wget -q -O - $u 2>&1 && echo "REACHED $u"
		done
		echo "== direct"
		for a in 127.0.0.1 172.17.0.1 HOST; do
			for port in PORT OTHER WPORT 2375; do
				if echo x | nc -w 2 $a $port; then echo "REACHED $a:$port"; fi
			done
		done
		[ -e /var/run/docker.sock ] && echo "REACHED the docker socket"
		echo "== end"`
	r := strings.NewReplacer("WPORT", ws, "PORT", ps, "OTHER", strconv.Itoa(other), "HOST", hostAddress(t))
	out := run(t, d, egressTask(r.Replace(script), "127.0.0.1:"+ps, "mirror.test:"+ps, "rebind.test:"+ws,
		"private.test:"+ps, "meta.test:80", "docker.test:2375"))
	wantStatus(t, out, job.StatusCompleted)
	t.Logf("stdout:\n%s\nstderr:\n%s", out.Output, out.Stderr)
	if n := strings.Count(out.Output, "hello from the mirror"); n != 3 {
		t.Errorf("fetched the file %d times through the proxy, want 3:\n%s", n, out.Output)
	}
	if !strings.Contains(out.Output, "200 Connection established") {
		t.Errorf("CONNECT was not established:\n%s", out.Output)
	}
	if strings.Contains(out.Output, "REACHED") || !strings.Contains(out.Output, "== end") {
		t.Errorf("a refused destination was reached:\n%s", out.Output)
	}
	if !strings.Contains(out.Output, "403 Forbidden") {
		t.Errorf("the job was not told of a refusal:\n%s", out.Output)
	}
	for _, want := range []string{
		"egress: refused example.com:80: not on the allow-list of this job",
		"egress: refused rebind.test:" + ws + ": 127.0.0.1 is a loopback address",
		"egress: refused private.test:" + ps + ": 10.9.8.7 is a private address",
		"egress: refused meta.test:80: 169.254.169.254 is a link-local address",
		"egress: refused docker.test:2375: 172.17.0.1 is a private address",
	} {
		if !strings.Contains(out.Stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out.Stderr)
		}
	}
	got := map[string]job.EgressRecord{}
	for _, e := range out.Egress {
		got[net.JoinHostPort(e.Host, strconv.Itoa(e.Port))] = e
	}
	if e := got["127.0.0.1:"+ps]; e.Connections != 1 || e.BytesSent == 0 || e.BytesReceived == 0 {
		t.Errorf("record of 127.0.0.1: %+v (all: %+v)", e, out.Egress)
	}
	if e := got["mirror.test:"+ps]; e.Connections != 2 || e.BytesReceived == 0 {
		t.Errorf("record of mirror.test: %+v (all: %+v)", e, out.Egress)
	}
	if len(got) != 2 {
		t.Errorf("records of refused destinations: %+v", out.Egress)
	}
}

// TestEgressRefusedByTheWorker: a worker runs no job whose egress its
// owner does not allow, and one without --docker-egress runs none.
func TestEgressRefusedByTheWorker(t *testing.T) {
	d := newTestRuntime(t, func(c *Config) { agentConfig(t)(c); c.Egress = []string{"*.example.org:443"} })
	none := newTestRuntime(t, agentConfig(t))
	// Refused before the image is looked for.
	absent := egressTask("true", "pypi.org:443")
	absent.Spec.Docker.Image = "127.0.0.1:9/zerverless-test/absent:" + randomHex(4)
	for _, c := range []struct {
		d     *Docker
		tk    job.Task
		words string
	}{
		{d, egressTask("true", "pypi.org:443"), "pypi.org:443 is not allowed by this worker's owner"},
		{d, egressTask("true", "a.example.org:80"), "a.example.org:80 is not allowed"},
		{none, egressTask("true", "a.example.org:443"), "this worker allows no egress"},
		{d, absent, "pypi.org:443 is not allowed by this worker's owner"},
	} {
		res := run(t, c.d, c.tk)
		if res.Status != job.StatusFailed || !strings.Contains(res.Error, c.words) {
			t.Errorf("%v: %s %q, want %q", c.tk.Spec.EgressOf(), res.Status, res.Error, c.words)
		}
	}
	if got := d.Capabilities().Egress; len(got) != 1 || got[0] != "*.example.org:443" {
		t.Errorf("capabilities: %v", got)
	}
	if got := none.Capabilities().Egress; got != nil {
		t.Errorf("capabilities of a worker without egress: %v", got)
	}
	for _, tweak := range []func(*Config){
		func(c *Config) { c.Egress = []string{"pypi.org"} },
		func(c *Config) { c.Egress = []string{"*:443"} },
		func(c *Config) { c.EgressBytes = -1 },
		func(c *Config) { c.EgressConns = -1 },
	} {
		cfg := DefaultConfig()
		tweak(&cfg)
		if _, err := New(cfg, testEngine); err == nil || !strings.Contains(err.Error(), "egress") {
			t.Errorf("a bad egress setting: %v", err)
		}
	}
}

// TestEgressByteLimit: a download past the job's egress byte limit is cut
// and the job fails saying why.
func TestEgressByteLimit(t *testing.T) {
	p := strconv.Itoa(mirror(t))
	d := newTestRuntime(t, func(c *Config) {
		agentConfig(t)(c)
		c.Egress = []string{"127.0.0.1:" + p}
		c.EgressBytes = 256 << 10
		c.Build = true
	})
	out := run(t, d, egressTask("wget -q -O /tmp/big http://127.0.0.1:"+p+"/big; ls -l /tmp/big", "127.0.0.1:"+p))
	if out.Status != job.StatusFailed || !strings.Contains(out.Error, "egress limit") || !strings.Contains(out.Error, "262144 bytes") {
		t.Fatalf("%s %q\nstdout %s\nstderr %s", out.Status, out.Error, out.Output, out.Stderr)
	}
	if !strings.Contains(out.Stderr, "egress: the job's egress passed its limit of 262144 bytes") {
		t.Errorf("stderr: %s", out.Stderr)
	}
	if len(out.Egress) != 1 || out.Egress[0].BytesReceived >= 4<<20 {
		t.Errorf("records: %+v", out.Egress)
	}
	// A build's RUN step too.
	b := buildTask("alice", "FROM "+testImage+"\nRUN wget -q -O /big http://127.0.0.1:"+p+"/big", nil)
	b.Spec.Docker.Network = &job.Network{Egress: []string{"127.0.0.1:" + p}}
	out = run(t, d, b)
	if out.Status != job.StatusFailed || !strings.Contains(out.Error, "egress limit") || !strings.Contains(out.Build.Log, "passed its limit of 262144 bytes") {
		t.Fatalf("build past the byte limit: %s %q\n%s", out.Status, out.Error, out.Build.Log)
	}
}

// TestEgressBuild: a RUN step downloads from an allowed local server; one
// that reaches for another host fails. The egress list is part of the
// build's cache key.
func TestEgressBuild(t *testing.T) {
	p, other := strconv.Itoa(mirror(t)), strconv.Itoa(mirror(t))
	d := newTestRuntime(t, func(c *Config) {
		agentConfig(t)(c)
		c.Build = true
		c.Egress = []string{"127.0.0.1:" + p, "127.0.0.1:" + other}
	})
	ok := buildTask("alice", "FROM "+testImage+"\nRUN wget -q -O /fetched http://127.0.0.1:"+p+"/file && cat /fetched\nRUN env | grep -i _proxy || true", nil)
	ok.Spec.Docker.Network = &job.Network{Egress: []string{"127.0.0.1:" + p}}
	res := run(t, d, ok)
	wantStatus(t, res, job.StatusCompleted)
	if !strings.Contains(res.Build.Log, "hello from the mirror") || len(res.Build.Egress) != 1 || res.Build.Egress[0].BytesReceived == 0 {
		t.Fatalf("build log:\n%s\negress %+v", res.Build.Log, res.Build.Egress)
	}
	// The proxy variables are the steps', not the image's.
	info, err := testEngine.ImageInspect(context.Background(), res.Build.ImageID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range info.Config.Env {
		if strings.Contains(strings.ToLower(e), "proxy=") {
			t.Errorf("the image keeps %s", e)
		}
	}
	defer d.removeImage(res.Build.Image)

	bad := buildTask("alice", "FROM "+testImage+"\nRUN wget -q -O /fetched http://127.0.0.1:"+other+"/file", nil)
	bad.Spec.Docker.Network = &job.Network{Egress: []string{"127.0.0.1:" + p}}
	res = run(t, d, bad)
	if res.Status != job.StatusFailed || !strings.Contains(res.Build.Log, "egress: refused 127.0.0.1:"+other+": not on the allow-list") {
		t.Fatalf("%s %q\n%s", res.Status, res.Error, res.Build.Log)
	}
	// (busybox's wget -T crashes, code 139: a failure that would prove
	// nothing.)
	none := buildTask("alice", "FROM "+testImage+"\nRUN wget -q -O /fetched http://127.0.0.1:"+p+"/file", nil)
	res = run(t, d, none)
	if res.Status != job.StatusFailed || !strings.Contains(res.Error, "non-zero code: 1") {
		t.Fatalf("a build without egress fetched: %s\n%s", res.Status, res.Build.Log)
	}

	b := ok.Spec.Docker.Build
	if d.buildKey("alice", b, "c", nil, nil) == d.buildKey("alice", b, "c", nil, []string{"127.0.0.1:" + p}) {
		t.Error("the build cache key does not depend on the egress list")
	}
}
