package api

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/zerverless/zerverless/internal/job"
)

// statusByCode is the one table from error code to HTTP status.
var statusByCode = map[job.Code]int{
	job.CodeInvalid:      http.StatusBadRequest,
	job.CodeUnauthorized: http.StatusUnauthorized,
	job.CodeForbidden:    http.StatusForbidden,
	job.CodeNotFound:     http.StatusNotFound,
	job.CodeConflict:     http.StatusConflict,
	job.CodeTooLarge:     http.StatusRequestEntityTooLarge,
	job.CodeTooMany:      http.StatusTooManyRequests,
	job.CodeUnavailable:  http.StatusServiceUnavailable,
	job.CodeBadGateway:   http.StatusBadGateway,
	job.CodeTimeout:      http.StatusGatewayTimeout,
	job.CodeInternal:     http.StatusInternalServerError,
}

// StatusCode returns the HTTP status for an error code; an unknown code is
// 500.
func StatusCode(code job.Code) int {
	if s, ok := statusByCode[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// CodeForStatus returns the error code that the API answers with status,
// the inverse of StatusCode. Statuses outside the table are internal when
// 5xx and invalid otherwise.
func CodeForStatus(status int) job.Code {
	for c, s := range statusByCode {
		if s == status {
			return c
		}
	}
	if status >= 500 {
		return job.CodeInternal
	}
	return job.CodeInvalid
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	// Field names the request field at fault, when there is one.
	Field string `json:"field,omitempty"`
	// JobStatus is the job's status when an operation conflicts with it
	// (canceling a job that has already ended).
	JobStatus job.Status `json:"job_status,omitempty"`
}

// internalMessage is what a client sees of an internal error; the details
// go to the log.
const internalMessage = "internal error"

// writeError answers err with the status of its code. An internal error is
// logged here, once, and answered with a generic message.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := job.ErrorCode(err)
	status := StatusCode(code)
	body := ErrorBody{Error: internalMessage}
	if code == job.CodeInternal && r.Context().Err() != nil {
		// The client went away (it stopped waiting, say): nobody reads
		// the answer and nothing failed on our side.
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "request canceled by the client",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
		s.errorf(w, http.StatusServiceUnavailable, "", "request canceled")
		return
	}
	if code == job.CodeInternal {
		s.log.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	} else {
		var e *job.Error
		if errors.As(err, &e) {
			body.Error, body.Field = e.Message, e.Field
		}
	}
	s.writeErrorBody(w, status, body)
}

func (s *server) writeErrorBody(w http.ResponseWriter, status int, body ErrorBody) {
	switch status {
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, body)
}

// errorf answers with a status and a message naming field.
func (s *server) errorf(w http.ResponseWriter, status int, field, msg string) {
	s.writeErrorBody(w, status, ErrorBody{Error: msg, Field: field})
}
