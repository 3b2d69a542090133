package api

import (
	"context"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/store"
)

// Service is what the HTTP API needs of the orchestrator. Every error is a
// *job.Error (or wraps one) whose code picks the HTTP status.
type Service interface {
	// Submit validates nothing beyond r.Validate (already done by the
	// handler), stores the job and queues it. It returns once the job is
	// durable.
	Submit(ctx context.Context, r job.Request) (*job.Job, error)
	// Job returns the job with id, or a not_found error.
	Job(ctx context.Context, id string) (*job.Job, error)
	// Wait blocks until the job with id is terminal, wait passes or ctx is
	// done, and returns its state then.
	Wait(ctx context.Context, id string, wait time.Duration) (*job.Job, error)
	// Jobs lists the summaries of jobs, newest first, with a cursor for
	// the next page.
	Jobs(ctx context.Context, f store.JobFilter) ([]*job.Summary, string, error)
	// Cancel ends a pending or running job as canceled and returns it. A
	// job that has already ended is returned unchanged with a conflict
	// error.
	Cancel(ctx context.Context, id string) (*job.Job, error)
	// Workers lists the connected workers.
	Workers() []job.WorkerInfo
	// Stats returns a snapshot of workers and jobs.
	Stats(ctx context.Context) (job.Stats, error)
	// ServeWorker runs the orchestrator's side of one worker connection
	// until it ends. The API accepts the WebSocket and hands it over.
	ServeWorker(ctx context.Context, conn *protocol.Conn, remote string) error
}
