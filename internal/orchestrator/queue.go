package orchestrator

import (
	"container/list"
	"slices"

	"github.com/zerverless/zerverless/internal/job"
)

// queues holds pending jobs, one FIFO per (job type, namespace), so that a
// job nobody can run never blocks the jobs behind it, and finding work for
// a worker looks only at the queues of the runtimes and namespaces it
// accepts. Callers hold the orchestrator's lock.
type queues struct {
	byType map[job.Type]map[string]*list.List
	n      map[job.Type]int
}

func newQueues() *queues {
	return &queues{byType: make(map[job.Type]map[string]*list.List), n: make(map[job.Type]int)}
}

// push adds e at the back of its queue, or at the front when front is set
// (a job that lost its worker keeps its place).
func (q *queues) push(e *entry, front bool) {
	byNS := q.byType[e.job.Type]
	if byNS == nil {
		byNS = make(map[string]*list.List)
		q.byType[e.job.Type] = byNS
	}
	l := byNS[e.job.Namespace]
	if l == nil {
		l = list.New()
		byNS[e.job.Namespace] = l
	}
	if front {
		e.elem = l.PushFront(e)
	} else {
		e.elem = l.PushBack(e)
	}
	q.n[e.job.Type]++
}

// remove takes e out of its queue, if it is queued.
func (q *queues) remove(e *entry) {
	if e.elem == nil {
		return
	}
	l := q.byType[e.job.Type][e.job.Namespace]
	l.Remove(e.elem)
	e.elem = nil
	q.n[e.job.Type]--
	if l.Len() == 0 {
		delete(q.byType[e.job.Type], e.job.Namespace)
	}
}

// scanDepth bounds how far past the head of a queue next looks for a job
// that fits a worker's resource limits.
const scanDepth = 64

// next returns the oldest queued job of the runtimes and namespaces caps
// serve that accept takes, or nil. It looks at the head of each such queue,
// and up to scanDepth entries into a queue whose head accept refuses.
func (q *queues) next(caps *job.Capabilities, accept func(*entry) bool) *entry {
	var best *entry
	consider := func(l *list.List) {
		i := 0
		for el := l.Front(); el != nil && i < scanDepth; el, i = el.Next(), i+1 {
			e := el.Value.(*entry)
			if best != nil && e.seq > best.seq {
				return
			}
			if accept(e) {
				best = e
				return
			}
		}
	}
	for _, t := range caps.Runtimes {
		byNS := q.byType[t]
		if len(byNS) == 0 {
			continue
		}
		if len(caps.Namespaces) > 0 {
			for _, ns := range caps.Namespaces {
				if l := byNS[ns]; l != nil {
					consider(l)
				}
			}
			continue
		}
		for _, l := range byNS {
			consider(l)
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

// pendingIn returns how many jobs of namespace ns are queued.
func (q *queues) pendingIn(ns string) int {
	n := 0
	for _, byNS := range q.byType {
		if l := byNS[ns]; l != nil {
			n += l.Len()
		}
	}
	return n
}
