package store

import (
	"context"

	"github.com/zerverless/zerverless/internal/job"
)

// JobLogs keeps jobs' logs (their output and changes of status, see
// job.LogEvent). A store that implements it keeps logs across restarts;
// the orchestrator keeps them in memory otherwise. A job's log is removed
// with the job (ExpireJobs).
type JobLogs interface {
	// AppendJobLog stores ev as the next event of job id. The caller
	// numbers events (ev.Seq, increasing from 1) and writes one job's
	// events in order. It returns once ev is durable.
	AppendJobLog(ctx context.Context, id string, ev job.LogEvent) error
	// JobLog returns, in order, up to limit events of job id whose Seq is
	// more than after; none for an unknown job.
	JobLog(ctx context.Context, id string, after uint64, limit int) ([]job.LogEvent, error)
	// JobLogState returns what a writer of job id's log needs to go on
	// after a restart: the last Seq, the events and output bytes stored,
	// and the last status event (nil when there is none).
	JobLogState(ctx context.Context, id string) (LogState, error)
}

// LogState sums up one job's stored log.
type LogState struct {
	LastSeq     uint64
	Events      int
	OutputBytes int64
	LastStatus  *job.LogEvent
}
