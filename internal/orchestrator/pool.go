package orchestrator

import (
	"container/list"
	"crypto/rand"
	"encoding/json"
	"slices"

	"github.com/zerverless/zerverless/internal/job"
)

// Connected workers are indexed so that finding one for a job costs the
// same with ten workers or ten thousand.
//
// Workers whose capabilities match, leaving aside their concurrency,
// version and build cache, and whose trust matches, accept and refuse
// every lane of the queue alike: they form a pool. Dispatch asks the
// queue once per pool (not once per worker) for a job the pool's lanes
// accept, and takes the worker from the pool's ready ones: those with a
// free slot that are not banned (acceptsWorkLocked). The ready workers
// are kept per identity (reputationKey), identities in turn, and each
// identity's workers in turn: a worker given a job goes to the back, so
// jobs spread over workers and over identities, and a replica that
// needs another identity skips the ones already used in one step each.
//
// A worker's readiness is kept up to date at every change of what it
// depends on: its leases, its capabilities, its identity's standing (an
// anonymous volunteer's credit, a ban), the end of its session.
type workerIndex struct {
	pools map[string]*pool
	// idKey keys the pools' ids (random for each process): an id names
	// a signature that holds what a namespace token is not shown (other
	// namespaces, other tenants' images), which must not be confirmed
	// by hashing a guess.
	idKey []byte
	// sessions are the connected workers of each reputation key.
	sessions map[string]map[*worker]struct{}
	// ids are the ids of the connected workers, sorted, for listing them
	// page by page.
	ids []string
	// slotsTotal, slotsBusy and workersBusy are the platform's slots and
	// busy workers, as Stats reports them.
	slotsTotal, slotsBusy, workersBusy int
}

// pool is the workers that share a capability signature and trust.
type pool struct {
	key     string
	caps    job.Capabilities
	trusted bool
	members map[*worker]struct{}
	// banned counts the members whose identity is banned.
	banned int
	// ready are the identities with ready workers, in turn.
	ready  *list.List // of *readyIdentity
	byKey  map[string]*readyIdentity
	nready int
}

// readyIdentity is the ready workers of one reputation key in one pool.
type readyIdentity struct {
	key     string
	elem    *list.Element
	workers *list.List // of *worker
}

func newWorkerIndex() *workerIndex {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &workerIndex{pools: make(map[string]*pool), sessions: make(map[string]map[*worker]struct{}), idKey: key}
}

// poolKey is the signature of what decides whether a worker accepts a
// lane: its capabilities but for its concurrency, version and build cache
// (which only makes it preferred for a build), and its trust.
func poolKey(caps job.Capabilities, trusted bool) string {
	caps.Concurrency = 0
	caps.Version = ""
	if d := caps.Docker; d != nil {
		dc := *d
		// What changes with every job (the build cache, the prewarmed
		// containers) does not make another pool.
		dc.BuildCache = nil
		dc.Pool = nil
		caps.Docker = &dc
	}
	b, _ := json.Marshal(caps)
	if trusted {
		return "t" + string(b)
	}
	return "u" + string(b)
}

// joinIndexLocked adds w, whose session starts, to the index.
func (o *Orchestrator) joinIndexLocked(w *worker) {
	x := o.index
	k := w.reputationKey()
	s := x.sessions[k]
	if s == nil {
		s = make(map[*worker]struct{})
		x.sessions[k] = s
	}
	s[w] = struct{}{}
	i, _ := slices.BinarySearch(x.ids, w.id)
	x.ids = slices.Insert(x.ids, i, w.id)
	o.joinPoolLocked(w)
}

// joinPoolLocked puts w in the pool of its capabilities.
func (o *Orchestrator) joinPoolLocked(w *worker) {
	x := o.index
	pk := poolKey(w.caps, w.trusted)
	p := x.pools[pk]
	if p == nil {
		p = &pool{key: pk, caps: w.caps, trusted: w.trusted, members: make(map[*worker]struct{}),
			ready: list.New(), byKey: make(map[string]*readyIdentity)}
		x.pools[pk] = p
	}
	p.members[w] = struct{}{}
	w.pool = p
	x.slotsTotal += w.caps.Concurrency
	x.slotsBusy += len(w.leases)
	if len(w.leases) > 0 {
		x.workersBusy++
	}
	w.banned = false
	o.refreshLocked(w)
}

// leavePoolLocked takes w out of its pool.
func (o *Orchestrator) leavePoolLocked(w *worker) {
	x, p := o.index, w.pool
	if p == nil {
		return
	}
	p.unready(w)
	if w.banned {
		p.banned--
	}
	delete(p.members, w)
	if len(p.members) == 0 {
		delete(x.pools, p.key)
	}
	x.slotsTotal -= w.caps.Concurrency
	x.slotsBusy -= len(w.leases)
	if len(w.leases) > 0 {
		x.workersBusy--
	}
	w.pool = nil
}

// leaveIndexLocked takes w, whose session ends, out of the index.
func (o *Orchestrator) leaveIndexLocked(w *worker) {
	x := o.index
	o.leavePoolLocked(w)
	k := w.reputationKey()
	if s := x.sessions[k]; s != nil {
		delete(s, w)
		if len(s) == 0 {
			delete(x.sessions, k)
		}
	}
	if i, ok := slices.BinarySearch(x.ids, w.id); ok {
		x.ids = slices.Delete(x.ids, i, i+1)
	}
}

// recapLocked gives w new capabilities, moving it to their pool.
func (o *Orchestrator) recapLocked(w *worker, caps job.Capabilities) {
	if w.pool == nil {
		w.caps = caps
		return
	}
	o.leavePoolLocked(w)
	w.caps = caps
	o.joinPoolLocked(w)
}

// refreshLocked puts w among its pool's ready workers or takes it out,
// as acceptsWorkLocked now says. A ready worker stays where it is in turn.
func (o *Orchestrator) refreshLocked(w *worker) {
	p := w.pool
	if p == nil {
		return
	}
	if b := o.bannedLocked(w); b != w.banned {
		w.banned = b
		if b {
			p.banned++
		} else {
			p.banned--
		}
	}
	ready := o.acceptsWorkLocked(w)
	switch {
	case ready && w.readyElem == nil:
		p.makeReady(w)
	case !ready && w.readyElem != nil:
		p.unready(w)
	}
}

// refreshKeyLocked refreshes every session of reputation key k: its
// standing changed.
func (o *Orchestrator) refreshKeyLocked(k string) {
	for w := range o.index.sessions[k] {
		o.refreshLocked(w)
	}
}

// standingChangedLocked refreshes the sessions whose readiness may follow
// from w's identity's standing: an anonymous volunteer's credit (all its
// sessions share it), or a ban.
func (o *Orchestrator) standingChangedLocked(w *worker) {
	if !w.trusted || o.bannedLocked(w) != w.banned {
		o.refreshKeyLocked(w.reputationKey())
	}
}

// leaseCountChangedLocked updates the index after w got (d = 1) or gave
// back (d = -1) a lease.
func (o *Orchestrator) leaseCountChangedLocked(w *worker, d int) {
	if w.pool != nil {
		x := o.index
		x.slotsBusy += d
		n := len(w.leases)
		switch {
		case d > 0 && n == 1:
			x.workersBusy++
		case d < 0 && n == 0:
			x.workersBusy--
		}
	}
	if w.trusted {
		o.refreshLocked(w)
	} else {
		// The identity's leases count against all its sessions, the
		// ones still connected when w's has ended too.
		o.refreshKeyLocked(w.reputationKey())
	}
	if d > 0 && w.readyElem != nil {
		w.pool.rotate(w)
	}
}

func (p *pool) makeReady(w *worker) {
	k := w.reputationKey()
	ri := p.byKey[k]
	if ri == nil {
		ri = &readyIdentity{key: k, workers: list.New()}
		ri.elem = p.ready.PushBack(ri)
		p.byKey[k] = ri
	}
	w.readyElem = ri.workers.PushBack(w)
	p.nready++
}

func (p *pool) unready(w *worker) {
	if w.readyElem == nil {
		return
	}
	ri := p.byKey[w.reputationKey()]
	ri.workers.Remove(w.readyElem)
	w.readyElem = nil
	p.nready--
	if ri.workers.Len() == 0 {
		p.ready.Remove(ri.elem)
		delete(p.byKey, ri.key)
	}
}

// rotate sends w, just given a job, and its identity to the back of their
// turns.
func (p *pool) rotate(w *worker) {
	ri := p.byKey[w.reputationKey()]
	ri.workers.MoveToBack(w.readyElem)
	p.ready.MoveToBack(ri.elem)
}

// first returns the ready worker whose turn it is, other than skip; nil
// when there is none.
func (p *pool) first(skip *worker) *worker {
	for el := p.ready.Front(); el != nil; el = el.Next() {
		for wl := el.Value.(*readyIdentity).workers.Front(); wl != nil; wl = wl.Next() {
			if w := wl.Value.(*worker); w != skip {
				return w
			}
		}
	}
	return nil
}

// pick returns the first ready worker in turn, other than skip, that
// takes e (ok); nil when none does. Identities e excludes (replicas go to
// distinct identities) are skipped whole, so the cost is that of the
// identities and workers e excludes, not of the pool's size.
func (p *pool) pick(e *entry, skip *worker, ok func(*worker) bool) *worker {
	for el := p.ready.Front(); el != nil; el = el.Next() {
		ri := el.Value.(*readyIdentity)
		if e.keyExcluded(ri.key) {
			continue
		}
		for wl := ri.workers.Front(); wl != nil; wl = wl.Next() {
			if w := wl.Value.(*worker); w != skip && ok(w) {
				return w
			}
		}
	}
	return nil
}

// dispatchExceptLocked hands queued jobs to ready workers other than skip
// (nil for none), so that a job a worker just gave back goes elsewhere
// first, and returns the assignments to launch. It asks the queue once
// per pool and job handed out: its cost does not grow with the number of
// workers.
func (o *Orchestrator) dispatchExceptLocked(skip *worker) []start {
	if o.closed || o.queue.total() == 0 {
		return nil
	}
	var starts []start
	for _, p := range o.index.pools {
		for p.nready > 0 {
			rep := p.first(skip)
			if rep == nil {
				break
			}
			var picked *worker
			e := o.queue.next(&p.caps, o.runningLocked, func(e *entry) (bool, bool) {
				ok, wholeLane := o.eligibleLocked(rep, e)
				if ok || wholeLane {
					picked = rep
					return ok, wholeLane
				}
				picked = p.pick(e, skip, func(w *worker) bool {
					ok, _ := o.eligibleLocked(w, e)
					return ok
				})
				return picked != nil, false
			})
			if e == nil {
				break
			}
			if other := o.buildHolderLocked(e, picked); other != nil {
				picked = other
			} else if other := o.warmHolderLocked(e, picked); other != nil {
				picked = other
			}
			starts = append(starts, o.assignLocked(e, picked))
		}
	}
	return starts
}

// dispatchLocked hands queued jobs to ready workers and returns the
// assignments to launch.
func (o *Orchestrator) dispatchLocked() []start { return o.dispatchExceptLocked(nil) }
