package api

import (
	"net/url"
	"strconv"

	"github.com/zerverless/zerverless/internal/job"
)

// parseWorkerFilter validates GET /api/workers's parameters: runtime,
// trusted (true or false), namespace, limit (1 to job.MaxWorkerListLimit)
// and cursor (the next_cursor of a previous page). Each error names its
// field.
func parseWorkerFilter(q url.Values) (job.WorkerFilter, error) {
	var f job.WorkerFilter
	if v := q.Get("runtime"); v != "" {
		if !job.Type(v).Known() {
			return f, job.Invalid("runtime", "unknown runtime %q", v)
		}
		f.Runtime = job.Type(v)
	}
	if v := q.Get("trusted"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, job.Invalid("trusted", "must be true or false")
		}
		f.Trusted = &b
	}
	if v := q.Get("namespace"); v != "" {
		if !job.ValidNamespace(v) {
			return f, job.Invalid("namespace", "must be 1-63 lowercase letters, digits or inner dashes")
		}
		f.Namespace = v
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > job.MaxWorkerListLimit {
			return f, job.Invalid("limit", "must be an integer from 1 to %d", job.MaxWorkerListLimit)
		}
		f.Limit = n
	}
	f.Cursor = q.Get("cursor")
	if len(f.Cursor) > maxCursorBytes {
		return f, job.Invalid("cursor", "is not a cursor from a previous page")
	}
	return f, nil
}
