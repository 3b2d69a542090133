package admission

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// Submit admits a decoded, validated job request and submits it: the
// caller must act in its namespace (a namespace token that names none acts
// in its own), may build only from its own namespace's contexts, and a
// build's Dockerfile must pass the build policy (which fills
// r.BaseImages). Errors: unauthorized, forbidden (field namespace),
// invalid (naming the field), and the orchestrator's.
func (s *Service) Submit(ctx context.Context, r job.Request) (*job.Job, error) {
	p, ns, err := scope(ctx, r.Namespace, "namespace")
	if err != nil {
		return nil, err
	}
	r.Namespace = ns
	if err := s.checkContextOwner(ctx, p, r.BuildContextID); err != nil {
		if job.ErrorCode(err) == job.CodeNotFound {
			err = job.Invalid("build_context_id", "build context %s not found (unknown, or expired after going unused)", r.BuildContextID)
		}
		return nil, err
	}
	if err := s.checkBuild(ctx, &r); err != nil {
		return nil, err
	}
	if err := s.checkEgress(ctx, r.Namespace, r.Network); err != nil {
		return nil, err
	}
	return s.d.Jobs.Submit(ctx, r)
}

// checkEgress refuses, as forbidden (field network.egress), a job's or a
// service's request n for egress that the policy of its namespace ns
// does not allow: egress is off unless an admin turned on allow_egress,
// and bounded by the policy's patterns.
func (s *Service) checkEgress(ctx context.Context, ns string, n *job.Network) error {
	if n == nil || len(n.Egress) == 0 {
		return nil
	}
	p, err := s.d.Tokens.NamespacePolicy(ctx, cmp.Or(ns, job.DefaultNamespace))
	if err != nil {
		return fmt.Errorf("namespace policy: %w", err)
	}
	if why := p.EgressRefusal(n.Egress); why != "" {
		return &job.Error{Code: job.CodeForbidden, Field: "network.egress", Message: why}
	}
	return nil
}

// seeJob returns the job with id when the caller may see it; to a
// namespace token another namespace's job is not_found.
func (s *Service) seeJob(ctx context.Context, id string) (job.Principal, *job.Job, error) {
	p, err := Caller(ctx)
	if err != nil {
		return p, nil, err
	}
	j, err := s.d.Jobs.Job(ctx, id)
	j, err = visible(p, j, err)
	return p, j, err
}

// visible returns what p may see of a read of a job (j, err): to a
// namespace token another namespace's job is not_found, expired or not.
func visible(p job.Principal, j *job.Job, err error) (*job.Job, error) {
	var expired *job.ExpiredError
	if errors.As(err, &expired) && !p.Sees(expired.Namespace) {
		return nil, job.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if !p.Sees(j.Namespace) {
		return nil, job.ErrNotFound
	}
	return j, nil
}

// Job returns the job with id; not_found when it does not exist or the
// caller may not see it.
func (s *Service) Job(ctx context.Context, id string) (*job.Job, error) {
	_, j, err := s.seeJob(ctx, id)
	return j, err
}

// Wait waits up to wait for the job with id to end (see the orchestrator's
// Wait) when the caller sees it; a job the caller does not see is
// not_found at once, never waited on. The job is read once.
func (s *Service) Wait(ctx context.Context, id string, wait time.Duration) (*job.Job, error) {
	p, err := Caller(ctx)
	if err != nil {
		return nil, err
	}
	j, err := s.d.Jobs.WaitVisible(ctx, id, wait, p.Sees)
	return visible(p, j, err)
}

// Jobs lists jobs; a namespace token lists only its own namespace's, and
// naming another is forbidden (field namespace).
func (s *Service) Jobs(ctx context.Context, f store.JobFilter) ([]*job.Summary, string, error) {
	_, ns, err := scope(ctx, f.Namespace, "namespace")
	if err != nil {
		return nil, "", err
	}
	f.Namespace = ns
	return s.d.Jobs.Jobs(ctx, f)
}

// Cancel cancels the job with id when the caller sees it (not_found
// otherwise).
func (s *Service) Cancel(ctx context.Context, id string) (*job.Job, error) {
	if _, _, err := s.seeJob(ctx, id); err != nil {
		return nil, err
	}
	return s.d.Jobs.Cancel(ctx, id)
}

// Stats returns the platform's counters, to any API caller.
func (s *Service) Stats(ctx context.Context) (job.Stats, error) {
	if _, err := Caller(ctx); err != nil {
		return job.Stats{}, err
	}
	return s.d.Jobs.Stats(ctx)
}

// Workers lists a page of the connected workers f keeps (see
// job.WorkerFilter), as the caller may see them, and the cursor of the
// next page. An admin sees everything. A namespace token sees the workers that accept
// its namespace's jobs (a worker restricted to other namespaces is not
// listed), with their runtimes, capacity and trust and how many jobs they
// run, and of what a worker holds only what belongs to its own namespace:
//   - remote (the address a volunteer connects from) and owner (the join
//     token it presented) identify the volunteer and are not shown;
//   - namespaces, when the worker restricts them, shows only its own;
//   - running_jobs lists only its own jobs;
//   - built_images lists only images tagged under its namespace;
//   - build_cache is empty: a source key does not say whose build it is
//     (it is keyed with the orchestrator's secret), so none is shown;
//   - notes, which a worker writes freely (and which may name any
//     namespace's images or errors), are not shown.
func (s *Service) Workers(ctx context.Context, f job.WorkerFilter) ([]job.WorkerInfo, string, error) {
	p, err := Caller(ctx)
	if err != nil {
		return nil, "", err
	}
	if !p.Admin() {
		if f.Namespace != "" && f.Namespace != p.Namespace {
			// Another namespace's workers are not the caller's to list.
			return []job.WorkerInfo{}, "", nil
		}
		f.Namespace = p.Namespace
	}
	ws, next := s.d.Jobs.WorkerPage(f)
	out := make([]job.WorkerInfo, 0, len(ws))
	for _, w := range ws {
		if !p.Admin() {
			if len(w.Capabilities.Namespaces) > 0 && !slices.Contains(w.Capabilities.Namespaces, p.Namespace) {
				continue
			}
			w = scopeWorker(p, w)
		}
		if w.RunningJobs == nil {
			w.RunningJobs = []string{}
		}
		out = append(out, w)
	}
	return out, next, nil
}

// Pools describes the dispatch pools as the caller may see them, by the
// rules of Workers: an admin sees every pool and every pending job; a
// namespace token sees the pools whose workers accept its jobs, the jobs
// of its own namespace pending for them, and of their capabilities what
// scopeWorker leaves (namespaces: only its own; built images: only its
// own).
func (s *Service) Pools(ctx context.Context) ([]job.PoolInfo, error) {
	p, err := Caller(ctx)
	if err != nil {
		return nil, err
	}
	if p.Admin() {
		return s.d.Jobs.Pools(""), nil
	}
	if p.Namespace == "" {
		return []job.PoolInfo{}, nil
	}
	pools := s.d.Jobs.Pools(p.Namespace)
	for i := range pools {
		pools[i].Capabilities = scopeWorker(p, job.WorkerInfo{Capabilities: pools[i].Capabilities}).Capabilities
	}
	return pools, nil
}

// scopeWorker returns w as namespace token p may see it. It copies what it
// changes: w's slices and maps may be shared.
func scopeWorker(p job.Principal, w job.WorkerInfo) job.WorkerInfo {
	w.RunningJobs = slices.DeleteFunc(slices.Clone(w.RunningJobs), func(id string) bool {
		return !p.Sees(w.JobNamespaces[id])
	})
	w.JobNamespaces = nil
	w.Notes = nil
	w.Remote, w.Owner = "", ""
	if len(w.Capabilities.Namespaces) > 0 {
		w.Capabilities.Namespaces = []string{p.Namespace}
	}
	if d := w.Capabilities.Docker; d != nil {
		dc := *d
		dc.BuildCache = nil
		dc.Pool = nil // the images other tenants ran
		dc.BuiltImages = slices.DeleteFunc(slices.Clone(d.BuiltImages), func(tag string) bool {
			ns, built := job.ImageNamespace(tag)
			return !built || ns != p.Namespace
		})
		if len(dc.BuiltImages) == 0 {
			dc.BuiltImages = nil
		}
		w.Capabilities.Docker = &dc
	}
	return w
}

// HeldJob returns the job with jobID when leaseID is its current lease: a
// worker that presents both holds the job now. It is the one entry point
// authenticated by a lease rather than a principal.
func (s *Service) HeldJob(jobID, leaseID string) (*job.Job, bool) {
	if strings.TrimSpace(jobID) == "" || strings.TrimSpace(leaseID) == "" {
		return nil, false
	}
	return s.d.Jobs.HeldJob(jobID, leaseID)
}
