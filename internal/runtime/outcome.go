package runtime

import (
	"context"
	"errors"

	"github.com/zerverless/zerverless/internal/job"
)

// Interrupted returns the status a run that ctx stopped ends with:
// timeout when the deadline passed, canceled when ctx was canceled, and ""
// when ctx is still live.
func Interrupted(ctx context.Context) job.Status {
	switch err := ctx.Err(); {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return job.StatusTimeout
	default:
		return job.StatusCanceled
	}
}
