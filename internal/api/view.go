package api

import (
	"encoding/json"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// View is a job as the API shows it: one flat JSON object. It is the
// public contract of GET /api/jobs/{id}, POST /api/jobs and DELETE
// /api/jobs/{id}; clients decode it as is. GET /api/jobs lists Summary
// items instead.
//
// The job's code, module and input are not echoed back unless asked for
// with ?include=spec, which adds Spec.
type View struct {
	ID          string     `json:"id"`
	Namespace   string     `json:"namespace"`
	Type        job.Type   `json:"job_type"`
	Status      job.Status `json:"status"`
	Attempt     int        `json:"attempt"`
	MaxAttempts int        `json:"max_attempts"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   time.Time  `json:"started_at,omitzero"`
	FinishedAt  time.Time  `json:"finished_at,omitzero"`
	// WorkerID is the worker that holds (or last held) the job.
	WorkerID string `json:"worker_id,omitempty"`
	// Reason says why a pending job waits, or why a job ended without a
	// result from a runtime.
	Reason string `json:"reason,omitempty"`
	// TimeoutSeconds is the run timeout the job was given.
	TimeoutSeconds float64 `json:"timeout_seconds"`
	// Replicas and Quorum are set for a job run on several workers whose
	// answers must agree.
	Replicas int `json:"replicas,omitempty"`
	Quorum   int `json:"quorum,omitempty"`

	// ResultView's fields appear at the top level once the job has a
	// result, and are absent before.
	*ResultView

	// Spec is what the client asked to run; only with ?include=spec.
	Spec *job.Spec `json:"spec,omitempty"`
}

// ResultView is what a run produced, flattened into View.
type ResultView struct {
	// Output is the job's stdout.
	Output string `json:"output"`
	Stderr string `json:"stderr"`
	// Result is the value the job returned, as JSON.
	Result json.RawMessage `json:"result,omitempty"`
	// Error says why the run failed (an exception, a timeout, a refused
	// image); empty on success.
	Error      string `json:"error,omitempty"`
	ExitCode   int    `json:"exit_code"`
	DurationMS int64  `json:"duration_ms"`
	// Truncated is set when a limit cut stdout, stderr or output files.
	Truncated       bool  `json:"truncated"`
	OOMKilled       bool  `json:"oom_killed"`
	PeakMemoryBytes int64 `json:"peak_memory_bytes,omitempty"`
	CPUTimeMS       int64 `json:"cpu_time_ms,omitempty"`
	// WarmStart is set when a docker job ran in a prewarmed container.
	WarmStart bool `json:"warm_start,omitempty"`
	// Files are the files a container wrote under /output, by path
	// relative to it (base64 in JSON).
	Files map[string][]byte `json:"files,omitempty"`
	// Build reports a build job's image: its tag and id, whether the
	// build was a cache hit, its log.
	Build *job.BuildResult `json:"build,omitempty"`
	// Egress lists each destination the job's container reached through
	// its worker's egress proxy, with the bytes each way.
	Egress []job.EgressRecord `json:"egress,omitempty"`
	// Replicas are the answers of a replicated job's runs.
	ReplicaAnswers []job.ReplicaAnswer `json:"replica_answers,omitempty"`
}

// NewView returns the view of j. With spec set, the view carries the job's
// spec.
func NewView(j *job.Job, spec bool) View {
	v := View{
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
		Reason:         j.Reason,
		TimeoutSeconds: j.Spec.TimeoutSeconds,
		Replicas:       j.Spec.Replicas,
		Quorum:         j.Spec.Quorum,
	}
	if r := j.Result; r != nil {
		v.ResultView = &ResultView{
			Output:          r.Output,
			Stderr:          r.Stderr,
			Result:          r.Result,
			Error:           r.Error,
			ExitCode:        r.ExitCode,
			DurationMS:      r.DurationMS,
			Truncated:       r.Truncated,
			OOMKilled:       r.OOMKilled,
			PeakMemoryBytes: r.PeakMemoryBytes,
			CPUTimeMS:       r.CPUTimeMS,
			WarmStart:       r.WarmStart,
			Files:           r.Files,
			Build:           r.Build,
			Egress:          r.Egress,
			ReplicaAnswers:  r.Replicas,
		}
	}
	if spec {
		s := j.Spec
		v.Spec = &s
	}
	return v
}

// Summary is an item of GET /api/jobs: one flat JSON object with the job's
// state and, once it has a result, the result's exit code, duration,
// error (cut to job.SummaryTextBytes) and the sizes of its output, stderr,
// returned value and files (output_bytes, stderr_bytes, result_bytes,
// files, files_bytes) — never their content, which GET /api/jobs/{id}
// shows. Its size is bounded whatever the job's result, so a page of jobs
// costs little to build, send and decode.
type Summary struct {
	ID          string     `json:"id"`
	Namespace   string     `json:"namespace"`
	Type        job.Type   `json:"job_type"`
	Status      job.Status `json:"status"`
	Attempt     int        `json:"attempt"`
	MaxAttempts int        `json:"max_attempts"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   time.Time  `json:"started_at,omitzero"`
	FinishedAt  time.Time  `json:"finished_at,omitzero"`
	WorkerID    string     `json:"worker_id,omitempty"`
	// Reason is cut to job.SummaryTextBytes.
	Reason         string  `json:"reason,omitempty"`
	TimeoutSeconds float64 `json:"timeout_seconds"`
	Replicas       int     `json:"replicas,omitempty"`
	Quorum         int     `json:"quorum,omitempty"`

	// ResultSummary's fields appear at the top level once the job has a
	// result, and are absent before.
	*job.ResultSummary
}

// NewSummary returns the list item of s.
func NewSummary(s *job.Summary) Summary {
	return Summary{
		ID:             s.ID,
		Namespace:      s.Namespace,
		Type:           s.Type,
		Status:         s.Status,
		Attempt:        s.Attempt,
		MaxAttempts:    s.MaxAttempts,
		CreatedAt:      s.CreatedAt,
		StartedAt:      s.StartedAt,
		FinishedAt:     s.FinishedAt,
		WorkerID:       s.WorkerID,
		Reason:         s.Reason,
		TimeoutSeconds: s.TimeoutSeconds,
		Replicas:       s.Replicas,
		Quorum:         s.Quorum,
		ResultSummary:  s.Result,
	}
}

// JobList is the body of GET /api/jobs.
type JobList struct {
	Jobs []Summary `json:"jobs"`
	// NextCursor, when not empty, fetches the next page with ?cursor=.
	NextCursor string `json:"next_cursor"`
}

// PoolList is the body of GET /api/pools: the dispatch pools, the
// largest first.
type PoolList struct {
	Pools []job.PoolInfo `json:"pools"`
}

// WorkerList is the body of GET /api/workers.
type WorkerList struct {
	Workers []job.WorkerInfo `json:"workers"`
	// NextCursor, when not empty, fetches the next page with ?cursor=.
	NextCursor string `json:"next_cursor,omitempty"`
}

// Info is the body of GET /info.
type Info struct {
	Version         string    `json:"version"`
	GoVersion       string    `json:"go_version"`
	ProtocolVersion int       `json:"protocol_version"`
	StartedAt       time.Time `json:"started_at"`
	UptimeSeconds   float64   `json:"uptime_seconds"`
}

// Health is the body of GET /health.
type Health struct {
	Status string `json:"status"`
}
