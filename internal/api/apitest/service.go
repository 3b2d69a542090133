// Package apitest provides an in-memory implementation of the API's Service
// for tests of the HTTP API, its client and the CLI. It runs nothing: jobs
// stay pending until Finish (or a Wait with OnWait set) ends them.
package apitest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/store"
)

// Service is an in-memory Service that records what reaches it. Its
// exported fields may be set before use; Lock guards them after.
type Service struct {
	mu     sync.Mutex
	limits job.RequestLimits
	jobs   map[string]*job.Job
	order  []string
	next   int

	submitted []job.Request
	waits     []time.Duration
	filters   []store.JobFilter

	// OnWait, when set, is applied to a job that is not yet terminal when
	// it is waited for; it may end the job.
	OnWait func(*job.Job)
	// Fail, when set, is returned by every method that returns an error.
	Fail error
	// PanicStats makes Stats panic.
	PanicStats bool
	// WorkerList is what Workers returns.
	WorkerList []job.WorkerInfo
	// Served receives the remote address of each ServeWorker call.
	Served chan string
}

// NewService returns an empty Service that applies job.DefaultRequestLimits.
func NewService() *Service {
	return &Service{limits: job.DefaultRequestLimits(), jobs: map[string]*job.Job{}, Served: make(chan string, 16)}
}

// Lock runs fn with the Service's lock held, to change its fields.
func (s *Service) Lock(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn()
}

// Submit stores a pending job. It refuses, as an internal error, a request
// that does not validate: the API must never pass one on.
func (s *Service) Submit(ctx context.Context, r job.Request) (*job.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return nil, s.Fail
	}
	if err := r.Validate(s.limits); err != nil {
		return nil, fmt.Errorf("apitest: Submit called with an invalid request: %v", err)
	}
	s.submitted = append(s.submitted, r)
	s.next++
	j := r.NewJob(fmt.Sprintf("job-%d", s.next), time.Now().UTC(), s.limits, nil)
	s.jobs[j.ID] = j
	s.order = append(s.order, j.ID)
	return copyJob(j), nil
}

func copyJob(j *job.Job) *job.Job {
	c := *j
	if j.Result != nil {
		r := *j.Result
		c.Result = &r
	}
	return &c
}

func (s *Service) get(id string) (*job.Job, error) {
	if s.Fail != nil {
		return nil, s.Fail
	}
	j, ok := s.jobs[id]
	if !ok {
		return nil, job.ErrNotFound
	}
	return copyJob(j), nil
}

// Job returns the job with id.
func (s *Service) Job(ctx context.Context, id string) (*job.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.get(id)
}

// Wait records wait, applies OnWait, and returns the job without blocking.
func (s *Service) Wait(ctx context.Context, id string, wait time.Duration) (*job.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, wait)
	if j, ok := s.jobs[id]; ok && s.OnWait != nil && !j.Status.Terminal() {
		s.OnWait(j)
	}
	return s.get(id)
}

// WaitVisible is Wait: it never blocks, so sees has nothing to decide.
func (s *Service) WaitVisible(ctx context.Context, id string, wait time.Duration, sees func(string) bool) (*job.Job, error) {
	return s.Wait(ctx, id, wait)
}

// Finish ends the job with id with result r (its status is r.Status).
func (s *Service) Finish(id string, r job.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	j.Status = r.Status
	j.FinishedAt = time.Now().UTC()
	j.Result = &r
}

// Jobs lists jobs newest first; the cursor is the id of the last job
// returned.
func (s *Service) Jobs(ctx context.Context, f store.JobFilter) ([]*job.Summary, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return nil, "", s.Fail
	}
	s.filters = append(s.filters, f)
	limit := f.Limit
	if limit == 0 {
		limit = store.DefaultListLimit
	}
	start := len(s.order) - 1
	if f.Cursor != "" {
		start = -1
		for i, id := range s.order {
			if id == f.Cursor {
				start = i - 1
			}
		}
	}
	var out []*job.Summary
	next := ""
	for i := start; i >= 0; i-- {
		j := s.jobs[s.order[i]]
		if f.Status != "" && j.Status != f.Status || f.Namespace != "" && j.Namespace != f.Namespace {
			continue
		}
		if len(out) == limit {
			next = out[len(out)-1].ID
			break
		}
		out = append(out, j.Summary())
	}
	return out, next, nil
}

// Cancel cancels a job that has not ended; one that has is a conflict.
func (s *Service) Cancel(ctx context.Context, id string) (*job.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, err := s.get(id)
	if err != nil {
		return nil, err
	}
	if j.Status.Terminal() {
		return j, job.Errorf(job.CodeConflict, "job has already ended")
	}
	s.jobs[id].Status = job.StatusCanceled
	s.jobs[id].FinishedAt = time.Now().UTC()
	return s.get(id)
}

// Workers returns WorkerList.
func (s *Service) Workers() []job.WorkerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.WorkerList
}

// Pools describes no pools: the fake dispatches nothing.
func (s *Service) Pools(string) []job.PoolInfo { return []job.PoolInfo{} }

// WorkerPage pages WorkerList as the orchestrator does.
func (s *Service) WorkerPage(f job.WorkerFilter) ([]job.WorkerInfo, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := cmp.Or(f.Limit, job.DefaultWorkerListLimit)
	ws := slices.SortedFunc(slices.Values(s.WorkerList), func(a, b job.WorkerInfo) int { return cmp.Compare(a.ID, b.ID) })
	var out []job.WorkerInfo
	for _, w := range ws {
		if w.ID <= f.Cursor || !f.Matches(&w.Capabilities, w.Trusted) {
			continue
		}
		if len(out) == limit {
			return out, out[len(out)-1].ID
		}
		out = append(out, w)
	}
	return out, ""
}

// Stats counts jobs by status.
func (s *Service) Stats(ctx context.Context) (job.Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.PanicStats {
		panic("stats exploded")
	}
	if s.Fail != nil {
		return job.Stats{}, s.Fail
	}
	counts := map[job.Status]int{}
	for _, j := range s.jobs {
		counts[j.Status]++
	}
	return job.Stats{WorkersConnected: len(s.WorkerList), Jobs: counts}, nil
}

// ServeWorker sends the remote address to Served, reads one message and
// answers "registered" with worker id "w-" + the message's name.
func (s *Service) ServeWorker(ctx context.Context, conn *protocol.Conn, remote string) error {
	s.Served <- remote
	m, err := conn.Read(ctx)
	if err != nil {
		return err
	}
	return conn.Write(ctx, protocol.Message{Type: protocol.TypeRegistered, WorkerID: "w-" + m.Name, HeartbeatMS: 1000})
}

// Submitted returns the requests that reached Submit.
func (s *Service) Submitted() []job.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]job.Request(nil), s.submitted...)
}

// Waits returns the waits that reached Wait.
func (s *Service) Waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// Filters returns the filters that reached Jobs.
func (s *Service) Filters() []store.JobFilter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.JobFilter(nil), s.filters...)
}

// HeldJob holds nothing: no worker runs the Service's jobs.
func (s *Service) HeldJob(jobID, leaseID string) (*job.Job, bool) { return nil, false }

// Invoke runs no function: every invocation is unavailable.
func (s *Service) Invoke(ctx context.Context, r job.Request, queueWait time.Duration) (*job.Job, error) {
	if _, err := job.ActsIn(ctx, r.Namespace); err != nil {
		return nil, err
	}
	return nil, job.Errorf(job.CodeUnavailable, "apitest runs no functions")
}

// InvokeWithin is Invoke.
func (s *Service) InvokeWithin(ctx context.Context, r job.Request, queueWait, limit time.Duration) (*job.Job, error) {
	return s.Invoke(ctx, r, queueWait)
}

// Quotas returns the platform's default quotas for every namespace.
func (s *Service) Quotas(ctx context.Context, ns string) job.Quotas { return job.DefaultQuotas() }
