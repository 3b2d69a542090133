package job

import (
	"slices"
	"time"
)

// WorkerInfo describes a connected worker, as GET /api/workers shows it.
type WorkerInfo struct {
	ID           string       `json:"id"`
	Name         string       `json:"name,omitempty"`
	Remote       string       `json:"remote,omitempty"`
	Capabilities Capabilities `json:"capabilities"`
	// Trusted is set for a worker that joined with a join token (or is
	// embedded in the orchestrator); only trusted workers run containers.
	Trusted bool `json:"trusted"`
	// Owner names the join token the worker presented.
	Owner string `json:"owner,omitempty"`
	// Banned is set when the worker's results lost quorum too often: it
	// is sent no more jobs.
	Banned      bool     `json:"banned,omitempty"`
	RunningJobs []string `json:"running_jobs"`
	// Running is how many jobs the worker runs now; RunningJobs lists
	// only those the caller may see.
	Running int `json:"running"`
	// JobNamespaces maps each running job to its namespace, for the API
	// to show a caller only its own jobs.
	JobNamespaces map[string]string `json:"-"`
	ConnectedAt   time.Time         `json:"connected_at"`
	LastHeartbeat time.Time         `json:"last_heartbeat"`
	// Notes say why a runtime is not offered (for example "docker: engine
	// did not answer"), as the worker reported them.
	Notes map[string]string `json:"notes,omitempty"`
}

// Stats is a snapshot of the platform, as GET /stats shows it.
type Stats struct {
	WorkersConnected int            `json:"workers_connected"`
	WorkersBusy      int            `json:"workers_busy"`
	SlotsTotal       int            `json:"slots_total"`
	SlotsBusy        int            `json:"slots_busy"`
	Jobs             map[Status]int `json:"jobs"`
	Queued           map[Type]int   `json:"queued"`
}

// WorkerFilter selects a page of connected workers, in order of id.
type WorkerFilter struct {
	// Runtime, when set, keeps the workers that run it.
	Runtime Type
	// Trusted, when set, keeps the trusted (true) or untrusted (false)
	// workers.
	Trusted *bool
	// Namespace, when set, keeps the workers that accept its jobs (those
	// that restrict none, or name it).
	Namespace string
	// Cursor continues a listing after the worker id it holds.
	Cursor string
	// Limit is the most workers in the page; 0 means DefaultWorkerListLimit.
	Limit int
}

// DefaultWorkerListLimit and MaxWorkerListLimit bound a page of workers.
const (
	DefaultWorkerListLimit = 1000
	MaxWorkerListLimit     = 1000
)

// Matches reports whether w is kept by f's runtime, trust and namespace.
func (f WorkerFilter) Matches(w *Capabilities, trusted bool) bool {
	if f.Runtime != "" && !w.Has(f.Runtime) {
		return false
	}
	if f.Trusted != nil && *f.Trusted != trusted {
		return false
	}
	if f.Namespace != "" && len(w.Namespaces) > 0 && !slices.Contains(w.Namespaces, f.Namespace) {
		return false
	}
	return true
}
