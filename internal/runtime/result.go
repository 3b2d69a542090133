package runtime

import (
	"context"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// Failed is the result of a guest that failed with msg: Status failed,
// exit code 1.
func Failed(msg string) job.Result {
	return job.Result{Status: job.StatusFailed, Error: msg, ExitCode: 1}
}

// Stopped is the result of a guest stopped by its context: st is timeout
// or canceled; exit code -1.
func Stopped(st job.Status) job.Result {
	msg := "canceled"
	if st == job.StatusTimeout {
		msg = "timed out"
	}
	return job.Result{Status: st, Error: msg, ExitCode: -1}
}

// Timed runs run under t's timeout (when it has one, on top of ctx's
// deadline) and sets the result's DurationMS.
func Timed(ctx context.Context, t job.Task, run func(context.Context, job.Task) (job.Result, error)) (job.Result, error) {
	start := time.Now()
	if t.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.Timeout)
		defer cancel()
	}
	res, err := run(ctx, t)
	res.DurationMS = time.Since(start).Milliseconds()
	return res, err
}
