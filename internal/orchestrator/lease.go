package orchestrator

import (
	"context"
	"time"
)

// leaseCheckInterval is how often expired leases are looked for.
const leaseCheckInterval = 500 * time.Millisecond

// watchLeases takes back jobs whose lease ran out: a worker that neither
// finished a job by its timeout plus LeaseGrace nor lost its connection is
// told to stop, and the job is re-queued as a lost lease (loseLeaseLocked).
// Every TokenRecheckInterval it also ends the sessions whose join token is
// no longer valid (recheckTokens).
func (o *Orchestrator) watchLeases() {
	defer o.wg.Done()
	t := time.NewTicker(leaseCheckInterval)
	defer t.Stop()
	tokens := time.NewTicker(o.cfg.TokenRecheckInterval)
	defer tokens.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
			o.expireLeases()
			o.refreshPolicies()
		case <-tokens.C:
			o.recheckTokens(context.Background())
		}
	}
}

// refreshPolicies reads again the stale policies of the namespaces that
// have jobs waiting, and dispatches when one changed: a policy is otherwise
// read only at a submission, and jobs held back by it (a running quota, a
// requirement of trusted workers) would wait for the next one.
func (o *Orchestrator) refreshPolicies() {
	o.mu.Lock()
	namespaces := make([]string, 0, len(o.nsPending))
	for ns := range o.nsPending {
		namespaces = append(namespaces, ns)
	}
	o.mu.Unlock()
	changed := false
	for _, ns := range namespaces {
		o.mu.Lock()
		old := o.cachedPolicyLocked(ns)
		o.mu.Unlock()
		if !o.policy(context.Background(), ns).Equal(old) {
			changed = true
		}
	}
	if !changed {
		return
	}
	o.mu.Lock()
	starts := o.dispatchLocked()
	o.mu.Unlock()
	o.launch(starts)
}

func (o *Orchestrator) expireLeases() {
	now := o.now()
	type cancel struct {
		w              *worker
		jobID, leaseID string
	}
	var cancels []cancel
	var changed []*entry
	o.mu.Lock()
	for l := o.leaseHeap.peek(); l != nil && !now.Before(l.deadline); l = o.leaseHeap.peek() {
		w, leaseID := l.w, l.id
		if l.abandoned {
			// The worker never answered for a job it was told
			// to stop; give the slot back.
			o.endLeaseLocked(w, leaseID)
			continue
		}
		l.abandoned = true
		l.deadline = now.Add(o.cfg.LeaseGrace)
		o.leaseHeap.fix(l)
		cancels = append(cancels, cancel{w, l.jobID, leaseID})
		e, ok := o.active[l.jobID]
		if !ok || e.final || e.worker != w || e.job.LeaseID != leaseID {
			continue
		}
		o.log.Warn("lease expired", "job_id", l.jobID, "worker_id", w.id)
		o.loseLeaseLocked(e, w, "lease expired on worker "+w.id)
		changed = append(changed, e)
	}
	starts := o.dispatchLocked()
	o.mu.Unlock()
	for _, c := range cancels {
		c.w.send(cancelMessage(c.jobID, c.leaseID))
	}
	for _, e := range changed {
		o.persist(context.Background(), e)
	}
	o.launch(starts)
}
