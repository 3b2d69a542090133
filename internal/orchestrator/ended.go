package orchestrator

import (
	"container/list"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// EndedJobsConfig bounds the jobs that ended recently that the orchestrator
// keeps in memory, so that reading a job just after it ended (a client that
// waited for it, then reads it again) does not read the store.
// DefaultEndedJobsConfig documents every default.
//
// A job is kept once its final state is stored, exactly as stored, and
// leaves when newer ended jobs need the room, when the retention sweep
// removes it from the store, or at once when its retention period is over
// (it is then read from the store, which says it expired). Docker jobs and
// function invocations are not kept.
type EndedJobsConfig struct {
	// Jobs is how many ended jobs are kept at most (default 4,096; 0:
	// none, every read of an ended job reads the store).
	Jobs int
	// Bytes bounds what the kept jobs hold together (their code, input,
	// module, output, stderr, returned value, files, texts and a fixed
	// overhead each; default 64 MiB; 0: none kept). A job larger than an
	// eighth of it is not kept.
	Bytes int64
}

// DefaultEndedJobsConfig returns the documented defaults.
func DefaultEndedJobsConfig() EndedJobsConfig {
	return EndedJobsConfig{Jobs: 4096, Bytes: 64 << 20}
}

func (c EndedJobsConfig) validate() []error {
	var errs []error
	if c.Jobs < 0 {
		errs = append(errs, job.Invalid("EndedJobs.Jobs", "must be at least 0 (got %d)", c.Jobs))
	}
	if c.Bytes < 0 {
		errs = append(errs, job.Invalid("EndedJobs.Bytes", "must be at least 0 (got %d)", c.Bytes))
	}
	return errs
}

// endedJobs keeps the jobs that ended most recently, oldest evicted first.
// It is guarded by Orchestrator.mu. A kept job is never changed: readers
// get a copy of its struct, which shares its spec and result.
type endedJobs struct {
	cfg   EndedJobsConfig
	byID  map[string]*list.Element // of *endedJob
	order list.List                // oldest first
	bytes int64
}

type endedJob struct {
	j     *job.Job
	bytes int64
}

func newEndedJobs(cfg EndedJobsConfig) *endedJobs {
	return &endedJobs{cfg: cfg, byID: make(map[string]*list.Element)}
}

// endedJobOverhead is what a kept job costs beyond its variable fields: the
// structs, the map entry, the list element, its short strings.
const endedJobOverhead = 1024

// endedJobBytes estimates what j holds in memory.
func endedJobBytes(j *job.Job) int64 {
	n := endedJobOverhead + len(j.Reason) + len(j.Spec.Code) + len(j.Spec.Input) + len(j.Spec.Wasm)
	for _, a := range j.Spec.Args {
		n += len(a) + 16
	}
	if r := j.Result; r != nil {
		n += len(r.Output) + len(r.Stderr) + len(r.Result) + len(r.Error)
		for name, f := range r.Files {
			n += len(name) + len(f) + 48
		}
		for _, a := range r.Replicas {
			n += 128 + len(a.WorkerID) + len(a.Owner)
		}
		n += 256 * len(r.Egress)
	}
	return int64(n)
}

// put keeps j, the stored final state of a job. It keeps nothing that the
// bounds leave no room for, nor a docker job.
func (c *endedJobs) put(j *job.Job) {
	if c.cfg.Jobs == 0 || j.Type == job.TypeDocker {
		return
	}
	size := endedJobBytes(j)
	if size > c.cfg.Bytes/8 {
		return
	}
	c.remove(j.ID)
	for c.order.Len() >= c.cfg.Jobs || c.bytes+size > c.cfg.Bytes {
		c.removeElem(c.order.Front())
	}
	c.byID[j.ID] = c.order.PushBack(&endedJob{j: j, bytes: size})
	c.bytes += size
}

// get returns a copy of the kept job with id, unless its retention period
// (it finished before expiredBefore) is over.
func (c *endedJobs) get(id string, expiredBefore time.Time) (*job.Job, bool) {
	el, ok := c.byID[id]
	if !ok {
		return nil, false
	}
	e := el.Value.(*endedJob)
	if e.j.FinishedAt.Before(expiredBefore) {
		// The store removes it, or has: it answers for it.
		c.removeElem(el)
		return nil, false
	}
	j := *e.j
	return &j, true
}

// remove forgets the job with id, if kept.
func (c *endedJobs) remove(id string) {
	if el, ok := c.byID[id]; ok {
		c.removeElem(el)
	}
}

func (c *endedJobs) removeElem(el *list.Element) {
	e := c.order.Remove(el).(*endedJob)
	delete(c.byID, e.j.ID)
	c.bytes -= e.bytes
}

// len returns how many jobs are kept.
func (c *endedJobs) len() int { return c.order.Len() }
