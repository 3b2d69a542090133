package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

func submitWait(t *testing.T, c *client.Client, r job.Request) api.View {
	t.Helper()
	ctx := context.Background()
	v, err := c.Submit(ctx, r)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return waitDone(t, c, v.ID, 30*time.Second)
}

func waitDone(t *testing.T, c *client.Client, id string, d time.Duration) api.View {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v, err := c.Job(context.Background(), id, 5*time.Second)
		if err != nil {
			t.Fatalf("get job: %v", err)
		}
		if v.Status.Terminal() {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after %s (reason: %s)", id, v.Status, d, v.Reason)
		}
	}
}

// TestRuntimesEndToEnd runs a Lua, a JS and a Wasm job through the HTTP
// API, the orchestrator and embedded workers over real WebSockets.
func TestRuntimesEndToEnd(t *testing.T) {
	_, c := startServer(t, testServerConfig(t, t.TempDir(), 2))
	input := json.RawMessage(`{"x":21,"name":"zerverless"}`)
	tests := []struct {
		name       string
		req        job.Request
		wantOutput string
		wantResult string
	}{
		{"lua", job.Request{Type: job.TypeLua, Input: input, Code: `print("hello " .. INPUT.name) return {answer = INPUT.x * 2}`},
			"hello zerverless\n", `{"answer":42}`},
		{"js", job.Request{Type: job.TypeJS, Input: input, Code: `console.log("hello", INPUT.name); ({answer: INPUT.x * 2})`},
			"hello zerverless\n", `{"answer":42}`},
		{"wasm", job.Request{Type: job.TypeWasm, Input: input, Wasm: wasmEcho, Args: []string{"a", "b"}},
			`wasm got {"x":21,"name":"zerverless"} args=a,b env={"x":21,"name":"zerverless"}` + "\n", ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := submitWait(t, c, tt.req)
			if v.Status != job.StatusCompleted {
				t.Fatalf("status %s, error %q", v.Status, v.Error)
			}
			if v.Output != tt.wantOutput {
				t.Errorf("output %q, want %q", v.Output, tt.wantOutput)
			}
			if tt.wantResult != "" && !jsonEqual(v.Result, tt.wantResult) {
				t.Errorf("result %s, want %s", v.Result, tt.wantResult)
			}
			if v.Attempt != 1 || v.WorkerID == "" || v.FinishedAt.IsZero() {
				t.Errorf("attempt %d worker %q finished %v", v.Attempt, v.WorkerID, v.FinishedAt)
			}
		})
	}
	t.Run("wasm exit code", func(t *testing.T) {
		v := submitWait(t, c, job.Request{Type: job.TypeWasm, Wasm: wasmEcho, Args: []string{"fail"}})
		if v.Status != job.StatusFailed || v.ExitCode != 3 || !strings.Contains(v.Stderr, "failing on purpose") {
			t.Fatalf("got %s exit %d stderr %q", v.Status, v.ExitCode, v.Stderr)
		}
	})
}

func jsonEqual(a json.RawMessage, b string) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// TestSandboxEndToEnd checks that guests cannot reach the host and that
// endless loops end as timeout while the workers stay healthy.
func TestSandboxEndToEnd(t *testing.T) {
	_, c := startServer(t, testServerConfig(t, t.TempDir(), 1))
	for _, tt := range []struct {
		name string
		req  job.Request
	}{
		{"lua os.execute", job.Request{Type: job.TypeLua, Code: `os.execute("touch /tmp/pwned")`}},
		{"lua io.open", job.Request{Type: job.TypeLua, Code: `return io.open("/etc/passwd"):read("*a")`}},
		{"lua require", job.Request{Type: job.TypeLua, Code: `return require("os")`}},
		{"lua dofile", job.Request{Type: job.TypeLua, Code: `return dofile("/etc/passwd")`}},
		{"js require", job.Request{Type: job.TypeJS, Code: `require("fs").readFileSync("/etc/passwd")`}},
		{"js process", job.Request{Type: job.TypeJS, Code: `process.exit(1)`}},
		{"js fetch", job.Request{Type: job.TypeJS, Code: `fetch("http://127.0.0.1/")`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := submitWait(t, c, tt.req)
			if v.Status != job.StatusFailed || v.Error == "" {
				t.Fatalf("status %s error %q output %q: the guest reached the host", v.Status, v.Error, v.Output)
			}
		})
	}
	// Compile the module once: the timeout bounds the guest's run, and the
	// worker caches compiled modules by hash.
	if v := submitWait(t, c, job.Request{Type: job.TypeWasm, Wasm: wasmEcho}); v.Status != job.StatusCompleted {
		t.Fatalf("warm-up wasm job: %s %q", v.Status, v.Error)
	}
	loops := []job.Request{
		{Type: job.TypeLua, Code: `while true do end`},
		{Type: job.TypeJS, Code: `for(;;){}`},
		{Type: job.TypeWasm, Wasm: wasmEcho, Args: []string{"loop"}},
	}
	for _, r := range loops {
		t.Run(string(r.Type)+" loop", func(t *testing.T) {
			r.TimeoutSeconds = ptr(0.5)
			start := time.Now()
			v := submitWait(t, c, r)
			if v.Status != job.StatusTimeout {
				t.Fatalf("status %s, want timeout (error %q)", v.Status, v.Error)
			}
			if d := time.Duration(v.DurationMS) * time.Millisecond; d > 1500*time.Millisecond {
				t.Errorf("ran %s on the worker, want within timeout + 1 s", d)
			}
			t.Logf("loop ended as timeout after %s end to end", time.Since(start))
			// The worker is still healthy.
			ok := submitWait(t, c, job.Request{Type: r.Type, Code: map[job.Type]string{job.TypeLua: "return 1", job.TypeJS: "1"}[r.Type], Wasm: map[job.Type][]byte{job.TypeWasm: wasmEcho}[r.Type]})
			if ok.Status != job.StatusCompleted {
				t.Fatalf("next job: %s %q", ok.Status, ok.Error)
			}
		})
	}
}

// TestWorkerLostMidJob: a worker that vanishes while it holds a job loses
// it; the job runs again elsewhere as attempt 2.
func TestWorkerLostMidJob(t *testing.T) {
	srv, c := startServer(t, testServerConfig(t, t.TempDir(), 0))
	raw := dialRaw(t, srv.WorkerURL(), job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1})
	v, err := c.Submit(context.Background(), job.Request{Type: job.TypeLua, Code: `return "done"`})
	if err != nil {
		t.Fatal(err)
	}
	task := raw.next(5 * time.Second)
	if task.JobID != v.ID || task.Attempt != 1 {
		t.Fatalf("assigned %+v", task)
	}
	running, _ := c.Job(context.Background(), v.ID, 0)
	if running.Status != job.StatusRunning || running.WorkerID != raw.id {
		t.Fatalf("job is %s on %q, want running on %s", running.Status, running.WorkerID, raw.id)
	}
	raw.conn.CloseNow() // the worker dies mid-job

	eventually(t, 5*time.Second, func() error {
		v, err := c.Job(context.Background(), v.ID, 0)
		if err != nil {
			return err
		}
		if v.Status != job.StatusPending || v.Attempt != 2 {
			return fmt.Errorf("status %s attempt %d", v.Status, v.Attempt)
		}
		return nil
	})
	startWorker(t, srv.WorkerURL(), "rescuer", job.TypeLua)
	done := waitDone(t, c, v.ID, 10*time.Second)
	if done.Status != job.StatusCompleted || done.Attempt != 2 || !jsonEqual(done.Result, `"done"`) {
		t.Fatalf("got %s attempt %d result %s", done.Status, done.Attempt, done.Result)
	}
}

// TestStaleResultRejected: a worker whose lease expired cannot complete
// the job; only the current lease's result counts.
func TestStaleResultRejected(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Orchestrator.LeaseGrace = 100 * time.Millisecond
	srv, c := startServer(t, cfg)
	caps := job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1}
	slow := dialRaw(t, srv.WorkerURL(), caps)
	slow.keepAlive()
	v, err := c.Submit(context.Background(), job.Request{Type: job.TypeLua, Code: `return 1`, TimeoutSeconds: ptr(0.2)})
	if err != nil {
		t.Fatal(err)
	}
	first := slow.next(5 * time.Second)
	// The lease runs out (timeout + grace); a second worker gets the job.
	fresh := dialRaw(t, srv.WorkerURL(), caps)
	fresh.keepAlive()
	second := fresh.next(5 * time.Second)
	if second.JobID != v.ID || second.Attempt != 2 || second.LeaseID == first.LeaseID {
		t.Fatalf("second assignment %+v after first %+v", second, first)
	}
	// The first worker answers late: rejected.
	slow.send(protocol.Message{Type: protocol.TypeResult, JobID: v.ID, LeaseID: first.LeaseID,
		Result: &job.Result{Status: job.StatusCompleted, Output: "stale"}})
	fresh.send(protocol.Message{Type: protocol.TypeResult, JobID: v.ID, LeaseID: second.LeaseID,
		Result: &job.Result{Status: job.StatusCompleted, Output: "fresh"}})
	done := waitDone(t, c, v.ID, 5*time.Second)
	if done.Output != "fresh" || done.Attempt != 2 || done.WorkerID != fresh.id {
		t.Fatalf("got output %q attempt %d worker %s; want the fresh lease's result", done.Output, done.Attempt, done.WorkerID)
	}
	// A result for a lease that never existed changes nothing either.
	fresh.send(protocol.Message{Type: protocol.TypeResult, JobID: v.ID, LeaseID: "forged",
		Result: &job.Result{Status: job.StatusFailed, Output: "forged"}})
	time.Sleep(100 * time.Millisecond)
	if again, _ := c.Job(context.Background(), v.ID, 0); again.Output != "fresh" || again.Status != job.StatusCompleted {
		t.Fatalf("forged result changed the job: %+v", again)
	}
}

// TestMaxAttempts: a job whose workers keep vanishing fails with a clear
// error after max_attempts.
func TestMaxAttempts(t *testing.T) {
	srv, c := startServer(t, testServerConfig(t, t.TempDir(), 0))
	v, err := c.Submit(context.Background(), job.Request{Type: job.TypeLua, Code: `return 1`, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		raw := dialRaw(t, srv.WorkerURL(), job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1})
		if task := raw.next(5 * time.Second); task.Attempt != i {
			t.Fatalf("attempt %d, want %d", task.Attempt, i)
		}
		raw.conn.CloseNow()
	}
	done := waitDone(t, c, v.ID, 5*time.Second)
	if done.Status != job.StatusFailed || !strings.Contains(done.Error, "no attempts left") {
		t.Fatalf("got %s %q", done.Status, done.Error)
	}
}

// TestRestartKeepsJobs: pending and running jobs survive a restart of the
// orchestrator on the same data dir, and a worker reconnects by itself.
func TestRestartKeepsJobs(t *testing.T) {
	dir := t.TempDir()
	cfg := testServerConfig(t, dir, 0)
	srv, err := StartServer(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(srv.URL(), nil).WithToken(srv.AdminToken())
	holder := dialRaw(t, srv.WorkerURL(), job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1})
	holder.keepAlive()
	// A real worker that outlives the orchestrator and must reconnect.
	startWorker(t, srv.WorkerURL(), "js-only", job.TypeJS)
	var ids []string
	for i := range 20 {
		v, err := c.Submit(context.Background(), job.Request{Type: job.TypeLua, Code: fmt.Sprintf("return %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	running := holder.next(5 * time.Second)
	addr := srv.ln.Addr().String()
	if err := srv.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	cfg.Addr = addr
	srv2, c2 := startServer(t, cfg)
	if v := submitWait(t, c2, job.Request{Type: job.TypeJS, Code: `"reconnected"`}); v.Status != job.StatusCompleted {
		t.Fatalf("the js worker did not come back: %s %q", v.Status, v.Reason)
	}
	startWorker(t, srv2.WorkerURL(), "after-restart", job.TypeLua)
	for i, id := range ids {
		v := waitDone(t, c2, id, 20*time.Second)
		if v.Status != job.StatusCompleted || !jsonEqual(v.Result, fmt.Sprint(i)) {
			t.Fatalf("job %d: %s %q result %s", i, v.Status, v.Error, v.Result)
		}
		if id == running.JobID && v.Attempt != 2 {
			t.Errorf("the job running at shutdown ended with attempt %d, want 2", v.Attempt)
		}
	}
}

// TestNoHeadOfLineBlocking: 2,000 jobs that no worker can run wait
// pending, saying why, while other jobs keep flowing.
func TestNoHeadOfLineBlocking(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 1)
	cfg.Runtimes.Only = []job.Type{job.TypeLua}
	_, c := startServer(t, cfg)
	ctx := context.Background()
	var stuck string
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 250 {
				v, err := c.Submit(ctx, job.Request{Type: job.TypeJS, Code: "1"})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if g == 0 && i == 0 {
					stuck = v.ID
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d submits failed, first: %v", len(errs), errs[0])
	}
	for i := range 50 {
		v := submitWait(t, c, job.Request{Type: job.TypeLua, Code: fmt.Sprintf("return %d", i)})
		if v.Status != job.StatusCompleted {
			t.Fatalf("lua job %d: %s", i, v.Status)
		}
	}
	v, err := c.Job(ctx, stuck, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != job.StatusPending || !strings.Contains(v.Reason, "no connected worker runs js") {
		t.Fatalf("stuck job: %s reason %q", v.Status, v.Reason)
	}
	stats, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Jobs[job.StatusPending] != 2000 || stats.Queued[job.TypeJS] != 2000 {
		t.Fatalf("stats: %+v", stats)
	}
}

// TestCancel: a canceled pending job never runs; a canceled running job
// is stopped on its worker, which then takes new work.
func TestCancel(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 1)
	cfg.Worker.Concurrency = 1
	_, c := startServer(t, cfg)
	ctx := context.Background()
	busy, err := c.Submit(ctx, job.Request{Type: job.TypeLua, Code: `while true do end`, TimeoutSeconds: ptr(60.0)})
	if err != nil {
		t.Fatal(err)
	}
	queued, err := c.Submit(ctx, job.Request{Type: job.TypeLua, Code: `return "should never run"`})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		v, _ := c.Job(ctx, busy.ID, 0)
		if v.Status != job.StatusRunning {
			return fmt.Errorf("busy job is %s", v.Status)
		}
		return nil
	})
	if v, err := c.Cancel(ctx, queued.ID); err != nil || v.Status != job.StatusCanceled {
		t.Fatalf("cancel pending: %+v %v", v, err)
	}
	if v, err := c.Cancel(ctx, busy.ID); err != nil || v.Status != job.StatusCanceled {
		t.Fatalf("cancel running: %+v %v", v, err)
	}
	// The worker's only slot is free again.
	next := submitWait(t, c, job.Request{Type: job.TypeLua, Code: `return "next"`})
	if next.Status != job.StatusCompleted {
		t.Fatalf("next job %s", next.Status)
	}
	v, _ := c.Job(ctx, queued.ID, 0)
	if v.Status != job.StatusCanceled || v.StartedAt.IsZero() == false {
		t.Fatalf("canceled pending job ran: %+v", v)
	}
	if _, err := c.Cancel(ctx, queued.ID); err == nil {
		t.Fatalf("canceling an ended job succeeded")
	}
}

// TestSilentWorkerLosesLeases: a worker that keeps its connection open but
// stops sending heartbeats loses its jobs after three intervals.
func TestSilentWorkerLosesLeases(t *testing.T) {
	srv, c := startServer(t, testServerConfig(t, t.TempDir(), 0))
	silent := dialRaw(t, srv.WorkerURL(), job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1})
	v, err := c.Submit(context.Background(), job.Request{Type: job.TypeLua, Code: `return "rescued"`})
	if err != nil {
		t.Fatal(err)
	}
	if task := silent.next(5 * time.Second); task.JobID != v.ID {
		t.Fatalf("assigned %s", task.JobID)
	}
	// No heartbeat from here on; the heartbeat interval is 200 ms.
	eventually(t, 5*time.Second, func() error {
		got, err := c.Job(context.Background(), v.ID, 0)
		if err != nil {
			return err
		}
		if got.Status != job.StatusPending || got.Attempt != 2 {
			return fmt.Errorf("status %s attempt %d", got.Status, got.Attempt)
		}
		return nil
	})
	if ws, _ := c.Workers(context.Background()); len(ws) != 0 {
		t.Fatalf("the silent worker is still listed: %+v", ws)
	}
	startWorker(t, srv.WorkerURL(), "rescuer", job.TypeLua)
	if done := waitDone(t, c, v.ID, 10*time.Second); done.Status != job.StatusCompleted || done.Attempt != 2 {
		t.Fatalf("got %s attempt %d", done.Status, done.Attempt)
	}
}
