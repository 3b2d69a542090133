package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/protocol/protocoltest"
)

// TestRevokedJoinTokenEndsSessions: revoking a join token through the admin
// API disconnects the worker it admitted within seconds; its container job
// (with its docker_env) goes back to the queue without losing an attempt,
// and the token is refused when the worker registers again.
func TestRevokedJoinTokenEndsSessions(t *testing.T) {
	srv, c := startServer(t, testServerConfig(t, t.TempDir(), 0))
	ctx := context.Background()
	tok, err := c.CreateToken(ctx, api.TokenRequest{Kind: job.TokenWorker, Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	caps := job.Capabilities{Runtimes: []job.Type{job.TypeDocker}, Concurrency: 2, Docker: &job.DockerCapabilities{}}
	w := protocoltest.Register(t, srv.WorkerURL(), tok.Token, caps)
	if !w.Trusted {
		t.Fatal("a worker with a join token is not trusted")
	}
	w.KeepAlive()
	j, err := c.Submit(ctx, job.Request{Type: job.TypeDocker, DockerImage: "alpine:latest", DockerCommand: []string{"true"},
		DockerEnv: map[string]string{"SECRET": "tenant-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	if task := w.Next(5 * time.Second); task.JobID != j.ID {
		t.Fatalf("the worker got %s", task.JobID)
	}
	if err := c.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	// Within seconds the session ends; nothing more is sent to it.
	for _, task := range w.WaitClosed(10 * time.Second) {
		t.Errorf("the revoked worker was sent %s", task.JobID)
	}
	eventually(t, 5*time.Second, func() error {
		got, err := c.Job(ctx, j.ID, 0)
		if err != nil {
			return err
		}
		if got.Status != job.StatusPending || got.Attempt != 1 {
			return fmt.Errorf("job is %s at attempt %d", got.Status, got.Attempt)
		}
		return nil
	})
	if m := protocoltest.Refused(t, srv.WorkerURL(), tok.Token, caps); !strings.Contains(m.Error, "invalid join token") {
		t.Fatalf("register with the revoked token: %+v", m)
	}
	ws, err := c.Workers(ctx)
	if err != nil || len(ws) != 0 {
		t.Fatalf("workers after the revocation: %+v %v", ws, err)
	}
}

// TestFunctionsStayOffAnonymousWorkers: with open volunteering, an
// anonymous worker is never sent a function invocation, so it sees neither
// the function's env nor its callers' cookies and cannot forge another
// tenant's answer; a trusted worker answers. A deployment with
// anonymous_workers lets anonymous workers run it.
func TestFunctionsStayOffAnonymousWorkers(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Orchestrator.OpenVolunteering = true
	srv, c := startServer(t, cfg)
	luaCaps := job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 4}
	anon := protocoltest.Register(t, srv.WorkerURL(), "", luaCaps)
	anon.KeepAlive()
	seen := make(chan *job.Task, 16)
	go func() {
		for {
			task, err := anon.TryNext(time.Minute)
			if err != nil {
				return
			}
			seen <- task
		}
	}()
	mustDeploy(t, c, "bob/hello", job.DeployRequest{Runtime: job.TypeLua, Code: `return "hello"`,
		Env: map[string]string{"API_KEY": "bob-s3cret"}})
	trusted := dialRaw(t, srv.WorkerURL(), luaCaps)
	trusted.keepAlive()

	type answer struct {
		status int
		body   []byte
	}
	answered := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("GET", srv.URL()+"/bob/hello", nil)
		req.Header.Set("Cookie", "session=bob-session")
		resp, err := fnHTTP.Do(req)
		if err != nil {
			answered <- answer{body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answered <- answer{resp.StatusCode, b}
	}()
	task := trusted.next(5 * time.Second)
	if !strings.Contains(string(task.Spec.Input), "bob-s3cret") {
		t.Fatalf("the trusted worker's task lacks the function's env: %s", task.Spec.Input)
	}
	trusted.send(protocol.Message{Type: protocol.TypeResult, JobID: task.JobID, LeaseID: task.LeaseID,
		Result: &job.Result{Status: job.StatusCompleted, Result: json.RawMessage(`"genuine"`)}})
	if r := <-answered; r.status != 200 || string(r.body) != "genuine" {
		t.Fatalf("function answered %d %q", r.status, r.body)
	}
	select {
	case task := <-seen:
		t.Fatalf("the anonymous worker was sent an invocation: %s %s", task.JobID, task.Spec.Input)
	default:
	}

	// Opted in: anonymous workers may run it, env and all.
	mustDeploy(t, c, "bob/hello", job.DeployRequest{Runtime: job.TypeLua, Code: `return "hello"`,
		Env: map[string]string{"API_KEY": "bob-s3cret"}, AnonymousWorkers: true})
	trusted.conn.CloseNow()
	eventually(t, 5*time.Second, func() error {
		if ws, _ := c.Workers(context.Background()); len(ws) != 1 {
			return fmt.Errorf("%d workers", len(ws))
		}
		return nil
	})
	go func() {
		if resp, err := fnHTTP.Get(srv.URL() + "/bob/hello"); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case task := <-seen:
		if !strings.Contains(string(task.Spec.Input), "bob-s3cret") {
			t.Fatalf("the anonymous worker's task: %s", task.Spec.Input)
		}
		anon.Answer(task, job.Result{Status: job.StatusCompleted, Result: json.RawMessage(`"hi"`)})
	case <-time.After(10 * time.Second):
		t.Fatal("a function that allows anonymous workers was not sent to one")
	}
}

// TestAnonymousSessionsLeaveRoom: serve lets anonymous volunteers hold at
// most half of its worker sessions (from however many addresses), so a
// trusted worker still connects when they have taken all they may.
func TestAnonymousSessionsLeaveRoom(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Orchestrator.OpenVolunteering = true
	cfg.Net.MaxSessions = 4
	srv, _ := startServer(t, cfg)
	caps := job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1}
	protocoltest.RegisterFrom(t, srv.WorkerURL(), "127.0.0.2", "", caps).KeepAlive()
	protocoltest.RegisterFrom(t, srv.WorkerURL(), "127.0.0.3", "", caps).KeepAlive()
	if m := protocoltest.RefusedFrom(t, srv.WorkerURL(), "127.0.0.4", "", caps); !strings.Contains(m.Error, "anonymous sessions") {
		t.Fatalf("a third anonymous session of four: %+v", m)
	}
	if w := dialRaw(t, srv.WorkerURL(), caps); !w.Trusted {
		t.Fatal("the trusted worker is not trusted")
	}
}
