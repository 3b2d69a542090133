package apitest

import (
	"context"

	"github.com/zerverless/zerverless/internal/job"
)

// JobLog returns the job's status as its only event, and whether it
// ended.
func (s *Service) JobLog(ctx context.Context, id string, after uint64, limit int) ([]job.LogEvent, bool, error) {
	j, err := s.Job(ctx, id)
	if err != nil {
		return nil, false, err
	}
	if after >= 1 || limit < 1 {
		return nil, j.Status.Terminal(), nil
	}
	return []job.LogEvent{{Seq: 1, Stream: job.LogStatus, Status: j.Status, Attempt: j.Attempt}}, j.Status.Terminal(), nil
}

// FollowJobLog hands fn the events JobLog returns, without waiting.
func (s *Service) FollowJobLog(ctx context.Context, id string, after uint64, fn func(job.LogEvent) error) error {
	evs, _, err := s.JobLog(ctx, id, after, 1)
	if err != nil {
		return err
	}
	for _, ev := range append([]job.LogEvent{{}}, evs...) {
		if err := fn(ev); err != nil {
			return err
		}
	}
	return err
}
