package docker

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/zerverless/zerverless/internal/job"
)

// listeners prints the listening TCP sockets of the container's network
// namespace, one "ADDRESS:PORT" (hex, as /proc/net shows them) a line.
const listeners = `awk '$4=="0A"{print $2}' /proc/net/tcp /proc/net/tcp6`

// TestEgressAttacksFromInside attacks the relay and the proxy from a
// job's container in the ways the proxy's tests do not reach: the
// namespace has no route (no UDP or DNS out), the relay listens on the
// proxy's port alone, the relay's stream header cannot be forged from
// inside, and loopback spelled as an IPv4-mapped, IPv4-compatible or
// decimal address, or a name resolving to one, is refused. A job without
// egress has no relay, listener or proxy variables at all.
func TestEgressAttacksFromInside(t *testing.T) {
	worker, err := net.Listen("tcp", "127.0.0.1:0") // a port of the worker's own
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()
	ws := strconv.Itoa(worker.Addr().(*net.TCPAddr).Port)
	d := newTestRuntime(t, func(c *Config) {
		agentConfig(t)(c)
		c.EgressResolver = mapResolver{"compat.test": {netip.MustParseAddr("::7f00:1")}, "mapped.test": {netip.MustParseAddr("::ffff:127.0.0.1")}}
		c.Egress = []string{"*.test:" + ws}
	})
	script := `
		echo "== interfaces"; ls /sys/class/net
		echo "== routes"; tail -n +2 /proc/net/route; grep -v ' lo$' /proc/net/ipv6_route
		echo "== dns"; nslookup example.com 2>&1 && echo "REACHED dns"
		nslookup example.com 8.8.8.8 2>&1 && echo "REACHED dns 8.8.8.8"
		echo "== listeners"; ` + listeners + `
		echo "== forged header"; printf 'accept 127.0.0.1:3128\nCONNECT compat.test:WPORT HTTP/1.1\r\n\r\n' | nc 127.0.0.1 3128
		echo "== spellings"
		for h in '[::ffff:127.0.0.1]' '[::127.0.0.1]' '[::ffff:0:127.0.0.1]' 2130706433 0x7f.1 compat.test mapped.test COMPAT.TEST. compat.test..; do
			printf 'CONNECT %s:WPORT HTTP/1.1\r\n\r\n' "$h" | nc 127.0.0.1 3128 | head -n 1
		done
		echo "== end"`
	out := run(t, d, egressTask(strings.ReplaceAll(script, "WPORT", ws), "compat.test:"+ws, "mapped.test:"+ws))
	wantStatus(t, out, job.StatusCompleted)
	t.Logf("stdout:\n%s\nstderr:\n%s", out.Output, out.Stderr)
	section := func(name string) string {
		_, rest, _ := strings.Cut(out.Output, "== "+name+"\n")
		s, _, _ := strings.Cut(rest, "== ")
		return strings.TrimSpace(s)
	}
	if got := section("interfaces"); got != "lo" {
		t.Errorf("interfaces: %q, want lo alone", got)
	}
	if got := section("routes"); got != "" {
		t.Errorf("routes out of loopback: %q", got)
	}
	if got := section("listeners"); got != "0100007F:0C38" {
		t.Errorf("listening in the namespace: %q, want the proxy's 127.0.0.1:3128 alone", got)
	}
	if got := section("forged header"); !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Errorf("a forged stream header: %q", got)
	}
	if got := section("spellings"); strings.Count(got, "HTTP/1.1 403") != 9 || strings.Contains(got, "200") {
		t.Errorf("loopback spelled otherwise:\n%s", got)
	}
	if strings.Contains(out.Output, "REACHED") || !strings.Contains(out.Output, "== end") {
		t.Errorf("reached out:\n%s", out.Output)
	}
	for _, want := range []string{
		"refused compat.test:" + ws + ": ::7f00:1 is an IPv4-compatible IPv6 address",
		"refused mapped.test:" + ws + ": 127.0.0.1 is a loopback address",
	} {
		if !strings.Contains(out.Stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if len(out.Egress) != 0 {
		t.Errorf("records: %+v", out.Egress)
	}

	// Without egress: no relay, no listener, no proxy variables.
	bare := testTask(newJobID(), testImage, "sh", "-c", "ls /sys/class/net; "+listeners+"; env | grep -i _proxy; nc -w 2 127.0.0.1 3128 </dev/null && echo REACHED; true")
	out = run(t, d, bare)
	wantStatus(t, out, job.StatusCompleted)
	if strings.TrimSpace(out.Output) != "lo" {
		t.Errorf("a job without egress: %q", out.Output)
	}
}

// TestEgressBuiltImageHasNoProxy: an image built with egress does not
// carry the proxy variables into the jobs that run it.
func TestEgressBuiltImageHasNoProxy(t *testing.T) {
	p := strconv.Itoa(mirror(t))
	d := newTestRuntime(t, func(c *Config) {
		agentConfig(t)(c)
		c.Build = true
		c.Egress = []string{"127.0.0.1:" + p}
	})
	b := buildTask("alice", "FROM "+testImage+"\nENV KEEP=1\nRUN wget -q -O /fetched http://127.0.0.1:"+p+"/file\nUSER 65534", nil)
	b.Spec.Docker.Network = &job.Network{Egress: []string{"127.0.0.1:" + p}}
	res := run(t, d, b)
	wantStatus(t, res, job.StatusCompleted)
	defer d.removeImage(res.Build.Image)
	info, err := testEngine.ImageInspect(context.Background(), res.Build.ImageID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image env %q", info.Config.Env)
	tk := testTask(newJobID(), res.Build.Image, "sh", "-c", "env | sort")
	tk.Namespace = "alice"
	out := run(t, d, tk)
	wantStatus(t, out, job.StatusCompleted)
	if strings.Contains(strings.ToLower(out.Output), "proxy") || !strings.Contains(out.Output, "KEEP=1") {
		t.Errorf("a job of the built image has env:\n%s", out.Output)
	}
}

// TestEgressBuildCacheSeparatesEgress: what a RUN step fetched with one
// egress list is not reused by the same Dockerfile with another list or
// with none (which cannot fetch, so fails), and is with the same list.
func TestEgressBuildCacheSeparatesEgress(t *testing.T) {
	p, other := strconv.Itoa(mirror(t)), strconv.Itoa(mirror(t))
	d := newTestRuntime(t, func(c *Config) {
		agentConfig(t)(c)
		c.Build = true
		c.Egress = []string{"127.0.0.1:" + p, "127.0.0.1:" + other}
	})
	dockerfile := "FROM " + testImage + "\nRUN wget -q -O /fetched http://127.0.0.1:" + p + "/file"
	build := func(egress ...string) job.Result {
		b := buildTask("alice", dockerfile, nil)
		if len(egress) > 0 {
			b.Spec.Docker.Network = &job.Network{Egress: egress}
		}
		return run(t, d, b)
	}
	first := build("127.0.0.1:" + p)
	wantStatus(t, first, job.StatusCompleted)
	defer d.removeImage(first.Build.Image)
	// Failed by the step's own wget, which had no network (code 1).
	if none := build(); none.Status != job.StatusFailed || !strings.Contains(none.Error, "non-zero code: 1") || strings.Contains(none.Build.Log, "Using cache") {
		t.Errorf("without egress: %s %q\n%s", none.Status, none.Error, none.Build.Log)
	}
	wider := build("127.0.0.1:"+p, "127.0.0.1:"+other)
	wantStatus(t, wider, job.StatusCompleted)
	if wider.Build.CacheHit || strings.Contains(wider.Build.Log, "Using cache") {
		t.Errorf("another egress list used the first build's cache:\n%s", wider.Build.Log)
	}
	if same := build("127.0.0.1:" + p); same.Status != job.StatusCompleted || !same.Build.CacheHit && !strings.Contains(same.Build.Log, "Using cache") {
		t.Errorf("the same egress list did not use the cache: %s\n%s", same.Status, same.Build.Log)
	}
}

// TestEgressRefusalsSurviveAFullBuildLog: a build that fills its log to
// the cap before reaching for a host not on its list does not hide the
// refusal: it is in the log still.
func TestEgressRefusalsSurviveAFullBuildLog(t *testing.T) {
	p, other := strconv.Itoa(mirror(t)), strconv.Itoa(mirror(t))
	d := newTestRuntime(t, func(c *Config) {
		agentConfig(t)(c)
		c.Build = true
		c.BuildLogBytes = 4096
		c.Egress = []string{"127.0.0.1:" + p}
	})
	b := buildTask("alice", "FROM "+testImage+"\nRUN head -c 20000 /dev/zero; wget -q -O /f http://127.0.0.1:"+other+"/file", nil)
	b.Spec.Docker.Network = &job.Network{Egress: []string{"127.0.0.1:" + p}}
	res := run(t, d, b)
	if res.Status != job.StatusFailed || !strings.Contains(res.Build.Log, "egress: refused 127.0.0.1:"+other+": not on the allow-list") {
		t.Fatalf("%s %q, log of %d bytes ends %q", res.Status, res.Error, len(res.Build.Log), strings.ReplaceAll(res.Build.Log[max(0, len(res.Build.Log)-300):], "\x00", ""))
	}
}
