package main

import (
	"context"
	"fmt"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/worker"
)

// longJS is a JavaScript job that works for seconds, then returns 42.
const longJS = `let n = 0; for (let i = 0; i < 4e7; i++) { n += i % 7 } 42`

// unboundedLua allocates until something stops it.
const unboundedLua = `local t = {} local s = string.rep("x", 1048576) local i = 0 while true do i = i + 1 t[i] = s .. i end`

// TestJobMemoryIsItsOwn: in serve, on its one embedded worker, a Lua job of
// one tenant that allocates without bound fails as out of memory while
// another tenant's JavaScript job runs next to it; that one completes, and
// the worker goes on.
func TestJobMemoryIsItsOwn(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 1)
	_, c := startServer(t, cfg)
	ctx := context.Background()

	other, err := c.Submit(ctx, job.Request{Type: job.TypeJS, Namespace: "bob", Code: longJS, TimeoutSeconds: ptr(120.0)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		v, err := c.Job(ctx, other.ID, 0)
		if err != nil || v.Status != job.StatusRunning {
			return fmt.Errorf("the other job is %s (%v)", v.Status, err)
		}
		return nil
	})
	hog := submitWait(t, c, job.Request{Type: job.TypeLua, Namespace: "alice", Code: unboundedLua, MemoryMB: 128, TimeoutSeconds: ptr(60.0)})
	if hog.Status != job.StatusFailed || !hog.OOMKilled || !strings.Contains(hog.Error, "out of memory") {
		t.Fatalf("hog: %s oom=%v %q", hog.Status, hog.OOMKilled, hog.Error)
	}
	if v, err := c.Job(ctx, other.ID, 0); err != nil || v.Status != job.StatusRunning {
		t.Fatalf("the other job was no longer running when the hog failed (%s %v): make it longer", v.Status, err)
	}
	if v := waitDone(t, c, other.ID, 2*time.Minute); v.Status != job.StatusCompleted || !jsonEqual(v.Result, "42") {
		t.Fatalf("the other tenant's job: %s %q", v.Status, v.Error)
	}
	if v := submitWait(t, c, job.Request{Type: job.TypeLua, Code: `return 1`}); v.Status != job.StatusCompleted {
		t.Fatalf("next job: %s %q", v.Status, v.Error)
	}
}

// TestServerMemoryKillsNoJob: the serve process itself holding far more
// heap than any job's bound (as large listings do) stops no job of its
// embedded workers.
func TestServerMemoryKillsNoJob(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 1)
	_, c := startServer(t, cfg)
	// 1.5 GiB in the orchestrator's process, touched, held while the jobs
	// run.
	held := make([][]byte, 0, 24)
	for range 24 {
		b := make([]byte, 64<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		held = append(held, b)
	}
	defer goruntime.KeepAlive(held)
	for _, r := range []job.Request{
		{Type: job.TypeLua, Code: `local n = 0 for i = 1, 3e6 do n = n + i % 7 end return 42`},
		{Type: job.TypeJS, Code: `let n = 0; for (let i = 0; i < 3e6; i++) { n += i % 7 } 42`},
	} {
		if v := submitWait(t, c, r); v.Status != job.StatusCompleted || !jsonEqual(v.Result, "42") {
			t.Fatalf("%s job: %s oom=%v %q", r.Type, v.Status, v.OOMKilled, v.Error)
		}
	}
}

// TestRuntimeErrorRunsElsewhere: a worker whose runtime cannot run a task
// (its runtime process cannot start: the program it re-executes is gone)
// gives the job back as an attempt; the job completes on attempt 2 on
// another worker, and is not offered to the failing one again meanwhile.
func TestRuntimeErrorRunsElsewhere(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 0)
	srv, c := startServer(t, cfg)
	ctx := context.Background()
	one := func(wc *worker.Config) { wc.Concurrency = 1 }

	good := DefaultRuntimeOptions()
	good.Only = []job.Type{job.TypeLua}
	startWorkerWithConfig(t, srv.WorkerURL(), "good", good, one)
	waitWorkers(t, c, 1)
	// Keep the good worker's only slot busy, so that the job goes to the
	// broken worker first.
	blocker, err := c.Submit(ctx, job.Request{Type: job.TypeLua, Code: `while true do end`, TimeoutSeconds: ptr(120.0)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		v, err := c.Job(ctx, blocker.ID, 0)
		if err != nil || v.Status != job.StatusRunning {
			return fmt.Errorf("blocker is %s (%v)", v.Status, err)
		}
		return nil
	})

	broken := DefaultRuntimeOptions()
	broken.Only = []job.Type{job.TypeLua}
	broken.Isolate.Command = []string{t.TempDir() + "/zerverless-removed", childCommand}
	startWorkerWithConfig(t, srv.WorkerURL(), "broken", broken, one)
	waitWorkers(t, c, 2)

	j, err := c.Submit(ctx, job.Request{Type: job.TypeLua, Code: `return 42`, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		v, err := c.Job(ctx, j.ID, 0)
		if err != nil {
			return err
		}
		if v.Status != job.StatusPending || v.Attempt != 2 || !strings.Contains(v.Reason, "start the runtime process") {
			return fmt.Errorf("job is %s, attempt %d, reason %q", v.Status, v.Attempt, v.Reason)
		}
		return nil
	})
	// Within max_attempts: a job with one attempt that lands on the
	// broken worker (the only free one) fails for good.
	last := submitWait(t, c, job.Request{Type: job.TypeLua, Code: `return 1`, MaxAttempts: 1})
	if last.Status != job.StatusFailed || !strings.Contains(last.Error, "no attempts left") {
		t.Fatalf("one-attempt job: %s %q", last.Status, last.Error)
	}
	if _, err := c.Cancel(ctx, blocker.ID); err != nil {
		t.Fatal(err)
	}
	v := waitDone(t, c, j.ID, 30*time.Second)
	if v.Status != job.StatusCompleted || v.Attempt != 2 || !jsonEqual(v.Result, "42") {
		t.Fatalf("job: %s attempt %d %q", v.Status, v.Attempt, v.Error)
	}
	workers, err := c.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range workers {
		if w.ID == v.WorkerID && w.Name != "good" {
			t.Fatalf("completed on %s", w.Name)
		}
	}
}

func waitWorkers(t *testing.T, c interface {
	Workers(context.Context) ([]job.WorkerInfo, error)
}, n int) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		ws, err := c.Workers(context.Background())
		if err != nil || len(ws) != n {
			return fmt.Errorf("%d workers (%v), want %d", len(ws), err, n)
		}
		return nil
	})
}
