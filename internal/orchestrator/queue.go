package orchestrator

import (
	"container/list"
	"fmt"
	"slices"

	"github.com/zerverless/zerverless/internal/job"
)

// queues holds pending jobs in FIFO lanes: one per job type, namespace and
// requirement class (what a job asks of a worker: memory, container image
// and resources, a build). Every job of a lane is accepted or refused by a
// worker's capabilities alike, so a job nobody can run never blocks the
// jobs behind it, and finding work for a worker looks only at the heads of
// the lanes of the runtimes and namespaces it accepts. Between
// namespaces it is fair (see next): one namespace's backlog never makes
// another's jobs wait behind it. Callers hold the orchestrator's lock.
type queues struct {
	byType map[job.Type]map[lane]*list.List
	n      map[job.Type]int
	// served records, per namespace, the dispatch (a count that grows by
	// one per job started) at which it last had a job started.
	served     map[string]uint64
	dispatches uint64
	// lanes counts, per namespace, its lanes of every type: finding work
	// looks at every lane of a runtime, so each namespace holds at most
	// Config.MaxNamespaceLanes of them (see laneRefusal).
	lanes map[string]int
	// opening counts, per namespace, the submissions admitted by
	// laneRefusal to open a lane and not yet queued (they are being
	// stored): they count against the bound like the lanes.
	opening map[string]int
}

// lane identifies one FIFO within a job type.
type lane struct {
	namespace string
	class     string
}

func newQueues() *queues {
	return &queues{byType: make(map[job.Type]map[lane]*list.List), n: make(map[job.Type]int), served: make(map[string]uint64),
		lanes: make(map[string]int), opening: make(map[string]int)}
}

// laneRefusal says why a new job j (of no deployment) may not be queued:
// it would open a lane of its namespace past max (Config.MaxNamespaceLanes);
// "" when it may. Admitted to open a lane, j holds a place among its
// namespace's lanes until opened is called (once j is queued, or failed to
// be), so that submissions stored at once do not pass the bound together.
func (q *queues) laneRefusal(j *job.Job, max int) (why string, reserved bool) {
	if q.byType[j.Type][lane{namespace: j.Namespace, class: requirementClass(j)}] != nil {
		return "", false
	}
	if q.lanes[j.Namespace]+q.opening[j.Namespace] < max {
		q.opening[j.Namespace]++
		return "", true
	}
	return fmt.Sprintf("namespace %s has pending jobs of %d distinct requirements (job type, memory_mb, docker image and resources, build; function calls waiting count too), the most it may; retry once some have run, or ask for requirements its pending jobs already ask for",
		j.Namespace, max), false
}

// opened gives back the place laneRefusal reserved for a job of ns.
func (q *queues) opened(ns string) {
	if q.opening[ns]--; q.opening[ns] <= 0 {
		delete(q.opening, ns)
	}
}

// requirementClass sums up what j asks of a worker beyond its runtime and
// namespace: jobs with the same class fit the same workers.
func requirementClass(j *job.Job) string {
	c := fmt.Sprintf("m%d", j.Spec.MemoryMB)
	if d := j.Spec.Docker; d != nil {
		c += fmt.Sprintf("|%s|%d|%g|%d", d.Image, d.Resources.MemoryMB, d.Resources.CPUs, d.Resources.Pids)
		if d.Build != nil {
			c += "|build:" + d.Build.SourceKey
		}
	}
	return c
}

func (e *entry) lane() lane {
	if e.class == "" {
		e.class = requirementClass(e.job)
		if e.trustedOnly {
			e.class += "|trusted"
		}
	}
	return lane{namespace: e.job.Namespace, class: e.class}
}

// push adds e at the back of its lane, or, when front is set (a job that
// lost its worker keeps its place), ahead of every job queued after it, so
// that jobs put back together keep the order they were submitted in.
func (q *queues) push(e *entry, front bool) {
	lanes := q.byType[e.job.Type]
	if lanes == nil {
		lanes = make(map[lane]*list.List)
		q.byType[e.job.Type] = lanes
	}
	k := e.lane()
	l := lanes[k]
	if l == nil {
		l = list.New()
		lanes[k] = l
		q.lanes[k.namespace]++
	}
	if front {
		el := l.Front()
		for el != nil && el.Value.(*entry).seq < e.seq {
			el = el.Next()
		}
		if el == nil {
			e.elem = l.PushBack(e)
		} else {
			e.elem = l.InsertBefore(e, el)
		}
	} else {
		e.elem = l.PushBack(e)
	}
	q.n[e.job.Type]++
}

// remove takes e out of its lane, if it is queued.
func (q *queues) remove(e *entry) {
	if e.elem == nil {
		return
	}
	k := e.lane()
	l := q.byType[e.job.Type][k]
	l.Remove(e.elem)
	e.elem = nil
	q.n[e.job.Type]--
	if l.Len() == 0 {
		delete(q.byType[e.job.Type], k)
		if q.lanes[k.namespace]--; q.lanes[k.namespace] <= 0 {
			delete(q.lanes, k.namespace)
		}
	}
}

// scanDepth bounds how far past the head of a lane next looks for a job
// that accept takes (jobs of one lane differ only in per-job conditions,
// such as a worker that already ran a replica of the job).
const scanDepth = 64

// started records that a job of namespace ns was started, for next's
// fairness.
func (q *queues) started(ns string) {
	q.dispatches++
	q.served[ns] = q.dispatches
}

// next returns a queued job of the runtimes and namespaces caps serve
// that accept takes, or nil. Of the namespaces that have such a job, it
// serves first the one with the fewest jobs running (running gives the
// count), then the one served least recently; of that namespace's jobs,
// the oldest. So a namespace that queues thousands of jobs gets its turn
// like any other, and never makes another namespace's jobs wait for its
// backlog. accept also says when its refusal holds for the whole lane;
// otherwise next looks up to scanDepth entries into the lane.
func (q *queues) next(caps *job.Capabilities, running func(ns string) int, accept func(*entry) (ok, lane bool)) *entry {
	var best *entry
	var bestRun int
	var bestServed uint64
	// before reports whether a job of a namespace with r running, served
	// at s, with sequence seq, comes before best.
	before := func(r int, s, seq uint64) bool {
		switch {
		case best == nil:
			return true
		case r != bestRun:
			return r < bestRun
		case s != bestServed:
			return s < bestServed
		}
		return seq < best.seq
	}
	consider := func(ns string, l *list.List) {
		r, s := running(ns), q.served[ns]
		i := 0
		for el := l.Front(); el != nil && i < scanDepth; el, i = el.Next(), i+1 {
			e := el.Value.(*entry)
			if !before(r, s, e.seq) {
				return
			}
			ok, wholeLane := accept(e)
			if ok {
				best, bestRun, bestServed = e, r, s
				return
			}
			if wholeLane {
				return
			}
		}
	}
	for _, t := range caps.Runtimes {
		for k, l := range q.byType[t] {
			if len(caps.Namespaces) > 0 && !slices.Contains(caps.Namespaces, k.namespace) {
				continue
			}
			consider(k.namespace, l)
		}
	}
	return best
}

// position returns how many jobs are ahead of e in its queue, counting at
// most limit.
func (q *queues) position(e *entry, limit int) int {
	n := 0
	for el := e.elem.Prev(); el != nil && n < limit; el = el.Prev() {
		n++
	}
	return n
}

// counts returns the number of queued jobs per type.
func (q *queues) counts() map[job.Type]int {
	out := make(map[job.Type]int, len(q.n))
	for t, n := range q.n {
		if n > 0 {
			out[t] = n
		}
	}
	return out
}

// total returns the number of queued jobs.
func (q *queues) total() int {
	n := 0
	for _, c := range q.n {
		n += c
	}
	return n
}

// sortedTypes is for deterministic iteration in tests and messages.
func sortedTypes(m map[job.Type]int) []job.Type {
	ts := make([]job.Type, 0, len(m))
	for t := range m {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}
