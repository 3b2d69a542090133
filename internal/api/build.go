package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/zerverless/zerverless/internal/buildctx"
	"github.com/zerverless/zerverless/internal/contextstore"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// BuildContexts is what the API needs of the build context store
// (contextstore.Store implements it).
type BuildContexts interface {
	Put(ctx context.Context, r io.Reader, form contextstore.Form) (*store.BuildContext, error)
	Open(ctx context.Context, id string) (io.ReadCloser, *store.BuildContext, error)
	Touch(ctx context.Context, id string) error
}

// LeaseChecker is implemented by a Service that can say whether a worker
// presenting a job id and a lease id holds that job now.
type LeaseChecker interface {
	HeldJob(jobID, leaseID string) (*job.Job, bool)
}

// Headers a worker sends to fetch the context of a job it holds.
const (
	HeaderJob   = "X-Zerverless-Job"
	HeaderLease = "X-Zerverless-Lease"
)

// BuildContextView is the answer to an upload.
type BuildContextView struct {
	BuildContextID string `json:"build_context_id"`
	SHA256         string `json:"sha256"`
	Files          int    `json:"files"`
	Bytes          int64  `json:"bytes"`
	// LastUsedAt is the context's last use; it expires when unused for
	// the orchestrator's TTL (default 24 h).
	LastUsedAt string `json:"last_used_at"`
}

func newBuildContextView(c *store.BuildContext) BuildContextView {
	return BuildContextView{BuildContextID: c.ID, SHA256: c.ID, Files: c.Files, Bytes: c.Bytes,
		LastUsedAt: c.LastUsedAt.UTC().Format("2006-01-02T15:04:05Z07:00")}
}

func (s *server) buildRoutes(m *http.ServeMux) {
	m.HandleFunc("POST /api/build-contexts", s.guard(anyToken, s.uploadContext))
	m.HandleFunc("GET /api/build-contexts/{id}", s.guard(anyToken, s.getContext))
	// Workers fetch with the job and lease they hold, not a token.
	m.HandleFunc("GET /api/build-contexts/{id}/archive", s.fetchContext)
}

func (s *server) contexts(w http.ResponseWriter) BuildContexts {
	if s.cfg.BuildContexts == nil {
		s.errorf(w, http.StatusServiceUnavailable, "", "this orchestrator keeps no build contexts")
		return nil
	}
	return s.cfg.BuildContexts
}

// limitFlag records whether a MaxBytesReader stopped a body.
type limitFlag struct {
	r   io.Reader
	hit bool
}

func (l *limitFlag) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		l.hit = true
	}
	return n, err
}

// uploadContext is POST /api/build-contexts: a tar or tar.gz stream, or
// JSON {"files": {...}}, validated while it streams in.
func (s *server) uploadContext(w http.ResponseWriter, r *http.Request) {
	cs := s.contexts(w)
	if cs == nil {
		return
	}
	limit := s.cfg.MaxContextBytes
	if r.ContentLength > limit {
		s.writeError(w, r, job.Errorf(job.CodeTooLarge, "build context upload is over the limit of %d bytes", limit))
		return
	}
	owner, err := scopeNamespace(principal(r), r.URL.Query().Get("namespace"), "namespace")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if owner == "" {
		owner = job.DefaultNamespace
	} else if !job.ValidNamespace(owner) {
		s.writeError(w, r, job.Invalid("namespace", "must be 1-63 lowercase letters, digits or inner dashes"))
		return
	}
	form := contextstore.FormTar
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		form = contextstore.FormJSON
	case "application/x-tar", "application/tar", "application/gzip", "application/x-gzip", "application/octet-stream", "":
	default:
		s.errorf(w, http.StatusUnsupportedMediaType, "", fmt.Sprintf("Content-Type %q: send application/x-tar, application/gzip or application/json", ct))
		return
	}
	body := &limitFlag{r: http.MaxBytesReader(w, r.Body, limit)}
	br := bufio.NewReader(body)
	if ct == "" || ct == "application/octet-stream" {
		// No type said: a JSON object starts with '{', anything else is
		// read as tar (gzip is recognized by its magic bytes).
		if b, _ := br.Peek(1); len(b) == 1 && b[0] == '{' {
			form = contextstore.FormJSON
		}
	}
	rec, err := cs.Put(r.Context(), br, form)
	if body.hit {
		s.writeError(w, r, job.Errorf(job.CodeTooLarge, "build context upload is over the limit of %d bytes", limit))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.checkContextQuota(r.Context(), owner, rec); err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.cfg.ContextOwners != nil {
		if err := s.cfg.ContextOwners.AddBuildContextOwner(r.Context(), rec.ID, owner); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "build context stored",
		slog.String("build_context_id", rec.ID), slog.String("namespace", owner),
		slog.Int("files", rec.Files), slog.Int64("bytes", rec.Bytes))
	w.Header().Set("Location", "/api/build-contexts/"+rec.ID)
	writeJSON(w, http.StatusCreated, newBuildContextView(rec))
}

// getContext is GET /api/build-contexts/{id}: the record, not the content.
func (s *server) getContext(w http.ResponseWriter, r *http.Request) {
	cs := s.contexts(w)
	if cs == nil {
		return
	}
	if err := s.checkContextOwner(r.Context(), principal(r), r.PathValue("id")); err != nil {
		s.writeContextError(w, r, err)
		return
	}
	rc, rec, err := cs.Open(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeContextError(w, r, err)
		return
	}
	rc.Close()
	writeJSON(w, http.StatusOK, newBuildContextView(rec))
}

// fetchContext is GET /api/build-contexts/{id}/archive: the normalized
// tar, only for a worker that holds the lease of a running job that
// builds from this context.
func (s *server) fetchContext(w http.ResponseWriter, r *http.Request) {
	cs := s.contexts(w)
	if cs == nil {
		return
	}
	id := r.PathValue("id")
	lc, ok := s.svc.(LeaseChecker)
	if !ok {
		s.errorf(w, http.StatusServiceUnavailable, "", "this orchestrator does not serve build contexts to workers")
		return
	}
	j, held := lc.HeldJob(r.Header.Get(HeaderJob), r.Header.Get(HeaderLease))
	if !held {
		s.errorf(w, http.StatusUnauthorized, "", "present the "+HeaderJob+" and "+HeaderLease+" of a running job you hold")
		return
	}
	if !j.IsBuild() || j.Spec.Docker.Build.ContextID != id {
		s.errorf(w, http.StatusForbidden, "", "the job you hold does not build from this context")
		return
	}
	rc, rec, err := cs.Open(r.Context(), id)
	if err != nil {
		s.writeContextError(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Length", fmt.Sprint(rec.TarBytes))
	w.Header().Set("X-Zerverless-Sha256", rec.ID)
	if _, err := io.Copy(w, rc); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "build context fetch ended early",
			slog.String("job_id", j.ID), slog.Any("err", err))
	}
}

// checkContextOwner returns not_found when p may not use the build
// context with id: a namespace token uses only contexts that its
// namespace uploaded. An empty id is no context and always passes.
func (s *server) checkContextOwner(ctx context.Context, p job.Principal, id string) error {
	if id == "" || p.Admin() || s.cfg.ContextOwners == nil {
		return nil
	}
	owned, err := s.cfg.ContextOwners.BuildContextOwned(ctx, id, p.Namespace)
	if err != nil {
		return err
	}
	if !owned {
		return &job.Error{Code: job.CodeNotFound, Field: "build_context_id",
			Message: fmt.Sprintf("build context %s not found (unknown, or expired after going unused)", id)}
	}
	return nil
}

func (s *server) writeContextError(w http.ResponseWriter, r *http.Request, err error) {
	if job.ErrorCode(err) == job.CodeNotFound {
		s.errorf(w, http.StatusNotFound, "", fmt.Sprintf("build context %q not found (unknown, or expired after going unused)", r.PathValue("id")))
		return
	}
	s.writeError(w, r, err)
}

// checkBuild validates a build request before it is submitted: the
// context (inline: every limit; uploaded: it exists) and the Dockerfile,
// parsed with BuildKit's parser. It fills req.BaseImages. A dockerfile
// without whitespace names a file of the context.
func (s *server) checkBuild(ctx context.Context, req *job.Request) error {
	if req.Type != job.TypeDocker || req.Dockerfile == "" {
		return nil
	}
	ns := req.Namespace
	if ns == "" {
		ns = job.DefaultNamespace
	}
	if len(req.BuildContext) > 0 {
		if _, err := buildctx.FromFiles(req.BuildContext, req.BuildContextEncoding, s.cfg.ContextLimits, io.Discard); err != nil {
			return err
		}
	}
	if req.BuildContextID != "" {
		cs := s.cfg.BuildContexts
		if cs == nil {
			return job.Invalid("build_context_id", "this orchestrator keeps no build contexts")
		}
		if err := cs.Touch(ctx, req.BuildContextID); err != nil {
			if job.ErrorCode(err) == job.CodeNotFound {
				return job.Invalid("build_context_id", "build context %s not found (unknown, or expired after going unused)", req.BuildContextID)
			}
			return err
		}
	}
	if !strings.ContainsAny(req.Dockerfile, " \t\r\n") {
		content, err := s.dockerfileFromContext(ctx, req)
		if err != nil {
			return err
		}
		req.Dockerfile = content
	}
	df, err := buildctx.CheckDockerfile(req.Dockerfile, buildctx.Policy{
		Namespace: ns, BuildArgs: req.BuildArgs, MaxInstructions: s.cfg.MaxDockerfileInstructions,
		MaxBytes: s.cfg.RequestLimits.MaxCodeBytes,
	})
	if err != nil {
		return err
	}
	req.BaseImages = df.BaseImages
	return nil
}

// dockerfileFromContext reads the Dockerfile that req.Dockerfile names
// from its context.
func (s *server) dockerfileFromContext(ctx context.Context, req *job.Request) (string, error) {
	name, err := buildctx.CleanPath(req.Dockerfile)
	if err != nil || name == "." {
		return "", job.Invalid("dockerfile", "is neither a Dockerfile nor the path of one in the context")
	}
	max := int64(s.cfg.RequestLimits.MaxCodeBytes)
	if f, ok := req.BuildContext[name]; ok {
		b, err := f.Bytes(req.BuildContextEncoding)
		if err != nil {
			return "", job.Invalid("build_context", "%q: %v", name, err)
		}
		return string(b), nil
	}
	if req.BuildContextID != "" && s.cfg.BuildContexts != nil {
		rc, _, err := s.cfg.BuildContexts.Open(ctx, req.BuildContextID)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, ok, err := buildctx.ReadFile(rc, name, max)
		if err != nil {
			return "", job.Invalid("dockerfile", "%v", err)
		}
		if ok {
			return string(b), nil
		}
	}
	return "", job.Invalid("dockerfile", "%q is not a Dockerfile, and the context has no file of that name", req.Dockerfile)
}

// checkContextQuota refuses a context that would take namespace ns over
// its quota of stored build contexts. A context ns already owns costs
// nothing more. A refused context is stored but owned by nobody, and
// expires unused.
func (s *server) checkContextQuota(ctx context.Context, ns string, rec *store.BuildContext) error {
	owners := s.cfg.ContextOwners
	if s.cfg.Quotas == nil || owners == nil {
		return nil
	}
	limit := int64(s.cfg.Quotas.Quotas(ctx, ns).BuildContextMB) << 20
	if limit <= 0 {
		return nil
	}
	if owned, err := owners.BuildContextOwned(ctx, rec.ID, ns); err != nil || owned {
		return err
	}
	used, err := owners.BuildContextBytes(ctx, ns)
	if err != nil {
		return err
	}
	if used+rec.TarBytes > limit {
		return job.Errorf(job.CodeTooMany, "namespace %s stores %d bytes of build contexts; this one (%d bytes) would pass its quota of %d MiB", ns, used, rec.TarBytes, limit>>20)
	}
	return nil
}
