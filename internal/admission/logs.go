package admission

import (
	"context"

	"github.com/zerverless/zerverless/internal/job"
)

// Logs is what admission needs of jobs' logs (the orchestrator implements
// it). Both methods refuse a context without a principal themselves as
// well.
type Logs interface {
	// JobLog returns up to limit events of job id's log after seq after,
	// and whether the job has ended.
	JobLog(ctx context.Context, id string, after uint64, limit int) ([]job.LogEvent, bool, error)
	// FollowJobLog hands fn a zero event (Seq 0) once the follower is
	// admitted, then every event after seq after as it is written, until
	// the log ends, ctx is done or fn fails.
	FollowJobLog(ctx context.Context, id string, after uint64, fn func(job.LogEvent) error) error
}

// JobLog returns what job id's log holds after seq after (at most limit
// events) and whether the job has ended, to a caller who sees the job (the
// job view's tenancy: another namespace's job is not_found).
func (s *Service) JobLog(ctx context.Context, id string, after uint64, limit int) ([]job.LogEvent, bool, error) {
	if _, _, err := s.seeJob(ctx, id); err != nil {
		return nil, false, err
	}
	return s.d.Logs.JobLog(ctx, id, after, limit)
}

// FollowJobLog follows job id's log from seq after (see Logs), for a
// caller who sees the job. It blocks until the log ends, ctx is done or fn
// fails.
func (s *Service) FollowJobLog(ctx context.Context, id string, after uint64, fn func(job.LogEvent) error) error {
	if _, _, err := s.seeJob(ctx, id); err != nil {
		return err
	}
	return s.d.Logs.FollowJobLog(ctx, id, after, fn)
}
