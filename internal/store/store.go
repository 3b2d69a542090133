// Package store defines how jobs are kept. store/sqlite is the embedded
// implementation; a PostgreSQL one will satisfy the same interface.
package store

import (
	"context"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// Store keeps jobs durably. Every method is safe for concurrent use. A job
// returned by a method is the caller's to change.
type Store interface {
	// CreateJob stores a new job. It returns once the job is durable.
	CreateJob(ctx context.Context, j *job.Job) error
	// UpdateJob replaces the stored state of an existing job (status,
	// attempt, worker, lease, times, reason, result). It returns
	// job.ErrNotFound (code not_found) for an unknown id.
	UpdateJob(ctx context.Context, j *job.Job) error
	// GetJob returns the job with id, or an error with code not_found:
	// a *job.ExpiredError when ExpireJobs removed it and its tombstone is
	// still kept.
	GetJob(ctx context.Context, id string) (*job.Job, error)
	// ListJobs returns the summaries of the jobs matching f, newest first,
	// and a cursor for the next page ("" when there is none). It reads no
	// spec, output, returned value or files: a page's memory is bounded
	// by its length, whatever the jobs' results. It never scans every
	// job: each filter is served by an index.
	ListJobs(ctx context.Context, f JobFilter) ([]*job.Summary, string, error)
	// ActiveJobs returns every pending or running job, oldest first, in
	// full. The orchestrator calls it once at start to rebuild its queue.
	ActiveJobs(ctx context.Context) ([]*job.Job, error)
	// CountJobs returns how many jobs are in each status.
	CountJobs(ctx context.Context) (map[job.Status]int, error)
	// ExpireJobs removes terminal jobs that finished before
	// e.FinishedBefore, oldest first, with their specs and results, and
	// keeps a tombstone of each (its id, namespace and time of removal)
	// so that GetJob can say it expired. It removes the tombstones of jobs
	// removed before e.ForgetBefore. One call does at most e.MaxJobs jobs
	// and about e.MaxBytes bytes (at least one job), in one short write,
	// and says whether more are due; callers loop to drain.
	ExpireJobs(ctx context.Context, e Expiry) (Expired, error)
	// JobBytes returns the bytes the stored jobs of namespace ns take
	// (specs and results). It reads a counter, not the jobs.
	JobBytes(ctx context.Context, ns string) (int64, error)

	// PutDeployment creates or replaces the deployment at d.Namespace and
	// d.Path and returns once that is durable. It sets d.Version (1 when
	// new, the stored version + 1 when replacing, atomically) and
	// d.CreatedAt (kept from the first deployment); everything else is
	// stored as given. d.UpdatedAt is required (code invalid).
	PutDeployment(ctx context.Context, d *job.Deployment) error
	// GetDeployment returns the deployment at namespace/path, in full, or
	// an error with code not_found.
	GetDeployment(ctx context.Context, namespace, path string) (*job.Deployment, error)
	// ListDeployments returns the deployments matching f, ordered by
	// namespace then path; without f.WithCode they carry no Code or Wasm.
	ListDeployments(ctx context.Context, f DeploymentFilter) ([]*job.Deployment, error)
	// DeleteDeployment removes the deployment at namespace/path, or
	// returns an error with code not_found.
	DeleteDeployment(ctx context.Context, namespace, path string) error

	// Tenancy keeps tokens, namespace policies and build context owners.
	Tenancy

	// Close releases the store. Calls after Close fail.
	Close() error
}

// JobFilter selects jobs for ListJobs. Zero fields select everything.
type JobFilter struct {
	Status    job.Status
	Namespace string
	// Limit is the page size; the store caps it at MaxListLimit and uses
	// DefaultListLimit when it is zero.
	Limit int
	// Cursor is a value returned by a previous ListJobs call.
	Cursor string
}

// Expiry says what one ExpireJobs call removes.
type Expiry struct {
	// FinishedBefore: terminal jobs that finished before it are removed
	// (required, code invalid otherwise).
	FinishedBefore time.Time
	// Now is recorded as the removal time of each job (required).
	Now time.Time
	// ForgetBefore: tombstones of jobs removed before it are removed.
	// Zero keeps every tombstone.
	ForgetBefore time.Time
	// MaxJobs caps the jobs (and, separately, the tombstones) one call
	// removes; zero means DefaultExpireJobs.
	MaxJobs int
	// MaxBytes caps the stored bytes one call removes, past its first
	// job; zero means DefaultExpireBytes.
	MaxBytes int64
}

// Expired reports what one ExpireJobs call removed.
type Expired struct {
	// Jobs counts the removed jobs by the status they had.
	Jobs map[job.Status]int
	// IDs are the removed jobs' ids.
	IDs []string
	// Bytes is what the removed jobs took.
	Bytes int64
	// Tombstones is how many tombstones were removed.
	Tombstones int
	// More is set when the call stopped at a bound with more due.
	More bool
}

// Total returns how many jobs were removed.
func (e Expired) Total() int {
	n := 0
	for _, c := range e.Jobs {
		n += c
	}
	return n
}

// DeploymentFilter selects deployments for ListDeployments.
type DeploymentFilter struct {
	// Namespace, when set, selects that namespace only.
	Namespace string
	// WithCode includes each deployment's code or module.
	WithCode bool
}

const (
	DefaultListLimit = 50
	MaxListLimit     = 500

	// DefaultExpireJobs and DefaultExpireBytes bound one ExpireJobs
	// call, so that it holds the store's writer only briefly.
	DefaultExpireJobs  = 64
	DefaultExpireBytes = 64 << 20
)
