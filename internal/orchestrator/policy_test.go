package orchestrator

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// policies is a PolicySource over a map.
type policies struct {
	mu sync.Mutex
	m  map[string]job.NamespacePolicy
}

func (p *policies) NamespacePolicy(_ context.Context, ns string) (job.NamespacePolicy, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[ns], nil
}

// TestInvokeQuotas: invocations are bounded by the running quota (they
// wait, and are answered unavailable when they wait too long) and by the
// rate.
func TestInvokeQuotas(t *testing.T) {
	cfg := testConfig()
	cfg.DefaultQuotas.RunningJobs = 1
	cfg.DefaultQuotas.SubmitsPerSecond = 1
	h := newHarness(t, t.TempDir(), cfg)
	ctx := tenantCtx()
	w := h.dial(luaCaps(2))
	w.keepAlive()
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	task := w.next(5 * time.Second)
	_, err := h.o.Invoke(ctx, job.Request{Type: job.TypeLua, Code: "return 2"}, 300*time.Millisecond)
	if job.ErrorCode(err) != job.CodeUnavailable {
		t.Fatalf("invocation over the running quota: %v", err)
	}
	_, err = h.o.Invoke(ctx, job.Request{Type: job.TypeLua, Code: "return 2"}, 300*time.Millisecond)
	if job.ErrorCode(err) != job.CodeTooMany {
		t.Fatalf("invocation over the rate: %v", err)
	}
	time.Sleep(time.Second)
	done := make(chan error, 1)
	go func() {
		_, err := h.o.Invoke(ctx, job.Request{Type: job.TypeLua, Code: "return 3"}, 5*time.Second)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	w.send(resultMessage(task, job.StatusCompleted))
	ti := w.next(5 * time.Second)
	w.send(resultMessage(ti, job.StatusCompleted))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _ := h.o.Wait(ctx, j.ID, 5*time.Second); got.Status != job.StatusCompleted {
		t.Fatalf("job: %+v", got)
	}
	eventually(t, 5*time.Second, h.idle)
}

// TestPendingQuotaCountsJobs: the pending quota counts a replicated job
// once, however many replicas it waits for.
func TestPendingQuotaCountsJobs(t *testing.T) {
	cfg := testConfig()
	cfg.DefaultQuotas.PendingJobs = 2
	h := newHarness(t, t.TempDir(), cfg)
	h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Replicas: 3})
	h.submit(job.Request{Type: job.TypeLua, Code: "return 2"})
	_, err := h.o.Submit(tenantCtx(), job.Request{Type: job.TypeLua, Code: "return 3"})
	if job.ErrorCode(err) != job.CodeTooMany {
		t.Fatalf("a third pending job: %v", err)
	}
}

// TestPolicyAppliesAfterRestart: jobs recovered after a restart keep
// their namespace's policy before anything new is submitted to it.
func TestPolicyAppliesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Policies = &policies{m: map[string]job.NamespacePolicy{"secure": {Namespace: "secure", RequireTrustedWorkers: true}}}
	h := newHarness(t, dir, cfg)
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "secure"})
	h.close()
	h2 := newHarness(t, dir, cfg)
	anon := h2.dialAs(luaCaps(1), "")
	anon.keepAlive()
	time.Sleep(300 * time.Millisecond)
	if v := h2.job(j.ID); v.Status != job.StatusPending {
		t.Fatalf("the job of a namespace that requires trusted workers went to an anonymous one: %s", v.Status)
	}
}

// TestPolicyChangeReachesQueuedJobs: a namespace's new policy applies to
// its queued jobs within policyTTL, without a new submission.
func TestPolicyChangeReachesQueuedJobs(t *testing.T) {
	cfg := testConfig()
	p := &policies{m: map[string]job.NamespacePolicy{"t": {Namespace: "t", Quotas: job.Quotas{RunningJobs: 1}}}}
	cfg.Policies = p
	h := newHarness(t, t.TempDir(), cfg)
	w := h.dial(luaCaps(2))
	w.keepAlive()
	h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "t"})
	h.submit(job.Request{Type: job.TypeLua, Code: "return 2", Namespace: "t"})
	w.next(5 * time.Second)
	p.mu.Lock()
	p.m["t"] = job.NamespacePolicy{Namespace: "t", Quotas: job.Quotas{RunningJobs: 2}}
	p.mu.Unlock()
	w.next(policyTTL + 3*time.Second)
}
