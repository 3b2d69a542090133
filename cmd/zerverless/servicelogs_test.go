package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol/protocoltest"
)

// A docker service's live log against fake workers that speak the real
// protocol: what they send as service_output reaches followers of GET
// /api/deploy/{namespace}/{path}/logs?follow=true.

// svcEvent is one Server-Sent Event of a service's log.
type svcEvent struct {
	id, event string
	ev        job.ServiceLogEvent
}

// svcStream reads a service's live log as an EventSource would.
type svcStream struct {
	status int
	body   []byte
	events chan svcEvent
	done   chan struct{}
	cancel context.CancelFunc
}

// openServiceLog follows the log of service name (namespace/path) with
// secret ("" sends none) after lastID ("" for all).
func openServiceLog(t *testing.T, base, secret, name, lastID string) *svcStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/deploy/"+name+"/logs?follow=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	s := &svcStream{status: resp.StatusCode, events: make(chan svcEvent, 1<<16), done: make(chan struct{}), cancel: cancel}
	if resp.StatusCode != http.StatusOK {
		s.body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		close(s.done)
		return s
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q, want text/event-stream", ct)
	}
	go s.read(t, resp.Body)
	return s
}

func (s *svcStream) read(t *testing.T, body io.ReadCloser) {
	defer close(s.done)
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 1<<20)
	var cur svcEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.event != "" {
				s.events <- cur
			}
			cur = svcEvent{}
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.ev); err != nil {
				t.Errorf("event data %q: %v", line, err)
			}
		}
	}
}

// next returns the next event, failing after d or when the stream ends.
func (s *svcStream) next(t *testing.T, d time.Duration) svcEvent {
	t.Helper()
	select {
	case e := <-s.events:
		if e.id != strconv.FormatUint(e.ev.Seq, 10) || e.event != string(e.ev.Stream) {
			t.Fatalf("event id %q and name %q do not match its data %+v", e.id, e.event, e.ev)
		}
		return e
	case <-s.done:
		select {
		case e := <-s.events:
			return e
		default:
		}
		t.Fatal("the stream ended")
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
	}
	panic("unreachable")
}

// until reads events until one holds want, and returns them all.
func (s *svcStream) until(t *testing.T, want string) []svcEvent {
	t.Helper()
	var out []svcEvent
	for {
		e := s.next(t, 10*time.Second)
		out = append(out, e)
		if strings.Contains(e.ev.Text, want) {
			return out
		}
	}
}

// twoInstances deploys name with two instances on sw and returns their
// ids once both are ready.
func twoInstances(t *testing.T, srv *Server, sw *protocoltest.ServiceWorker, name string) (string, string) {
	t.Helper()
	mustDeployService(t, srv, name, `{"runtime":"docker","docker_image":"z:1","min_instances":2}`)
	a, b := sw.NextStart(t, "no first instance").ID, sw.NextStart(t, "no second instance").ID
	eventually(t, 10*time.Second, func() error {
		a := send(t, "GET", srv.URL()+"/api/deploy/"+name, srv.AdminToken(), "", nil)
		if n := strings.Count(string(a.body), `"state":"ready"`); n != 2 {
			return fmt.Errorf("%d instances ready: %s", n, a.body)
		}
		return nil
	})
	return a, b
}

// TestServiceLogsFollow: the lines two instances write reach a follower
// as their worker sends them, each with its instance, whole lines only;
// a follower resuming with Last-Event-ID gets what followed; the
// non-follow view holds the same lines; undeploying ends the stream.
func TestServiceLogsFollow(t *testing.T) {
	srv := serviceServer(t, nil)
	sw := serviceWorker(t, srv, "", 2, echoService)
	a, b := twoInstances(t, srv, sw, "logs/svc")
	s := openServiceLog(t, srv.URL(), srv.AdminToken(), "logs/svc", "")
	if s.status != 200 {
		t.Fatalf("follow: %d %s", s.status, s.body)
	}
	if err := sw.Output(a, job.LogStdout, "one from a\npart", 0); err != nil {
		t.Fatal(err)
	}
	first := s.next(t, 10*time.Second)
	if first.ev.Instance != a || first.ev.Text != "one from a\n" || first.event != "stdout" {
		t.Fatalf("first event: %+v", first)
	}
	sw.Output(b, job.LogStderr, "one from b\n", 5)
	second := s.next(t, 10*time.Second)
	if second.ev.Instance != b || second.ev.Text != "one from b\n" || second.event != "stderr" || second.ev.Dropped != 5 {
		t.Fatalf("second event: %+v", second)
	}
	sw.Output(a, job.LogStdout, "ial line of a\n", 0)
	third := s.next(t, 10*time.Second)
	if third.ev.Instance != a || third.ev.Text != "partial line of a\n" {
		t.Fatalf("third event: %+v", third)
	}
	// A reconnect after the first event gets the two after it.
	r := openServiceLog(t, srv.URL(), srv.AdminToken(), "logs/svc", first.id)
	if got := r.next(t, 10*time.Second); got.id != second.id {
		t.Fatalf("resumed with %+v, want %s", got, second.id)
	}
	if got := r.next(t, 10*time.Second); got.id != third.id {
		t.Fatalf("resumed second with %+v, want %s", got, third.id)
	}
	view := send(t, "GET", srv.URL()+"/api/deploy/logs/svc/logs", srv.AdminToken(), "", nil)
	var logs api.ServiceLogs
	json.Unmarshal(view.body, &logs)
	want := "[" + a[:8] + "] one from a\n[" + b[:8] + "] one from b\n[" + a[:8] + "] partial line of a\n"
	if view.status != 200 || logs.Output != want {
		t.Fatalf("the recent output: %d %q, want %q", view.status, logs.Output, want)
	}
	// An exit report's tail is not logged twice when the output came live.
	sw.Crash(b, 3, "one from b\n")
	if a := send(t, "DELETE", srv.URL()+"/api/deploy/logs/svc", srv.AdminToken(), "", nil); a.status != 204 {
		t.Fatalf("undeploy: %v", a)
	}
	for _, st := range []*svcStream{s, r} {
		for {
			e := st.next(t, 10*time.Second)
			if e.event == "end" {
				if e.ev.Reason == "" {
					t.Fatalf("end without a reason: %+v", e)
				}
				break
			}
			if e.ev.Instance == b && e.ev.Text == "one from b\n" {
				t.Fatalf("the exit's tail was logged again: %+v", e)
			}
		}
		select {
		case <-st.done:
		case <-time.After(10 * time.Second):
			t.Fatal("the stream went on after its end")
		}
	}
}

// TestServiceLogsTenancy: another namespace's token, or none, cannot
// follow a service's log; its own namespace's can.
func TestServiceLogsTenancy(t *testing.T) {
	srv := serviceServer(t, nil)
	serviceWorker(t, srv, "", 2, echoService)
	c := client.New(srv.URL(), nil).WithToken(srv.AdminToken())
	alice := newToken(t, c, api.TokenRequest{Namespace: "alice", Name: "alice"}).Token
	bob := newToken(t, c, api.TokenRequest{Namespace: "bob", Name: "bob"}).Token
	if a := deployService(t, srv, alice, "alice/app", `{"runtime":"docker","docker_image":"a:1"}`); a.status != 201 {
		t.Fatalf("alice deploys: %v", a)
	}
	if s := openServiceLog(t, srv.URL(), bob, "alice/app", ""); s.status != 404 {
		t.Fatalf("bob follows alice's service: %d %s", s.status, s.body)
	}
	if s := openServiceLog(t, srv.URL(), "", "alice/app", ""); s.status != 401 {
		t.Fatalf("anonymous follow: %d %s", s.status, s.body)
	}
	if s := openServiceLog(t, srv.URL(), bob, "bob/none", ""); s.status != 404 {
		t.Fatalf("follow of nothing: %d %s", s.status, s.body)
	}
	if s := openServiceLog(t, srv.URL(), alice, "alice/app", "x"); s.status != 400 || !strings.Contains(string(s.body), "Last-Event-ID") {
		t.Fatalf("a bad Last-Event-ID: %d %s", s.status, s.body)
	}
	if s := openServiceLog(t, srv.URL(), alice, "alice/app", ""); s.status != 200 {
		t.Fatalf("alice follows her service: %d %s", s.status, s.body)
	}
}

// TestServiceLogsFollowerBounds: followers past the bounds per service
// and per token are refused (503) until one leaves.
func TestServiceLogsFollowerBounds(t *testing.T) {
	srv := serviceServer(t, func(c *ServerConfig) {
		c.Orchestrator.Services.FollowersPerService = 3
		c.Orchestrator.Services.FollowersPerToken = 2
	})
	serviceWorker(t, srv, "", 2, echoService)
	c := client.New(srv.URL(), nil).WithToken(srv.AdminToken())
	alice := newToken(t, c, api.TokenRequest{Namespace: "alice", Name: "alice"}).Token
	mustDeployService(t, srv, "alice/app", `{"runtime":"docker","docker_image":"a:1"}`)
	first := openServiceLog(t, srv.URL(), alice, "alice/app", "")
	openServiceLog(t, srv.URL(), alice, "alice/app", "")
	if s := openServiceLog(t, srv.URL(), alice, "alice/app", ""); s.status != 503 || !strings.Contains(string(s.body), "FollowersPerToken") {
		t.Fatalf("a third follower of one token: %d %s", s.status, s.body)
	}
	openServiceLog(t, srv.URL(), srv.AdminToken(), "alice/app", "")
	if s := openServiceLog(t, srv.URL(), srv.AdminToken(), "alice/app", ""); s.status != 503 || !strings.Contains(string(s.body), "FollowersPerService") {
		t.Fatalf("a fourth follower of one service: %d %s", s.status, s.body)
	}
	first.cancel()
	eventually(t, 10*time.Second, func() error {
		s := openServiceLog(t, srv.URL(), alice, "alice/app", "")
		if s.status != 200 {
			return fmt.Errorf("after one left: %d %s", s.status, s.body)
		}
		return nil
	})
}

// TestServiceLogsSlowFollower: a follower that reads nothing while an
// instance writes far more than the log and the connection hold slows
// neither the worker nor another follower; once it reads it is told what
// it missed (a dropped event) and gets the newest lines.
func TestServiceLogsSlowFollower(t *testing.T) {
	srv := serviceServer(t, func(c *ServerConfig) {
		c.Orchestrator.Services.FollowerBytes = 64 << 10
	})
	sw := serviceWorker(t, srv, "", 2, echoService)
	mustDeployService(t, srv, "logs/svc", `{"runtime":"docker","docker_image":"z:1","min_instances":1}`)
	id := sw.NextStart(t, "no instance").ID
	slow := openServiceLogRaw(t, srv.URL(), srv.AdminToken(), "logs/svc")
	fast := openServiceLog(t, srv.URL(), srv.AdminToken(), "logs/svc", "")
	line := strings.Repeat("x", 1023) + "\n"
	chunk := strings.Repeat(line, 60)
	const chunks = 512 // 30 MiB: more than the log, and than the slow follower's socket buffers
	for i := range chunks {
		if err := sw.Output(id, job.LogStdout, chunk, 0); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	sw.Output(id, job.LogStdout, "the last line\n", 0)
	fast.until(t, "the last line")
	// Now the slow one reads.
	go slow.read(t, slow.body)
	evs := slow.until(t, "the last line")
	dropped := false
	for _, e := range evs {
		dropped = dropped || e.event == "dropped" && e.ev.Missed > 0 && e.ev.Dropped > 0
	}
	if !dropped {
		t.Fatalf("the slow follower got %d events and no dropped event", len(evs))
	}
}

// slowStream is a follower that has not started reading.
type slowStream struct {
	*svcStream
	body io.ReadCloser
}

func openServiceLogRaw(t *testing.T, base, secret, name string) slowStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/deploy/"+name+"/logs?follow=true", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("follow: %v %v", resp, err)
	}
	return slowStream{svcStream: &svcStream{status: 200, events: make(chan svcEvent, 1<<16), done: make(chan struct{}), cancel: cancel}, body: resp.Body}
}

// TestServiceLogsCLI: `zerverless logs NAMESPACE/PATH` prints a service's
// recent output; with -f it prints the lines as they come, each after its
// instance's short id, until the service is undeployed.
func TestServiceLogsCLI(t *testing.T) {
	srv := serviceServer(t, nil)
	sw := serviceWorker(t, srv, "", 2, echoService)
	mustDeployService(t, srv, "cli/svc", `{"runtime":"docker","docker_image":"z:1","min_instances":1}`)
	id := sw.NextStart(t, "no instance").ID
	sw.Output(id, job.LogStdout, "written before\n", 0)
	cli := cliAgainst(srv)
	eventually(t, 10*time.Second, func() error {
		if code, out, errOut := cli("logs", "cli/svc"); code != 0 || out != "["+id[:8]+"] written before\n" {
			return fmt.Errorf("logs: %d %q %q", code, out, errOut)
		}
		return nil
	})
	var out, errOut lockedBuffer
	done := make(chan int, 1)
	go func() {
		getenv := func(k string) string {
			switch k {
			case "ZERVERLESS_SERVER":
				return srv.URL()
			case "ZERVERLESS_TOKEN":
				return srv.AdminToken()
			}
			return ""
		}
		done <- run(context.Background(), []string{"logs", "-f", "cli/svc"}, &out, &errOut, getenv)
	}()
	p := "[" + id[:8] + "] "
	// It follows once it printed what the log held.
	eventually(t, 10*time.Second, func() error {
		if out.String() != p+"written before\n" {
			return fmt.Errorf("logs -f printed %q %q", out.String(), errOut.String())
		}
		return nil
	})
	sw.Output(id, job.LogStderr, "written live\n", 0)
	sw.Output(id, job.LogStdout, "and more\n", 0)
	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(out.String(), "and more") {
			return fmt.Errorf("logs -f printed %q %q", out.String(), errOut.String())
		}
		return nil
	})
	if a := send(t, "DELETE", srv.URL()+"/api/deploy/cli/svc", srv.AdminToken(), "", nil); a.status != 204 {
		t.Fatalf("undeploy: %v", a)
	}
	select {
	case code := <-done:
		if code != 0 || out.String() != p+"written before\n"+p+"and more\n" || !strings.Contains(errOut.String(), p+"written live\n") || !strings.Contains(errOut.String(), "the log ended: the service was undeployed") {
			t.Fatalf("logs -f: %d %q %q", code, out.String(), errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("logs -f did not end with the service")
	}
}
