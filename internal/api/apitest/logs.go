package apitest

import (
	"context"

	"github.com/zerverless/zerverless/internal/job"
)

// JobLog returns the log FollowJobLog would stream, without applying
// OnWait, and whether the job ended.
func (s *Service) JobLog(ctx context.Context, id string, after uint64, limit int) ([]job.LogEvent, bool, error) {
	j, err := s.Job(ctx, id)
	if err != nil {
		return nil, false, err
	}
	evs := logOf(j, after)
	return evs[:min(len(evs), max(limit, 0))], j.Status.Terminal(), nil
}

// FollowJobLog applies OnWait as Wait does, then hands fn the job's log as
// it stands: its result's output, then its status, numbered after after.
// It does not wait: a job that has not ended ends the stream unended.
func (s *Service) FollowJobLog(ctx context.Context, id string, after uint64, fn func(job.LogEvent) error) error {
	j, err := s.Wait(ctx, id, 0)
	if err != nil {
		return err
	}
	for _, ev := range append([]job.LogEvent{{}}, logOf(j, after)...) {
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// logOf is j's log: its result's stdout and stderr, then its status.
func logOf(j *job.Job, after uint64) []job.LogEvent {
	var evs []job.LogEvent
	add := func(ev job.LogEvent) {
		ev.Seq = after + uint64(len(evs)) + 1
		evs = append(evs, ev)
	}
	if r := j.Result; r != nil {
		if r.Output != "" {
			add(job.LogEvent{Stream: job.LogStdout, Text: r.Output})
		}
		if r.Stderr != "" {
			add(job.LogEvent{Stream: job.LogStderr, Text: r.Stderr})
		}
	}
	add(job.LogEvent{Stream: job.LogStatus, Status: j.Status, Attempt: j.Attempt, Reason: j.Reason})
	return evs
}
