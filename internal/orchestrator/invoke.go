package orchestrator

import (
	"context"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// Invoke runs an ephemeral job — a function invocation — and blocks until
// it ends. An ephemeral job goes through the same queues, matching, leases
// and re-queueing as any job, but it is never written to the store, never
// listed, and not recovered after a restart: nobody reads it after its
// caller has the answer.
//
// An invocation carries what its function's deployment keeps (env) and
// what its caller sent (headers, cookies): it goes only to trusted workers
// unless r.AnonymousWorkers is set.
//
// If no worker takes the job within queueWait, it is dropped from the
// queue and Invoke returns an unavailable error. If ctx ends first, the
// job is canceled (its worker is told to stop) and ctx's error is
// returned. Otherwise Invoke returns the finished job, whose Result says
// how it ended (a timeout is Status timeout, not an error).
//
// ctx must carry a principal that may act in the request's namespace
// (job.ActsIn); without one nothing runs.
func (o *Orchestrator) Invoke(ctx context.Context, r job.Request, queueWait time.Duration) (*job.Job, error) {
	if _, err := job.ActsIn(ctx, r.Namespace); err != nil {
		return nil, err
	}
	if err := o.admit(&r); err != nil {
		return nil, err
	}
	j := r.NewJob(newID(), o.now().UTC(), o.cfg.RequestLimits, o.cfg.BuildKey)
	if err := o.admitQuota(ctx, j.Namespace, false); err != nil {
		return nil, err
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil, job.Errorf(job.CodeUnavailable, "the orchestrator is shutting down")
	}
	o.seq++
	e := &entry{job: j, seq: o.seq, enqueuedAt: o.now(), ephemeral: true, done: make(chan struct{}),
		trustedOnly: !r.AnonymousWorkers}
	done := e.done
	o.active[j.ID] = e
	o.countLocked(e, job.StatusPending, 1)
	o.queue.push(e, false)
	starts := o.dispatchLocked()
	o.mu.Unlock()
	o.launch(starts)

	queued := time.NewTimer(queueWait)
	defer queued.Stop()
	for {
		select {
		case <-done:
			o.mu.Lock()
			out := *e.job
			o.mu.Unlock()
			return &out, nil
		case <-queued.C:
			o.mu.Lock()
			if e.job.Status == job.StatusPending && !e.final {
				reason := o.pendingReasonLocked(e)
				o.finishLocked(e, &job.Result{Status: job.StatusCanceled, Error: "no worker took the job in time"})
				o.mu.Unlock()
				o.persist(ctx, e)
				return nil, job.Errorf(job.CodeUnavailable, "no worker could take the invocation within %s: %s", queueWait, reason)
			}
			o.mu.Unlock()
		case <-ctx.Done():
			if _, err := o.Cancel(context.WithoutCancel(ctx), j.ID); err != nil && job.ErrorCode(err) != job.CodeConflict && job.ErrorCode(err) != job.CodeNotFound {
				o.log.Warn("cancel abandoned invocation", "job_id", j.ID, "err", err)
			}
			return nil, ctx.Err()
		}
	}
}
