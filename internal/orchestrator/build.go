package orchestrator

import (
	"fmt"
	"strings"

	"github.com/zerverless/zerverless/internal/job"
)

// BuildContextPath is where the worker holding a build job's lease
// fetches its uploaded context (GET, with the job and lease ids in the
// X-Zerverless-Job and X-Zerverless-Lease headers).
func BuildContextPath(id string) string { return "/api/build-contexts/" + id + "/archive" }

// taskSpec is the spec a worker receives for j: a build with an uploaded
// context learns where to fetch it.
func taskSpec(j *job.Job) job.Spec {
	s := j.Spec
	if d := s.Docker; d != nil && d.Build != nil && d.Build.ContextID != "" {
		dc, bc := *d, *d.Build
		bc.ContextURL = BuildContextPath(bc.ContextID)
		dc.Build = &bc
		s.Docker = &dc
	}
	return s
}

// admitBuild applies the operator's policy to a docker request's images:
// an image of another namespace is never run or built from, and base
// images must match DockerAllowImages.
func (o *Orchestrator) admitBuild(r *job.Request) error {
	ns := r.Namespace
	if ns == "" {
		ns = job.DefaultNamespace
	}
	if other, built := job.ImageNamespace(r.DockerImage); built && other != ns {
		return &job.Error{Code: job.CodeForbidden, Field: "docker_image",
			Message: fmt.Sprintf("image %s belongs to namespace %s; a job of namespace %s cannot run it", r.DockerImage, other, ns)}
	}
	for _, img := range r.BaseImages {
		if other, built := job.ImageNamespace(img); built {
			if other != ns {
				return &job.Error{Code: job.CodeForbidden, Field: "dockerfile",
					Message: fmt.Sprintf("base image %s belongs to namespace %s", img, other)}
			}
			continue
		}
		if len(o.cfg.DockerAllowImages) > 0 && !job.MatchImage(o.cfg.DockerAllowImages, img) {
			return &job.Error{Code: job.CodeForbidden, Field: "dockerfile",
				Message: fmt.Sprintf("base image %s is not allowed on this platform (allowed: %s)", img, strings.Join(o.cfg.DockerAllowImages, ", "))}
		}
	}
	return nil
}

// buildHolderLocked returns another worker that already holds the result
// of e's build, when w does not, and may take e now by every rule the
// queue applies (canTakeLocked: a free slot, capabilities, trust, bans,
// quotas, replicas on distinct workers); nil otherwise.
func (o *Orchestrator) buildHolderLocked(e *entry, w *worker) *worker {
	if !e.job.IsBuild() {
		return nil
	}
	key := e.job.Spec.Docker.Build.SourceKey
	if key == "" || w.caps.HoldsBuild(key) {
		return nil
	}
	for _, p := range o.index.pools {
		if p.caps.Docker == nil {
			continue
		}
		for other := range p.members {
			if other != w && other.caps.HoldsBuild(key) && o.canTakeLocked(other, e) {
				return other
			}
		}
	}
	return nil
}

// HeldJob returns the job with jobID when leaseID is its current lease:
// the worker that presents both holds the job now.
func (o *Orchestrator) HeldJob(jobID, leaseID string) (*job.Job, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e, ok := o.active[jobID]
	if !ok || e.final || leaseID == "" || e.job.LeaseID != leaseID || e.job.Status != job.StatusRunning {
		return nil, false
	}
	j := *e.job
	return &j, true
}
