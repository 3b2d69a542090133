package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol/protocoltest"
)

// TestDroppingVolunteerCannotFailJobs: an anonymous volunteer that
// disconnects on every assignment, reconnecting each time under a new
// session, costs the jobs it takes no attempt; it is banned by the address
// it connects from, and a trusted worker then finishes every job on its
// first attempt.
func TestDroppingVolunteerCannotFailJobs(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	var jobs []*job.Job
	for i := range 6 {
		jobs = append(jobs, h.submit(job.Request{Type: job.TypeLua, Code: fmt.Sprintf("return %d", i), Namespace: "victim"}))
	}
	dropped := 0 // sessions that took jobs and vanished
	for round := 0; ; round++ {
		if round > 20 {
			t.Fatalf("the dropping volunteer is still given jobs after %d rounds", round)
		}
		w := protocoltest.Register(t, h.url(), "", luaCaps(2))
		w.KeepAlive()
		_, err := w.TryNext(time.Second)
		if errors.Is(err, context.DeadlineExceeded) {
			break // banned: given nothing
		}
		if err != nil {
			t.Fatal(err)
		}
		dropped++
		w.Close()
	}
	if dropped == 0 {
		t.Fatalf("the volunteer was never given a job")
	}
	eventually(t, 5*time.Second, func() error {
		for _, j := range jobs {
			v := h.job(j.ID)
			if v.Status != job.StatusPending || v.Attempt != 1 {
				return fmt.Errorf("job %s is %s at attempt %d (%s)", j.ID, v.Status, v.Attempt, v.Reason)
			}
		}
		return nil
	})
	// A new session from the same address is banned too.
	again := protocoltest.Register(t, h.url(), "", luaCaps(2))
	again.KeepAlive()
	eventually(t, 5*time.Second, func() error {
		for _, w := range h.o.Workers() {
			if w.ID == again.ID && !w.Banned {
				return fmt.Errorf("the reconnected volunteer is not banned")
			}
		}
		return nil
	})

	trusted := protocoltest.Register(t, h.url(), harnessSecret, luaCaps(2))
	trusted.KeepAlive()
	for range jobs {
		trusted.Answer(trusted.Next(5*time.Second), job.Result{Status: job.StatusCompleted})
	}
	for _, j := range jobs {
		got, err := h.o.Wait(context.Background(), j.ID, 5*time.Second)
		if err != nil || got.Status != job.StatusCompleted || got.Attempt != 1 || got.WorkerID != trusted.ID {
			t.Fatalf("job %s: %+v %v", j.ID, got, err)
		}
	}
}

// TestLostOnWorkersInGoodStandingFails: a job whose leases are lost on
// distinct workers that otherwise return results is charged for each loss
// and fails when out of attempts (the job is the likelier cause); a loss
// on an owner without that record costs nothing, and one address charges a
// job at most once.
func TestLostOnWorkersInGoodStandingFails(t *testing.T) {
	cfg := testConfig()
	cfg.Auth = joinTokens{}
	h := newHarness(t, t.TempDir(), cfg)
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", MaxAttempts: 2})
	for i, owner := range []string{"fresh", "proven-1", "proven-2"} {
		w := h.dialAs(luaCaps(1), owner)
		if owner != "fresh" {
			h.proven(w)
		}
		task := w.next(5 * time.Second)
		if want := max(i, 1); task.JobID != j.ID || task.Attempt != want {
			t.Fatalf("%s got %s attempt %d, want attempt %d", owner, task.JobID, task.Attempt, want)
		}
		w.conn.CloseNow()
	}
	got, err := h.o.Wait(context.Background(), j.ID, 5*time.Second)
	if err != nil || got.Status != job.StatusFailed || !strings.Contains(got.Reason, "no attempts left") {
		t.Fatalf("job: %+v %v", got, err)
	}

	// An anonymous address in good standing that loses a job costs it an
	// attempt once; losing it again costs nothing.
	k := h.submit(job.Request{Type: job.TypeLua, Code: "return 2"})
	for range 2 {
		anon := protocoltest.Register(t, h.url(), "", luaCaps(1))
		h.proven(&rawWorker{t: t, id: anon.ID})
		if task := anon.Next(5 * time.Second); task.JobID != k.ID {
			t.Fatalf("anonymous worker got %s", task.JobID)
		}
		anon.Close()
		eventually(t, 5*time.Second, func() error {
			if v := h.job(k.ID); v.Status != job.StatusPending || v.Attempt != 2 {
				return fmt.Errorf("job is %s at attempt %d", v.Status, v.Attempt)
			}
			return nil
		})
	}
	trusted := protocoltest.Register(t, h.url(), harnessSecret, luaCaps(1))
	trusted.KeepAlive()
	trusted.Answer(trusted.Next(5*time.Second), job.Result{Status: job.StatusCompleted})
	if got, err := h.o.Wait(context.Background(), k.ID, 5*time.Second); err != nil || got.Status != job.StatusCompleted || got.Attempt != 2 {
		t.Fatalf("job: %+v %v", got, err)
	}
}

// TestInvocationsStayOffAnonymousWorkers: a function invocation (carrying
// env and the caller's headers) never goes to an anonymous worker unless
// it allows anonymous workers; a trusted worker answers it, so an
// anonymous one cannot forge the answer.
func TestInvocationsStayOffAnonymousWorkers(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	anon := protocoltest.Register(t, h.url(), "", luaCaps(4))
	anon.KeepAlive()
	secret := job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "bob", Input: []byte(`{"env":{"KEY":"s3cret"},"req":{"headers":{"cookie":"session=bob"}}}`)}
	_, err := h.o.Invoke(tenantCtx(), secret, 300*time.Millisecond)
	if job.ErrorCode(err) != job.CodeUnavailable || !strings.Contains(err.Error(), "does not allow anonymous workers") {
		t.Fatalf("invocation with only an anonymous worker: %v", err)
	}
	// A job of the same namespace still goes to the anonymous worker.
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 2", Namespace: "bob"})
	task := anon.Next(5 * time.Second)
	if task.JobID != j.ID {
		t.Fatalf("the anonymous worker got %s", task.JobID)
	}
	anon.Answer(task, job.Result{Status: job.StatusCompleted})
	if got, err := h.o.Wait(context.Background(), j.ID, 5*time.Second); err != nil || got.Status != job.StatusCompleted {
		t.Fatalf("job: %+v %v", got, err)
	}

	trusted := protocoltest.Register(t, h.url(), harnessSecret, luaCaps(1))
	trusted.KeepAlive()
	done := make(chan *job.Job, 1)
	go func() {
		v, err := h.o.Invoke(tenantCtx(), secret, 5*time.Second)
		if err != nil {
			t.Error(err)
		}
		done <- v
	}()
	task = trusted.Next(5 * time.Second)
	trusted.Answer(task, job.Result{Status: job.StatusCompleted, Output: "genuine"})
	if v := <-done; v == nil || v.Result.Output != "genuine" || v.WorkerID != trusted.ID {
		t.Fatalf("invocation: %+v", v)
	}
	for _, w := range h.o.Workers() {
		if w.ID == anon.ID && len(w.RunningJobs) != 0 {
			t.Fatalf("the anonymous worker runs %v", w.RunningJobs)
		}
	}

	// Allowed by its deployment, an invocation may run anywhere.
	open := secret
	open.AnonymousWorkers = true
	trusted.Close()
	go h.o.Invoke(tenantCtx(), open, 5*time.Second)
	if task := anon.Next(5 * time.Second); !strings.Contains(string(task.Spec.Input), "s3cret") {
		t.Fatalf("the anonymous worker got %+v", task)
	}
}

// TestSilentVolunteerCannotFailJobs: an anonymous volunteer that stays
// connected and never answers lets every lease expire; the job keeps its
// attempts, the volunteer is banned, and the job runs elsewhere.
func TestSilentVolunteerCannotFailJobs(t *testing.T) {
	cfg := testConfig()
	cfg.LeaseGrace = 100 * time.Millisecond
	cfg.MaxDrops = 1
	h := newHarness(t, t.TempDir(), cfg)
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", MaxAttempts: 1, TimeoutSeconds: ptr(0.1)})
	silent := protocoltest.Register(t, h.url(), "", luaCaps(1))
	silent.KeepAlive()
	if task := silent.Next(5 * time.Second); task.JobID != j.ID {
		t.Fatalf("the volunteer got %s", task.JobID)
	}
	eventually(t, 5*time.Second, func() error {
		for _, w := range h.o.Workers() {
			if w.ID == silent.ID && !w.Banned {
				return fmt.Errorf("the silent volunteer is not banned")
			}
		}
		if v := h.job(j.ID); v.Status != job.StatusPending || v.Attempt != 1 {
			return fmt.Errorf("job is %s at attempt %d (%s)", v.Status, v.Attempt, v.Reason)
		}
		return nil
	})
	trusted := protocoltest.Register(t, h.url(), harnessSecret, luaCaps(1))
	trusted.KeepAlive()
	trusted.Answer(trusted.Next(5*time.Second), job.Result{Status: job.StatusCompleted})
	if got, err := h.o.Wait(context.Background(), j.ID, 5*time.Second); err != nil || got.Status != job.StatusCompleted {
		t.Fatalf("job: %+v %v", got, err)
	}
}

// TestRemoteIdentity: an anonymous volunteer is known by its address, an
// IPv6 one by its /56 (what one subscriber is delegated), whatever the port.
func TestRemoteIdentity(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:40000":             "192.0.2.7",
		"192.0.2.7:1":                 "192.0.2.7",
		"[::ffff:192.0.2.7]:5":        "192.0.2.7",
		"[2001:db8:1:2:aaaa::1]:443":  "2001:db8:1::/56",
		"[2001:db8:1:2:bbbb::9]:8000": "2001:db8:1::/56",
		"[2001:db8:1:3::1]:8000":      "2001:db8:1::/56",
		"[2001:db8:1:ff::1]:8000":     "2001:db8:1::/56",
		"[2001:db8:1:100::1]:8000":    "2001:db8:1:100::/56",
		"pipe":                        "pipe",
	} {
		if got := remoteIdentity(remote); got != want {
			t.Errorf("remoteIdentity(%q) = %q, want %q", remote, got, want)
		}
	}
}

// TestNewVolunteerHoldsOneLease: an anonymous volunteer without a record
// holds one lease, whatever concurrency it claims, until it returns a
// result; then one more for each result it returns (see
// TestAnonymousLeasesFollowResults).
func TestNewVolunteerHoldsOneLease(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	for i := range 4 {
		h.submit(job.Request{Type: job.TypeLua, Code: fmt.Sprintf("return %d", i)})
	}
	anon := protocoltest.Register(t, h.url(), "", luaCaps(8))
	anon.KeepAlive()
	first := anon.Next(5 * time.Second)
	if s, _ := h.o.Stats(context.Background()); s.SlotsBusy != 1 {
		t.Fatalf("a new volunteer holds %d leases", s.SlotsBusy)
	}
	anon.Answer(first, job.Result{Status: job.StatusCompleted})
	anon.Answer(anon.Next(5*time.Second), job.Result{Status: job.StatusCompleted})
	anon.Next(5 * time.Second)
	anon.Next(5 * time.Second)
}

// TestRegisteredWorkerIsListed: once a worker has its registered message,
// it is in the worker list, at once: a caller who saw the registration
// does not have to wait for it.
func TestRegisteredWorkerIsListed(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	defer h.close()
	for range 20 {
		w := h.dial(luaCaps(1))
		id := w.fake().ID
		if !slices.ContainsFunc(h.o.Workers(), func(wi job.WorkerInfo) bool { return wi.ID == id }) {
			t.Fatalf("worker %s has its registration but is not listed", id)
		}
		w.fake().Conn.CloseNow()
	}
}
