package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
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
	var in *job.ServiceInstance
	select {
	case in = <-victim.Starts():
	case <-time.After(10 * time.Second):
		t.Fatal("no instance started")
	}
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
