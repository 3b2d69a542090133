package api

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// maxCursorBytes bounds ?cursor=; cursors the store hands out are short.
const maxCursorBytes = 1024

// submitJob is POST /api/jobs[?wait=DURATION]: decode, validate, submit
// through admission, answer 201 with the job. Nothing is submitted unless
// the request is valid (wait included). With a wait, the job is submitted
// exactly as without one, and then the answer waits up to wait (capped at
// MaxWait, as GET's) for it to end: it carries the job as it is then,
// ended or not. The job was accepted before the wait begins: a caller
// that goes away stops only the wait, and a wait that fails still
// answers 201 with the job as submitted, so that nobody submits it twice.
func (s *server) submitJob(w http.ResponseWriter, r *http.Request) {
	var wait time.Duration
	if r.URL.RawQuery != "" {
		var err error
		if wait, err = parseWait(r.URL.Query().Get("wait"), s.cfg.MaxWait); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	j, ok := s.submit(w, r, wait > 0)
	if !ok {
		return
	}
	if wait > 0 {
		// The caller sees the job it just submitted: Wait blocks for it,
		// and stores it if it is returned unfinished.
		ended, err := s.adm.Wait(r.Context(), j.ID, wait)
		switch {
		case err == nil:
			j = ended
		case job.ErrorCode(err) == job.CodeUnavailable:
			// Not stored, so not accepted: no id is handed out.
			s.writeError(w, r, err)
			return
		case r.Context().Err() == nil:
			s.log.Warn("wait for a submitted job", "job_id", j.ID, "namespace", j.Namespace, "error", err)
		}
	}
	w.Header().Set("Location", "/api/jobs/"+j.ID)
	writeJSON(w, http.StatusCreated, NewView(j, false))
}

// submit reads, decodes and submits the job of r, its body counted
// against MaxBodiesInFlight until then. When it returns false it has
// answered the error.
func (s *server) submit(w http.ResponseWriter, r *http.Request, waited bool) (*job.Job, bool) {
	n, ok := s.reserveBody(w, r)
	if !ok {
		return nil, false
	}
	defer s.bodies.Add(-n)
	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return nil, false
	}
	req, err := job.DecodeRequest(body, s.cfg.RequestLimits)
	if err != nil {
		s.writeError(w, r, err)
		return nil, false
	}
	req.Waited = waited
	j, err := s.adm.Submit(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return nil, false
	}
	return j, true
}

// readBody reads the whole body, at most cfg.MaxBodyBytes of it. A larger
// body is a too_large error; a body that cannot be read is invalid.
func (s *server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := s.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	size := 512
	if r.ContentLength > 0 {
		size = int(r.ContentLength) + 1
	}
	buf := make([]byte, 0, size)
	rd := http.MaxBytesReader(w, r.Body, limit)
	for {
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, tooLarge(limit)
			}
			return nil, job.Invalid("", "read request body: %v", err)
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
}

func tooLarge(limit int64) error {
	return job.Errorf(job.CodeTooLarge, "request body is over the limit of %d bytes", limit)
}

// getJob is GET /api/jobs/{id}[?wait=DURATION][&include=spec].
func (s *server) getJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q := r.URL.Query()
	spec, err := parseInclude(q.Get("include"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	wait, err := parseWait(q.Get("wait"), s.cfg.MaxWait)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var j *job.Job
	if wait > 0 {
		j, err = s.adm.Wait(r.Context(), id, wait)
	} else {
		j, err = s.adm.Job(r.Context(), id)
	}
	if err != nil {
		s.writeJobError(w, r, id, err)
		return
	}
	writeJSON(w, http.StatusOK, NewView(j, spec))
}

// cancelJob is DELETE /api/jobs/{id}. A job that has already ended is a
// 409 naming its status.
func (s *server) cancelJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	j, err := s.adm.Cancel(r.Context(), id)
	if err != nil {
		if job.ErrorCode(err) == job.CodeConflict && j != nil {
			s.writeErrorBody(w, http.StatusConflict, ErrorBody{
				Error:     fmt.Sprintf("job %s has already ended: %s", j.ID, j.Status),
				JobStatus: j.Status,
			})
			return
		}
		s.writeJobError(w, r, id, err)
		return
	}
	writeJSON(w, http.StatusOK, NewView(j, false))
}

// writeJobError answers an error about the job with id, naming it when it
// does not exist and saying so when it expired.
func (s *server) writeJobError(w http.ResponseWriter, r *http.Request, id string, err error) {
	var expired *job.ExpiredError
	if errors.As(err, &expired) {
		s.errorf(w, http.StatusNotFound, "", expired.Error())
		return
	}
	if job.ErrorCode(err) == job.CodeNotFound {
		s.errorf(w, http.StatusNotFound, "", fmt.Sprintf("job %q not found", id))
		return
	}
	s.writeError(w, r, err)
}

// listJobs is GET /api/jobs?status=&namespace=&limit=&cursor=, newest
// first: the summaries of the jobs, never their specs or results.
func (s *server) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilter(q.Get("status"), q.Get("namespace"), q.Get("limit"), q.Get("cursor"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	jobs, next, err := s.adm.Jobs(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	list := JobList{Jobs: make([]Summary, len(jobs)), NextCursor: next}
	for i, j := range jobs {
		list.Jobs[i] = NewSummary(j)
	}
	writeJSON(w, http.StatusOK, list)
}

// parseFilter validates the list parameters; each error names its field.
func parseFilter(status, namespace, limit, cursor string) (store.JobFilter, error) {
	var f store.JobFilter
	if status != "" {
		st := job.Status(status)
		if !st.Known() {
			return f, job.Invalid("status", "unknown status %q (one of pending, running, completed, failed, timeout, canceled)", status)
		}
		f.Status = st
	}
	if namespace != "" {
		if !job.ValidNamespace(namespace) {
			return f, job.Invalid("namespace", "must be 1-63 lowercase letters, digits or inner dashes")
		}
		f.Namespace = namespace
	}
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n < 1 || n > store.MaxListLimit {
			return f, job.Invalid("limit", "must be an integer from 1 to %d", store.MaxListLimit)
		}
		f.Limit = n
	}
	if len(cursor) > maxCursorBytes {
		return f, job.Invalid("cursor", "is not a cursor from a previous page")
	}
	f.Cursor = cursor
	return f, nil
}

// parseWait reads ?wait= (of GET /api/jobs/{id} and POST /api/jobs) as
// a Go duration ("30s", "1m") or a number of seconds ("30", "2.5"),
// capped at max. Empty means no wait.
func parseWait(v string, max time.Duration) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	var d time.Duration
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(secs) || math.IsInf(secs, 0) || secs < 0 {
			return 0, job.Invalid("wait", "must be a duration such as 30s or a number of seconds")
		}
		if secs > max.Seconds() {
			return max, nil
		}
		d = time.Duration(secs * float64(time.Second))
	} else {
		d, err = time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, job.Invalid("wait", "must be a duration such as 30s or a number of seconds")
		}
	}
	return min(d, max), nil
}

// parseInclude reads ?include=; "spec" is the only extra it knows.
func parseInclude(v string) (spec bool, err error) {
	if v == "" {
		return false, nil
	}
	for part := range strings.SplitSeq(v, ",") {
		switch strings.TrimSpace(part) {
		case "spec":
			spec = true
		case "":
		default:
			return false, job.Invalid("include", "unknown value %q (only spec)", part)
		}
	}
	return spec, nil
}
