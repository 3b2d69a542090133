// Package runtime defines the seam between a worker and the code it runs.
// Each runtime lives in its own subpackage (lua, js, wasm, python, docker)
// and knows nothing of the others, of the network or of the store.
package runtime

import (
	"context"

	"github.com/zerverless/zerverless/internal/job"
)

// Runtime runs one task.
//
// Run blocks until the task ends. A task that ran and failed — an error
// raised by the guest, a non-zero exit, a timeout, a memory limit — returns
// a Result whose Status says so, and a nil error. A non-nil error means the
// task could not be run at all (the engine is gone, the worker is
// misconfigured) and the job should be tried elsewhere.
//
// The task's deadline is ctx's deadline: when ctx's deadline passes, Run
// stops the guest and returns promptly with Status timeout; when ctx is
// canceled for another reason, with Status canceled.
type Runtime interface {
	Run(ctx context.Context, t job.Task) (job.Result, error)
}

// Checker is implemented by runtimes that depend on something outside the
// process (python3, a Docker Engine). Check returns nil when the runtime can
// run tasks now, or an error saying why not.
type Checker interface {
	Check(ctx context.Context) error
}

// Set is the runtimes a worker offers, by job type. cmd builds it.
type Set map[job.Type]Runtime

// UsageReporter is implemented by runtimes that hold something worth
// watching (containers, image caches, warm processes): ReportUsage adds
// what the runtime holds now to u. It must not block.
type UsageReporter interface {
	ReportUsage(u *job.WorkerUsage)
}
