package main

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// jobIDs lists the ids of the jobs c sees in namespace ns.
func jobIDs(t *testing.T, c *client.Client, ns string) []string {
	t.Helper()
	jobs, _, err := c.Jobs(context.Background(), store.JobFilter{Namespace: ns, Limit: store.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	return ids
}

// TestSubmitWait: POST /api/jobs?wait= answers the finished job, or the
// job still pending once the wait passes; a bad wait is 400 naming wait,
// with nothing stored.
func TestSubmitWait(t *testing.T) {
	tn := startTenants(t)
	ctx := context.Background()
	alice := client.New(tn.srv.URL(), nil).WithToken(tn.alice)

	v, err := alice.Run(ctx, job.Request{Type: job.TypeLua, Code: `print("hi") return INPUT.n + 1`, Input: []byte(`{"n":1}`)}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != job.StatusCompleted || v.Namespace != "alice" || v.ResultView == nil || v.Output != "hi\n" || string(v.Result) != "2" {
		t.Fatalf("the answer is not the finished job: %+v", v)
	}
	if got, err := alice.Job(ctx, v.ID, 0); err != nil || got.Status != job.StatusCompleted || string(got.Result) != "2" {
		t.Fatalf("GET of the job: %+v %v", got, err)
	}

	// No worker runs js: the wait passes with the job pending, and it
	// stays queued for the client to wait on.
	v, err = alice.Run(ctx, job.Request{Type: job.TypeJS, Code: "1"}, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != job.StatusPending || v.Reason == "" || v.ResultView != nil {
		t.Fatalf("want the pending job and why it waits: %+v", v)
	}
	if got, err := alice.Job(ctx, v.ID, 100*time.Millisecond); err != nil || got.Status != job.StatusPending {
		t.Fatalf("GET ?wait of the pending job: %+v %v", got, err)
	}

	before := jobIDs(t, tn.admin, "alice")
	body := []byte(`{"job_type":"lua","code":"return 1"}`)
	for _, bad := range []string{"soon", "-1", "-2s", "NaN", "1x"} {
		a := send(t, "POST", tn.srv.URL()+"/api/jobs?wait="+bad, tn.alice, "application/json", body)
		var e api.ErrorBody
		json.Unmarshal(a.body, &e)
		if a.status != 400 || e.Field != "wait" {
			t.Errorf("wait=%s: %v, want 400 naming wait", bad, a)
		}
	}
	if after := jobIDs(t, tn.admin, "alice"); !slices.Equal(before, after) {
		t.Errorf("a submission with a bad wait was stored: %v, then %v", before, after)
	}

	// zerverless run --json submits and waits in one request.
	code, out, errs := cliAgainst(tn.srv)("run", "--type", "lua", "--code", "return 40 + 2", "--namespace", "alice", "--json")
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 0 || v.Status != job.StatusCompleted || string(v.Result) != "42" {
		t.Fatalf("run --json: %d %s %s", code, out, errs)
	}
}

// TestSubmitWaitTenancy: a waiting submission acts in the caller's
// namespace only, is refused as any submission for another namespace, and
// its answer gives another namespace's token nothing to see.
func TestSubmitWaitTenancy(t *testing.T) {
	tn := startTenants(t)
	ctx := context.Background()
	alice := client.New(tn.srv.URL(), nil).WithToken(tn.alice)
	bob := client.New(tn.srv.URL(), nil).WithToken(tn.bob)

	v, err := alice.Run(ctx, job.Request{Type: job.TypeLua, Code: `return "alice's secret"`}, 30*time.Second)
	if err != nil || v.Namespace != "alice" || v.Status != job.StatusCompleted {
		t.Fatalf("alice's job: %+v %v", v, err)
	}
	pending, err := alice.Run(ctx, job.Request{Type: job.TypeJS, Code: "1"}, 100*time.Millisecond)
	if err != nil || pending.Namespace != "alice" || pending.Status != job.StatusPending {
		t.Fatalf("alice's pending job: %+v %v", pending, err)
	}

	// Bob holds the ids from alice's answers: they are not his.
	for _, id := range []string{v.ID, pending.ID} {
		if _, err := bob.Job(ctx, id, 0); !client.IsNotFound(err) {
			t.Errorf("bob GETs alice's job %s: %v, want 404", id, err)
		}
		if _, err := bob.Job(ctx, id, 200*time.Millisecond); !client.IsNotFound(err) {
			t.Errorf("bob waits on alice's job %s: %v, want 404", id, err)
		}
		if _, err := bob.JobLog(ctx, id, 0); !client.IsNotFound(err) {
			t.Errorf("bob reads alice's job log %s: %v, want 404", id, err)
		}
		if _, err := bob.Cancel(ctx, id); !client.IsNotFound(err) {
			t.Errorf("bob cancels alice's job %s: %v, want 404", id, err)
		}
	}
	if got, err := alice.Job(ctx, pending.ID, 0); err != nil || got.Status != job.StatusPending {
		t.Fatalf("alice's pending job after bob's attempts: %+v %v", got, err)
	}

	// Naming another namespace is refused as without a wait, and stores
	// nothing.
	before := jobIDs(t, tn.admin, "bob")
	_, err = alice.Run(ctx, job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "bob"}, 5*time.Second)
	if job.ErrorCode(err) != job.CodeForbidden || job.ErrorField(err) != "namespace" {
		t.Fatalf("alice submits into bob: %v, want 403 naming namespace", err)
	}
	if after := jobIDs(t, tn.admin, "bob"); !slices.Equal(before, after) {
		t.Fatalf("alice's refused submission was stored in bob: %v, then %v", before, after)
	}

	// Bob's own waiting submission is his, and alice does not see it.
	b, err := bob.Run(ctx, job.Request{Type: job.TypeLua, Code: "return 2"}, 30*time.Second)
	if err != nil || b.Namespace != "bob" || b.Status != job.StatusCompleted {
		t.Fatalf("bob's job: %+v %v", b, err)
	}
	if _, err := alice.Job(ctx, b.ID, 0); !client.IsNotFound(err) {
		t.Errorf("alice GETs bob's job: %v, want 404", err)
	}
}

// TestSubmitWaitCallerGoesAway: a caller that goes away while its
// submission waits stops only the wait: the job was accepted, stays
// queued, and runs once a worker can take it.
func TestSubmitWaitCallerGoesAway(t *testing.T) {
	tn := startTenants(t)
	alice := client.New(tn.srv.URL(), nil).WithToken(tn.alice)
	before := jobIDs(t, alice, "")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	answered := make(chan error, 1)
	go func() {
		// No worker runs js yet: the job waits, and so does the answer.
		_, err := alice.Run(ctx, job.Request{Type: job.TypeJS, Code: `"done"`}, time.Minute)
		answered <- err
	}()
	var id string
	eventually(t, 10*time.Second, func() error {
		for _, got := range jobIDs(t, alice, "") {
			if !slices.Contains(before, got) {
				id = got
				return nil
			}
		}
		return errors.New("the job is not stored yet")
	})
	cancel()
	if err := <-answered; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller went away, its Run returned %v", err)
	}
	v, err := alice.Job(context.Background(), id, 0)
	if err != nil || v.Status != job.StatusPending {
		t.Fatalf("the job after its caller went away: %+v %v, want it still pending", v, err)
	}

	startWorker(t, tn.srv.WorkerURL(), "js", job.TypeJS)
	actx, acancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer acancel()
	v, err = alice.Await(actx, id, 0)
	if err != nil || v.Status != job.StatusCompleted || string(v.Result) != `"done"` {
		t.Fatalf("the job once a js worker came: %+v %v", v, err)
	}
	if v.Namespace != "alice" {
		t.Fatalf("namespace %q", v.Namespace)
	}
}

// TestSubmitWaitOutlastsTheBodyDeadline: the body's read deadline ends
// with the body, so a submission that waits past --body-grace is
// answered, not cut.
func TestSubmitWaitOutlastsTheBodyDeadline(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Net.BodyGrace = 100 * time.Millisecond
	_, c := startServer(t, cfg)
	v, err := c.Run(context.Background(), job.Request{Type: job.TypeLua, Code: "return 1"}, 700*time.Millisecond)
	if err != nil || v.Status != job.StatusPending || v.Reason == "" {
		t.Fatalf("a submission that waited past the body grace: %+v %v", v, err)
	}
}
