package job

// WorkerUsage is what a worker reports of itself, every few seconds, in
// the protocol's "metrics" message: a fixed set of numbers, so that a
// report's size does not depend on what the worker says. Gauges are the
// state now; counters (…Total) count since the worker started.
type WorkerUsage struct {
	// TasksRunning are the tasks the worker runs now.
	TasksRunning int `json:"tasks_running"`
	// ContainersRunning are the job containers its docker runtime runs.
	ContainersRunning int `json:"containers_running"`
	// ImagesCached and ImageCacheBytes are the images its docker runtime
	// pulled or built and keeps.
	ImagesCached    int   `json:"images_cached"`
	ImageCacheBytes int64 `json:"image_cache_bytes"`
	// WarmHolders are the warm container holders ready for the next job.
	WarmHolders int `json:"warm_holders"`
	// IdleProcesses are the Lua and JavaScript runtime processes waiting
	// for a task.
	IdleProcesses int `json:"idle_processes"`
	// TasksTotal are the tasks run; OutputBytesTotal the live output
	// bytes sent.
	TasksTotal       int64 `json:"tasks_total"`
	OutputBytesTotal int64 `json:"output_bytes_total"`
}

// Valid reports whether every field of u is at least 0.
func (u WorkerUsage) Valid() bool {
	return u.TasksRunning >= 0 && u.ContainersRunning >= 0 && u.ImagesCached >= 0 && u.ImageCacheBytes >= 0 &&
		u.WarmHolders >= 0 && u.IdleProcesses >= 0 && u.TasksTotal >= 0 && u.OutputBytesTotal >= 0
}
