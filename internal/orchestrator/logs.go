package orchestrator

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/store"
)

// LogConfig bounds jobs' logs (docs/protocol.md, "output"; the HTTP API's
// GET /api/jobs/{id}/logs). Every field must be positive.
type LogConfig struct {
	// JobBytes bounds the output a job's log keeps, all attempts together
	// (default 1 MiB); output past it is counted (Dropped) and not kept.
	// The result keeps the whole output all the same.
	JobBytes int64
	// JobEvents bounds the events a job's log keeps (default 4096), so
	// that a worker sending a byte a message cannot make it long.
	JobEvents int
	// FollowersPerJob bounds the followers of one job's log at once
	// (default 16); FollowersPerToken those of one token, all jobs
	// together (default 32). One more is refused as unavailable.
	FollowersPerJob   int
	FollowersPerToken int
	// FollowerEvents is how many events one follower may hold unsent
	// (default 256). One that falls further behind reads on from the
	// store, so it misses nothing and holds no more.
	FollowerEvents int
	// MemoryEvents is how many events are kept in memory for a job whose
	// log is not stored (function invocations, replicas, or a store that
	// keeps no logs), newest first out (default 512).
	MemoryEvents int
}

// DefaultLogConfig returns the documented defaults.
func DefaultLogConfig() LogConfig {
	return LogConfig{JobBytes: 1 << 20, JobEvents: 4096, FollowersPerJob: 16, FollowersPerToken: 32, FollowerEvents: 256, MemoryEvents: 512}
}

func (c LogConfig) validate() []error {
	var errs []error
	for name, n := range map[string]int64{
		"Logs.JobBytes": c.JobBytes, "Logs.JobEvents": int64(c.JobEvents), "Logs.FollowersPerJob": int64(c.FollowersPerJob),
		"Logs.FollowersPerToken": int64(c.FollowersPerToken), "Logs.FollowerEvents": int64(c.FollowerEvents), "Logs.MemoryEvents": int64(c.MemoryEvents),
	} {
		if n < 1 {
			errs = append(errs, job.Invalid(name, "must be at least 1 (got %d)", n))
		}
	}
	return errs
}

// logBook keeps the logs of jobs: each event is stored (when the store
// keeps logs and the job is stored) before followers are handed it.
type logBook struct {
	cfg    LogConfig
	stored store.JobLogs // nil: memory only
	// updater, when the store has it, stores a job's state and the
	// status event it adds to the job's log in one write.
	updater jobLogUpdater

	mu       sync.Mutex
	closed   bool               // EndLogFollowers was called
	logs     map[string]*jobLog // jobs with a writer or a follower
	byToken  map[string]int     // followers per token
	observed func(job.LogStream, int)
}

// jobLog is one job's log state. Its mu orders the job's events: it is
// held while an event is numbered, stored and handed to followers.
type jobLog struct {
	id        string
	mu        sync.Mutex
	loaded    bool
	ephemeral bool
	next      uint64 // Seq of the next event
	events    int
	bytes     int64
	dropped   int64 // output bytes not kept since the last event
	last      *job.LogEvent
	ended     bool
	memory    []job.LogEvent // the events of a log that is not stored
	followers map[*follower]bool
	refs      int // followers and writers holding it; guarded by logBook.mu
	following int // followers; guarded by logBook.mu
}

type follower struct {
	ch     chan job.LogEvent
	lagged bool // dropped an event; guarded by jobLog.mu
}

func newLogBook(cfg LogConfig, st store.Store, observed func(job.LogStream, int)) *logBook {
	b := &logBook{cfg: cfg, logs: make(map[string]*jobLog), byToken: make(map[string]int), observed: observed}
	if jl, ok := st.(store.JobLogs); ok {
		b.stored = jl
		b.updater, _ = st.(jobLogUpdater)
	}
	return b
}

// jobLogUpdater is a store that writes a job's state and an event of its
// log together (the SQLite store does): both are durable once it returns
// nil, and neither was written when it fails.
type jobLogUpdater interface {
	UpdateJobWithLog(ctx context.Context, j *job.Job, ev job.LogEvent) error
	CreateJobWithLog(ctx context.Context, j *job.Job, ev job.LogEvent) error
}

// acquire returns id's log, held until release.
func (b *logBook) acquire(id string) *jobLog {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.logs[id]
	if l == nil {
		l = &jobLog{id: id, next: 1, followers: make(map[*follower]bool)}
		b.logs[id] = l
	}
	l.refs++
	return l
}

func (b *logBook) release(l *jobLog) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l.refs--
	if l.refs == 0 && b.logs[l.id] == l {
		delete(b.logs, l.id)
	}
}

// fresh returns the log of job id, which was just created here and so has
// none yet: it is loaded without a read of the store and held until
// release. The job's entry holds it while the job is active, so that its
// changes of status are numbered from memory.
func (b *logBook) fresh(id string) *jobLog {
	l := b.acquire(id)
	l.mu.Lock()
	l.loaded = true
	l.mu.Unlock()
	return l
}

// loadLocked reads what the store holds of l, once. l.mu is held.
func (b *logBook) loadLocked(ctx context.Context, l *jobLog, ephemeral bool) error {
	if l.loaded {
		return nil
	}
	l.ephemeral = ephemeral
	if b.stored != nil && !ephemeral {
		st, err := b.stored.JobLogState(ctx, l.id)
		if err != nil {
			return err
		}
		l.next, l.events, l.bytes, l.last = st.LastSeq+1, st.Events, st.OutputBytes, st.LastStatus
		l.ended = l.last != nil && l.last.Ends()
	}
	l.loaded = true
	return nil
}

// appendLocked numbers ev, stores it and hands it to l's followers. l.mu
// is held.
func (b *logBook) appendLocked(ctx context.Context, l *jobLog, ev job.LogEvent) error {
	numberLocked(l, &ev)
	if b.stored != nil && !l.ephemeral {
		if err := b.stored.AppendJobLog(context.WithoutCancel(ctx), l.id, ev); err != nil {
			return err
		}
	} else {
		l.memory = append(l.memory, ev)
		if over := len(l.memory) - b.cfg.MemoryEvents; over > 0 {
			l.memory = append(l.memory[:0], l.memory[over:]...)
		}
	}
	b.publishLocked(l, ev)
	return nil
}

// numberLocked gives ev its place in l, and a time when it has none. l.mu
// is held.
func numberLocked(l *jobLog, ev *job.LogEvent) {
	ev.Seq = l.next
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
}

// publishLocked counts ev, numbered and stored, in l and hands it to l's
// followers. l.mu is held.
func (b *logBook) publishLocked(l *jobLog, ev job.LogEvent) {
	l.next++
	l.events++
	l.bytes += int64(len(ev.Text))
	if ev.Stream == job.LogStatus {
		l.last = &ev
		l.ended = ev.Ends()
	}
	for f := range l.followers {
		if f.lagged {
			continue
		}
		select {
		case f.ch <- ev:
		default:
			// It reads on from the store (Follow); nothing waits here.
			f.lagged = true
			close(f.ch)
		}
	}
	if b.observed != nil && ev.Stream != job.LogStatus {
		b.observed(ev.Stream, len(ev.Text))
	}
}

// output appends what a task of j wrote, within the log's bounds. The
// run's status comes first when its log does not have it yet (the running
// state is stored in the background, and output may come before).
func (b *logBook) output(ctx context.Context, j *job.Job, ephemeral bool, stream job.LogStream, text string, dropped int64) error {
	l := b.acquire(j.ID)
	defer b.release(l)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := b.loadLocked(ctx, l, ephemeral); err != nil {
		return err
	}
	if l.ended {
		return nil
	}
	if _, err := b.statusLocked(ctx, l, j); err != nil {
		return err
	}
	l.dropped += dropped
	// The last event is kept for the end.
	room := max(b.cfg.JobBytes-l.bytes, 0)
	if l.events >= b.cfg.JobEvents-1 {
		room = 0
	}
	var over int64
	if int64(len(text)) > room {
		cut := cutUTF8(text, int(room))
		over = int64(len(text) - len(cut))
		text = cut
	}
	if text == "" {
		l.dropped += over
		return nil
	}
	ev := job.LogEvent{Stream: stream, Text: text, Dropped: l.dropped}
	l.dropped = over
	return b.appendLocked(ctx, l, ev)
}

// status appends a status event when j's status, attempt or run changed
// since the last one. A run that ended without a result (its worker went
// away, its lease expired, the orchestrator restarted) shows as the next
// event's Restarted.
//
// It reports whether this was the event that ends the log. A log whose
// end could not be stored still ends (ended true with the error).
func (b *logBook) status(ctx context.Context, j *job.Job, ephemeral bool) (ended bool, err error) {
	l := b.acquire(j.ID)
	defer b.release(l)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := b.loadLocked(ctx, l, ephemeral); err != nil {
		return j.Status.Terminal(), err
	}
	return b.statusLocked(ctx, l, j)
}

// statusLocked is status with l.mu held and l loaded.
func (b *logBook) statusLocked(ctx context.Context, l *jobLog, j *job.Job) (ended bool, err error) {
	ev, ok := statusEventLocked(l, j)
	if !ok {
		return false, nil
	}
	if ev.Ends() {
		l.dropped = 0
	}
	err = b.appendLocked(ctx, l, ev)
	if err != nil && ev.Ends() {
		l.ended = true // followers get an end made from the job's state
		for f := range l.followers {
			if !f.lagged {
				f.lagged = true
				close(f.ch)
			}
		}
	}
	return ev.Ends(), err
}

// statusEventLocked returns the status event j's state adds to l, or
// false when l needs none (the state is the one l has, or l has ended).
// l.mu is held and l loaded.
func statusEventLocked(l *jobLog, j *job.Job) (job.LogEvent, bool) {
	if l.ended {
		return job.LogEvent{}, false
	}
	ev := job.LogEvent{Stream: job.LogStatus, Status: j.Status, Attempt: j.Attempt, Reason: j.Reason}
	if p := l.last; p != nil {
		if p.Status == ev.Status && p.Attempt == ev.Attempt && (ev.Status != job.StatusRunning || !j.StartedAt.After(p.Time)) {
			return job.LogEvent{}, false
		}
		// A run that was going on and did not end with a result.
		ev.Restarted = p.Status == job.StatusRunning && !ev.Status.Terminal()
	}
	if ev.Status == job.StatusRunning {
		ev.Time = j.StartedAt
	}
	if ev.Ends() {
		ev.Dropped = l.dropped
	}
	return ev, true
}

// updateWithStatus stores j, a job's new state, and the status event it
// adds to the job's log in one write of the store, when the store can
// (updater) and the log needs one; create says that j is not in the store
// yet (Request.Waited) and is created so. stored false means that nothing
// was written: the caller stores j and then notes its status (noteStatus)
// as for any store. ended says that the event ends the log.
func (b *logBook) updateWithStatus(ctx context.Context, j *job.Job, create bool) (stored, ended bool) {
	if b.updater == nil {
		return false, false
	}
	l := b.acquire(j.ID)
	defer b.release(l)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := b.loadLocked(ctx, l, false); err != nil {
		return false, false
	}
	ev, ok := statusEventLocked(l, j)
	if !ok {
		return false, false
	}
	numberLocked(l, &ev)
	write := b.updater.UpdateJobWithLog
	if create {
		write = b.updater.CreateJobWithLog
	}
	if err := write(context.WithoutCancel(ctx), j, ev); err != nil {
		return false, false
	}
	if ev.Ends() {
		l.dropped = 0
	}
	b.publishLocked(l, ev)
	return true, ev.Ends()
}

// read returns up to limit events of l after seq after: from the store,
// or from memory.
func (b *logBook) read(ctx context.Context, l *jobLog, after uint64, limit int) ([]job.LogEvent, error) {
	if b.stored != nil && !l.ephemeral {
		return b.stored.JobLog(ctx, l.id, after, limit)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []job.LogEvent
	for _, ev := range l.memory {
		if ev.Seq > after && len(out) < limit {
			out = append(out, ev)
		}
	}
	return out, nil
}

// logPage is how many events a read of the store returns.
const logPage = 256

// JobLog returns what job id's log holds after seq after, at most limit
// events, and whether the job has ended. ctx must carry a principal that
// sees the job's namespace: to any other, the job does not exist
// (not_found); without one JobLog is unauthorized.
func (o *Orchestrator) JobLog(ctx context.Context, id string, after uint64, limit int) ([]job.LogEvent, bool, error) {
	j, ephemeral, err := o.logJob(ctx, id)
	if err != nil {
		return nil, false, err
	}
	l := o.logs.acquire(id)
	defer o.logs.release(l)
	l.mu.Lock()
	err = o.logs.loadLocked(ctx, l, ephemeral)
	l.mu.Unlock()
	if err != nil {
		return nil, false, err
	}
	evs, err := o.logs.read(ctx, l, after, limit)
	if err != nil {
		return nil, false, err
	}
	return evs, j.Status.Terminal(), nil
}

// FollowJobLog hands fn, in order, every event of job id's log after seq
// after, as it is written (first a zero event, Seq 0, once the follower is
// admitted: the caller may answer that the stream is open), and returns once fn has had the event that ends
// the log (the job's final status), ctx is done or fn returns an error
// (which it returns). A job that ended before its log recorded the end
// gets an end made from its state. Tenancy is JobLog's. A follower over
// LogConfig.FollowersPerJob or FollowersPerToken is refused (unavailable).
// It holds at most LogConfig.FollowerEvents events for fn: when fn is
// slower, it reads on from the store.
func (o *Orchestrator) FollowJobLog(ctx context.Context, id string, after uint64, fn func(job.LogEvent) error) error {
	p, err := job.Caller(ctx)
	if err != nil {
		return err
	}
	j, ephemeral, err := o.logJob(ctx, id)
	if err != nil {
		return err
	}
	l := o.logs.acquire(id)
	defer o.logs.release(l)
	if err := o.logs.holdFollower(l, p.TokenID); err != nil {
		return err
	}
	defer o.logs.dropFollower(l, p.TokenID)
	if err := fn(job.LogEvent{}); err != nil {
		return err
	}
	last := after
	for {
		f, ended, err := o.logs.subscribe(ctx, l, ephemeral)
		if errors.Is(err, errEndedFollowers) {
			return nil
		}
		if err != nil {
			return err
		}
		done, err := o.replayLog(ctx, l, &last, fn)
		if err != nil || done {
			o.logs.unsubscribe(l, f)
			return err
		}
		if ended || f == nil {
			o.logs.unsubscribe(l, f)
			// The log holds no end: make one from the job's state.
			if cur, err := o.Job(ctx, id); err == nil {
				j = cur
			}
			if !j.Status.Terminal() {
				return nil
			}
			return fn(job.LogEvent{Seq: last + 1, Stream: job.LogStatus, Time: j.FinishedAt, Status: j.Status, Attempt: j.Attempt, Reason: j.Reason})
		}
		done, err = o.drainFollower(ctx, f, &last, fn)
		o.logs.unsubscribe(l, f)
		if err != nil || done {
			return err
		}
		// It fell behind: read on from the store.
	}
}

// replayLog hands fn the events stored after *last; done says that the
// end was among them.
func (o *Orchestrator) replayLog(ctx context.Context, l *jobLog, last *uint64, fn func(job.LogEvent) error) (done bool, err error) {
	for {
		evs, err := o.logs.read(ctx, l, *last, logPage)
		if err != nil {
			return false, err
		}
		for _, ev := range evs {
			if err := fn(ev); err != nil {
				return false, err
			}
			*last = ev.Seq
			if ev.Ends() {
				return true, nil
			}
		}
		if len(evs) < logPage {
			return false, nil
		}
	}
}

// drainFollower hands fn the events f receives after *last until the end
// (done), ctx is done, or f fell behind (neither).
func (o *Orchestrator) drainFollower(ctx context.Context, f *follower, last *uint64, fn func(job.LogEvent) error) (done bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case ev, ok := <-f.ch:
			if !ok {
				return false, nil
			}
			if ev.Seq <= *last {
				continue
			}
			if err := fn(ev); err != nil {
				return false, err
			}
			*last = ev.Seq
			if ev.Ends() {
				return true, nil
			}
		}
	}
}

// holdFollower counts a follower of l for token, or refuses it past the
// bounds (unavailable).
func (b *logBook) holdFollower(l *jobLog, token string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return job.Errorf(job.CodeUnavailable, "the orchestrator is shutting down")
	}
	if b.byToken[token] >= b.cfg.FollowersPerToken {
		return job.Errorf(job.CodeUnavailable, "this token follows %d logs already, as many as it may (Logs.FollowersPerToken)", b.byToken[token])
	}
	if l.following >= b.cfg.FollowersPerJob {
		return job.Errorf(job.CodeUnavailable, "job %s has %d followers already, as many as it may (Logs.FollowersPerJob)", l.id, l.following)
	}
	b.byToken[token]++
	l.following++
	return nil
}

func (b *logBook) dropFollower(l *jobLog, token string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l.following--
	if b.byToken[token]--; b.byToken[token] <= 0 {
		delete(b.byToken, token)
	}
}

// subscribe adds a follower to l, unless its log has ended (f nil, ended
// true).
func (b *logBook) subscribe(ctx context.Context, l *jobLog, ephemeral bool) (f *follower, ended bool, err error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, false, errEndedFollowers
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := b.loadLocked(ctx, l, ephemeral); err != nil {
		return nil, false, err
	}
	if l.ended {
		return nil, true, nil
	}
	f = &follower{ch: make(chan job.LogEvent, b.cfg.FollowerEvents)}
	l.followers[f] = true
	return f, false, nil
}

func (b *logBook) unsubscribe(l *jobLog, f *follower) {
	if f == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.followers, f)
}

// logJob returns the job with id when ctx's principal sees it, and
// whether its log is kept in memory only.
func (o *Orchestrator) logJob(ctx context.Context, id string) (*job.Job, bool, error) {
	p, err := job.Caller(ctx)
	if err != nil {
		return nil, false, err
	}
	o.mu.Lock()
	if e, ok := o.active[id]; ok {
		j, ephemeral := *e.job, e.ephemeral
		o.mu.Unlock()
		if !p.Sees(j.Namespace) {
			return nil, false, job.ErrNotFound
		}
		return &j, ephemeral, nil
	}
	o.mu.Unlock()
	j, err := o.store.GetJob(ctx, id)
	var expired *job.ExpiredError
	if errors.As(err, &expired) && !p.Sees(expired.Namespace) {
		return nil, false, job.ErrNotFound
	}
	if err != nil {
		return nil, false, err
	}
	if !p.Sees(j.Namespace) {
		return nil, false, job.ErrNotFound
	}
	return j, false, nil
}

// handleOutput appends a running task's output to its job's log when it
// carries the job's current lease; other output is dropped.
func (o *Orchestrator) handleOutput(ctx context.Context, w *worker, m protocol.Message) {
	o.mu.Lock()
	e, ok := o.active[m.JobID]
	current := ok && !e.final && e.worker == w && e.job.LeaseID == m.LeaseID
	var snap job.Job
	var ephemeral bool
	if current {
		snap, ephemeral = *e.job, e.ephemeral
	}
	o.mu.Unlock()
	if !current {
		return
	}
	if e.unstored.Load() {
		// Nothing of a job is stored before the job itself: output of
		// a waited job not stored yet would belong to no job after a
		// crash.
		o.persist(ctx, e)
		if e.unstored.Load() {
			o.log.Warn("store job output", "job_id", m.JobID, "err", "the job could not be stored")
			return
		}
	}
	if err := o.logs.output(ctx, &snap, ephemeral, m.Stream, m.Text, m.Dropped); err != nil {
		o.log.Warn("store job output", "job_id", m.JobID, "err", err)
	}
}

// noteStatus records j, the state of e just stored, in its log, and
// observes a job (not a replica) that ended. e.persistMu is held.
func (o *Orchestrator) noteStatus(ctx context.Context, j *job.Job, e *entry) {
	ended, err := o.logs.status(ctx, j, e.ephemeral)
	if err != nil {
		o.log.Warn("store job status in its log", "job_id", j.ID, "err", err)
	}
	o.statusNoted(j, e, ended)
}

// statusNoted follows the record of j, the state of e just stored, in its
// log; ended says that it ended the log. e.persistMu is held.
func (o *Orchestrator) statusNoted(j *job.Job, e *entry, ended bool) {
	if e.log != nil && j.Status.Terminal() {
		o.logs.release(e.log)
		e.log = nil
	}
	if ended && e.parent == nil {
		o.usageMetrics.ended(j)
	}
}

// cutUTF8 cuts s to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// errEndedFollowers is why a follower stops once EndLogFollowers was
// called.
var errEndedFollowers = errors.New("log followers ended")

// EndLogFollowers ends every follower of a job's log (FollowJobLog returns
// nil, as for a client that goes away) and of a service's (they get the
// log's end), and refuses new ones: an HTTP
// server shutting down calls it, since event streams never go idle.
// Clients resume elsewhere, or after a restart, with Last-Event-ID.
func (o *Orchestrator) EndLogFollowers() {
	o.svc.endFollowers()
	b := o.logs
	b.mu.Lock()
	b.closed = true
	logs := make([]*jobLog, 0, len(b.logs))
	for _, l := range b.logs {
		logs = append(logs, l)
	}
	b.mu.Unlock()
	for _, l := range logs {
		l.mu.Lock()
		for f := range l.followers {
			if !f.lagged {
				f.lagged = true
				close(f.ch)
			}
		}
		l.mu.Unlock()
	}
}
