package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol/protocoltest"
	"github.com/zerverless/zerverless/internal/worker"
)

// startServeLimited starts the test binary as `zerverless serve` on addr
// with its store in dir, under an open-file limit of nofile (soft and
// hard), with extra flags. Its log goes to the returned buffer; t's
// cleanup kills it.
func startServeLimited(t *testing.T, nofile int, addr, dir string, flags ...string) (*serveProc, *lockedBuffer) {
	t.Helper()
	args := append([]string{"serve", "--addr", addr, "--data", dir, "--log-level", "warn"}, flags...)
	script := fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, nofile)
	cmd := exec.Command("sh", append([]string{"-c", script, os.Args[0]}, args...)...)
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	var logs lockedBuffer
	cmd.Stdout = io.Discard
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("serve log:\n%s", tail(logs.String(), 4000))
		}
	})
	return p, &logs
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// openFiles counts the open descriptors of process pid.
func openFiles(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("count descriptors of %d: %v", pid, err)
	}
	return len(ents)
}

// rssBytes is the resident set of process pid.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// floodConn is one attacking connection's behaviour: it holds the
// connection as long as the server lets it and redials when it is closed.
type floodKind int

const (
	slowHeaders   floodKind = iota // a request's headers, one byte a second
	idleKeepAlive                  // one GET /health, then nothing
	slowBody                       // a function call whose body comes one byte a second
)

func (k floodKind) hold(ctx context.Context, c net.Conn, host string) {
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	trickle := func(b []byte) {
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := c.Write(b[i%len(b) : i%len(b)+1]); err != nil {
				return
			}
			select {
			case <-ctx.Done():
			case <-ticker.C:
			}
		}
	}
	switch k {
	case slowHeaders:
		fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: %s\r\n", host)
		trickle([]byte("X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"))
	case idleKeepAlive:
		fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: %s\r\n\r\n", host)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// Idle until the server closes it.
		stop := context.AfterFunc(ctx, func() { c.Close() })
		defer stop()
		c.Read(make([]byte, 1))
	case slowBody:
		fmt.Fprintf(c, "POST /flood/echo HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n", host)
		trickle([]byte("x"))
	}
}

// TestServeConnectionFlood holds 10,000 slow or idle connections to a
// `serve` whose open-file limit is 4,096, from 30 loopback addresses
// (more than one address may hold, more than the server may hold in
// total), redialing whenever the server closes one. Throughout, /health
// answers from another address, a job submitted meanwhile completes, the
// server never runs out of descriptors, and its limits are seen to act.
func TestServeConnectionFlood(t *testing.T) {
	const (
		nofile  = 4096
		conns   = 10000
		sources = 30
	)
	// The attacker holds its connections in this process: it needs room
	// for them (Go raised the soft limit to the hard one at start).
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < conns+2000 {
		t.Fatalf("the test process may open %d files (%v); the flood needs %d: raise the hard limit (ulimit -Hn)", lim.Cur, err, conns+2000)
	}
	dir := t.TempDir()
	addr := freePort(t)
	p, logs := startServeLimited(t, nofile, addr, dir, "--workers", "2",
		"--read-header-timeout", "3s", "--idle-timeout", "3s", "--body-grace", "2s")
	url := "http://" + addr
	c := waitServing(t, p, url, dir)
	pid := p.cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.Deploy(ctx, "flood", "echo", job.DeployRequest{Runtime: job.TypeLua, Code: `function handle(req) return "ok" end`}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		ws, err := c.Workers(ctx)
		if err != nil || len(ws) != 2 {
			return fmt.Errorf("workers %d, %v", len(ws), err)
		}
		return nil
	})
	baseline := openFiles(t, pid)

	// The attack.
	attack, stopAttack := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var dials, held atomic.Int64
	for i := range conns {
		src := fmt.Sprintf("127.0.0.%d", 10+i%sources)
		kind := floodKind(i % 3)
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
			for attack.Err() == nil {
				nc, err := d.DialContext(attack, "tcp", addr)
				if err == nil {
					dials.Add(1)
					held.Add(1)
					kind.hold(attack, nc, addr)
					held.Add(-1)
					nc.Close()
				}
				select {
				case <-attack.Done():
				case <-time.After(2*time.Second + rand.N(2*time.Second)):
				}
			}
		}()
	}
	defer func() {
		stopAttack()
		wg.Wait()
	}()

	// Watch the server's descriptors and /health from 127.0.0.1, with a
	// fresh connection each time.
	var maxFiles atomic.Int64
	var healthFails atomic.Int64
	var healthMax atomic.Int64
	var healthErr atomic.Value
	watch, stopWatch := context.WithCancel(ctx)
	var wwg sync.WaitGroup
	wwg.Add(2)
	go func() {
		defer wwg.Done()
		for watch.Err() == nil {
			if n := int64(openFiles(t, pid)); n > maxFiles.Load() {
				maxFiles.Store(n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	go func() {
		defer wwg.Done()
		// A generous timeout: the check is that /health answers, not how
		// fast on a shared machine; the slowest answer is logged.
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for watch.Err() == nil {
			start := time.Now()
			resp, err := hc.Get(url + "/health")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				healthFails.Add(1)
				healthErr.Store(err.Error())
			}
			if d := time.Since(start); int64(d) > healthMax.Load() {
				healthMax.Store(int64(d))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()

	// Let the attack fill the server, then submit a job and wait for it.
	eventually(t, 60*time.Second, func() error {
		if n := openFiles(t, pid); n < nofile/2 {
			return fmt.Errorf("the server holds %d descriptors; the attack has not filled it yet (%d connections held)", n, held.Load())
		}
		return nil
	})
	jc := client.New(url, &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).WithToken(adminToken(dir))
	v, err := jc.Submit(ctx, job.Request{Type: job.TypeLua, Code: `return 6 * 7`})
	if err != nil {
		t.Fatalf("submit during the flood: %v", err)
	}
	v, err = jc.Await(ctx, v.ID, 5*time.Second)
	if err != nil || v.Status != job.StatusCompleted {
		t.Fatalf("job submitted during the flood: %s %v", v.Status, err)
	}
	// The attack lasts past every deadline the server applies (header
	// 3 s, idle 3 s, body 2 s of grace), with /health watched.
	select {
	case <-ctx.Done():
	case <-time.After(8 * time.Second):
	}
	stopWatch()
	wwg.Wait()

	token := adminToken(dir)
	refused := metricValues(t, url+"/metrics", token, "zerverless_http_connections_refused_total")[""]
	evicted := metricValues(t, url+"/metrics", token, "zerverless_http_connections_evicted_total")[""]
	t.Logf("%d dials, %d held at the end; server descriptors %d before, at most %d during (limit %d); refused %v, evicted %v; slowest /health %s",
		dials.Load(), held.Load(), baseline, maxFiles.Load(), nofile, refused, evicted, time.Duration(healthMax.Load()))
	if n := healthFails.Load(); n > 0 {
		t.Errorf("/health failed %d times during the flood, last: %v", n, healthErr.Load())
	}
	if m := maxFiles.Load(); m >= nofile {
		t.Errorf("the server held %d descriptors, its limit is %d", m, nofile)
	}
	if refused == 0 || evicted == 0 {
		t.Errorf("the connection limits never acted (refused %v, evicted %v)", refused, evicted)
	}
	if l := logs.String(); strings.Contains(l, "too many open files") {
		t.Errorf("the server ran out of descriptors:\n%s", tail(l, 2000))
	}
	ws, err := jc.Workers(ctx)
	if err != nil || len(ws) != 2 {
		t.Errorf("after the flood: %d workers, %v; want the 2 embedded workers still connected", len(ws), err)
	}
	if n := metricValues(t, url+"/metrics", token, "zerverless_worker_sessions")[""]; n != 2 {
		t.Errorf("%v worker sessions, want the 2 embedded workers' (promoted out of the HTTP connections)", n)
	}

	stopAttack()
	wg.Wait()
	eventually(t, 30*time.Second, func() error {
		if n := openFiles(t, pid); n > baseline+50 {
			return fmt.Errorf("the server still holds %d descriptors after the flood, %d before", n, baseline)
		}
		return nil
	})
}

// TestServeRegisterFlood opens 100 worker WebSockets that each start a
// 60 MiB "register" frame and send as much of it as the server reads:
// the server reads no more than its pre-authentication limit of each,
// closes them with 1009 (message too big), and its resident memory grows
// by less than 100 MiB.
func TestServeRegisterFlood(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	p, _ := startServeLimited(t, 4096, addr, dir, "--workers", "0")
	waitServing(t, p, "http://"+addr, dir)
	pid := p.cmd.Process.Pid
	before := rssBytes(t, pid)

	const conns, frame = 100, 60 << 20
	stopSampling := samplePeakRSS(t, pid)
	var wg sync.WaitGroup
	var sent atomic.Int64
	statuses := make(chan int, conns)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws, err := protocoltest.DialRawWS(addr, "", "/ws/volunteer")
			if err != nil {
				t.Errorf("dial: %v", err)
				statuses <- 0
				return
			}
			defer ws.Conn.Close()
			ws.StartText(frame)
			ws.Write([]byte(`{"type":"register","version":1,"capabilities":{"concurrency":1},"notes":{"x":"`))
			chunk := bytes.Repeat([]byte("A"), 1<<20)
			ws.Conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
			for n := 0; n < frame-(2<<20); n += len(chunk) {
				if _, err := ws.Write(chunk); err != nil {
					break
				}
				sent.Add(int64(len(chunk)))
			}
			code, _ := ws.CloseStatus(30 * time.Second)
			statuses <- code
		}()
	}
	wg.Wait()
	peak := stopSampling()
	close(statuses)
	for code := range statuses {
		if code != 1009 {
			t.Errorf("a 60 MiB register frame ended with close status %d, want 1009 (message too big)", code)
			break
		}
	}
	grown := peak - before
	t.Logf("RSS %d MiB before, peak %d MiB; %d MiB sent by the clients before the server closed them", before>>20, peak>>20, sent.Load()>>20)
	if grown >= 100<<20 {
		t.Errorf("the server's RSS grew by %d MiB under 100 register frames of 60 MiB, want less than 100 MiB", grown>>20)
	}
}

// TestServeAnonymousMessageFlood: with --open-volunteering, 40 anonymous
// volunteers register (each within its read limit) and then each start a
// 60 MiB message and send all of it but the last byte. What the server
// holds of them together stays within --anonymous-read-bytes: its
// resident memory grows by far less than the 2.3 GiB they sent, the
// sessions that pass the bound are ended, and a Lua job submitted
// meanwhile completes on a trusted worker.
func TestServeAnonymousMessageFlood(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	p, _ := startServeLimited(t, 4096, addr, dir, "--workers", "1", "--open-volunteering",
		"--anonymous-read-bytes", strconv.Itoa(64<<20), "--runtimes", "lua")
	c := waitServing(t, p, "http://"+addr, dir)
	pid := p.cmd.Process.Pid
	before := rssBytes(t, pid)

	const conns, frame = 40, 60 << 20
	stopSampling := samplePeakRSS(t, pid)
	var wg, sending sync.WaitGroup
	var sent, cut atomic.Int64
	release := make(chan struct{})
	for range conns {
		wg.Add(1)
		sending.Add(1)
		go func() {
			defer wg.Done()
			ws, err := protocoltest.DialRawWS(addr, "", "/ws/volunteer")
			if err != nil {
				t.Errorf("dial: %v", err)
				sending.Done()
				return
			}
			defer ws.Conn.Close()
			reg := []byte(`{"type":"register","version":1,"name":"anon","capabilities":{"runtimes":["js"],"concurrency":1}}`)
			ws.StartText(int64(len(reg)))
			ws.Write(reg)
			ws.StartText(frame)
			ws.Write([]byte(`{"type":"heartbeat","leases":["`))
			chunk := bytes.Repeat([]byte("A"), 1<<20)
			ws.Conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
			for n := 0; n < frame-(2<<20); n += len(chunk) {
				if _, err := ws.Write(chunk); err != nil {
					cut.Add(1)
					break
				}
				sent.Add(int64(len(chunk)))
			}
			sending.Done()
			<-release // hold what was sent until every session has sent
		}()
	}
	sending.Wait()
	j, err := c.Submit(context.Background(), job.Request{Type: job.TypeLua, Code: "return 1"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Job(context.Background(), j.ID, 30*time.Second)
	if err != nil || got.Status != job.StatusCompleted {
		t.Errorf("a Lua job during the flood: %+v %v", got, err)
	}
	close(release)
	wg.Wait()
	peak := stopSampling()
	grown := peak - before
	t.Logf("RSS %d MiB before, peak %d MiB; %d MiB sent, %d of %d sessions cut", before>>20, peak>>20, sent.Load()>>20, cut.Load(), conns)
	if cut.Load() == 0 {
		t.Errorf("no anonymous session was ended, though their messages pass the read budget many times")
	}
	if grown >= 400<<20 {
		t.Errorf("the server's RSS grew by %d MiB under %d anonymous 60 MiB messages with a 64 MiB budget, want less than 400 MiB", grown>>20, conns)
	}
}

// TestServeFunctionBodyFlood: 60 callers without a token each send an
// 8 MB binary body (the largest allowed) to a public function at once,
// on a server whose one worker is busy. The calls that do not fit
// --functions-inflight-bytes are answered 503 before their body is read,
// the server's resident memory grows by far less than the 60 bodies and
// their copies would take, and /health answers throughout.
func TestServeFunctionBodyFlood(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	p, _ := startServeLimited(t, 4096, addr, dir, "--workers", "1", "--concurrency", "1",
		"--functions-inflight-bytes", strconv.Itoa(48<<20))
	c := waitServing(t, p, "http://"+addr, dir)
	if _, err := c.Deploy(context.Background(), "flood", "slow", job.DeployRequest{Runtime: job.TypeLua,
		Code: "function handle(req) local s = 0 for i = 1, 3e7 do s = s + i end return 'ok' end"}); err != nil {
		t.Fatal(err)
	}
	pid := p.cmd.Process.Pid
	before := rssBytes(t, pid)
	stopSampling := samplePeakRSS(t, pid)
	body := make([]byte, 8_000_000)
	for i := range body {
		body[i] = byte(i*7+i>>8) | 0x80 // not UTF-8: the function gets it in base64
	}
	const callers = 60
	statuses := make(chan int, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post("http://"+addr+"/flood/slow", "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				statuses <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	if err := c.Health(context.Background()); err != nil {
		t.Errorf("/health during the flood: %v", err)
	}
	wg.Wait()
	peak := stopSampling()
	count := countStatuses(statuses)
	grown := peak - before
	t.Logf("RSS %d MiB before, peak %d MiB; statuses %v", before>>20, peak>>20, count)
	if count[503] == 0 {
		t.Errorf("no call was refused with 503: %v", count)
	}
	if grown >= 400<<20 {
		t.Errorf("the server's RSS grew by %d MiB under %d calls with 8 MB bodies, want less than 400 MiB", grown>>20, callers)
	}
}

// TestServeSubmissionBodyFlood: a namespace token sends 20 submissions
// of 60 MB at once (refused or not, each is read whole). Those that do not
// fit --max-bodies-in-flight are answered 503 before their body is read,
// and the server's resident memory grows by far less than the 20 bodies
// and their decoding would take.
func TestServeSubmissionBodyFlood(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	p, _ := startServeLimited(t, 4096, addr, dir, "--workers", "0",
		"--max-bodies-in-flight", strconv.Itoa(128<<20))
	admin := waitServing(t, p, "http://"+addr, dir)
	tok := newToken(t, admin, api.TokenRequest{Namespace: "flood"}).Token
	pid := p.cmd.Process.Pid
	before := rssBytes(t, pid)
	stopSampling := samplePeakRSS(t, pid)
	body := []byte(`{"job_type":"lua","code":"return 1","input_data":"` + strings.Repeat("x", 60_000_000) + `"}`)
	const callers = 20
	statuses := make(chan int, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- send(t, "POST", "http://"+addr+"/api/jobs", tok, "application/json", body).status
		}()
	}
	wg.Wait()
	peak := stopSampling()
	count := countStatuses(statuses)
	grown := peak - before
	t.Logf("RSS %d MiB before, peak %d MiB; statuses %v", before>>20, peak>>20, count)
	if count[503] == 0 || count[400] == 0 {
		t.Errorf("want some submissions read (400: input_data over its limit) and some refused unread (503): %v", count)
	}
	if grown >= 1<<30 {
		t.Errorf("the server's RSS grew by %d MiB under %d submissions of 60 MB, want less than 1 GiB", grown>>20, callers)
	}
}

func TestDescribeListen(t *testing.T) {
	ifaddrs := []net.Addr{
		&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
		&net.IPNet{IP: net.ParseIP("192.168.1.5"), Mask: net.CIDRMask(24, 32)},
		&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)},
		&net.IPNet{IP: net.ParseIP("2001:db8::5"), Mask: net.CIDRMask(64, 128)},
	}
	for _, tc := range []struct {
		bound *net.TCPAddr
		want  string
	}{
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 8000}, "http://127.0.0.1:8000"},
		{&net.TCPAddr{IP: net.ParseIP("10.0.0.2"), Port: 80}, "http://10.0.0.2:80"},
		{&net.TCPAddr{IP: net.IPv4zero.To4(), Port: 8000}, "every interface, port 8000: http://127.0.0.1:8000, http://192.168.1.5:8000"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 8000}, "every interface, port 8000: http://127.0.0.1:8000, http://192.168.1.5:8000, http://[2001:db8::5]:8000"},
	} {
		if got := describeListen(tc.bound, ifaddrs); got != tc.want {
			t.Errorf("bound %s: %q, want %q", tc.bound, got, tc.want)
		}
	}
}

// TestCleanCloseLogged stops a worker, then the server with another worker
// connected: each side logs the other's clean close as one, with its
// reason, and neither logs a dropped connection.
func TestCleanCloseLogged(t *testing.T) {
	var srvLog lockedBuffer
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Log = slog.New(slog.NewTextHandler(&srvLog, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := StartServer(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	runWorker := func(name string, log *lockedBuffer) (stop func()) {
		ro := DefaultRuntimeOptions()
		ro.Only = []job.Type{job.TypeLua}
		rts, err := BuildRuntimes(context.Background(), ro, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rts.Close(context.Background()) })
		wc := worker.DefaultConfig()
		wc.URL = srv.WorkerURL()
		wc.Name = name
		wc.JoinToken = testWorkerSecret
		w, err := worker.New(wc, rts.Set, slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelInfo})))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.Run(ctx)
		}()
		eventually(t, 10*time.Second, func() error {
			if w.ID() == "" {
				return fmt.Errorf("%s is not registered", name)
			}
			return nil
		})
		return func() { cancel(); <-done }
	}

	var w1Log, w2Log lockedBuffer
	stop1 := runWorker("w1", &w1Log)
	stop2 := runWorker("w2", &w2Log)
	defer stop2()
	stop1()
	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(srvLog.String(), `closed_by_worker="worker stopping"`) {
			return fmt.Errorf("server log has no clean close of w1:\n%s", srvLog.String())
		}
		return nil
	})
	srv.Close()
	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(w2Log.String(), "the orchestrator closed the connection") || !strings.Contains(w2Log.String(), "shutting down") {
			return fmt.Errorf("w2 log has no clean close by the orchestrator:\n%s", w2Log.String())
		}
		return nil
	})
	for name, l := range map[string]string{"server": srvLog.String(), "w1": w1Log.String(), "w2": w2Log.String()} {
		if strings.Contains(l, "frame header") || strings.Contains(l, "EOF") {
			t.Errorf("%s logged a clean close as a dropped connection:\n%s", name, l)
		}
	}
}

// samplePeakRSS reads the resident memory of process pid every 20 ms until
// the returned stop is called; stop returns the highest figure read.
func samplePeakRSS(t *testing.T, pid int) (stop func() int64) {
	var peak atomic.Int64
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			default:
			}
			if r := rssBytes(t, pid); r > peak.Load() {
				peak.Store(r)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() int64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

// countStatuses closes statuses and counts the HTTP statuses it held.
func countStatuses(statuses chan int) map[int]int {
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	return count
}
