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
	return o.InvokeWithin(ctx, r, queueWait, 0)
}

// InvokeWithin is Invoke, bounded as a whole by limit as well (0: by ctx
// only): once limit has passed since the call, the job is canceled as for
// a ctx that ended, and the error is context.DeadlineExceeded. It costs
// the caller no context and no timer of its own: one timer serves the
// wait in the queue and limit.
func (o *Orchestrator) InvokeWithin(ctx context.Context, r job.Request, queueWait, limit time.Duration) (*job.Job, error) {
	begun := time.Now()
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

	// The timer first bounds the wait in the queue, then (once a worker
	// took the job) limit.
	queueing := true
	queued := time.NewTimer(queueWait)
	if limit > 0 && limit < queueWait {
		queueing = false
		queued.Reset(limit)
	}
	defer queued.Stop()
	for {
		var err error
		select {
		case <-done:
			o.mu.Lock()
			out := *e.job
			o.mu.Unlock()
			return &out, nil
		case <-queued.C:
			if queueing {
				o.mu.Lock()
				if e.job.Status == job.StatusPending && !e.final {
					reason := o.pendingReasonLocked(e)
					o.finishLocked(e, &job.Result{Status: job.StatusCanceled, Error: "no worker took the job in time"})
					o.mu.Unlock()
					o.persist(ctx, e)
					return nil, job.Errorf(job.CodeUnavailable, "no worker could take the invocation within %s: %s", queueWait, reason)
				}
				o.mu.Unlock()
				queueing = false
				if limit > 0 {
					queued.Reset(max(limit-time.Since(begun), 0))
				}
				continue
			}
			err = context.DeadlineExceeded
		case <-ctx.Done():
			err = ctx.Err()
		}
		if _, err := o.Cancel(context.WithoutCancel(ctx), j.ID); err != nil && job.ErrorCode(err) != job.CodeConflict && job.ErrorCode(err) != job.CodeNotFound {
			o.log.Warn("cancel abandoned invocation", "job_id", j.ID, "err", err)
		}
		return nil, err
	}
}
