package job

// PoolInfo describes one dispatch pool: the connected workers that share
// capabilities (leaving aside concurrency, version, build cache and
// prewarmed containers) and trust, which accept and refuse every job
// alike (GET /api/pools).
type PoolInfo struct {
	// ID names the pool while its signature has members; it changes
	// when they all leave and others join, and when the orchestrator
	// restarts (it is keyed by a secret of the process, so that it
	// confirms no guess of what the signature holds and a namespace
	// token is not shown).
	ID string `json:"id"`
	// Capabilities are the pool's shared capabilities (concurrency 0).
	Capabilities Capabilities `json:"capabilities"`
	Trusted      bool         `json:"trusted"`
	// Workers counts its members; Ready those with a free slot that may
	// get work now; Banned those whose identity is banned.
	Workers int `json:"workers"`
	Ready   int `json:"ready"`
	Banned  int `json:"banned,omitempty"`
	// Slots is the members' concurrency together; Running the jobs they
	// run now.
	Slots   int `json:"slots"`
	Running int `json:"running"`
	// Pending counts the queued jobs the pool's workers accept (of the
	// caller's namespace, for a namespace token). PendingCounted is
	// false when the count was cut short (PoolsConfig's bound on the
	// queue lanes looked at): Pending is then a lower bound.
	Pending        int  `json:"pending"`
	PendingCounted bool `json:"pending_counted"`
	// WorkerIDs are the ids of its first members, sorted (at most
	// MaxPoolWorkerIDs).
	WorkerIDs []string `json:"worker_ids"`
}

// MaxPoolWorkerIDs bounds PoolInfo.WorkerIDs.
const MaxPoolWorkerIDs = 50
