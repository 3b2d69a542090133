package orchestrator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/zerverless/zerverless/internal/job"
)

// A replicated job (Spec.Replicas > 1) never goes to a worker itself: it is
// the parent of replica entries, ephemeral copies of it that go through the
// queues like any job, each to a distinct worker of a distinct identity
// (reputationKey: an owner, or an anonymous volunteer's address). Each replica's answer is hashed; when Quorum
// answers agree, the parent completes with that answer and the workers
// whose answers differ get a strike. When the replicas running have all
// answered without a quorum, more are run, up to MaxReplicas in all; then
// the parent fails with "no quorum". A replica lost with its worker is run
// again like any job; one that runs out of attempts counts as no answer.
type replication struct {
	quorum, max int
	launched    int
	live        map[*entry]bool
	// workers are the workers that took a replica and did not give it
	// back unrun.
	workers map[string]bool
	answers []answer
	decided bool
}

type answer struct {
	job.ReplicaAnswer
	result *job.Result
	key    string // reputation key of the worker
}

// countLocked adjusts the count of jobs in status s, and of pending jobs
// in e's namespace; replicas are not jobs of their own and are not counted.
func (o *Orchestrator) countLocked(e *entry, s job.Status, d int) {
	if e.parent != nil {
		return
	}
	o.counts[s] += d
	if s == job.StatusPending {
		ns := e.job.Namespace
		if o.nsPending[ns] += d; o.nsPending[ns] == 0 {
			delete(o.nsPending, ns)
		}
	}
}

// excluded reports whether w already holds or held a replica of e's
// parent, or w's identity (reputationKey: its join token's owner, or an
// anonymous volunteer's address) holds one or answered for one: sessions
// of one identity are one voice, or one volunteer could open a session per
// replica and answer them all alike. An identity whose replica was lost
// without an answer may run it again on another worker: it has no say
// yet, and the job could otherwise wait for an owner that never comes.
func (e *entry) excluded(w *worker) bool {
	if e.parent == nil {
		return false
	}
	return e.parent.rep.workers[w.id] || e.keyExcluded(w.reputationKey())
}

// keyExcluded reports whether e is a replica whose parent has a replica
// held by, or answered for by, a worker of identity k.
func (e *entry) keyExcluded(k string) bool {
	if e.parent == nil {
		return false
	}
	r := e.parent.rep
	for c := range r.live {
		if c.worker != nil && c.worker.reputationKey() == k {
			return true
		}
	}
	for _, a := range r.answers {
		if a.key == k {
			return true
		}
	}
	return false
}

// expandLocked queues the replicas of a pending replicated job p.
func (o *Orchestrator) expandLocked(p *entry) {
	n := p.job.Spec.Replicas
	p.rep = &replication{
		quorum:  p.job.Spec.QuorumOrMajority(),
		max:     max(n, o.cfg.MaxReplicas),
		live:    make(map[*entry]bool),
		workers: make(map[string]bool),
	}
	for range n {
		o.spawnLocked(p)
	}
}

// spawnLocked queues one more replica of p.
func (o *Orchestrator) spawnLocked(p *entry) {
	r := p.rep
	r.launched++
	cj := *p.job
	cj.ID = p.job.ID + "~r" + strconv.Itoa(r.launched)
	cj.Status = job.StatusPending
	cj.Attempt = 1
	cj.LeaseID, cj.WorkerID, cj.Reason = "", "", ""
	cj.Result = nil
	cj.Spec.Replicas, cj.Spec.Quorum = 0, 0
	o.seq++
	c := &entry{job: &cj, seq: o.seq, enqueuedAt: o.now(), ephemeral: true, parent: p}
	r.live[c] = true
	o.active[cj.ID] = c
	o.queue.push(c, false)
}

// replicaAssignedLocked records that w took replica c; the parent is
// running from its first replica on.
func (o *Orchestrator) replicaAssignedLocked(c *entry, w *worker) {
	p, r := c.parent, c.parent.rep
	r.workers[w.id] = true
	if p.job.Status == job.StatusPending {
		o.countLocked(p, job.StatusPending, -1)
		o.countLocked(p, job.StatusRunning, 1)
		p.job.Status = job.StatusRunning
		p.job.StartedAt = o.now().UTC()
		p.job.Reason = ""
		p.version++
		o.persistAsyncLocked(p)
	}
}

// replicaDoneLocked takes the end of replica c, which ran on w (nil when
// it did not run), and decides the parent when it can.
func (o *Orchestrator) replicaDoneLocked(c *entry, w *worker, res *job.Result) {
	p, r := c.parent, c.parent.rep
	delete(r.live, c)
	if o.active[c.job.ID] == c && c.done == nil {
		delete(o.active, c.job.ID)
	}
	if r.decided {
		return
	}
	if w != nil && !c.lostRun && res.Status != job.StatusCanceled {
		a := answer{result: res, key: w.reputationKey()}
		a.WorkerID, a.Owner, a.Status, a.ExitCode = w.id, w.owner, res.Status, res.ExitCode
		a.Hash = answerHash(res)
		r.answers = append(r.answers, a)
		if agree := r.count(a.Hash); agree >= r.quorum {
			o.acceptLocked(p, a)
			return
		}
	}
	if len(r.live) > 0 {
		return
	}
	need := r.quorum - r.best()
	if r.launched+need <= r.max {
		for range need {
			o.spawnLocked(p)
		}
		return
	}
	r.decided = true
	o.finishLocked(p, &job.Result{
		Status:   job.StatusFailed,
		Error:    fmt.Sprintf("no quorum: %d answers from %d replicas, at most %d agree, %d needed", len(r.answers), r.launched, r.best(), r.quorum),
		Attempt:  p.job.Attempt,
		Replicas: r.list(""),
	})
	o.persistAsyncLocked(p)
}

// acceptLocked completes p with answer a and strikes the workers whose
// answers differ from it.
func (o *Orchestrator) acceptLocked(p *entry, a answer) {
	r := p.rep
	r.decided = true
	for _, other := range r.answers {
		if other.Hash != a.Hash {
			o.strikes[other.key]++
			o.log.Warn("replica disagreed with the quorum", "job_id", p.job.ID, "worker_id", other.WorkerID, "owner", other.Owner, "strikes", o.strikes[other.key])
			if o.strikes[other.key] == o.cfg.MaxStrikes {
				o.revokeReplicasLocked(other.key)
				o.refreshKeyLocked(other.key)
			}
		}
	}
	for c := range r.live {
		o.stopReplicaLocked(c)
	}
	final := *a.result
	final.Attempt = p.job.Attempt
	final.WorkerID = a.WorkerID
	final.Replicas = r.list(a.Hash)
	o.finishLocked(p, &final)
	o.persistAsyncLocked(p)
}

// revokeReplicasLocked takes back the replicas that workers of a banned
// reputation key still hold: their answers would count toward quorums. The
// workers are told to stop; the replicas run again elsewhere (never on a
// worker that held them), and the lease watcher's next dispatch sends them.
func (o *Orchestrator) revokeReplicasLocked(key string) {
	for w := range o.index.sessions[key] {
		for leaseID, l := range w.leases {
			e, ok := o.active[l.jobID]
			if l.abandoned || !ok || e.final || e.parent == nil || e.worker != w || e.job.LeaseID != leaseID {
				continue
			}
			l.abandoned = true
			l.deadline = o.now().Add(o.cfg.LeaseGrace)
			o.leaseHeap.fix(l)
			w.send(cancelMessage(e.job.ID, leaseID))
			o.requeueLocked(e, false, "")
			o.log.Warn("replica taken back from a banned worker", "job_id", e.job.ID, "worker_id", w.id)
		}
	}
}

// stopReplicaLocked ends a replica that is no longer needed: taken out of
// the queue, or told to stop on its worker.
func (o *Orchestrator) stopReplicaLocked(c *entry) {
	if c.final {
		return
	}
	if w := c.worker; w != nil {
		lease := c.job.LeaseID
		o.abandonLocked(w, lease, o.now(), o.cfg.LeaseGrace)
		w.send(cancelMessage(c.job.ID, lease))
	}
	o.finishLocked(c, &job.Result{Status: job.StatusCanceled, Error: "not needed: the job was decided or canceled"})
}

// stopReplicasLocked ends every replica of p, which is being canceled.
func (o *Orchestrator) stopReplicasLocked(p *entry) {
	if p.rep == nil {
		return
	}
	p.rep.decided = true
	for c := range p.rep.live {
		o.stopReplicaLocked(c)
	}
}

func (r *replication) count(hash string) int {
	n := 0
	for _, a := range r.answers {
		if a.Hash == hash {
			n++
		}
	}
	return n
}

func (r *replication) best() int {
	b := 0
	for _, a := range r.answers {
		b = max(b, r.count(a.Hash))
	}
	return b
}

// list returns the answers, marking those whose hash is agreed.
func (r *replication) list(agreed string) []job.ReplicaAnswer {
	out := make([]job.ReplicaAnswer, len(r.answers))
	for i, a := range r.answers {
		out[i] = a.ReplicaAnswer
		out[i].Agreed = agreed != "" && a.Hash == agreed
	}
	return out
}

// replicaReasonLocked says where a replicated job stands.
func (o *Orchestrator) replicaReasonLocked(p *entry) string {
	r := p.rep
	s := fmt.Sprintf("replicated: %d answers from %d replicas, %d must agree", len(r.answers), r.launched, r.quorum)
	for c := range r.live {
		if c.job.Status == job.StatusPending {
			return s + "; a replica waits: " + o.pendingReasonLocked(c)
		}
	}
	return s
}

// answerHash identifies an answer by what a client sees of it: status,
// exit code, output, a container's output files and the returned value
// (compacted, so that formatting does not count).
func answerHash(r *job.Result) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00", r.Status, r.ExitCode, len(r.Output))
	h.Write([]byte(r.Output))
	names := slices.Sorted(maps.Keys(r.Files))
	fmt.Fprintf(h, "%d\x00", len(names))
	for _, name := range names {
		fmt.Fprintf(h, "%d\x00%s%d\x00", len(name), name, len(r.Files[name]))
		h.Write(r.Files[name])
	}
	var v any
	if len(r.Result) > 0 && json.Unmarshal(r.Result, &v) == nil {
		b, _ := json.Marshal(v)
		h.Write(b)
	} else {
		h.Write(r.Result)
	}
	return hex.EncodeToString(h.Sum(nil))
}
