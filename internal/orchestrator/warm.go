package orchestrator

import "github.com/zerverless/zerverless/internal/job"

// Prewarmed containers: a docker worker reports the images it has a
// container ready for (job.DockerPool), and a job of such an image runs
// there in a fraction of a cold start. warmScore is the whole preference;
// warmHolderLocked applies it where the queue hands a job to a worker, as
// buildHolderLocked does for a build's cache.

// warmScore is how much worker caps c suits docker job j for its
// prewarmed containers: 1 when it has one ready for j's image, else 0.
func warmScore(c job.Capabilities, j *job.Job) int {
	if j.Type != job.TypeDocker || j.Spec.Docker == nil || j.IsBuild() {
		return 0
	}
	if c.WarmFor(j.Spec.Docker.Image) {
		return 1
	}
	return 0
}

// warmHolderLocked returns another worker with a higher warmScore for e
// than w's that may take e now by every rule the queue applies
// (canTakeLocked); nil when w is as good as any.
func (o *Orchestrator) warmHolderLocked(e *entry, w *worker) *worker {
	best, score := (*worker)(nil), warmScore(w.caps, e.job)
	if score > 0 || e.job.Type != job.TypeDocker {
		return nil
	}
	for _, other := range o.workers {
		if s := warmScore(other.caps, e.job); other != w && s > score && o.canTakeLocked(other, e) {
			best, score = other, s
		}
	}
	return best
}
