package job

import "time"

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
