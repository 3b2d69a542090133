package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
)

// Attacks on a docker service's live log from a worker: one that runs
// another tenant's instance, or none of the victim's, writes in the name
// of the victim's instance.

// A worker that runs bob's instance sends service_output naming alice's
// instance (and one that names no instance at all), many times and as
// large as a message may be: none of it reaches alice's log, its
// followers or its recent output; bob's own line, sent after on the same
// connection, reaches bob's follower (so the forged ones were read
// before it). Alice's follower sees her worker's line only.
func TestAttack2ForeignServiceOutput(t *testing.T) {
	srv := serviceServer(t, nil)
	c := client.New(srv.URL(), nil).WithToken(srv.AdminToken())
	alice := newToken(t, c, api.TokenRequest{Namespace: "alice", Name: "alice"}).Token
	bob := newToken(t, c, api.TokenRequest{Namespace: "bob", Name: "bob"}).Token

	victim := serviceWorker(t, srv, "127.0.0.1", 1, echoService)
	if a := deployService(t, srv, alice, "alice/app", `{"runtime":"docker","docker_image":"a:1","min_instances":1}`); a.status != 201 {
		t.Fatalf("alice deploys: %v", a)
	}
	ain := victim.NextStart(t, "no instance of alice's").ID
	attacker := serviceWorker(t, srv, "127.0.0.2", 1, echoService)
	if a := deployService(t, srv, bob, "bob/app", `{"runtime":"docker","docker_image":"b:1","min_instances":1}`); a.status != 201 {
		t.Fatalf("bob deploys: %v", a)
	}
	bin := attacker.NextStart(t, "no instance of bob's").ID
	eventually(t, 10*time.Second, func() error {
		for _, name := range []string{"alice/app", "bob/app"} {
			a := send(t, "GET", srv.URL()+"/api/deploy/"+name, srv.AdminToken(), "", nil)
			if !strings.Contains(string(a.body), `"state":"ready"`) {
				return fmt.Errorf("%s not ready: %s", name, a.body)
			}
		}
		return nil
	})
	af := openServiceLog(t, srv.URL(), alice, "alice/app", "")
	bf := openServiceLog(t, srv.URL(), bob, "bob/app", "")
	if af.status != 200 || bf.status != 200 {
		t.Fatalf("follow: %d %s / %d %s", af.status, af.body, bf.status, bf.body)
	}

	big := strings.Repeat("forged by bob's worker ", 2000) + "\n"
	for i := range 50 {
		if err := attacker.Output(ain, job.LogStdout, big, 0); err != nil {
			t.Fatalf("forged output %d: %v", i, err)
		}
		if err := attacker.Output(ain+"x", job.LogStderr, "forged for no instance\n", 1<<40); err != nil {
			t.Fatal(err)
		}
	}
	if err := attacker.Output(bin, job.LogStdout, "bob's own line\n", 0); err != nil {
		t.Fatal(err)
	}
	for _, e := range bf.until(t, "bob's own line") {
		if e.ev.Instance != bin || strings.Contains(e.ev.Text, "forged") {
			t.Fatalf("bob's follower got %+v", e)
		}
	}
	if err := victim.Output(ain, job.LogStdout, "alice's own line\n", 0); err != nil {
		t.Fatal(err)
	}
	for _, e := range af.until(t, "alice's own line") {
		if e.ev.Instance != ain || strings.Contains(e.ev.Text, "forged") || e.ev.Dropped != 0 {
			t.Fatalf("alice's follower got %+v", e)
		}
	}
	l := send(t, "GET", srv.URL()+"/api/deploy/alice/app/logs", alice, "", nil)
	if l.status != 200 || strings.Contains(string(l.body), "forged") || !strings.Contains(string(l.body), "alice's own line") {
		t.Fatalf("alice's recent output: %d %.300s", l.status, l.body)
	}
	// Bob's token sees none of alice's log, live or recent.
	if s := openServiceLog(t, srv.URL(), bob, "alice/app", ""); s.status != 404 {
		t.Fatalf("bob follows alice's log: %d %s", s.status, s.body)
	}
	if l := send(t, "GET", srv.URL()+"/api/deploy/alice/app/logs", bob, "", nil); l.status != 404 {
		t.Fatalf("bob reads alice's recent output: %d %.300s", l.status, l.body)
	}
}

// A worker that hosts an instance sends it a line without its end, then
// goes away, again and again (each time its instance starts again
// elsewhere, under a new id): what it held back is logged when the
// instance is lost, as when it exits, rather than kept for an instance
// that will never write again (the orchestrator would hold up to 4 KiB
// per stream of every instance ever lost, outside the log's bound).
func TestAttack2LostInstancePartialLine(t *testing.T) {
	srv := serviceServer(t, nil)
	c := client.New(srv.URL(), nil).WithToken(srv.AdminToken())
	alice := newToken(t, c, api.TokenRequest{Namespace: "alice", Name: "alice"}).Token
	w1 := serviceWorker(t, srv, "127.0.0.1", 1, echoService)
	if a := deployService(t, srv, alice, "alice/app", `{"runtime":"docker","docker_image":"a:1","min_instances":1}`); a.status != 201 {
		t.Fatalf("alice deploys: %v", a)
	}
	in := w1.NextStart(t, "no instance").ID
	f := openServiceLog(t, srv.URL(), alice, "alice/app", "")
	if f.status != 200 {
		t.Fatalf("follow: %d %s", f.status, f.body)
	}
	if err := w1.Output(in, job.LogStdout, "held back, no end of line", 0); err != nil {
		t.Fatal(err)
	}
	if err := w1.Output(in, job.LogStderr, "whole line\n", 0); err != nil {
		t.Fatal(err)
	}
	f.until(t, "whole line")
	w1.Close()
	for _, e := range f.until(t, "held back") {
		if e.ev.Instance != in {
			t.Fatalf("event %+v", e)
		}
	}
}

// floodingService answers /flood with n informational answers (103)
// before its answer; anything else is echoed.
func floodingService(n int) func(in *job.ServiceInstance) http.Handler {
	return func(in *job.ServiceInstance) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/flood" {
				echoService(in).ServeHTTP(w, r)
				return
			}
			c, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			for range n {
				rw.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
			}
			rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			rw.Flush()
		})
	}
}

// An instance floods its caller with informational answers before its
// answer: net/http's transport stops counting them once a hook reads
// them (the proxy's does, to filter their headers), so the orchestrator
// must: past Services' bound the answer is 502, and the caller got no
// more than the bound of them.
func TestAttack2InformationalFlood(t *testing.T) {
	srv := serviceServer(t, nil)
	serviceWorker(t, srv, "", 1, floodingService(10000))
	mustDeployService(t, srv, "evil/flood", `{"runtime":"docker","docker_image":"e:1","min_instances":1}`)
	eventually(t, 10*time.Second, func() error {
		if _, st := getOK(t, srv.URL()+"/evil/flood/ok"); st != 207 {
			return fmt.Errorf("evil/flood: %d", st)
		}
		return nil
	})
	host := strings.TrimPrefix(srv.URL(), "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /evil/flood/flood HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	br := bufio.NewReader(conn)
	infos := 0
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("after %d informational answers: %v", infos, err)
		}
		if resp.StatusCode == 103 {
			infos++
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway || infos > api.DefaultFunctionsConfig().MaxInformational {
			t.Fatalf("answer %d after %d informational answers", resp.StatusCode, infos)
		}
		break
	}
}
