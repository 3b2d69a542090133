package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/zerverless/zerverless/internal/job"
)

// LogPage is the answer of GET /api/jobs/{id}/logs: the events of the
// job's log after ?after= (or Last-Event-ID), oldest first; Next is the
// Seq to pass as ?after= for the events that follow, and Ended says that
// the job has ended (once ended, a page with fewer than the limit is the
// log's end).
type LogPage struct {
	JobID  string         `json:"job_id"`
	Events []job.LogEvent `json:"events"`
	Next   uint64         `json:"next"`
	Ended  bool           `json:"ended"`
}

// Log pages hold at most maxLogPage events (default defaultLogPage).
const (
	defaultLogPage = 1000
	maxLogPage     = 5000
)

// jobLogs is GET /api/jobs/{id}/logs[?follow=true][&after=SEQ][&limit=N].
// Without follow it answers a LogPage. With follow=true it streams the
// log as Server-Sent Events — "event: stdout|stderr|status", "id: SEQ",
// "data: " the job.LogEvent as JSON — until the job's final status event,
// and then ends; a job that already ended gets its stored log, then its
// end. A Last-Event-ID header (an EventSource reconnecting) or ?after=
// resumes after that event. The job view's tenancy applies: another
// namespace's job is 404.
func (s *server) jobLogs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q := r.URL.Query()
	follow, err := parseBool("follow", q.Get("follow"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	after, err := parseAfter(q.Get("after"), r.Header.Get("Last-Event-ID"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	limit := defaultLogPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLogPage {
			s.writeError(w, r, job.Invalid("limit", "limit must be a whole number from 1 to %d", maxLogPage))
			return
		}
		limit = n
	}
	if !follow {
		evs, ended, err := s.adm.JobLog(r.Context(), id, after, limit)
		if err != nil {
			s.writeJobError(w, r, id, err)
			return
		}
		page := LogPage{JobID: id, Events: evs, Next: after, Ended: ended}
		if page.Events == nil {
			page.Events = []job.LogEvent{}
		}
		if n := len(evs); n > 0 {
			page.Next = evs[n-1].Seq
		}
		writeJSON(w, http.StatusOK, page)
		return
	}
	s.followLogs(w, r, id, after)
}

// followLogs streams job id's log after seq after as Server-Sent Events.
// Errors found before the first byte (not found, too many followers) are
// answered as JSON errors; later ones end the stream.
func (s *server) followLogs(w http.ResponseWriter, r *http.Request, id string, after uint64) {
	st := newSSE(w, r)
	// The stream opens once the follower is admitted, before the job
	// writes anything; a refusal is a JSON error.
	err := s.adm.FollowJobLog(r.Context(), id, after, func(ev job.LogEvent) error {
		if ev.Seq == 0 { // admitted: the stream is open
			return st.open()
		}
		return st.event(ev.Seq, string(ev.Stream), ev)
	})
	refuse := func(err error) { s.writeJobError(w, r, id, err) }
	if st.end(err, refuse) && r.Context().Err() == nil {
		s.log.Warn("job log stream ended early", "job_id", id, "err", err)
	}
}

// parseBool reads a boolean query parameter; empty is false.
func parseBool(field, v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, job.Invalid(field, "%s must be true or false", field)
	}
	return b, nil
}

// parseAfter reads ?after= or, without it, a Last-Event-ID header: the
// Seq of the last event the client has.
func parseAfter(q, header string) (uint64, error) {
	v, field := q, "after"
	if v == "" {
		v, field = strings.TrimSpace(header), "Last-Event-ID"
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, job.Invalid(field, "%s must be the sequence number of an event (a whole number)", field)
	}
	return n, nil
}
