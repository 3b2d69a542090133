package docker

import (
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

var _ runtime.UsageReporter = (*Docker)(nil)

// ReportUsage adds to u the job containers running, the images this
// runtime pulled or built and keeps, and the warm holders ready.
func (d *Docker) ReportUsage(u *job.WorkerUsage) {
	u.ContainersRunning += int(d.running.Load())
	d.images.mu.Lock()
	for _, ci := range d.images.pulled {
		u.ImagesCached++
		u.ImageCacheBytes += ci.size
	}
	d.images.mu.Unlock()
	d.pool.mu.Lock()
	u.WarmHolders += len(d.pool.ready)
	d.pool.mu.Unlock()
}
