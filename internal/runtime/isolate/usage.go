package isolate

import (
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

var _ runtime.UsageReporter = (*Pool)(nil)

// ReportUsage adds the children waiting for a task to u.
func (p *Pool) ReportUsage(u *job.WorkerUsage) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u.IdleProcesses += len(p.idle)
}
