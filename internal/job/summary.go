package job

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// SummaryTextBytes caps the reason and error a Summary carries: a worker
// may send an error of any length, and a list must stay small.
const SummaryTextBytes = 1024

// Summary is a job as lists show it: its state, and the sizes of its large
// fields instead of their content. Its size is bounded whatever the job's
// result: a list of many jobs costs the memory of their summaries only.
type Summary struct {
	ID          string    `json:"id"`
	Namespace   string    `json:"namespace"`
	Type        Type      `json:"job_type"`
	Status      Status    `json:"status"`
	Attempt     int       `json:"attempt"`
	MaxAttempts int       `json:"max_attempts"`
	CreatedAt   time.Time `json:"created_at"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	WorkerID    string    `json:"worker_id,omitempty"`
	// Reason is the job's Reason, cut to SummaryTextBytes.
	Reason         string  `json:"reason,omitempty"`
	TimeoutSeconds float64 `json:"timeout_seconds"`
	Replicas       int     `json:"replicas,omitempty"`
	Quorum         int     `json:"quorum,omitempty"`
	// Result is set once the job has a result.
	Result *ResultSummary `json:"result,omitempty"`
}

// ResultSummary is a Result without its output, returned value, files and
// build log, whose sizes it gives instead.
type ResultSummary struct {
	// Error is the result's Error, cut to SummaryTextBytes.
	Error           string `json:"error,omitempty"`
	ExitCode        int    `json:"exit_code"`
	DurationMS      int64  `json:"duration_ms"`
	Truncated       bool   `json:"truncated"`
	OOMKilled       bool   `json:"oom_killed"`
	PeakMemoryBytes int64  `json:"peak_memory_bytes,omitempty"`
	CPUTimeMS       int64  `json:"cpu_time_ms,omitempty"`
	// OutputBytes, StderrBytes and ResultBytes are the sizes of the
	// result's Output, Stderr and Result.
	OutputBytes int64 `json:"output_bytes"`
	StderrBytes int64 `json:"stderr_bytes"`
	ResultBytes int64 `json:"result_bytes"`
	// Files is how many files the result holds, FilesBytes their size.
	Files      int   `json:"files,omitempty"`
	FilesBytes int64 `json:"files_bytes,omitempty"`
}

// Summary returns j's summary.
func (j *Job) Summary() *Summary {
	s := &Summary{
		ID:             j.ID,
		Namespace:      j.Namespace,
		Type:           j.Type,
		Status:         j.Status,
		Attempt:        j.Attempt,
		MaxAttempts:    j.MaxAttempts,
		CreatedAt:      j.CreatedAt,
		StartedAt:      j.StartedAt,
		FinishedAt:     j.FinishedAt,
		WorkerID:       j.WorkerID,
		Reason:         CutText(j.Reason, SummaryTextBytes),
		TimeoutSeconds: j.Spec.TimeoutSeconds,
		Replicas:       j.Spec.Replicas,
		Quorum:         j.Spec.Quorum,
	}
	if j.Result != nil {
		s.Result = j.Result.Summary()
	}
	return s
}

// Summary returns r's summary.
func (r *Result) Summary() *ResultSummary {
	s := &ResultSummary{
		Error:           CutText(r.Error, SummaryTextBytes),
		ExitCode:        r.ExitCode,
		DurationMS:      r.DurationMS,
		Truncated:       r.Truncated,
		OOMKilled:       r.OOMKilled,
		PeakMemoryBytes: r.PeakMemoryBytes,
		CPUTimeMS:       r.CPUTimeMS,
		OutputBytes:     int64(len(r.Output)),
		StderrBytes:     int64(len(r.Stderr)),
		ResultBytes:     int64(len(r.Result)),
		Files:           len(r.Files),
	}
	for _, b := range r.Files {
		s.FilesBytes += int64(len(b))
	}
	return s
}

// CutText returns s cut to at most n bytes on a character boundary, with
// "…" at the end when it was cut.
func CutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut := max(n-len(ellipsis), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// ExpiredError says that a job existed and was removed when its retention
// period ended. It is a not_found error (errors.Is(err, ErrNotFound)).
type ExpiredError struct {
	ID        string
	Namespace string
	// ExpiredAt is when the job was removed.
	ExpiredAt time.Time
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("job %s expired: it ended more than the retention period ago and was removed at %s",
		e.ID, e.ExpiredAt.UTC().Format(time.RFC3339))
}

// Unwrap makes an ExpiredError a not_found error.
func (e *ExpiredError) Unwrap() error { return ErrNotFound }
