package api

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	"github.com/zerverless/zerverless/internal/contextstore"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

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

func (s *server) buildRoutes() {
	s.handleStreaming("POST /api/build-contexts", s.uploadContext, "namespace")
	s.handle("GET /api/build-contexts/{id}", s.getContext)
	// Workers fetch with the job and lease they hold, not a token.
	s.handleOpen("GET /api/build-contexts/{id}/archive", http.HandlerFunc(s.fetchContext))
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

// uploadContext is POST /api/build-contexts[?namespace=NS]: a tar or
// tar.gz stream, or JSON {"files": {...}}, validated while it streams in
// and stored only when admission accepts it.
func (s *server) uploadContext(w http.ResponseWriter, r *http.Request) {
	limit := s.cfg.MaxContextBytes
	if r.ContentLength > limit {
		s.writeError(w, r, job.Errorf(job.CodeTooLarge, "build context upload is over the limit of %d bytes", limit))
		return
	}
	ns, err := s.adm.Scope(r.Context(), r.URL.Query().Get("namespace"), "namespace")
	if err != nil {
		s.writeError(w, r, err)
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
	rec, err := s.adm.UploadContext(r.Context(), ns, br, form)
	if body.hit {
		s.writeError(w, r, job.Errorf(job.CodeTooLarge, "build context upload is over the limit of %d bytes", limit))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "build context stored",
		slog.String("build_context_id", rec.ID), slog.String("namespace", cmp.Or(ns, job.DefaultNamespace)),
		slog.Int("files", rec.Files), slog.Int64("bytes", rec.Bytes))
	w.Header().Set("Location", "/api/build-contexts/"+rec.ID)
	writeJSON(w, http.StatusCreated, newBuildContextView(rec))
}

// getContext is GET /api/build-contexts/{id}: the record, not the content.
func (s *server) getContext(w http.ResponseWriter, r *http.Request) {
	rec, err := s.adm.Context(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeContextError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newBuildContextView(rec))
}

// fetchContext is GET /api/build-contexts/{id}/archive: the normalized
// tar, only for a worker that holds the lease of a running job that
// builds from this context.
func (s *server) fetchContext(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rc, rec, j, err := s.adm.ContextArchive(r.Context(), r.Header.Get(HeaderJob), r.Header.Get(HeaderLease), id)
	switch job.ErrorCode(err) {
	case "":
	case job.CodeUnauthorized:
		s.errorf(w, http.StatusUnauthorized, "", "present the "+HeaderJob+" and "+HeaderLease+" of a running job you hold")
		return
	default:
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

func (s *server) writeContextError(w http.ResponseWriter, r *http.Request, err error) {
	if job.ErrorCode(err) == job.CodeNotFound {
		s.errorf(w, http.StatusNotFound, "", fmt.Sprintf("build context %q not found (unknown, or expired after going unused)", r.PathValue("id")))
		return
	}
	s.writeError(w, r, err)
}
