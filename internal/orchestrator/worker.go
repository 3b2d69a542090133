package orchestrator

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// worker is one connected worker session. Its fields are guarded by
// Orchestrator.mu, except the outbox, which has its own lock.
type worker struct {
	id          string
	trusted     bool
	owner       string
	secret      string // the join token presented; see identity
	conn        *protocol.Conn
	name        string
	remote      string
	caps        job.Capabilities
	notes       map[string]string
	connectedAt time.Time
	// lastSeen is when the worker's last message came (Unix nanoseconds);
	// written without the lock by the session's reader.
	lastSeen atomic.Int64
	// leases are the leases the worker holds, by lease id. A lease whose
	// job was canceled or taken back stays until the worker answers for it
	// or its deadline passes, so that the worker is not sent more than it
	// can run.
	leases map[string]*lease
	gone   bool
	// key is reputationKey's answer, fixed for the session.
	key string
	// pool, readyElem and banned are the worker's place in the
	// Orchestrator's index (see workerIndex).
	pool      *pool
	readyElem *list.Element
	banned    bool

	outMu  sync.Mutex
	out    []protocol.Message
	signal chan struct{}
}

type lease struct {
	jobID string
	id    string
	w     *worker
	// index is the lease's place in the Orchestrator's deadline heap; -1
	// when it is not there.
	index    int
	assigned time.Time
	// abandoned is set when the job no longer belongs to this lease; the
	// slot is held until the worker answers or until deadline.
	abandoned bool
	deadline  time.Time
}

// abandonLocked marks w's lease as no longer the job's current one at now;
// the worker's slot stays taken until it answers, at most grace.
func (o *Orchestrator) abandonLocked(w *worker, leaseID string, now time.Time, grace time.Duration) {
	if l, ok := w.leases[leaseID]; ok {
		l.abandoned = true
		if d := now.Add(grace); d.Before(l.deadline) {
			l.deadline = d
			o.leaseHeap.fix(l)
		}
	}
}

// send queues m for the worker's writer; it never blocks.
func (w *worker) send(m protocol.Message) {
	w.outMu.Lock()
	if len(w.out) >= maxOutbox {
		// A worker that does not read what it is sent (or provokes
		// endless error replies) is cut off rather than buffered for.
		w.outMu.Unlock()
		w.conn.CloseNow()
		return
	}
	w.out = append(w.out, m)
	w.outMu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// maxOutbox bounds the messages waiting to be written to one worker.
// Assignments and cancels are bounded by its concurrency; the rest are
// replies to its own messages.
const maxOutbox = 4096

func cancelMessage(jobID, leaseID string) protocol.Message {
	return protocol.Message{Type: protocol.TypeCancel, JobID: jobID, LeaseID: leaseID}
}

// start is a job handed to a worker under a lease, to be stored as running
// and sent once the lock is released.
type start struct {
	e *entry
	w *worker
	m protocol.Message
}

// fillLocked gives w queued jobs until it has no free slot or nothing fits.
// Once the orchestrator is closing nothing is handed out: every session is
// ending, and a job passed from one to the next would lose an attempt each
// time.
func (o *Orchestrator) fillLocked(w *worker, starts []start) []start {
	for o.acceptsWorkLocked(w) {
		e := o.queue.next(&w.caps, o.runningLocked, func(e *entry) (bool, bool) { return o.eligibleLocked(w, e) })
		if e == nil {
			break
		}
		if other := o.buildHolderLocked(e, w); other != nil {
			starts = append(starts, o.assignLocked(e, other))
			continue
		}
		if other := o.warmHolderLocked(e, w); other != nil {
			starts = append(starts, o.assignLocked(e, other))
			continue
		}
		starts = append(starts, o.assignLocked(e, w))
	}
	return starts
}

// acceptsWorkLocked reports whether w may be given any job now: the
// orchestrator is not closing, w's session is live, not banned, and has a
// free slot.
func (o *Orchestrator) acceptsWorkLocked(w *worker) bool {
	return !o.closed && !w.gone && o.freeLocked(w) > 0 && !o.bannedLocked(w)
}

// freeLocked returns w's free slots. An untrusted identity (an anonymous
// volunteer's address) holds, across all its sessions, at most as many
// leases as it has returned results more than it has lost leases, and at
// least one, whatever concurrency its sessions claim: a volunteer that
// takes leases and sits on them holds back only as many jobs as it has
// finished, and an honest one grows to its full concurrency one result at
// a time.
func (o *Orchestrator) freeLocked(w *worker) int {
	n := w.caps.Concurrency - len(w.leases)
	if !w.trusted {
		k := w.reputationKey()
		credit := 1
		if s := o.standings[k]; s != nil {
			credit = max(credit, s.results-s.lost)
		}
		n = min(n, credit-o.anonLeases[k])
	}
	return n
}

// addLeaseLocked gives w the lease id for l.
func (o *Orchestrator) addLeaseLocked(w *worker, id string, l *lease) {
	l.id, l.w = id, w
	w.leases[id] = l
	o.leaseHeap.push(l)
	if !w.trusted {
		o.anonLeases[w.reputationKey()]++
	}
	o.leaseCountChangedLocked(w, 1)
}

// endLeaseLocked takes the lease id off w, if it holds it.
func (o *Orchestrator) endLeaseLocked(w *worker, id string) {
	l, ok := w.leases[id]
	if !ok {
		return
	}
	delete(w.leases, id)
	o.leaseHeap.remove(l)
	if !w.trusted {
		k := w.reputationKey()
		if o.anonLeases[k]--; o.anonLeases[k] <= 0 {
			delete(o.anonLeases, k)
		}
	}
	o.leaseCountChangedLocked(w, -1)
}

// canTakeLocked reports whether w may be given e now. It is the one test
// of eligibility: the queue applies its parts (acceptsWorkLocked, then
// eligibleLocked per job), and every other path that picks a worker for a
// job (a build's cache holder) calls it whole.
func (o *Orchestrator) canTakeLocked(w *worker, e *entry) bool {
	if !o.acceptsWorkLocked(w) {
		return false
	}
	ok, _ := o.eligibleLocked(w, e)
	return ok
}

// assignLocked moves e from the queue to w under a new lease.
func (o *Orchestrator) assignLocked(e *entry, w *worker) start {
	o.queue.remove(e)
	now := o.now()
	j := e.job
	o.metrics.queueWait.WithLabelValues(string(j.Type)).Observe(now.Sub(e.enqueuedAt).Seconds())
	o.countLocked(e, job.StatusPending, -1)
	o.countLocked(e, job.StatusRunning, 1)
	j.Status = job.StatusRunning
	j.LeaseID = newLeaseID()
	j.WorkerID = w.id
	j.StartedAt = now.UTC()
	j.Reason = ""
	e.worker = w
	o.nsRunning[j.Namespace]++
	o.queue.started(j.Namespace)
	if e.parent != nil {
		o.replicaAssignedLocked(e, w)
	}
	e.deadline = now.Add(j.Spec.TaskTimeout() + o.cfg.LeaseGrace)
	e.version++
	o.addLeaseLocked(w, j.LeaseID, &lease{jobID: j.ID, assigned: now, deadline: e.deadline})
	o.launches.Add(1) // done when launch has stored the running state
	task := &job.Task{
		JobID:     j.ID,
		LeaseID:   j.LeaseID,
		Attempt:   j.Attempt,
		Namespace: j.Namespace,
		Type:      j.Type,
		Spec:      taskSpec(j),
		Timeout:   j.Spec.TaskTimeout(),
	}
	return start{e: e, w: w, m: protocol.Message{Type: protocol.TypeAssign, Task: task}}
}

// persistAsyncLocked stores e's state in the background; Close waits for
// it.
func (o *Orchestrator) persistAsyncLocked(e *entry) {
	o.launches.Add(1)
	go func() {
		defer o.launches.Done()
		o.persist(context.Background(), e)
	}()
}

// launch sends each assignment and stores the job as running in the
// background, RunningWriteDelay later. The running state needs no wait:
// persist never replaces a newer state with an older one, so a result
// stored first stays (and the running state is then not written at all),
// and after a crash a job stored as pending or running is re-queued all
// the same.
func (o *Orchestrator) launch(starts []start) {
	for _, s := range starts {
		s.w.send(s.m)
		if d := o.cfg.RunningWriteDelay; d > 0 {
			// A job that ends before it has its end stored alone.
			time.AfterFunc(d, func() {
				defer o.launches.Done()
				o.persist(context.Background(), s.e)
			})
			continue
		}
		go func() {
			defer o.launches.Done()
			o.persist(context.Background(), s.e)
		}()
	}
}

// ServeWorker runs the orchestrator's side of one worker connection: it
// reads "register", then serves the session until the connection ends or
// the worker goes silent. The worker's jobs are then re-queued. It returns
// why the session ended.
func (o *Orchestrator) ServeWorker(ctx context.Context, conn *protocol.Conn, remote string) error {
	defer conn.CloseNow()
	regCtx, cancel := context.WithTimeout(ctx, o.cfg.RegisterTimeout)
	m, err := conn.Read(regCtx)
	cancel()
	if err != nil {
		var de *protocol.DecodeError
		if errors.As(err, &de) {
			// A malformed or oversize declaration: sending it again
			// will not help.
			o.refuse(ctx, conn, err.Error(), true)
		}
		return fmt.Errorf("read register: %w", err)
	}
	if m.Type != protocol.TypeRegister {
		o.refuse(ctx, conn, "the first message must be register", true)
		return fmt.Errorf("first message was %q, not register", m.Type)
	}
	if m.Version != protocol.Version {
		o.refuse(ctx, conn, fmt.Sprintf("protocol version %d is not supported (this orchestrator speaks %d)", m.Version, protocol.Version), true)
		return fmt.Errorf("unsupported protocol version %d", m.Version)
	}
	who, err := o.identify(ctx, m.Token)
	if err != nil {
		o.log.Warn("worker refused", "remote", remote, "name", m.Name, "err", err)
		o.refuse(ctx, conn, err.Error(), true)
		return err
	}
	if !who.trusted {
		addr := remoteIdentity(remote)
		if why := o.holdAnonymousSession(addr); why != "" {
			o.log.Warn("worker refused", "remote", remote, "name", m.Name, "err", why)
			o.refuse(ctx, conn, why, false)
			return errors.New(why)
		}
		defer o.releaseAnonymousSession(addr)
	}
	authenticated := conn.Authenticated
	if !who.trusted {
		authenticated = func() error { return conn.AuthenticatedUpTo(o.cfg.MaxAnonymousMessageBytes) }
	}
	if err := authenticated(); err != nil {
		o.log.Warn("worker refused", "remote", remote, "name", m.Name, "err", err)
		o.refuse(ctx, conn, err.Error(), false)
		return err
	}
	if !who.trusted {
		// What all anonymous sessions' messages hold while they are
		// read is bounded together.
		conn.ShareReadBudget(o.anonymousReads)
		// Anonymous volunteers run sandboxed runtimes only.
		m.Capabilities.Docker = nil
		m.Capabilities.Runtimes = slices.DeleteFunc(m.Capabilities.Runtimes, job.NeedsTrust)
	}
	now := o.now()
	w := &worker{
		id:          uuid.NewString(),
		trusted:     who.trusted,
		owner:       who.owner,
		secret:      who.secret,
		conn:        conn,
		name:        m.Name,
		remote:      remote,
		caps:        *m.Capabilities,
		notes:       m.Notes,
		connectedAt: now,
		leases:      make(map[string]*lease),
		signal:      make(chan struct{}, 1),
	}
	w.key = w.reputationKey()
	w.lastSeen.Store(now.UnixNano())
	// The worker joins the list and the dispatch index before it is told
	// it is registered, so that a caller who sees the registration finds
	// it listed. What is assigned to it meanwhile waits in its queue for
	// the write loop, which starts after the registered message.
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		o.refuse(ctx, conn, "the orchestrator is shutting down", false)
		return errClosed
	}
	o.sessions.Add(1)
	o.workers[w.id] = w
	o.joinIndexLocked(w)
	o.metrics.workers.Inc()
	o.mu.Unlock()
	defer o.sessions.Done()
	streamKey := o.svc.addHost(w)
	defer o.svc.dropHost(w)
	wctx, cancelWrite := context.WithTimeout(ctx, o.cfg.WriteTimeout)
	err = conn.Write(wctx, protocol.Message{
		Type:        protocol.TypeRegistered,
		Version:     protocol.Version,
		WorkerID:    w.id,
		Trusted:     w.trusted,
		HeartbeatMS: o.cfg.HeartbeatInterval.Milliseconds(),
		StreamKey:   streamKey,
	})
	cancelWrite()
	if err != nil {
		// Nothing reached the worker: what was assigned to it is queued
		// again without counting an attempt.
		o.dropWorker(w, fmt.Sprintf("worker %s did not take its registration", w.id), false)
		return fmt.Errorf("write registered: %w", err)
	}
	log := o.log.With("worker_id", w.id, "remote", remote)
	log.Info("worker connected", "name", w.name, "runtimes", w.caps.Runtimes, "concurrency", w.caps.Concurrency)

	sessCtx, endSession := context.WithCancel(ctx)
	defer endSession()
	conn.Bind(sessCtx)
	writerDone := make(chan error, 1)
	go func() { writerDone <- o.writeLoop(sessCtx, conn, w) }()

	o.mu.Lock()
	var starts []start
	if !w.gone {
		starts = o.fillLocked(w, nil)
	}
	o.mu.Unlock()
	o.launch(starts)

	err = o.readLoop(sessCtx, conn, w)
	endSession()
	if werr := <-writerDone; err == nil {
		err = werr
	}
	o.dropWorker(w, fmt.Sprintf("worker %s disconnected", w.id), true)
	o.svc.dropHost(w)
	if reason, ok := protocol.ClosedCleanly(err); ok {
		log.Info("worker disconnected", "closed_by_worker", reason)
	} else {
		log.Info("worker disconnected", "reason", err)
	}
	return err
}

// holdAnonymousSession counts a new anonymous session from addr, or says
// why it may not be opened (counting nothing): addr already holds
// MaxAnonymousSessionsPerAddr, or MaxAnonymousSessions are open.
func (o *Orchestrator) holdAnonymousSession(addr string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.anonSessions[addr] >= o.cfg.MaxAnonymousSessionsPerAddr {
		return fmt.Sprintf("address %s holds %d anonymous sessions, the most one address may; try again when one ends", addr, o.cfg.MaxAnonymousSessionsPerAddr)
	}
	if m := o.cfg.MaxAnonymousSessions; m > 0 && o.anonTotal >= m {
		return fmt.Sprintf("%d anonymous sessions are open, the most this orchestrator takes; try again later", m)
	}
	o.anonSessions[addr]++
	o.anonTotal++
	return ""
}

// releaseAnonymousSession counts out an anonymous session from addr.
func (o *Orchestrator) releaseAnonymousSession(addr string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.anonTotal--
	if o.anonSessions[addr]--; o.anonSessions[addr] <= 0 {
		delete(o.anonSessions, addr)
	}
}

// refuse answers a registration with an error and closes. A permanent
// refusal (a bad join token, an unknown protocol version) tells the worker
// that trying again will not help.
func (o *Orchestrator) refuse(ctx context.Context, conn *protocol.Conn, why string, permanent bool) {
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn.Write(wctx, protocol.Message{Type: protocol.TypeError, Error: why, Permanent: permanent})
	conn.Close(why)
}

// readLoop handles the worker's messages until the connection fails or the
// worker is silent for HeartbeatMisses intervals (no data at all: a large
// message still arriving is not silence).
func (o *Orchestrator) readLoop(ctx context.Context, conn *protocol.Conn, w *worker) error {
	silence := o.cfg.HeartbeatInterval * time.Duration(max(o.cfg.HeartbeatMisses, 1))
	for {
		m, err := conn.ReadIdle(ctx, silence)
		if err != nil {
			var de *protocol.DecodeError
			if errors.As(err, &de) {
				why := clip(err.Error())
				o.log.Warn("bad message from worker", "worker_id", w.id, "err", why)
				w.send(protocol.Message{Type: protocol.TypeError, Error: why})
				continue
			}
			if errors.Is(err, protocol.ErrIdle) {
				return fmt.Errorf("no message for %s", silence)
			}
			return err
		}
		w.lastSeen.Store(o.now().UnixNano())
		switch m.Type {
		case protocol.TypeResult:
			o.handleResult(ctx, w, m)
		case protocol.TypeReject:
			o.handleReject(w, m)
		case protocol.TypeHeartbeat:
		case protocol.TypeCapabilities:
			if !w.trusted {
				m.Capabilities.Docker = nil
				m.Capabilities.Runtimes = slices.DeleteFunc(m.Capabilities.Runtimes, job.NeedsTrust)
			}
			o.mu.Lock()
			o.recapLocked(w, *m.Capabilities)
			w.notes = m.Notes
			starts := o.fillLocked(w, nil)
			o.mu.Unlock()
			o.launch(starts)
			o.svc.updateHost(w, *m.Capabilities)
		case protocol.TypeOutput:
			o.handleOutput(ctx, w, m)
		case protocol.TypeMetrics:
			o.workerUsage.report(w, *m.Usage)
		case protocol.TypeServiceState:
			o.svc.report(w, m.Report)
		case protocol.TypeServiceOutput:
			o.svc.output(w, m)
		case protocol.TypeError:
			o.log.Warn("worker reported an error", "worker_id", w.id, "err", clip(m.Error))
		default:
			w.send(protocol.Message{Type: protocol.TypeError, Error: clip(fmt.Sprintf("unexpected message %q", m.Type))})
		}
	}
}

// writeLoop sends the worker's queued messages in order.
func (o *Orchestrator) writeLoop(ctx context.Context, conn *protocol.Conn, w *worker) error {
	for {
		w.outMu.Lock()
		batch := w.out
		w.out = nil
		w.outMu.Unlock()
		for _, m := range batch {
			if err := conn.WriteWithin(ctx, m, o.cfg.WriteTimeout); err != nil {
				conn.CloseNow()
				return fmt.Errorf("write %s: %w", m.Type, err)
			}
		}
		select {
		case <-w.signal:
		case <-ctx.Done():
			return nil
		}
	}
}

// handleResult applies a result if it carries the job's current lease, and
// frees the worker's slot either way.
func (o *Orchestrator) handleResult(ctx context.Context, w *worker, m protocol.Message) {
	o.mu.Lock()
	l, held := w.leases[m.LeaseID]
	held = held && l.jobID == m.JobID
	abandoned := held && l.abandoned
	if held {
		o.endLeaseLocked(w, m.LeaseID)
	}
	e, ok := o.active[m.JobID]
	current := ok && !e.final && e.worker == w && e.job.LeaseID == m.LeaseID
	var oversize int
	if current {
		sanitizeResult(e.job, m.Result)
		if n := resultBytes(m.Result); !w.trusted && n > o.cfg.MaxAnonymousResultBytes {
			oversize, current = n, false
			o.requeueLocked(e, false, "")
			e.job.Reason = fmt.Sprintf("worker %s returned a result of %d bytes, more than an anonymous volunteer may (%d, MaxAnonymousResultBytes); it was not kept", w.id, n, o.cfg.MaxAnonymousResultBytes)
			o.rejectedLocked(e, w)
			o.persistAsyncLocked(e)
		}
	}
	if current {
		o.resultLocked(w)
		r := m.Result
		r.WorkerID = w.id
		r.Attempt = e.job.Attempt
		o.finishLocked(e, r)
		// Stored off the read loop, so that one worker's results do not
		// wait for each other's commits; readers see the final state in
		// memory until it is stored, and waiters wake once it is.
		o.persistAsyncLocked(e)
	}
	var starts []start
	if oversize > 0 {
		// Elsewhere first, as for a job given back unrun.
		starts = o.dispatchExceptLocked(w)
	} else {
		starts = o.fillLocked(w, nil)
	}
	o.mu.Unlock()
	o.launch(starts)

	if oversize > 0 {
		o.log.Warn("result refused: too large from an anonymous volunteer", "worker_id", w.id, "job_id", m.JobID, "bytes", oversize)
		return
	}
	if !current {
		if abandoned {
			// The job was canceled or taken back; the worker has stopped.
			return
		}
		o.metrics.staleResults.Inc()
		o.log.Warn("result rejected: the lease is not current", "worker_id", w.id, "job_id", clip(m.JobID), "lease_id", clip(m.LeaseID), "held", held)
	}
}

// sanitizeResult drops from a worker's result r for j what only the
// orchestrator fills (replicas) and what j's type never produces (a
// build's report, a container's output files), so that a worker cannot
// make a job look verified or built.
func sanitizeResult(j *job.Job, r *job.Result) {
	r.Replicas = nil
	if !j.IsBuild() {
		r.Build = nil
	}
	if j.Type != job.TypeDocker {
		r.Files = nil
	}
}

// resultBytes is the size of what r carries for the client.
func resultBytes(r *job.Result) int {
	n := len(r.Output) + len(r.Stderr) + len(r.Result) + len(r.Error)
	for name, b := range r.Files {
		n += len(name) + len(b)
	}
	return n
}

// clip cuts what a worker wrote (an error, an id that matched nothing) to
// job.SummaryTextBytes before it is logged, stored as a job's reason or
// echoed: a worker may send megabytes of it in every message.
func clip(s string) string { return job.CutText(s, job.SummaryTextBytes) }

// handleReject puts back a job the worker could not start, without
// counting an attempt; or, when the worker's runtime tried and could not
// run it (m.Attempted), as a lost lease that is tried on another worker
// (loseLeaseLocked: it costs the job an attempt only when the worker's
// identity is in good standing). For an anonymous volunteer a job given
// back unrun counts in its record as a lost one does (rejectedLocked).
func (o *Orchestrator) handleReject(w *worker, m protocol.Message) {
	o.mu.Lock()
	if l, ok := w.leases[m.LeaseID]; ok && l.jobID == m.JobID {
		o.endLeaseLocked(w, m.LeaseID)
	}
	e, ok := o.active[m.JobID]
	if !ok || e.final || e.worker != w || e.job.LeaseID != m.LeaseID {
		o.mu.Unlock()
		return
	}
	o.log.Warn("worker gave a job back", "worker_id", w.id, "job_id", m.JobID, "attempted", m.Attempted, "err", clip(m.Error))
	why := "worker " + w.id + " could not run it: " + clip(m.Error)
	if m.Attempted {
		if e.avoid == nil {
			e.avoid = make(map[string]bool)
		}
		e.avoid[w.id] = true
		o.loseLeaseLocked(e, w, why)
	} else {
		if e.parent != nil {
			// It never ran there: the worker may take a replica of the
			// job again.
			delete(e.parent.rep.workers, w.id)
		}
		o.requeueLocked(e, false, "")
		e.job.Reason = why
		o.rejectedLocked(e, w)
	}
	starts := o.dispatchExceptLocked(w)
	o.mu.Unlock()
	o.persist(context.Background(), e)
	o.launch(starts)
}

// requeueLocked puts a running e back in the queue. With lost set it
// counts an attempt (and may fail the job).
func (o *Orchestrator) requeueLocked(e *entry, lost bool, why string) {
	o.countLocked(e, job.StatusRunning, -1)
	if lost {
		o.loseLocked(e, why)
		if e.final {
			return
		}
	} else {
		e.job.Status = job.StatusPending
		e.job.LeaseID = ""
		o.releaseLocked(e)
		e.version++
	}
	o.countLocked(e, job.StatusPending, 1)
	e.enqueuedAt = o.now()
	o.queue.push(e, true)
}

// dropWorker ends w's session: its jobs go back to pending. With lost set
// (the worker went away) each is a lost lease (loseLeaseLocked: attempt+1
// when w is in good standing, or failed when out of attempts); otherwise
// (the orchestrator ended the session) they keep their attempts.
func (o *Orchestrator) dropWorker(w *worker, why string, lost bool) {
	o.mu.Lock()
	if w.gone {
		o.mu.Unlock()
		return
	}
	w.gone = true
	delete(o.workers, w.id)
	o.leaveIndexLocked(w)
	o.metrics.workers.Dec()
	o.workerUsage.forget(w)
	var changed []*entry
	for leaseID, l := range w.leases {
		e, ok := o.active[l.jobID]
		if !ok || e.final || e.worker != w || e.job.LeaseID != leaseID {
			continue
		}
		switch {
		case !lost:
			o.requeueLocked(e, false, "")
			e.job.Reason = "re-queued: " + why
		case o.closed:
			// The orchestrator is stopping and ended the session: the
			// attempt counts as a restart's does, and the worker's
			// record is left alone.
			o.requeueLocked(e, true, why)
		default:
			o.loseLeaseLocked(e, w, why)
		}
		changed = append(changed, e)
	}
	for leaseID := range w.leases {
		o.endLeaseLocked(w, leaseID)
	}
	w.leases = nil
	starts := o.dispatchLocked()
	o.mu.Unlock()
	for _, e := range changed {
		o.persist(context.Background(), e)
	}
	o.launch(starts)
}

// Workers lists the connected workers, sorted by id.
func (o *Orchestrator) Workers() []job.WorkerInfo {
	var out []job.WorkerInfo
	f := job.WorkerFilter{Limit: job.MaxWorkerListLimit}
	for {
		page, next := o.WorkerPage(f)
		out = append(out, page...)
		if next == "" {
			return out
		}
		f.Cursor = next
	}
}

// workerScanLimit bounds the workers one page looks at, so that a filter
// that keeps few of many workers answers a short page (with a cursor)
// rather than hold the lock for all of them.
const workerScanLimit = 10_000

// WorkerPage returns the connected workers f keeps, sorted by id, from
// after f.Cursor, at most f.Limit (job.DefaultWorkerListLimit when 0) of
// them, and the cursor of the next page ("" when there is none). It looks
// at no more workers than the page needs, at most workerScanLimit.
func (o *Orchestrator) WorkerPage(f job.WorkerFilter) ([]job.WorkerInfo, string) {
	limit := f.Limit
	if limit <= 0 {
		limit = job.DefaultWorkerListLimit
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	ids := o.index.ids
	i, found := slices.BinarySearch(ids, f.Cursor)
	if found {
		i++
	}
	out := make([]job.WorkerInfo, 0, min(limit, len(ids)-i))
	for scanned := 0; i < len(ids); i, scanned = i+1, scanned+1 {
		if len(out) == limit || scanned == workerScanLimit {
			return out, ids[i-1]
		}
		w := o.workers[ids[i]]
		if w == nil || !f.Matches(&w.caps, w.trusted) {
			continue
		}
		out = append(out, o.workerInfoLocked(w))
	}
	return out, ""
}

// workerInfoLocked describes w.
func (o *Orchestrator) workerInfoLocked(w *worker) job.WorkerInfo {
	info := job.WorkerInfo{
		ID:            w.id,
		Name:          w.name,
		Remote:        w.remote,
		Capabilities:  w.caps,
		Trusted:       w.trusted,
		Owner:         w.owner,
		Banned:        o.bannedLocked(w),
		RunningJobs:   []string{},
		ConnectedAt:   w.connectedAt.UTC(),
		LastHeartbeat: time.Unix(0, w.lastSeen.Load()).UTC(),
		Notes:         maps.Clone(w.notes),
	}
	info.JobNamespaces = make(map[string]string)
	for _, l := range w.leases {
		if !l.abandoned {
			info.RunningJobs = append(info.RunningJobs, l.jobID)
			if e, ok := o.active[l.jobID]; ok {
				info.JobNamespaces[l.jobID] = e.job.Namespace
			}
		}
	}
	info.Running = len(info.RunningJobs)
	slices.Sort(info.RunningJobs)
	return info
}

// pendingReasonLocked says why a pending job waits. It looks at pools, not
// at workers: what the workers that run the job's type do with it is
// summed up by reason ("of 9000 workers that run docker jobs: 8999 refuse
// it: does not allow image x; 1 has no free slot"), at most
// maxReasons of them.
func (o *Orchestrator) pendingReasonLocked(e *entry) string {
	ns := e.job.Namespace
	if q := o.quotasLocked(ns); q.RunningJobs > 0 && o.nsRunning[ns] >= q.RunningJobs {
		return fmt.Sprintf("namespace %s has %d jobs running, its quota; this one waits its turn", ns, o.nsRunning[ns])
	}
	offer, refuse, full := 0, 0, 0
	why := make(map[string]int)
	for _, p := range o.index.pools {
		if !p.caps.Has(e.job.Type) {
			continue
		}
		n := len(p.members)
		offer += n
		if r := o.poolRefusalLocked(&p.caps, p.trusted, e); r != "" {
			why[r] += n
			refuse += n
			continue
		}
		if p.banned > 0 {
			why["are banned (their results lost quorum, or they lost leases without returning results)"] += p.banned
			refuse += p.banned
		}
		if p.nready > 0 && e.parent != nil && p.pick(e, nil, func(w *worker) bool { return !e.excluded(w) }) == nil {
			why["already ran a replica of this job, or their owner or address did (replicas go to distinct identities)"] += p.nready
			refuse += p.nready
		}
		full += n - p.banned - p.nready
	}
	if offer == 0 {
		return fmt.Sprintf("no connected worker runs %s jobs", e.job.Type)
	}
	summary := fmt.Sprintf("of %d workers that run %s jobs: %s", offer, e.job.Type, summarizeRefusals(why, full))
	if refuse == offer {
		return "no connected worker accepts this job; " + summary
	}
	ahead := 0
	if e.elem != nil {
		ahead = o.queue.position(e, 10000)
	}
	return fmt.Sprintf("waiting for a free worker slot (%d jobs ahead; %s)", ahead, summary)
}

// maxReasons bounds the distinct refusals a pending job's reason names.
const maxReasons = 3

// summarizeRefusals says how many workers refuse a job for each reason in
// why, most first, at most maxReasons of them, and how many are full.
func summarizeRefusals(why map[string]int, full int) string {
	reasons := slices.Collect(maps.Keys(why))
	slices.SortFunc(reasons, func(a, b string) int {
		if why[a] != why[b] {
			return why[b] - why[a]
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for i, r := range reasons {
		if i == maxReasons {
			n := 0
			for _, r := range reasons[i:] {
				n += why[r]
			}
			parts = append(parts, fmt.Sprintf("%d refuse it for %d other reasons", n, len(reasons)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("%d refuse it: %s", why[r], r))
	}
	if full > 0 {
		parts = append(parts, fmt.Sprintf("%d have no free slot", full))
	}
	if len(parts) == 0 {
		return "all have room"
	}
	return strings.Join(parts, "; ")
}
