package admission

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/zerverless/zerverless/internal/buildctx"
	"github.com/zerverless/zerverless/internal/contextstore"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// contextNotFound is what a caller learns of a context it may not use.
func contextNotFound(id string) error {
	return &job.Error{Code: job.CodeNotFound, Field: "build_context_id",
		Message: fmt.Sprintf("build context %s not found (unknown, or expired after going unused)", id)}
}

// checkContextOwner returns not_found when p may not use the build
// context with id: a namespace token uses only contexts that its
// namespace uploaded. An empty id is no context and always passes.
func (s *Service) checkContextOwner(ctx context.Context, p job.Principal, id string) error {
	if id == "" || p.Admin() {
		return nil
	}
	owned, err := s.d.Owners.BuildContextOwned(ctx, id, p.Namespace)
	if err != nil {
		return err
	}
	if !owned {
		return contextNotFound(id)
	}
	return nil
}

// UploadContext stores the build context that r streams (validated as it
// comes in) for namespace ns ("" is the caller's own, or the default one
// for an admin). The namespace's quota of stored contexts
// (job.Quotas.BuildContextMB) is checked before anything is stored: a
// refused upload leaves nothing behind. A context the namespace already
// owns costs nothing more. Errors: unauthorized, forbidden (field
// namespace), invalid, too_large, too_many (over the quota).
func (s *Service) UploadContext(ctx context.Context, ns string, r io.Reader, form contextstore.Form) (*store.BuildContext, error) {
	_, owner, err := scope(ctx, ns, "namespace")
	if err != nil {
		return nil, err
	}
	if owner == "" {
		owner = job.DefaultNamespace
	}
	var unlock func()
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	grow, done := s.uploadBudget(ctx, owner)
	defer done()
	rec, err := s.d.Contexts.Put(ctx, r, form, grow, func(rec *store.BuildContext) error {
		// Held from the check until the owner is recorded: concurrent
		// uploads of a namespace are counted one after the other.
		unlock = s.uploads.lock(owner)
		return s.checkContextQuota(ctx, owner, rec)
	})
	if err != nil {
		return nil, err
	}
	if err := s.d.Owners.AddBuildContextOwner(ctx, rec.ID, owner); err != nil {
		return nil, err
	}
	return rec, nil
}

// uploadBudget bounds what the uploads of namespace ns in progress write
// to disk before they are admitted: their temporary files together stay
// within its build_context_mb quota, so that uploads that will be refused
// cannot fill the disk meanwhile (what the namespace stores is checked
// when an upload is whole, where a context it already owns costs nothing
// more). grow is Contexts.Put's; done gives back what the upload counted.
func (s *Service) uploadBudget(ctx context.Context, ns string) (grow func(int64) error, done func()) {
	limit := int64(s.d.Quotas.Quotas(ctx, ns).BuildContextMB) << 20
	if limit <= 0 {
		return nil, func() {}
	}
	var mine int64
	grow = func(n int64) error {
		s.upMu.Lock()
		defer s.upMu.Unlock()
		if total := s.uploading[ns] + n; total > limit {
			return job.Errorf(job.CodeTooMany, "namespace %s's uploads in progress would hold %d bytes, more than its build context quota of %d MiB", ns, total, limit>>20)
		}
		s.uploading[ns] += n
		mine += n
		return nil
	}
	done = func() {
		s.upMu.Lock()
		defer s.upMu.Unlock()
		if s.uploading[ns] -= mine; s.uploading[ns] <= 0 {
			delete(s.uploading, ns)
		}
	}
	return grow, done
}

// checkContextQuota refuses a context that would take namespace ns over
// its quota of stored build contexts. A context ns already owns costs
// nothing more.
func (s *Service) checkContextQuota(ctx context.Context, ns string, rec *store.BuildContext) error {
	limit := int64(s.d.Quotas.Quotas(ctx, ns).BuildContextMB) << 20
	if limit <= 0 {
		return nil
	}
	if owned, err := s.d.Owners.BuildContextOwned(ctx, rec.ID, ns); err != nil || owned {
		return err
	}
	used, err := s.d.Owners.BuildContextBytes(ctx, ns)
	if err != nil {
		return err
	}
	if used+rec.TarBytes > limit {
		return job.Errorf(job.CodeTooMany, "namespace %s stores %d bytes of build contexts; this one (%d bytes) would pass its quota of %d MiB", ns, used, rec.TarBytes, limit>>20)
	}
	return nil
}

// Context returns the record of the build context with id, when the
// caller may use it (not_found otherwise).
func (s *Service) Context(ctx context.Context, id string) (*store.BuildContext, error) {
	p, err := Caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.checkContextOwner(ctx, p, id); err != nil {
		return nil, err
	}
	rc, rec, err := s.d.Contexts.Open(ctx, id)
	if err != nil {
		return nil, err
	}
	rc.Close()
	return rec, nil
}

// ContextArchive opens the normalized tar of the build context with id
// for the worker that presents jobID and leaseID: only while it holds the
// lease of a running job that builds from this context. No lease is
// unauthorized; a job that does not build from id is forbidden. The
// caller closes the reader.
func (s *Service) ContextArchive(ctx context.Context, jobID, leaseID, id string) (io.ReadCloser, *store.BuildContext, *job.Job, error) {
	j, held := s.HeldJob(jobID, leaseID)
	if !held {
		return nil, nil, nil, job.Errorf(job.CodeUnauthorized, "present the job id and lease id of a running job you hold")
	}
	if !j.IsBuild() || j.Spec.Docker.Build.ContextID != id {
		return nil, nil, j, job.Errorf(job.CodeForbidden, "the job you hold does not build from this context")
	}
	rc, rec, err := s.d.Contexts.Open(ctx, id)
	return rc, rec, j, err
}

// checkBuild validates a build request before it is submitted: the
// context (inline: every limit; uploaded: it exists) and the Dockerfile,
// parsed with BuildKit's parser against the build policy. It fills
// r.BaseImages. A dockerfile without whitespace names a file of the
// context.
func (s *Service) checkBuild(ctx context.Context, r *job.Request) error {
	if r.Type != job.TypeDocker || r.Dockerfile == "" {
		return nil
	}
	ns := r.Namespace
	if ns == "" {
		ns = job.DefaultNamespace
	}
	if len(r.BuildContext) > 0 {
		if _, err := buildctx.FromFiles(r.BuildContext, r.BuildContextEncoding, s.cfg.ContextLimits, io.Discard); err != nil {
			return err
		}
	}
	if r.BuildContextID != "" {
		if err := s.d.Contexts.Touch(ctx, r.BuildContextID); err != nil {
			if job.ErrorCode(err) == job.CodeNotFound {
				return job.Invalid("build_context_id", "build context %s not found (unknown, or expired after going unused)", r.BuildContextID)
			}
			return err
		}
	}
	if !strings.ContainsAny(r.Dockerfile, " \t\r\n") {
		content, err := s.dockerfileFromContext(ctx, r)
		if err != nil {
			return err
		}
		r.Dockerfile = content
	}
	df, err := buildctx.CheckDockerfile(r.Dockerfile, buildctx.Policy{
		Namespace: ns, BuildArgs: r.BuildArgs, MaxInstructions: s.cfg.MaxDockerfileInstructions,
		MaxBytes: s.cfg.MaxDockerfileBytes,
	})
	if err != nil {
		return err
	}
	r.BaseImages = df.BaseImages
	return nil
}

// dockerfileFromContext reads the Dockerfile that r.Dockerfile names from
// its context.
func (s *Service) dockerfileFromContext(ctx context.Context, r *job.Request) (string, error) {
	name, err := buildctx.CleanPath(r.Dockerfile)
	if err != nil || name == "." {
		return "", job.Invalid("dockerfile", "is neither a Dockerfile nor the path of one in the context")
	}
	if f, ok := r.BuildContext[name]; ok {
		b, err := f.Bytes(r.BuildContextEncoding)
		if err != nil {
			return "", job.Invalid("build_context", "%q: %v", name, err)
		}
		return string(b), nil
	}
	if r.BuildContextID != "" {
		rc, _, err := s.d.Contexts.Open(ctx, r.BuildContextID)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, ok, err := buildctx.ReadFile(rc, name, int64(s.cfg.MaxDockerfileBytes))
		if err != nil {
			return "", job.Invalid("dockerfile", "%v", err)
		}
		if ok {
			return string(b), nil
		}
	}
	return "", job.Invalid("dockerfile", "%q is not a Dockerfile, and the context has no file of that name", r.Dockerfile)
}
