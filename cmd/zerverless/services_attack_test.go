package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/zerverless/zerverless/internal/agent"
	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/protocol/protocoltest"
)

// Attacks on docker services from a caller, a hostile instance and a
// fake worker speaking the protocol.

// hostileService answers by path: /early sends a 103 carrying headers
// that act on the origin before its answer; /huge answers with a header
// larger than any a request may carry; anything else is echoed.
func hostileService(in *job.ServiceInstance) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/early":
			h := w.Header()
			h.Set("Set-Cookie", "session=stolen; Path=/")
			h.Set("Service-Worker-Allowed", "/")
			h.Set("Link", "</sw.js>; rel=serviceworker")
			w.WriteHeader(http.StatusEarlyHints)
			clear(h)
			w.Write([]byte("late"))
		case "/trailers":
			w.Header().Set("Trailer", "Set-Cookie, X-Ok")
			w.Write([]byte("body"))
			w.Header().Set("Set-Cookie", "session=stolen; Path=/")
			w.Header().Set("X-Ok", "kept")
			w.Header().Set(http.TrailerPrefix+"Service-Worker-Allowed", "/")
		case "/huge":
			w.Header().Set("X-Big", strings.Repeat("a", 2<<20))
			w.WriteHeader(200)
		default:
			echoService(in).ServeHTTP(w, r)
		}
	})
}

func TestServiceHostileAnswerHeaders(t *testing.T) {
	srv := serviceServer(t, nil)
	serviceWorker(t, srv, "", 2, hostileService)
	mustDeployService(t, srv, "evil/svc", `{"runtime":"docker","docker_image":"e:1","max_instances":1}`)

	// Informational answers follow the shared origin's rules too.
	var early []textproto.MIMEHeader
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		early = append(early, h)
		return nil
	}}
	req, _ := http.NewRequest("GET", srv.URL()+"/evil/svc/early", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "late" {
		t.Fatalf("answer %d %q", resp.StatusCode, b)
	}
	if len(early) == 0 {
		t.Fatal("the 103 did not reach the caller (the test proves nothing)")
	}
	for _, h := range early {
		for _, k := range []string{"Set-Cookie", "Service-Worker-Allowed", "Link"} {
			if v := h.Get(k); v != "" {
				t.Errorf("a 103 of a service carried %s: %s to the shared origin", k, v)
			}
		}
	}

	// Trailers, announced or not, follow the same rules.
	resp, err = http.Get(srv.URL() + "/evil/svc/trailers")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "body" || resp.Trailer.Get("X-Ok") != "kept" {
		t.Fatalf("trailers: %q %v", b, resp.Trailer)
	}
	for _, k := range []string{"Set-Cookie", "Service-Worker-Allowed"} {
		if v := resp.Trailer.Get(k); v != "" {
			t.Errorf("a trailer %s: %s reached the shared origin", k, v)
		}
	}

	// A header of 2 MiB: refused (502), and the service answers after.
	if a := send(t, "GET", srv.URL()+"/evil/svc/huge", "", "", nil); a.status != 502 {
		t.Fatalf("a 2 MiB answer header: %v", a)
	}
	if _, st := getOK(t, srv.URL()+"/evil/svc/after"); st != 207 {
		t.Fatalf("after the huge header: %d", st)
	}
}

func TestServiceRequestHeaderSpoofing(t *testing.T) {
	srv := serviceServer(t, nil)
	serviceWorker(t, srv, "", 2, echoService)
	mustDeployService(t, srv, "user/svc", `{"runtime":"docker","docker_image":"e:1"}`)
	req, _ := http.NewRequest("GET", srv.URL()+"/user/svc/x", nil)
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
	req.Header.Set("Proxy-Authorization", "Bearer "+srv.AdminToken())
	req.Header.Set("Cookie", "session=platform")
	req.Header.Set("X-Forwarded-For", "10.9.9.9")
	req.Header.Set("X-Forwarded-Host", "admin.example")
	req.Header.Set("X-Forwarded-Prefix", "/")
	req.Header.Set("Forwarded", "for=10.9.9.9")
	// Hop-by-hop tricks: naming headers in Connection strips them; the
	// prefix the platform sets must survive it.
	req.Header.Set("Connection", "X-Forwarded-Prefix, X-Forwarded-For")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 207 {
		t.Fatalf("answer %d", resp.StatusCode)
	}
	s := seenOf(t, resp.Header)
	for _, h := range []string{"Authorization", "Proxy-Authorization", "Cookie", "Forwarded", "X-Forwarded-Host"} {
		if v := s.Header.Get(h); v != "" && !(h == "X-Forwarded-Host" && !strings.Contains(v, "admin")) {
			t.Errorf("the instance got %s: %s", h, v)
		}
	}
	if p := s.Header.Get("X-Forwarded-Prefix"); p != "/user/svc" {
		t.Errorf("X-Forwarded-Prefix %q", p)
	}
	if f := s.Header.Get("X-Forwarded-For"); strings.Contains(f, "10.9.9.9") {
		t.Errorf("a spoofed X-Forwarded-For passed: %s", f)
	}
}

func TestServiceForeignInstanceReports(t *testing.T) {
	srv := serviceServer(t, nil)
	victim := serviceWorker(t, srv, "127.0.0.1", 2, echoService)
	mustDeployService(t, srv, "alice/svc", `{"runtime":"docker","docker_image":"a:1","min_instances":1}`)
	in := victim.NextStart(t, "no instance started")
	eventually(t, 5*time.Second, func() error {
		if _, st := getOK(t, srv.URL()+"/alice/svc/"); st != 207 {
			return fmt.Errorf("alice/svc: %d", st)
		}
		return nil
	})
	// Another trusted worker, and an anonymous one, report the victim's
	// instance as exited, and as ready.
	attacker := protocoltest.RegisterFrom(t, srv.WorkerURL(), "127.0.0.2", testWorkerSecret, serviceCaps(2))
	attacker.KeepAlive()
	for _, st := range []job.InstanceState{job.InstanceExited, job.InstanceReady, job.InstanceStarting} {
		attacker.Send(protocol.Message{Type: protocol.TypeServiceState, Report: &job.InstanceReport{ID: in.ID, State: st, ExitCode: 1, Output: "forged output\n"}})
	}
	// A request after the reports orders them after on the orchestrator.
	if _, st := getOK(t, srv.URL()+"/alice/svc/"); st != 207 {
		t.Fatalf("after the forged reports: %d", st)
	}
	a := send(t, "GET", srv.URL()+"/api/deploy/alice/svc", srv.AdminToken(), "", nil)
	var v api.DeploymentView
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Instances) != 1 || v.Instances[0].ID != in.ID || v.Instances[0].State != "ready" || v.Instances[0].Restarts != 0 || v.Instances[0].WorkerID != victim.ID {
		t.Fatalf("the forged reports changed the instances: %s", a.body)
	}
	if l := send(t, "GET", srv.URL()+"/api/deploy/alice/svc/logs", srv.AdminToken(), "", nil); strings.Contains(string(l.body), "forged") {
		t.Fatalf("forged output in the logs: %s", l.body)
	}
	select {
	case id := <-victim.Stopped():
		t.Fatalf("the victim was asked to stop %s", id)
	default:
	}
}

// stallingService never answers /hang, sends an endless body on
// /endless, switches protocols unasked on /switch and tries to split its
// answer on /split; anything else is echoed.
func stallingService(in *job.ServiceInstance) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hang":
			<-r.Context().Done()
		case "/endless":
			w.Header().Set("Content-Type", "application/octet-stream")
			buf := make([]byte, 64<<10)
			for {
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		case "/upgrade":
			// A protocol switch the caller asked for: it echoes.
			c, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: zv-echo\r\nSet-Cookie: session=stolen; Path=/\r\n\r\n")
			rw.Flush()
			io.Copy(c, rw)
		case "/switch", "/switch-bare", "/split":
			c, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			switch r.URL.Path {
			case "/switch":
				rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nPRI * HTTP/2.0\r\n")
			case "/switch-bare":
				rw.WriteString("HTTP/1.1 101 Switching Protocols\r\n\r\nanything")
			default:
				rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\r\n\r\nokHTTP/1.1 200 OK\r\nSet-Cookie: session=stolen; Path=/\r\nContent-Length: 0\r\n\r\n")
			}
			rw.Flush()
		default:
			echoService(in).ServeHTTP(w, r)
		}
	})
}

// A hostile instance holds no slot past its request: one that never
// answers is 504 at the service's timeout, an endless body ends when its
// caller leaves, an unasked protocol switch is 502, and a second answer
// after the first goes nowhere; each time the one slot is free again.
func TestServiceHostileInstanceReleasesItsSlot(t *testing.T) {
	srv := serviceServer(t, nil)
	serviceWorker(t, srv, "", 1, stallingService)
	mustDeployService(t, srv, "evil/slow", `{"runtime":"docker","docker_image":"e:1","max_instances":1,"concurrency":1,"timeout_seconds":1}`)
	ok := func(after string) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			if _, st := getOK(t, srv.URL()+"/evil/slow/ok"); st != 207 {
				return fmt.Errorf("after %s: %d", after, st)
			}
			return nil
		})
	}
	// The one slot is given back just after an answer ends: a request
	// right after may find it taken still (503), and is sent again.
	call := func(path string) answer {
		t.Helper()
		var a answer
		eventually(t, 10*time.Second, func() error {
			if a = send(t, "GET", srv.URL()+path, "", "", nil); a.status == 503 {
				return fmt.Errorf("%s: %v", path, a)
			}
			return nil
		})
		return a
	}
	ok("nothing")
	if a := call("/evil/slow/hang"); a.status != 504 {
		t.Fatalf("an instance that never answers: %v", a)
	}
	ok("a request never answered")

	resp, err := http.Get(srv.URL() + "/evil/slow/endless")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := io.CopyN(io.Discard, resp.Body, 4<<20); n != 4<<20 {
		t.Fatalf("endless body: %d bytes", n)
	}
	resp.Body.Close()
	ok("an endless body")

	for _, p := range []string{"/evil/slow/switch", "/evil/slow/switch-bare"} {
		if a := call(p); a.status != 502 {
			t.Fatalf("%s, an unasked switch of protocols: %v", p, a)
		}
		ok("an unasked switch")
	}
	// A switch asked for, to the protocol asked: the bytes pass, the
	// 101's headers follow the origin's rules.
	eventually(t, 10*time.Second, func() error {
		c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL(), "http://"))
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /evil/slow/upgrade HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: zv-echo\r\n\r\n", strings.TrimPrefix(srv.URL(), "http://"))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != 101 {
			return fmt.Errorf("asked switch: %d", resp.StatusCode)
		}
		if resp.Header.Get("Set-Cookie") != "" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") {
			t.Fatalf("the 101's headers: %v", resp.Header)
		}
		c.Write([]byte("ping\n"))
		if line, err := br.ReadString('\n'); line != "ping\n" {
			t.Fatalf("through the switch: %q %v", line, err)
		}
		return nil
	})
	ok("an asked switch")

	a := call("/evil/slow/split")
	if a.status != 200 || string(a.body) != "ok" || a.header.Get("Set-Cookie") != "" {
		t.Fatalf("a split answer: %v %v", a, a.header)
	}
	ok("a split answer")
}

// A caller who may not call a private service starts no instance of it,
// and another tenant's listing does not show it.
func TestServicePrivateRefusedBeforeAnyStart(t *testing.T) {
	srv := serviceServer(t, nil)
	sw := serviceWorker(t, srv, "", 2, echoService)
	c := client.New(srv.URL(), nil).WithToken(srv.AdminToken())
	alice := newToken(t, c, api.TokenRequest{Namespace: "alice", Name: "alice"}).Token
	bob := newToken(t, c, api.TokenRequest{Namespace: "bob", Name: "bob"}).Token
	if a := deployService(t, srv, alice, "alice/private", `{"runtime":"docker","docker_image":"a:1","public":false}`); a.status != 201 {
		t.Fatalf("deploy: %v", a)
	}
	for token, want := range map[string]int{"": 401, bob: 403, "not-a-token": 401} {
		for range 20 {
			if a := send(t, "GET", srv.URL()+"/alice/private/x", token, "", nil); a.status != want {
				t.Fatalf("a call with %q: %v (want %d)", token, a, want)
			}
		}
	}
	if a := send(t, "GET", srv.URL()+"/api/deploy", bob, "", nil); strings.Contains(string(a.body), "alice/private") || strings.Contains(string(a.body), `"private"`) {
		t.Fatalf("bob's listing shows alice's service: %s", a.body)
	}
	select {
	case in := <-sw.Starts():
		t.Fatalf("refused calls started instance %s", in.ID)
	default:
	}
	if a := send(t, "GET", srv.URL()+"/alice/private/x", alice, "", nil); a.status != 207 {
		t.Fatalf("alice calls: %v", a)
	}
}

// No service answers under the platform's own routes, whoever deploys
// it (the administrator's token acts in every namespace).
func TestServiceCannotShadowPlatformRoutes(t *testing.T) {
	srv := serviceServer(t, nil)
	sw := serviceWorker(t, srv, "", 2, echoService)
	for _, ns := range job.ReservedNamespaces {
		if a := deployService(t, srv, srv.AdminToken(), ns+"/streams", `{"runtime":"docker","docker_image":"a:1"}`); a.status != 400 {
			t.Errorf("a service at %s/streams: %v", ns, a)
		}
	}
	if a := send(t, "GET", srv.URL()+"/ws/streams", "", "", nil); a.status != 401 {
		t.Fatalf("/ws/streams after the attempts: %v", a)
	}
	select {
	case in := <-sw.Starts():
		t.Fatalf("an instance of %s started", in.Service)
	default:
	}
}

// Only the orchestrator opens streams: a worker that opens one (to have
// the orchestrator buffer what it writes there, unread) loses its stream
// connection.
func TestServiceWorkerOpenedStreamRefused(t *testing.T) {
	srv := serviceServer(t, nil)
	w := protocoltest.RegisterFrom(t, srv.WorkerURL(), "127.0.0.1", testWorkerSecret, serviceCaps(1))
	w.KeepAlive()
	ctx := context.Background()
	nc, status, err := protocoltest.DialStreams(ctx, srv.URL(), "127.0.0.1", w.StreamKey)
	if err != nil {
		t.Fatalf("stream connection: %d %v", status, err)
	}
	cfg := agent.YamuxConfig()
	cfg.StreamOpenTimeout = 0 // it waits for no acknowledgement
	sess, err := yamux.Server(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Write(make([]byte, 128<<10))
	select {
	case <-sess.CloseChan():
	case <-time.After(time.Minute):
		t.Fatal("the orchestrator kept a stream connection whose worker opens streams")
	}
}
