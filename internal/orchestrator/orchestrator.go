// Package orchestrator queues jobs, matches them to the capabilities of
// connected workers, hands them out under leases and takes their results.
//
// Active jobs (pending and running) live in memory, indexed by id and
// queued per (runtime, namespace); the store is written at every change of
// state and is the truth after a restart. A job is durable before Submit
// returns, so no accepted job is lost.
package orchestrator

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/store"
)

// Config tunes the orchestrator. DefaultConfig documents every default.
//
// Start from DefaultConfig and change what you need: every field is used as
// it is set, and a zero never stands for "the default". New refuses a
// config whose values make no sense (validate), naming the field: a
// duration, interval or count that must be positive refuses zero and
// negative values; a field where zero has a meaning says so in its doc
// comment (such as a quota of zero, which is no cap).
type Config struct {
	// HeartbeatInterval is how often workers must send a heartbeat
	// (default 5 s).
	HeartbeatInterval time.Duration
	// HeartbeatMisses is how many intervals of silence end a worker's
	// session and re-queue its jobs (default 3).
	HeartbeatMisses int
	// LeaseGrace is how long past a job's timeout its lease lasts before
	// the job is taken back and re-queued (default 15 s).
	LeaseGrace time.Duration
	// RegisterTimeout bounds the wait for a new connection's "register"
	// (default 10 s).
	RegisterTimeout time.Duration
	// WriteTimeout bounds one message write to a worker; a worker that
	// cannot take a message in that time is disconnected (default 30 s).
	WriteTimeout time.Duration
	// MaxQueued caps the jobs pending at once; Submit answers unavailable
	// beyond it (default 1,000,000).
	MaxQueued int
	// MaxNamespaceLanes bounds the lanes one namespace's pending jobs fill
	// (default 256): the distinct requirements (memory_mb, container image
	// and resources, build) they ask for, each job type apart. Finding
	// work for a worker looks at the head of every lane of its runtimes,
	// so a submission that would open one more is refused (too_many)
	// until some drain: no namespace, by asking for thousands of distinct
	// requirements, makes every other namespace's dispatch slower.
	MaxNamespaceLanes int
	// RequestLimits are the defaults applied to new jobs.
	RequestLimits job.RequestLimits
	// DockerAllowImages, when not empty, are the only images (job.MatchImage
	// patterns) docker jobs may name; the operator's narrowing of what
	// workers allow. Other images are refused at submission.
	DockerAllowImages []string
	// RunningWriteDelay is how long after a job is handed to a worker its
	// running state is stored (default 100 ms; 0: at once). A job that
	// ends sooner has only its end stored, one write fewer per job: its
	// state in memory is what readers see meanwhile. A job whose running
	// state was not stored yet is re-queued after a crash as any is, but
	// keeps its attempt (see docs/rationale.md). A job whose submitter
	// waits for its end (Request.Waited) is first stored as late: when it
	// ends, when the wait returns it unfinished, or RunningWriteDelay
	// after its submission, whichever comes first; one that ends sooner
	// costs a single write.
	RunningWriteDelay time.Duration
	// Version is reported to workers and in logs.
	Version string

	// Auth checks the join tokens workers present; nil treats every
	// token but LocalWorkerSecret as invalid.
	Auth Authenticator
	// Policies gives each namespace's policy; nil gives the defaults.
	Policies PolicySource
	// OpenVolunteering lets workers without a join token connect
	// (default false). They are never trusted: they get no container jobs
	// and no jobs of namespaces that require trusted workers.
	OpenVolunteering bool
	// LocalWorkerSecret is the join token of the orchestrator's own
	// embedded workers; it is never stored.
	LocalWorkerSecret string
	// DefaultQuotas bound every namespace whose policy does not say
	// otherwise (default job.DefaultQuotas).
	DefaultQuotas job.Quotas
	// MaxReplicas caps a job's replicas, including those run again after a
	// disagreement (default 7).
	MaxReplicas int
	// MaxStrikes is how many times a worker owner's results may lose
	// quorum before its workers are sent no more jobs (default 3; at
	// least 1).
	MaxStrikes int
	// BuildKey keys builds' source keys and default tags (HMAC-SHA-256;
	// see job.BuildSpec.SourceKey), at least job.MinBuildKeyBytes. serve
	// keeps it in its data directory, so that keys workers report stay
	// valid across restarts. Empty: New draws a random one, and workers'
	// build caches are not recognized after a restart.
	BuildKey []byte
	// Retention says how long ended jobs and their results are kept
	// (DefaultRetentionConfig).
	Retention RetentionConfig
	// EndedJobs bounds the recently ended jobs kept in memory for readers
	// (DefaultEndedJobsConfig).
	EndedJobs EndedJobsConfig
	// MaxDrops is how many leases a worker identity not in good standing
	// may lose (by disconnecting or letting the lease expire) before its
	// workers are sent no more jobs (default 3; at least 1). Such losses
	// cost the job no attempt; see docs/rationale.md, "Lost leases".
	MaxDrops int
	// TokenRecheckInterval is how often the join token of every connected
	// worker is checked again; a session whose token was revoked ends
	// within this interval and its jobs go back to the queue (default 2 s).
	TokenRecheckInterval time.Duration
	// MaxAnonymousSessionsPerAddr is how many sessions anonymous
	// volunteers may hold at once from one address (an IPv6 address by
	// its /56, as their records are kept); more are refused until one
	// ends (default 64; at least 1). Without it one address could take
	// every worker session the server allows, locking trusted workers
	// out, and hold a job per session. Volunteers behind one NAT share it.
	MaxAnonymousSessionsPerAddr int
	// MaxAnonymousSessions is how many anonymous sessions may be open at
	// once in all (0, the default: no cap of their own). serve sets it to
	// half of its worker-session limit (--max-worker-sessions), so that
	// volunteers from many addresses cannot take every session and trusted
	// workers always find room.
	MaxAnonymousSessions int
	// MaxAnonymousResultBytes bounds the result an anonymous volunteer
	// may return (output, stderr, returned value and error together;
	// default 4 MiB, above what the sandboxed runtimes' default caps of
	// 1 MiB each produce). A larger one is not stored: the job goes back
	// to the queue without losing an attempt and the volunteer's record
	// counts a lost lease. It keeps a volunteer from spending another
	// namespace's storage quota (JobStorageMB) with results of the
	// message size limit.
	MaxAnonymousResultBytes int
	// MaxAnonymousMessageBytes is the largest message an anonymous
	// volunteer's session may send (default 8 MiB: a result within
	// MaxAnonymousResultBytes, JSON-escaped); a larger one ends the
	// session. Trusted sessions may send up to the connection's read
	// limit (protocol.DefaultReadLimit, 64 MiB). Anyone may volunteer
	// anonymously, so this bounds what anyone can make the orchestrator
	// hold in memory per session.
	MaxAnonymousMessageBytes int64
	// AnonymousReadBytes bounds the bytes that all anonymous volunteers'
	// sessions together make the orchestrator hold in messages it is
	// still reading (default 256 MiB). Each message may be as large as the
	// read limit (64 MiB), so without it a few hundred anonymous sessions
	// that each start a large message and never finish it hold the
	// orchestrator's memory. A message that would take the total past
	// the bound ends its session (its jobs go back to the queue). Trusted
	// workers' messages are not counted.
	AnonymousReadBytes int64
	// Logs bounds jobs' logs and their followers (DefaultLogConfig).
	Logs LogConfig
	// Metrics bounds the labels of the metrics (DefaultMetricsConfig).
	Metrics MetricsConfig

	// Services tunes docker services (see ServicesConfig).
	Services ServicesConfig
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		HeartbeatInterval: 5 * time.Second,
		HeartbeatMisses:   3,
		LeaseGrace:        15 * time.Second,
		RegisterTimeout:   10 * time.Second,
		WriteTimeout:      30 * time.Second,
		MaxQueued:         1_000_000,
		MaxNamespaceLanes: 256,
		RequestLimits:     job.DefaultRequestLimits(),
		DefaultQuotas:     job.DefaultQuotas(),
		MaxReplicas:       7,
		MaxStrikes:        3,
		Retention:         DefaultRetentionConfig(),
		EndedJobs:         DefaultEndedJobsConfig(),
		MaxDrops:          3,
		RunningWriteDelay: 100 * time.Millisecond,

		TokenRecheckInterval: 2 * time.Second,

		MaxAnonymousSessionsPerAddr: 64,
		MaxAnonymousResultBytes:     4 << 20,
		MaxAnonymousMessageBytes:    8 << 20,
		AnonymousReadBytes:          256 << 20,

		Logs:     DefaultLogConfig(),
		Metrics:  DefaultMetricsConfig(),
		Services: DefaultServicesConfig(),
	}
}

// Validate refuses settings that would break the platform: every field at
// fault is a *job.Error (code invalid) whose Field is its path in Config
// ("HeartbeatInterval", "Retention.Period"), joined.
func (c Config) Validate() error {
	var errs []error
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, job.Invalid(name, "must be a positive duration (got %s)", d))
		}
	}
	atLeast := func(name string, n, least int) {
		if n < least {
			errs = append(errs, job.Invalid(name, "must be at least %d (got %d)", least, n))
		}
	}
	positive("HeartbeatInterval", c.HeartbeatInterval)
	atLeast("HeartbeatMisses", c.HeartbeatMisses, 1)
	positive("LeaseGrace", c.LeaseGrace)
	positive("RegisterTimeout", c.RegisterTimeout)
	positive("WriteTimeout", c.WriteTimeout)
	positive("TokenRecheckInterval", c.TokenRecheckInterval)
	if c.RunningWriteDelay < 0 {
		errs = append(errs, job.Invalid("RunningWriteDelay", "must not be negative (got %s)", c.RunningWriteDelay))
	}
	atLeast("MaxQueued", c.MaxQueued, 1)
	atLeast("MaxNamespaceLanes", c.MaxNamespaceLanes, 1)
	atLeast("MaxReplicas", c.MaxReplicas, 1)
	atLeast("MaxStrikes", c.MaxStrikes, 1)
	atLeast("MaxDrops", c.MaxDrops, 1)
	atLeast("MaxAnonymousSessionsPerAddr", c.MaxAnonymousSessionsPerAddr, 1)
	atLeast("MaxAnonymousSessions", c.MaxAnonymousSessions, 0)
	atLeast("MaxAnonymousResultBytes", c.MaxAnonymousResultBytes, 1)
	if c.MaxAnonymousMessageBytes < 1 {
		errs = append(errs, job.Invalid("MaxAnonymousMessageBytes", "must be at least 1 (got %d)", c.MaxAnonymousMessageBytes))
	}
	if c.AnonymousReadBytes < 1<<20 {
		errs = append(errs, job.Invalid("AnonymousReadBytes", "must be at least 1 MiB (got %d)", c.AnonymousReadBytes))
	}

	l := c.RequestLimits
	atLeast("RequestLimits.MaxCodeBytes", l.MaxCodeBytes, 1)
	atLeast("RequestLimits.MaxWasmBytes", l.MaxWasmBytes, 1)
	atLeast("RequestLimits.MaxInputBytes", l.MaxInputBytes, 0)
	positive("RequestLimits.DefaultTimeout", l.DefaultTimeout)
	if l.MaxTimeout < l.DefaultTimeout {
		errs = append(errs, job.Invalid("RequestLimits.MaxTimeout", "%s must be at least RequestLimits.DefaultTimeout (%s)", l.MaxTimeout, l.DefaultTimeout))
	}
	atLeast("RequestLimits.DefaultMaxAttempts", l.DefaultMaxAttempts, 1)
	atLeast("RequestLimits.MaxMaxAttempts", l.MaxMaxAttempts, max(l.DefaultMaxAttempts, 1))
	atLeast("RequestLimits.MaxMemoryMB", l.MaxMemoryMB, 1)
	atLeast("RequestLimits.MaxReplicas", l.MaxReplicas, 1)

	// A quota of zero is no cap; a negative one is nonsense.
	q := c.DefaultQuotas
	atLeast("DefaultQuotas.PendingJobs", q.PendingJobs, 0)
	atLeast("DefaultQuotas.RunningJobs", q.RunningJobs, 0)
	atLeast("DefaultQuotas.Deployments", q.Deployments, 0)
	atLeast("DefaultQuotas.BuildContextMB", q.BuildContextMB, 0)
	atLeast("DefaultQuotas.JobStorageMB", q.JobStorageMB, -1)
	atLeast("DefaultQuotas.MaxInstances", q.MaxInstances, -1)
	if n := len(c.BuildKey); n > 0 && n < job.MinBuildKeyBytes {
		errs = append(errs, job.Invalid("BuildKey", "is %d bytes, fewer than %d", n, job.MinBuildKeyBytes))
	}
	errs = append(errs, c.Retention.validate()...)
	errs = append(errs, c.EndedJobs.validate()...)
	errs = append(errs, c.Logs.validate()...)
	errs = append(errs, c.Metrics.validate()...)
	if q.SubmitsPerSecond < 0 || math.IsNaN(q.SubmitsPerSecond) || math.IsInf(q.SubmitsPerSecond, 0) {
		errs = append(errs, job.Invalid("DefaultQuotas.SubmitsPerSecond", "must be a finite number, at least 0 (got %g)", q.SubmitsPerSecond))
	}
	for _, p := range c.DockerAllowImages {
		if strings.TrimSpace(p) == "" {
			errs = append(errs, job.Invalid("DockerAllowImages", "must not hold an empty pattern"))
		}
	}
	errs = append(errs, c.Services.Validate())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("orchestrator config: %w", err)
	}
	return nil
}

// Orchestrator is the scheduler. Create it with New, start its background
// work with Start, stop it with Close.
type Orchestrator struct {
	cfg     Config
	store   store.Store
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time

	// anonymousReads bounds what anonymous sessions' messages being
	// read hold together (Config.AnonymousReadBytes).
	anonymousReads *protocol.ReadBudget

	mu     sync.Mutex
	active map[string]*entry // pending and running jobs by id
	// ended keeps recently ended jobs as stored (Config.EndedJobs).
	ended   *endedJobs
	queue   *queues
	workers map[string]*worker
	// index finds workers for jobs (see workerIndex).
	index *workerIndex
	// leaseHeap orders the leases workers hold by deadline.
	leaseHeap leaseHeap
	counts    map[job.Status]int
	seq       uint64
	closed    bool
	// nsRunning counts running jobs per namespace, for the running quota.
	nsRunning map[string]int
	// nsPending counts pending jobs per namespace as counts does (a
	// replicated job once, whatever its replicas), for the pending quota.
	nsPending map[string]int
	// strikes counts, per reputation key, results that lost quorum.
	strikes map[string]int
	// standings are what each reputation key did with its leases.
	standings map[string]*standing
	// anonSessions counts anonymous sessions per address (remoteIdentity)
	// while they last; an address with none has no entry.
	anonSessions map[string]int
	// anonTotal is the sum of anonSessions.
	anonTotal int
	// anonLeases counts the leases untrusted workers hold (abandoned ones
	// too: they hold a slot) per reputation key; a key with none has no
	// entry.
	anonLeases map[string]int

	// svc runs docker services' instances (services.go).
	svc *services

	policies policyCache
	buckets  rateLimiter
	usage    usageCache
	// logs keeps jobs' logs; workerUsage what workers report of
	// themselves.
	logs         *logBook
	workerUsage  *workerUsage
	usageMetrics *usageMetrics

	stop     chan struct{}
	wg       sync.WaitGroup
	sessions sync.WaitGroup
	// launches counts assignments whose running state is not stored yet.
	// It grows only under mu while not closed, so Close can wait for it.
	launches sync.WaitGroup
}

// entry is an active job with its scheduling state. Fields are guarded by
// Orchestrator.mu, except persistMu which orders writes of the job.
type entry struct {
	job        *job.Job
	seq        uint64
	elem       *list.Element // while queued
	class      string        // requirement class, see requirementClass
	worker     *worker
	deadline   time.Time // lease deadline while running
	enqueuedAt time.Time
	version    uint64
	done       chan struct{} // closed when the job is terminal and stored
	final      bool          // terminal; being stored
	// ephemeral jobs (function invocations, replicas) are never stored.
	ephemeral bool
	// parent is the replicated job a replica belongs to; rep is set on
	// that parent.
	parent *entry
	rep    *replication
	// lostRun is set when the job ran out of attempts by losing workers.
	lostRun bool
	// chargedBy are the untrusted identities (reputation keys) whose lost
	// lease cost this job (any of its replicas, on a replicated job) an
	// attempt; each may do so once (see loseLeaseLocked).
	chargedBy map[string]bool
	// trustedOnly keeps the job off untrusted workers: a function
	// invocation whose deployment does not allow anonymous workers.
	trustedOnly bool
	// avoid are the sessions whose runtime could not run the job; it is
	// not offered to them again while another worker can take it.
	avoid map[string]bool

	persistMu sync.Mutex
	written   uint64 // guarded by persistMu
	// unstored is set while a job submitted with Request.Waited is not in
	// the store yet: its first write creates it (see persist).
	unstored atomic.Bool
	// log is the job's log, held from its creation here (see
	// logBook.fresh) or its recovery at start until it ends; guarded by
	// persistMu.
	log *jobLog
}

// New returns an orchestrator over st. Metrics are registered with reg
// (nil for none). It does not start anything. An invalid cfg is an error
// that names each field at fault.
func New(cfg Config, st store.Store, log *slog.Logger, reg prometheus.Registerer) (*Orchestrator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.BuildKey) == 0 {
		cfg.BuildKey = make([]byte, job.MinBuildKeyBytes)
		rand.Read(cfg.BuildKey)
	}
	o := &Orchestrator{
		cfg:     cfg,
		store:   st,
		log:     log,
		now:     time.Now,
		active:  make(map[string]*entry),
		ended:   newEndedJobs(cfg.EndedJobs),
		queue:   newQueues(),
		workers: make(map[string]*worker),
		index:   newWorkerIndex(),
		counts:  make(map[job.Status]int),
		stop:    make(chan struct{}),

		nsRunning: make(map[string]int),
		nsPending: make(map[string]int),
		strikes:   make(map[string]int),
		standings: make(map[string]*standing),

		anonSessions:   make(map[string]int),
		anonLeases:     make(map[string]int),
		anonymousReads: protocol.NewReadBudget(cfg.AnonymousReadBytes),
	}
	m, err := newMetrics(reg, o)
	if err != nil {
		return nil, err
	}
	o.metrics = m
	if err := o.startObserving(reg, st); err != nil {
		return nil, err
	}
	if o.svc, err = newServices(o, cfg.Services, reg); err != nil {
		return nil, err
	}
	return o, nil
}

// Start recovers the jobs left active in the store by a previous run —
// pending jobs stay pending, running ones are re-queued with attempt+1 —
// and starts the lease watcher. It returns once recovery is done.
func (o *Orchestrator) Start(ctx context.Context) error {
	counts, err := o.store.CountJobs(ctx)
	if err != nil {
		return fmt.Errorf("count jobs: %w", err)
	}
	jobs, err := o.store.ActiveJobs(ctx)
	if err != nil {
		return fmt.Errorf("load active jobs: %w", err)
	}
	// The recovered jobs' namespaces' policies decide who may run them
	// (trusted workers only, the running quota) from the first dispatch.
	seen := make(map[string]bool)
	for _, j := range jobs {
		if !seen[j.Namespace] {
			seen[j.Namespace] = true
			o.policy(ctx, j.Namespace)
		}
	}
	o.mu.Lock()
	for s, n := range counts {
		o.counts[s] = n
	}
	var recovered []*entry
	for _, j := range jobs {
		// Its log's state is read from the store once, at its first
		// change of status, and then kept until it ends.
		e := &entry{job: j, log: o.logs.acquire(j.ID)}
		if j.Status == job.StatusRunning {
			o.counts[job.StatusRunning]--
			o.loseLocked(e, "the orchestrator restarted while the job ran")
			if e.final {
				recovered = append(recovered, e)
				continue
			}
			o.counts[job.StatusPending]++
		}
		o.nsPending[j.Namespace]++
		o.seq++
		e.seq = o.seq
		e.enqueuedAt = o.now()
		o.active[j.ID] = e
		if j.Spec.Replicated() {
			o.expandLocked(e)
		} else {
			o.queue.push(e, false)
		}
		if j.Status == job.StatusPending && j.Reason != "" {
			recovered = append(recovered, e)
		}
	}
	o.mu.Unlock()
	for _, e := range recovered {
		o.persist(ctx, e)
	}
	o.log.Info("orchestrator started", "recovered_jobs", len(jobs))
	o.wg.Add(3)
	go o.watchLeases()
	go o.sweepExpired()
	go func() { defer o.wg.Done(); o.svc.loop(o.stop) }()
	return nil
}

// Close ends every worker session, waits for them to end and stops
// background work. Jobs that were running go back to pending in the store;
// the next Start picks them up. Close the store after Close returns.
func (o *Orchestrator) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	conns := make([]interface{ CloseNow() error }, 0, len(o.workers))
	for _, w := range o.workers {
		conns = append(conns, w.conn)
	}
	o.mu.Unlock()
	for _, c := range conns {
		c.CloseNow()
	}
	o.sessions.Wait()
	close(o.stop)
	o.wg.Wait()
	o.launches.Wait()
	return nil
}

// newID returns a time-ordered job id.
func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

func newLeaseID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Submit stores a new job from a validated request and queues it. It
// returns once the job is durable. ctx must carry a principal that may act
// in the request's namespace (job.ActsIn): without one nothing is queued.
func (o *Orchestrator) Submit(ctx context.Context, r job.Request) (*job.Job, error) {
	if _, err := job.ActsIn(ctx, r.Namespace); err != nil {
		return nil, err
	}
	o.mu.Lock()
	full := o.queue.total() >= o.cfg.MaxQueued
	o.mu.Unlock()
	if full {
		return nil, job.Errorf(job.CodeUnavailable, "the queue is full (%d jobs pending); try again later", o.cfg.MaxQueued)
	}
	if err := o.admit(&r); err != nil {
		return nil, err
	}
	j := r.NewJob(newID(), o.now().UTC(), o.cfg.RequestLimits, o.cfg.BuildKey)
	o.mu.Lock()
	why, reserved := o.queue.laneRefusal(j, o.cfg.MaxNamespaceLanes)
	o.mu.Unlock()
	if why != "" {
		return nil, job.Errorf(job.CodeTooMany, "%s", why)
	}
	unreserve := func() {
		if reserved {
			reserved = false
			o.mu.Lock()
			o.queue.opened(j.Namespace)
			o.mu.Unlock()
		}
	}
	if err := o.admitQuota(ctx, j.Namespace, true); err != nil {
		unreserve()
		return nil, err
	}
	// A job whose submitter waits for it is stored later (see
	// Config.RunningWriteDelay): until the submitter is answered nothing
	// about it is promised, and a job that ends first is stored once.
	// Replicated jobs, whose replicas are written as they end, are
	// stored first as any job.
	deferred := r.Waited && !j.Spec.Replicated()
	if !deferred {
		if err := o.store.CreateJob(ctx, j); err != nil {
			unreserve()
			return nil, fmt.Errorf("store new job: %w", err)
		}
	}
	o.metrics.submitted.WithLabelValues(string(j.Type)).Inc()
	o.usageMetrics.submitted(j)
	view := *j
	log := o.logs.fresh(j.ID)

	o.mu.Lock()
	if reserved {
		o.queue.opened(j.Namespace)
	}
	o.seq++
	e := &entry{job: j, seq: o.seq, enqueuedAt: o.now(), log: log}
	if deferred && o.closed {
		// Close waits for what is stored late; it may be waiting now.
		if reserved {
			o.queue.opened(j.Namespace) // given back, as unreserve does
		}
		o.mu.Unlock()
		o.logs.release(log)
		return nil, job.Errorf(job.CodeUnavailable, "the orchestrator is shutting down")
	}
	if deferred {
		e.unstored.Store(true)
		e.version = 1
		o.launches.Add(1)
		time.AfterFunc(o.cfg.RunningWriteDelay, func() {
			defer o.launches.Done()
			o.persist(context.Background(), e)
		})
	}
	o.active[j.ID] = e
	o.countLocked(e, job.StatusPending, 1)
	if j.Spec.Replicated() {
		o.expandLocked(e)
	} else {
		o.queue.push(e, false)
	}
	starts := o.dispatchLocked()
	o.mu.Unlock()

	o.launch(starts)
	return &view, nil
}

// Job returns the current state of a job. A pending job's Reason says
// why it waits.
func (o *Orchestrator) Job(ctx context.Context, id string) (*job.Job, error) {
	o.mu.Lock()
	if e, ok := o.active[id]; ok {
		// A job submitted with Request.Waited and not stored yet is
		// known only to its submitter, who learns of it from
		// WaitVisible: whoever else asks cannot make it stored early.
		j := o.viewLocked(e)
		o.mu.Unlock()
		return j, nil
	}
	o.mu.Unlock()
	return o.endedJob(ctx, id)
}

// endedJob returns the job with id, which is not active: from the ended
// jobs kept in memory, or else from the store.
func (o *Orchestrator) endedJob(ctx context.Context, id string) (*job.Job, error) {
	o.mu.Lock()
	j, ok := o.ended.get(id, o.now().Add(-o.cfg.Retention.Period))
	o.mu.Unlock()
	if ok {
		return j, nil
	}
	return o.store.GetJob(ctx, id)
}

// viewLocked copies e's job for a reader, with a pending job's reason.
func (o *Orchestrator) viewLocked(e *entry) *job.Job {
	j := *e.job
	switch {
	case e.rep != nil && !j.Status.Terminal():
		j.Reason = o.replicaReasonLocked(e)
	case j.Status == job.StatusPending && j.Reason == "":
		j.Reason = o.pendingReasonLocked(e)
	}
	return &j
}

// Wait blocks until the job is terminal and stored, d passes or ctx is
// done, and returns the job's state then.
func (o *Orchestrator) Wait(ctx context.Context, id string, d time.Duration) (*job.Job, error) {
	return o.WaitVisible(ctx, id, d, func(string) bool { return true })
}

// WaitVisible is Wait for a reader that sees only the namespaces sees
// accepts (nil: none): it blocks only for a job of such a namespace, and
// returns any other job at once, in the state Job returns, for the caller
// to decide what to show of it. Nobody can wait on a job they do not see,
// and learn when it ends. Each call reads the store at most once (a job
// that ended, found neither active nor among those kept in memory).
func (o *Orchestrator) WaitVisible(ctx context.Context, id string, d time.Duration, sees func(namespace string) bool) (*job.Job, error) {
	o.mu.Lock()
	e, ok := o.active[id]
	if ok && (d <= 0 || sees == nil || !sees(e.job.Namespace)) {
		if sees == nil || !sees(e.job.Namespace) {
			// For admission to hide: nothing is stored for a caller
			// who does not see the job.
			j := o.viewLocked(e)
			o.mu.Unlock()
			return j, nil
		}
		o.mu.Unlock()
		return o.activeJob(ctx, e)
	}
	var done chan struct{}
	if ok {
		if e.done == nil {
			e.done = make(chan struct{})
		}
		done = e.done
	}
	o.mu.Unlock()
	if !ok {
		return o.endedJob(ctx, id)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		// The job is terminal; its final state is e's. Stored, unless
		// its write gave up (the orchestrator closing): a job waited
		// for that the store never held is not reported as accepted.
		if e.unstored.Load() {
			return nil, job.Errorf(job.CodeUnavailable, "job %s ended but could not be stored", id)
		}
		o.mu.Lock()
		j := *e.job
		o.mu.Unlock()
		return &j, nil
	case <-t.C:
	case <-ctx.Done():
	}
	return o.activeJob(context.WithoutCancel(ctx), e)
}

// activeJob returns the current state of e, a job that was active, once
// it is stored: a job submitted with Request.Waited is stored before any
// caller learns of it unfinished. A job that cannot be stored is canceled
// (it ran, if at all, unannounced), and the error's code is unavailable.
func (o *Orchestrator) activeJob(ctx context.Context, e *entry) (*job.Job, error) {
	if e.unstored.Load() {
		o.persist(ctx, e)
		if e.unstored.Load() {
			id := e.job.ID
			o.Cancel(context.WithoutCancel(ctx), id) //nolint:errcheck // the error below is the answer
			return nil, job.Errorf(job.CodeUnavailable, "the job could not be stored, so it was not accepted: it is canceled (or, had it ended already, kept in the store once the store works again)")
		}
	}
	o.mu.Lock()
	if o.active[e.job.ID] == e {
		j := o.viewLocked(e)
		o.mu.Unlock()
		return j, nil
	}
	o.mu.Unlock()
	return o.endedJob(ctx, e.job.ID)
}

// Jobs lists the summaries of jobs from the store, newest first. Jobs that
// are active are shown with their in-memory state, which may be newer than
// the store's.
func (o *Orchestrator) Jobs(ctx context.Context, f store.JobFilter) ([]*job.Summary, string, error) {
	jobs, next, err := o.store.ListJobs(ctx, f)
	if err != nil {
		return nil, "", err
	}
	o.mu.Lock()
	for i, j := range jobs {
		if e, ok := o.active[j.ID]; ok {
			if f.Status != "" && e.job.Status != f.Status {
				// Newer than the page's filter: keep the stored state,
				// which matches it, so the page stays consistent.
				continue
			}
			jobs[i] = o.viewLocked(e).Summary()
		}
	}
	o.mu.Unlock()
	return jobs, next, nil
}

// Cancel ends a pending or running job as canceled. A running job's worker
// is told to stop it. A job that already ended is a conflict. ctx must
// carry a principal that sees the job's namespace; to any other, the job
// does not exist (not_found), and without a principal Cancel is
// unauthorized.
func (o *Orchestrator) Cancel(ctx context.Context, id string) (*job.Job, error) {
	p, err := job.Caller(ctx)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	e, ok := o.active[id]
	if ok && !p.Sees(e.job.Namespace) {
		o.mu.Unlock()
		return nil, job.ErrNotFound
	}
	if ok && e.final {
		// Its end is being stored; the store may still say it runs.
		j := *e.job
		o.mu.Unlock()
		return &j, job.Errorf(job.CodeConflict, "job %s has already ended (%s)", id, j.Status)
	}
	if !ok || e.final {
		o.mu.Unlock()
		j, err := o.endedJob(ctx, id)
		if err != nil {
			return nil, err
		}
		if !p.Sees(j.Namespace) {
			return nil, job.ErrNotFound
		}
		return j, job.Errorf(job.CodeConflict, "job %s has already ended (%s)", id, j.Status)
	}
	o.stopReplicasLocked(e)
	var notify *worker
	var lease string
	if e.worker != nil {
		notify, lease = e.worker, e.job.LeaseID
		o.abandonLocked(e.worker, lease, o.now(), o.cfg.LeaseGrace)
	}
	o.finishLocked(e, &job.Result{Status: job.StatusCanceled, Error: "canceled by request", Attempt: e.job.Attempt, WorkerID: e.job.WorkerID})
	o.mu.Unlock()

	if notify != nil {
		notify.send(cancelMessage(id, lease))
	}
	o.persist(ctx, e)
	if e.ephemeral {
		o.mu.Lock()
		j := *e.job
		o.mu.Unlock()
		return &j, nil
	}
	return o.Job(ctx, id)
}

// finishLocked records a terminal result for e. The caller persists e.
func (o *Orchestrator) finishLocked(e *entry, r *job.Result) {
	j := e.job
	ranOn := e.worker
	o.countLocked(e, j.Status, -1)
	if e.elem != nil {
		o.queue.remove(e)
	}
	now := o.now().UTC()
	if j.Status == job.StatusRunning && !j.StartedAt.IsZero() {
		o.metrics.runTime.WithLabelValues(string(j.Type)).Observe(now.Sub(j.StartedAt).Seconds())
	}
	j.Status = r.Status
	j.Result = r
	j.FinishedAt = now
	j.LeaseID = ""
	if r.Error != "" && j.Reason == "" && r.Status != job.StatusCompleted {
		j.Reason = r.Error
	}
	o.releaseLocked(e)
	e.final = true
	e.version++
	if !e.ephemeral {
		o.countLocked(e, j.Status, 1)
	}
	if e.parent != nil {
		o.replicaDoneLocked(e, ranOn, r)
		return
	}
	o.metrics.finished.WithLabelValues(string(j.Type), string(j.Status)).Inc()
}

// loseLocked handles a job whose run was lost (worker gone, lease expired,
// orchestrator restarted): it goes back to pending with attempt+1, or fails
// when no attempts are left. The caller queues a pending e and persists e.
func (o *Orchestrator) loseLocked(e *entry, why string) {
	j := e.job
	j.Attempt++
	j.LeaseID = ""
	o.releaseLocked(e)
	e.version++
	if j.Attempt > j.MaxAttempts {
		j.Attempt = j.MaxAttempts
		j.Status = job.StatusRunning // so finishLocked counts it out
		o.countLocked(e, job.StatusRunning, 1)
		e.lostRun = true
		o.finishLocked(e, &job.Result{
			Status:   job.StatusFailed,
			Error:    fmt.Sprintf("no attempts left after %d: %s", j.MaxAttempts, why),
			Attempt:  j.Attempt,
			WorkerID: j.WorkerID,
		})
		return
	}
	j.Status = job.StatusPending
	j.Reason = "re-queued: " + why
	o.metrics.requeued.Inc()
}

// persist writes e's latest state to the store. Writes of one job are
// ordered, and a write never replaces a newer state with an older one. When
// the state written is terminal, e leaves the active set and its waiters
// are woken.
func (o *Orchestrator) persist(ctx context.Context, e *entry) {
	e.persistMu.Lock()
	defer e.persistMu.Unlock()
	o.mu.Lock()
	if e.version <= e.written && e.written != 0 {
		o.mu.Unlock()
		return
	}
	snap := *e.job
	version, final := e.version, e.final
	o.mu.Unlock()

	ctx = context.WithoutCancel(ctx)
	stored, logged, ended := false, false, false
	// A waited job stored late while still pending says nothing in its
	// log yet, as a job stored at its submission does not.
	quiet := e.unstored.Load() && snap.Status == job.StatusPending && snap.Attempt <= 1
	if !e.ephemeral && !quiet {
		// The state and its status line in one write, when the store
		// can; else, or when that failed, one after the other.
		stored, ended = o.logs.updateWithStatus(ctx, &snap, e.unstored.Load())
		logged = stored
		if stored {
			e.unstored.Store(false)
		}
	}
	for attempt := 0; !e.ephemeral && !stored; attempt++ {
		var err error
		if e.unstored.Load() {
			// Its first write (Request.Waited): created as it is now.
			if err = o.store.CreateJob(ctx, &snap); err == nil {
				e.unstored.Store(false)
			}
		} else {
			err = o.store.UpdateJob(ctx, &snap)
		}
		if err == nil {
			stored = true
			break
		}
		o.mu.Lock()
		closed := o.closed
		o.mu.Unlock()
		if job.ErrorCode(err) == job.CodeNotFound || closed {
			o.log.Error("store job state", "job_id", snap.ID, "status", snap.Status, "err", err)
			break
		}
		if attempt >= 5 {
			// The store keeps failing. The job stays active with its
			// newest state in memory, so readers and waiters still see
			// it, and the write is tried again later.
			o.log.Error("store job state; will retry", "job_id", snap.ID, "status", snap.Status, "err", err)
			time.AfterFunc(persistRetry, func() { o.persist(ctx, e) })
			return
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	e.written = version
	switch {
	case logged:
		defer o.statusNoted(&snap, e, ended)
	case !quiet:
		// Recorded in the job's log once waiters are woken: their
		// answer does not wait for the log's write.
		defer o.noteStatus(ctx, &snap, e)
	}

	if final {
		o.mu.Lock()
		if o.active[snap.ID] == e {
			delete(o.active, snap.ID)
			if stored {
				// Readers find it here as stored, without reading
				// the store.
				o.ended.put(&snap)
			}
		}
		if e.done != nil {
			close(e.done)
			e.done = nil
		}
		o.mu.Unlock()
	}
}

// Stats returns a snapshot of workers and jobs.
func (o *Orchestrator) Stats(ctx context.Context) (job.Stats, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := job.Stats{Jobs: make(map[job.Status]int), Queued: o.queue.counts()}
	for _, st := range job.Statuses {
		s.Jobs[st] = max(o.counts[st], 0)
	}
	x := o.index
	s.WorkersConnected = len(x.ids)
	s.SlotsTotal, s.SlotsBusy, s.WorkersBusy = x.slotsTotal, x.slotsBusy, x.workersBusy
	return s, nil
}

var errClosed = errors.New("orchestrator is closed")

// persistRetry is how long a job state the store refused waits before it
// is written again.
const persistRetry = 2 * time.Second

// admit applies the operator's policy to a validated request.
func (o *Orchestrator) admit(r *job.Request) error {
	if r.Type != job.TypeDocker {
		return nil
	}
	if err := o.admitBuild(r); err != nil {
		return err
	}
	if _, built := job.ImageNamespace(r.DockerImage); built {
		return nil
	}
	if r.DockerImage != "" && len(o.cfg.DockerAllowImages) > 0 && !job.MatchImage(o.cfg.DockerAllowImages, r.DockerImage) {
		return &job.Error{Code: job.CodeForbidden, Field: "docker_image",
			Message: fmt.Sprintf("image %s is not allowed on this platform (allowed: %s)", r.DockerImage, strings.Join(o.cfg.DockerAllowImages, ", "))}
	}
	return nil
}
