// Package job is the domain of Zerverless: jobs, their specs per runtime,
// their states and results, worker capabilities and error codes. It does no
// I/O and imports only the standard library.
package job

import (
	"encoding/json"
	"time"
)

// Type names a runtime. The orchestrator knows runtimes only by this name.
type Type string

const (
	TypeLua    Type = "lua"
	TypeJS     Type = "js"
	TypeWasm   Type = "wasm"
	TypePython Type = "python"
	TypeDocker Type = "docker"
)

// Types lists every job type the platform knows, in a stable order.
var Types = []Type{TypeLua, TypeJS, TypeWasm, TypePython, TypeDocker}

// Known reports whether t is a job type the platform knows.
func (t Type) Known() bool {
	for _, k := range Types {
		if t == k {
			return true
		}
	}
	return false
}

// Status is where a job is in its life.
//
//	pending → running → completed | failed | timeout | canceled
//
// A running job whose worker is lost goes back to pending with Attempt+1.
type Status string

const (
	StatusPending   Status = "pending"
	StatusRunning   Status = "running"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusTimeout   Status = "timeout"
	StatusCanceled  Status = "canceled"
)

// Statuses lists every status, in life order.
var Statuses = []Status{StatusPending, StatusRunning, StatusCompleted, StatusFailed, StatusTimeout, StatusCanceled}

// Known reports whether s is a status the platform knows.
func (s Status) Known() bool {
	for _, k := range Statuses {
		if s == k {
			return true
		}
	}
	return false
}

// Terminal reports whether a job in status s will never change again.
func (s Status) Terminal() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusTimeout, StatusCanceled:
		return true
	}
	return false
}

// Job is one unit of work submitted by a client.
type Job struct {
	ID          string    `json:"id"`
	Namespace   string    `json:"namespace"`
	Type        Type      `json:"job_type"`
	Status      Status    `json:"status"`
	Attempt     int       `json:"attempt"`
	MaxAttempts int       `json:"max_attempts"`
	Spec        Spec      `json:"spec"`
	CreatedAt   time.Time `json:"created_at"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	// WorkerID is the worker that holds (or last held) the job.
	WorkerID string `json:"worker_id,omitempty"`
	// LeaseID identifies the current assignment; a result that does not
	// carry it is rejected. Empty while pending.
	LeaseID string `json:"-"`
	// Reason says why a pending job is waiting, or why a job failed
	// without a result from a runtime (for example "no attempts left").
	Reason string  `json:"reason,omitempty"`
	Result *Result `json:"result,omitempty"`
}

// Spec is what a client asks to run. Its JSON field names are the API's.
// Only the fields of the job's Type are used; Validate refuses the rest.
type Spec struct {
	// Code is Lua, JavaScript or Python source.
	Code string `json:"code,omitempty"`
	// Wasm is a WebAssembly module (base64 in JSON).
	Wasm []byte `json:"wasm,omitempty"`
	// Args are passed to a Wasm module after its name.
	Args []string `json:"args,omitempty"`
	// Input is any JSON value given to the job.
	Input json.RawMessage `json:"input_data,omitempty"`
	// TimeoutSeconds bounds the run; zero means the default.
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
	// MemoryMB bounds the job's memory where the runtime can enforce it;
	// zero means the default.
	MemoryMB int `json:"memory_mb,omitempty"`

	Docker *DockerSpec `json:"docker,omitempty"`

	// Replicas is how many distinct workers run the job (0 or 1: one);
	// Quorum is how many of their answers must agree.
	Replicas int `json:"replicas,omitempty"`
	Quorum   int `json:"quorum,omitempty"`
}

// Replicated reports whether the job runs on several workers whose
// answers must agree.
func (s Spec) Replicated() bool { return s.Replicas > 1 }

// QuorumOrMajority returns Quorum, or a majority of Replicas when unset.
func (s Spec) QuorumOrMajority() int {
	if s.Quorum > 0 {
		return s.Quorum
	}
	return s.Replicas/2 + 1
}

// DockerSpec is the container part of a docker job.
type DockerSpec struct {
	Image   string            `json:"docker_image"`
	Command []string          `json:"docker_command,omitempty"`
	Env     map[string]string `json:"docker_env,omitempty"`
	// Volumes maps a scratch volume name to its mount path in the
	// container. Only worker-created named scratch volumes are allowed.
	Volumes   map[string]string `json:"docker_volumes,omitempty"`
	Resources Resources         `json:"resources,omitzero"`
	// Build, when set, builds Image from a Dockerfile before running it.
	Build *BuildSpec `json:"build,omitempty"`
	// Network is the egress the job's containers (and its build's RUN
	// steps) may have; nil: none.
	Network *Network `json:"network,omitempty"`
}

// Resources a container job asks for. Zero means the worker's default.
type Resources struct {
	MemoryMB int     `json:"memory_mb,omitempty"`
	CPUs     float64 `json:"cpus,omitempty"`
	Pids     int64   `json:"pids,omitempty"`
}

// Result is what a run produced. A job that ran and failed (non-zero exit,
// an exception, a timeout) has a Result; Status says how it ended.
type Result struct {
	Status   Status          `json:"status"`
	Output   string          `json:"output"`
	Stderr   string          `json:"stderr"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
	ExitCode int             `json:"exit_code"`
	// DurationMS is the run time on the worker, in milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// Truncated is set when a limit cut stdout, stderr or output files.
	Truncated bool `json:"truncated"`
	OOMKilled bool `json:"oom_killed,omitempty"`
	// PeakMemoryBytes and CPUTimeMS report resource use where known.
	PeakMemoryBytes int64 `json:"peak_memory_bytes,omitempty"`
	CPUTimeMS       int64 `json:"cpu_time_ms,omitempty"`
	// WarmStart is set when a docker job ran in a container prepared
	// ahead of it (the worker's pool) rather than one created for it.
	WarmStart bool `json:"warm_start,omitempty"`
	// Files are the files a container wrote under /output, by path
	// relative to /output (base64 in JSON).
	Files map[string][]byte `json:"files,omitempty"`
	// Build reports the image build of a build job.
	Build *BuildResult `json:"build,omitempty"`
	// Egress lists each destination the job's container reached through
	// the egress proxy, with the bytes each way.
	Egress []EgressRecord `json:"egress,omitempty"`
	// Attempt and WorkerID say which run produced the result.
	Attempt  int    `json:"attempt"`
	WorkerID string `json:"worker_id,omitempty"`
	// Replicas are the answers of a replicated job's runs, and whether
	// each agreed with the accepted one.
	Replicas []ReplicaAnswer `json:"replicas,omitempty"`
}

// ReplicaAnswer is one run of a replicated job.
type ReplicaAnswer struct {
	WorkerID string `json:"worker_id"`
	Owner    string `json:"owner,omitempty"`
	Status   Status `json:"status"`
	ExitCode int    `json:"exit_code"`
	// Hash is the SHA-256 of the answer's status, exit code, output and
	// returned value: the answers that agree have the same hash.
	Hash   string `json:"hash"`
	Agreed bool   `json:"agreed"`
}

// Task is one run of a job as a worker receives it.
type Task struct {
	JobID     string        `json:"job_id"`
	LeaseID   string        `json:"lease_id"`
	Attempt   int           `json:"attempt"`
	Namespace string        `json:"namespace"`
	Type      Type          `json:"job_type"`
	Spec      Spec          `json:"spec"`
	Timeout   time.Duration `json:"timeout_ns"`
	Limits    Limits        `json:"limits"`
}

// Limits bound one run. The worker fills zero fields from its defaults.
type Limits struct {
	// OutputBytes caps stdout and stderr, each.
	OutputBytes int `json:"output_bytes"`
	// MemoryBytes caps the guest's memory where the runtime can.
	MemoryBytes int64 `json:"memory_bytes"`
}
