package orchestrator

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// read returns the next message of type typ the raw worker gets.
func (r *rawWorker) read(typ string, d time.Duration) protocol.Message {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		m, err := r.conn.Read(ctx)
		if err != nil {
			r.t.Fatalf("raw worker waiting for %s: %v", typ, err)
		}
		if string(m.Type) == typ {
			return m
		}
	}
}

func answerMessage(t *job.Task, out string) protocol.Message {
	return protocol.Message{Type: protocol.TypeResult, JobID: t.JobID, LeaseID: t.LeaseID,
		Result: &job.Result{Status: job.StatusCompleted, Output: out}}
}

// idle checks that nothing is running or queued and that the counts say so.
func (h *harness) idle() error {
	o := h.o
	o.mu.Lock()
	defer o.mu.Unlock()
	for ns, n := range o.nsRunning {
		if n != 0 {
			return errorf("namespace %q counts %d running", ns, n)
		}
	}
	for ns, n := range o.nsPending {
		return errorf("namespace %q counts %d pending", ns, n)
	}
	if n := o.queue.total(); n != 0 {
		return errorf("%d queued", n)
	}
	if o.counts[job.StatusPending] != 0 || o.counts[job.StatusRunning] != 0 {
		return errorf("counts %v", o.counts)
	}
	for id, e := range o.active {
		return errorf("job %s still active (%s, final %v)", id, e.job.Status, e.final)
	}
	for _, w := range o.workers {
		if len(w.leases) != 0 {
			return errorf("worker %s holds %d leases", w.id, len(w.leases))
		}
	}
	return nil
}

// TestCancelReplicatedJob: canceling a replicated job while some replicas
// run and one waits stops every replica, frees the slots, and leaves the
// job canceled with the counts right.
func TestCancelReplicatedJob(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	w1, w2 := h.dial(luaCaps(1)), h.dial(luaCaps(1))
	w1.keepAlive()
	w2.keepAlive()
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Replicas: 3, Quorum: 2})
	t1, t2 := w1.next(5*time.Second), w2.next(5*time.Second)
	v, err := h.o.Cancel(tenantCtx(), j.ID)
	if err != nil || v.Status != job.StatusCanceled {
		t.Fatalf("cancel: %+v %v", v, err)
	}
	for _, c := range []struct {
		w    *rawWorker
		task *job.Task
	}{{w1, t1}, {w2, t2}} {
		m := c.w.read(string(protocol.TypeCancel), 5*time.Second)
		if m.JobID != c.task.JobID || m.LeaseID != c.task.LeaseID {
			t.Fatalf("cancel for %s/%s, want %s/%s", m.JobID, m.LeaseID, c.task.JobID, c.task.LeaseID)
		}
		c.w.send(resultMessage(c.task, job.StatusCanceled))
	}
	eventually(t, 5*time.Second, h.idle)
	s, _ := h.o.Stats(context.Background())
	if s.Jobs[job.StatusCanceled] != 1 || s.SlotsBusy != 0 || len(s.Queued) != 0 {
		t.Fatalf("stats %+v", s)
	}
	if got := h.stored(j.ID); got.Status != job.StatusCanceled {
		t.Fatalf("stored as %s", got.Status)
	}
	// The workers are free for the next job.
	j2 := h.submit(job.Request{Type: job.TypeLua, Code: "return 2"})
	eventually(t, 5*time.Second, func() error {
		if v := h.job(j2.ID); v.Status != job.StatusRunning {
			return errorf("next job %s", v.Status)
		}
		return nil
	})
}

// TestLostReplicaRunsElsewhere: a replica whose worker disconnects runs
// again on a worker that held no replica of the job; one out of attempts is
// no answer and is replaced while under the bound.
func TestLostReplicaRunsElsewhere(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	w1, w2 := h.dial(luaCaps(1)), h.dial(luaCaps(1))
	w1.keepAlive()
	w2.keepAlive()
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Replicas: 2, Quorum: 2, MaxAttempts: 2})
	t1, t2 := w1.next(5*time.Second), w2.next(5*time.Second)
	w2.send(answerMessage(t2, "x"))
	w1.conn.CloseNow()

	w3 := h.dial(luaCaps(1))
	w3.keepAlive()
	t3 := w3.next(5 * time.Second)
	if t3.JobID != t1.JobID || t3.Attempt != 2 {
		t.Fatalf("w3 got %s attempt %d, want %s attempt 2", t3.JobID, t3.Attempt, t1.JobID)
	}
	// Lost again: out of attempts, so a new replica is run, not on w2
	// (which answered) nor w3 (which held one).
	w3.conn.CloseNow()
	w4 := h.dial(luaCaps(1))
	w4.keepAlive()
	t4 := w4.next(5 * time.Second)
	if t4.JobID == t1.JobID || t4.Attempt != 1 {
		t.Fatalf("w4 got %s attempt %d, want a new replica", t4.JobID, t4.Attempt)
	}
	w4.send(answerMessage(t4, "x"))
	got, err := h.o.Wait(context.Background(), j.ID, 5*time.Second)
	if err != nil || got.Status != job.StatusCompleted || len(got.Result.Replicas) != 2 {
		t.Fatalf("job: %+v %v", got, err)
	}
	eventually(t, 5*time.Second, h.idle)
	s, _ := h.o.Stats(context.Background())
	if s.Jobs[job.StatusCompleted] != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestReplicatedJobSurvivesRestart: a replicated job pending or running
// when the orchestrator stops is run again after a restart and completes.
func TestReplicatedJobSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, testConfig())
	running := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Replicas: 2})
	w1 := h.dial(luaCaps(1))
	w1.keepAlive()
	w1.next(5 * time.Second)
	pending := h.submit(job.Request{Type: job.TypeLua, Code: "return 2", Replicas: 2})
	eventually(t, 5*time.Second, func() error {
		if v := h.stored(running.ID); v.Status != job.StatusRunning {
			return errorf("stored as %s", v.Status)
		}
		return nil
	})
	h.close()

	h2 := newHarness(t, dir, testConfig())
	var ws []*rawWorker
	for range 2 {
		w := h2.dial(luaCaps(2))
		w.keepAlive()
		ws = append(ws, w)
	}
	for range 2 {
		for _, w := range ws {
			w.send(answerMessage(w.next(5*time.Second), "same"))
		}
	}
	for id, attempt := range map[string]int{running.ID: 2, pending.ID: 1} {
		got, err := h2.o.Wait(context.Background(), id, 5*time.Second)
		if err != nil || got.Status != job.StatusCompleted || got.Attempt != attempt || len(got.Result.Replicas) != 2 {
			t.Fatalf("job %s: %+v %v", id, got, err)
		}
	}
	eventually(t, 5*time.Second, h2.idle)
}

// TestLeaseExpiryOfReplica: a replica whose lease runs out runs on
// another worker; the late answer of the first worker, after the
// replacement answered, counts for nothing.
func TestLeaseExpiryOfReplica(t *testing.T) {
	cfg := testConfig()
	cfg.LeaseGrace = 200 * time.Millisecond
	h := newHarness(t, t.TempDir(), cfg)
	w1, w2 := h.dial(luaCaps(1)), h.dial(luaCaps(1))
	w1.keepAlive()
	w2.keepAlive()
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Replicas: 2, Quorum: 2, TimeoutSeconds: ptr(0.2)})
	t1, t2 := w1.next(5*time.Second), w2.next(5*time.Second)
	w2.send(answerMessage(t2, "right"))
	w3 := h.dial(luaCaps(1))
	w3.keepAlive()
	t3 := w3.next(5 * time.Second)
	if t3.JobID != t1.JobID || t3.Attempt != 2 {
		t.Fatalf("w3 got %s attempt %d", t3.JobID, t3.Attempt)
	}
	w3.send(answerMessage(t3, "right"))
	got, err := h.o.Wait(context.Background(), j.ID, 5*time.Second)
	if err != nil || got.Status != job.StatusCompleted || got.Result.Output != "right" {
		t.Fatalf("job: %+v %v", got, err)
	}
	w1.send(answerMessage(t1, "wrong"))
	eventually(t, 5*time.Second, h.idle)
	if got := h.job(j.ID); got.Result.Output != "right" || len(got.Result.Replicas) != 2 {
		t.Fatalf("after the stale answer: %+v", got.Result)
	}
	h.o.mu.Lock()
	n := len(h.o.strikes)
	h.o.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d strikes", n)
	}
}

// TestCountsAfterAMix: cancels, rejects, losses, jobs out of attempts,
// replicas and invocations leave the counts and the running quota as they
// should be once everything has ended.
func TestCountsAfterAMix(t *testing.T) {
	cfg := testConfig()
	cfg.DefaultQuotas.RunningJobs = 2
	h := newHarness(t, t.TempDir(), cfg)
	ctx := tenantCtx()
	w1 := h.dial(luaCaps(4))
	w1.keepAlive()
	a := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", MaxAttempts: 1})
	b := h.submit(job.Request{Type: job.TypeLua, Code: "return 2", Replicas: 2, Quorum: 2})
	c := h.submit(job.Request{Type: job.TypeLua, Code: "return 3"})
	ta := w1.next(5 * time.Second)
	tb := w1.next(5 * time.Second)
	if ta.JobID != a.ID {
		t.Fatalf("first task %s", ta.JobID)
	}
	// The running quota of 2 holds c back.
	if v := h.job(c.ID); v.Status != job.StatusPending {
		t.Fatalf("c is %s", v.Status)
	}
	if _, err := h.o.Cancel(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	// Lost with its worker: a fails (no attempts left), b's replica is
	// re-queued.
	w1.conn.CloseNow()
	w2 := h.dial(luaCaps(4))
	w2.keepAlive()
	tb2 := w2.next(5 * time.Second)
	if tb2.JobID != tb.JobID {
		t.Fatalf("w2 got %s, want %s", tb2.JobID, tb.JobID)
	}
	w3 := h.dial(luaCaps(4))
	w3.keepAlive()
	tb3 := w3.next(5 * time.Second)
	w3.send(protocol.Message{Type: protocol.TypeReject, JobID: tb3.JobID, LeaseID: tb3.LeaseID, Error: "busy"})
	caps := luaCaps(4)
	w3.send(protocol.Message{Type: protocol.TypeCapabilities, Capabilities: &caps})
	tb4 := w3.next(5 * time.Second)
	w2.send(answerMessage(tb2, "b"))
	w3.send(answerMessage(tb4, "b"))
	if got, _ := h.o.Wait(ctx, b.ID, 5*time.Second); got.Status != job.StatusCompleted {
		t.Fatalf("b: %+v", got)
	}
	// An invocation, with w2 the only worker left.
	w3.conn.CloseNow()
	eventually(t, 5*time.Second, func() error {
		if s, _ := h.o.Stats(ctx); s.WorkersConnected != 1 {
			return errorf("%d workers", s.WorkersConnected)
		}
		return nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := h.o.Invoke(ctx, job.Request{Type: job.TypeLua, Code: "return 4"}, 5*time.Second)
		done <- err
	}()
	ti := w2.next(5 * time.Second)
	w2.send(resultMessage(ti, job.StatusCompleted))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	d := h.submit(job.Request{Type: job.TypeLua, Code: "return 5"})
	w2.send(resultMessage(w2.next(5*time.Second), job.StatusCompleted))
	if got, _ := h.o.Wait(ctx, d.ID, 5*time.Second); got.Status != job.StatusCompleted {
		t.Fatalf("d: %+v", got)
	}
	eventually(t, 5*time.Second, h.idle)
	s, _ := h.o.Stats(ctx)
	want := map[job.Status]int{job.StatusCompleted: 2, job.StatusFailed: 1, job.StatusCanceled: 1}
	for st, n := range want {
		if s.Jobs[st] != n {
			t.Fatalf("stats %v, want %v", s.Jobs, want)
		}
	}
	if v := h.stored(a.ID); v.Status != job.StatusFailed {
		t.Fatalf("a stored as %s", v.Status)
	}
}

// joinTokens authenticates every secret as a join token of its own owner.
type joinTokens struct{}

func (joinTokens) Authenticate(_ context.Context, secret string) (job.Principal, error) {
	return job.Principal{TokenID: secret, Kind: job.TokenWorker}, nil
}

// TestLostReplicaGoesBackToItsOwner: a replica lost with its worker, or
// given back unrun, may run on another worker of the same owner: that owner
// gave no answer, and the job would otherwise wait for an owner that never
// comes.
func TestLostReplicaGoesBackToItsOwner(t *testing.T) {
	cfg := testConfig()
	cfg.Auth = joinTokens{}
	h := newHarness(t, t.TempDir(), cfg)
	a, b := h.dialAs(luaCaps(1), "alice"), h.dialAs(luaCaps(1), "bob")
	a.keepAlive()
	b.keepAlive()
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Replicas: 2, Quorum: 2})
	ta, tb := a.next(5*time.Second), b.next(5*time.Second)
	b.send(answerMessage(tb, "x"))
	a.conn.CloseNow()
	a2 := h.dialAs(luaCaps(1), "alice")
	a2.keepAlive()
	ta2 := a2.next(5 * time.Second)
	if ta2.JobID != ta.JobID {
		t.Fatalf("alice's second worker got %s", ta2.JobID)
	}
	a2.send(protocol.Message{Type: protocol.TypeReject, JobID: ta2.JobID, LeaseID: ta2.LeaseID, Error: "busy"})
	caps := luaCaps(1)
	a2.send(protocol.Message{Type: protocol.TypeCapabilities, Capabilities: &caps})
	ta3 := a2.next(5 * time.Second)
	if ta3.JobID != ta.JobID {
		t.Fatalf("alice's second worker got %s after giving it back", ta3.JobID)
	}
	a2.send(answerMessage(ta3, "x"))
	got, err := h.o.Wait(context.Background(), j.ID, 5*time.Second)
	if err != nil || got.Status != job.StatusCompleted {
		t.Fatalf("job: %+v %v", got, err)
	}
	// Bob, who answered, never gets a second replica of a job.
	j2 := h.submit(job.Request{Type: job.TypeLua, Code: "return 2", Replicas: 2, Quorum: 2, MaxAttempts: 1})
	t1 := b.next(5 * time.Second)
	b.send(answerMessage(t1, "y"))
	t2 := a2.next(5 * time.Second)
	a2.conn.CloseNow()
	b2 := h.dialAs(luaCaps(1), "bob")
	b2.keepAlive()
	time.Sleep(300 * time.Millisecond)
	if v := h.job(j2.ID); v.Status != job.StatusRunning {
		t.Fatalf("second job %s", v.Status)
	}
	h.o.mu.Lock()
	queued := h.o.queue.total()
	h.o.mu.Unlock()
	if queued != 1 {
		t.Fatalf("%d queued, want the replacement of %s", queued, t2.JobID)
	}
}

// TestCanceledReplicaIsNoStrike: a replica stopped because the quorum was
// reached costs its worker nothing, whatever it answers afterwards; a
// worker that lost quorum is banned and given no more jobs.
func TestCanceledReplicaIsNoStrike(t *testing.T) {
	cfg := testConfig()
	cfg.MaxStrikes = 1
	h := newHarness(t, t.TempDir(), cfg)
	w1, w2, slow := h.dial(luaCaps(1)), h.dial(luaCaps(1)), h.dial(luaCaps(1))
	for _, w := range []*rawWorker{w1, w2, slow} {
		w.keepAlive()
	}
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Replicas: 3, Quorum: 2})
	t1, t2, ts := w1.next(5*time.Second), w2.next(5*time.Second), slow.next(5*time.Second)
	w1.send(answerMessage(t1, "x"))
	w2.send(answerMessage(t2, "x"))
	slow.read(string(protocol.TypeCancel), 5*time.Second)
	slow.send(answerMessage(ts, "late and different"))
	if got, _ := h.o.Wait(context.Background(), j.ID, 5*time.Second); got.Status != job.StatusCompleted {
		t.Fatalf("job: %+v", got)
	}
	eventually(t, 5*time.Second, h.idle)
	for _, info := range h.o.Workers() {
		if info.Banned {
			t.Fatalf("worker %s banned", info.ID)
		}
	}
	// A liar is banned; the next job goes to the others.
	j2 := h.submit(job.Request{Type: job.TypeLua, Code: "return 2", Replicas: 3, Quorum: 2})
	t1, t2, ts = w1.next(5*time.Second), w2.next(5*time.Second), slow.next(5*time.Second)
	slow.send(answerMessage(ts, "lie"))
	eventually(t, 5*time.Second, func() error {
		if v := h.job(j2.ID); !strings.Contains(v.Reason, "1 answers") {
			return errorf("reason %q", v.Reason)
		}
		return nil
	})
	w1.send(answerMessage(t1, "y"))
	w2.send(answerMessage(t2, "y"))
	if got, _ := h.o.Wait(context.Background(), j2.ID, 5*time.Second); got.Status != job.StatusCompleted || got.Result.Output != "y" {
		t.Fatalf("job: %+v", got)
	}
	j3 := h.submit(job.Request{Type: job.TypeLua, Code: "return 3"})
	time.Sleep(200 * time.Millisecond)
	if v := h.job(j3.ID); v.Status != job.StatusRunning || v.WorkerID == slow.id {
		t.Fatalf("third job %s on %s (the banned worker is %s)", v.Status, v.WorkerID, slow.id)
	}
}
