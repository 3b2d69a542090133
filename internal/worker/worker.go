// Package worker is a native Zerverless worker: it dials an orchestrator,
// says what it can run, runs the tasks it is given in its runtimes, and
// sends their results back. It reconnects with backoff when the connection
// ends.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/runtime"
)

// Config configures a worker. DefaultConfig documents every default.
type Config struct {
	// URL is the orchestrator's WebSocket endpoint,
	// ws://HOST:PORT/ws/volunteer.
	URL string
	// Name is shown in the orchestrator's worker list.
	Name string
	// Header is sent with the WebSocket handshake.
	Header http.Header
	// Dial, when set, makes the connections to the orchestrator (the
	// session and the service streams) in place of the network: serve
	// gives its embedded workers one to its in-process listener. The
	// handshakes are the same, with URL's host and Header.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// JoinToken is presented at registration; with a valid one the
	// orchestrator trusts the worker (and may send it container jobs).
	JoinToken string
	// Concurrency is how many tasks run at once (default: CPU count).
	Concurrency int
	// MaxMemoryMB is the most memory one job may ask for (0: no maximum).
	MaxMemoryMB int
	// Namespaces, when not empty, restricts the jobs accepted to these.
	Namespaces []string
	// Version is this worker's software version.
	Version string
	// Docker is advertised while the docker runtime is available.
	Docker *job.DockerCapabilities
	// OutputBytes caps stdout and stderr of one task, each (default 1 MiB).
	OutputBytes int
	// MemoryBytes bounds a task's memory when the job names none (default
	// 256 MiB), where the runtime can enforce it; a job's memory_mb is its
	// bound otherwise. Each task's bound is its own: the Lua and
	// JavaScript runtimes run every task in a process of its own.
	MemoryBytes int64
	// CheckInterval is how often runtimes with an outside dependency are
	// checked again (default 30 s).
	CheckInterval time.Duration
	// CheckTimeout bounds one check (default 10 s).
	CheckTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the backoff between connection
	// attempts (defaults 100 ms and 30 s).
	ReconnectMin, ReconnectMax time.Duration
	// ReadLimit is the largest message accepted (default
	// protocol.DefaultReadLimit).
	ReadLimit int64
	// MaxStreams bounds the request streams carried to service instances
	// at once (default DefaultMaxStreams); see services.go.
	MaxStreams int
	// LiveOutputBytes bounds the output of one task sent while it runs,
	// for its live log (default 1 MiB; negative: none is sent). The
	// result carries the whole output (up to OutputBytes) all the same.
	LiveOutputBytes int64
	// LiveChunkBytes is the most output one message carries (default
	// 16 KiB, at most a third of protocol.MaxOutputTextBytes: output that
	// is not UTF-8 grows up to three times in the message's JSON).
	LiveChunkBytes int
	// LiveFlushInterval is how long output waits to be sent (default
	// 200 ms): a task's output messages are at most one per interval, but
	// for full chunks.
	LiveFlushInterval time.Duration
	// ServiceOutputRate bounds the output of one service instance sent
	// while it runs, in bytes a second, with a burst of one second's
	// worth (default 64 KiB; negative: none is sent). What passes it is
	// counted and not sent. It travels in chunks of LiveChunkBytes at
	// most every LiveFlushInterval, as a task's does.
	ServiceOutputRate int64
	// MetricsInterval is how often the worker reports its usage (default
	// 10 s).
	MetricsInterval time.Duration
}

// DefaultConfig returns the documented defaults; URL is left empty.
func DefaultConfig() Config {
	return Config{
		Concurrency:   max(1, numCPU()),
		OutputBytes:   1 << 20,
		MemoryBytes:   256 << 20,
		CheckInterval: 30 * time.Second,
		CheckTimeout:  10 * time.Second,
		ReconnectMin:  100 * time.Millisecond,
		ReconnectMax:  30 * time.Second,
		ReadLimit:     protocol.DefaultReadLimit,
		MaxStreams:    DefaultMaxStreams,

		LiveOutputBytes:   1 << 20,
		LiveChunkBytes:    16 << 10,
		LiveFlushInterval: 200 * time.Millisecond,
		ServiceOutputRate: 64 << 10,
		MetricsInterval:   10 * time.Second,
	}
}

// minReadLimit is the smallest ReadLimit accepted: a task with a little
// code must fit.
const minReadLimit = 64 << 10

// Validate refuses settings that cannot work: each field at fault is a
// *job.Error (code invalid) naming it, joined. Zero fields are not checked:
// they take their defaults.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) { errs = append(errs, job.Invalid(field, format, args...)) }
	if u, err := url.Parse(c.URL); c.URL == "" || err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		bad("URL", "%q is not a ws:// or wss:// URL of the orchestrator's /ws/volunteer", c.URL)
	}
	if c.Concurrency < 0 || c.Concurrency > protocol.MaxConcurrency {
		bad("Concurrency", "is %d, want 1 to %d", c.Concurrency, protocol.MaxConcurrency)
	}
	if c.MaxMemoryMB < 0 {
		bad("MaxMemoryMB", "is %d, want at least 0 (0: no maximum)", c.MaxMemoryMB)
	}
	if c.OutputBytes < 0 {
		bad("OutputBytes", "is %d, want more than 0", c.OutputBytes)
	}
	if c.MemoryBytes < 0 {
		bad("MemoryBytes", "is %d, want more than 0", c.MemoryBytes)
	}
	if c.MaxMemoryMB > 0 && c.MemoryBytes > int64(c.MaxMemoryMB)<<20 {
		bad("MemoryBytes", "%d MiB is more than MaxMemoryMB (%d)", c.MemoryBytes>>20, c.MaxMemoryMB)
	}
	if c.CheckInterval < 0 {
		bad("CheckInterval", "must be more than 0")
	}
	if c.CheckTimeout < 0 {
		bad("CheckTimeout", "must be more than 0")
	}
	if c.ReconnectMin < 0 {
		bad("ReconnectMin", "must be more than 0")
	}
	if c.ReconnectMax < 0 {
		bad("ReconnectMax", "must be more than 0")
	}
	if c.ReconnectMin > 0 && c.ReconnectMax > 0 && c.ReconnectMin > c.ReconnectMax {
		bad("ReconnectMax", "%v is less than ReconnectMin (%v)", c.ReconnectMax, c.ReconnectMin)
	}
	if c.ReadLimit != 0 && c.ReadLimit < minReadLimit {
		bad("ReadLimit", "is %d, want at least %d", c.ReadLimit, minReadLimit)
	}
	if c.MaxStreams < 0 {
		bad("MaxStreams", "is %d, want at least 1", c.MaxStreams)
	}
	if c.Docker != nil && c.Docker.Services < 0 {
		bad("Docker.Services", "is %d, want at least 0", c.Docker.Services)
	}
	if c.LiveChunkBytes < 0 || c.LiveChunkBytes > protocol.MaxOutputTextBytes/3 {
		bad("LiveChunkBytes", "is %d, want 1 to %d", c.LiveChunkBytes, protocol.MaxOutputTextBytes/3)
	}
	if c.LiveFlushInterval < 0 {
		bad("LiveFlushInterval", "must be more than 0")
	}
	if c.MetricsInterval < 0 {
		bad("MetricsInterval", "must be more than 0")
	}
	for _, ns := range c.Namespaces {
		if !job.ValidNamespace(ns) {
			bad("Namespaces", "%q is not a valid namespace", ns)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("worker config: %w", err)
	}
	return nil
}

// Worker runs tasks for an orchestrator.
type Worker struct {
	cfg      Config
	client   *http.Client // dials with cfg.Dial
	runtimes runtime.Set
	log      *slog.Logger

	mu        sync.Mutex
	available map[job.Type]bool
	notes     map[string]string
	id        string

	// tasksRun and outputSent count, since New, the tasks run and the
	// live output bytes sent.
	tasksRun, outputSent atomic.Int64

	// instances holds the service instances started, by any session, and
	// not yet reported exited (services.go). Guarded by mu.
	instances map[string]bool
}

// New returns a worker that offers runtimes. It does not connect until Run.
// It returns an error for an invalid cfg.
func New(cfg Config, runtimes runtime.Set, log *slog.Logger) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := DefaultConfig()
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = d.Concurrency
	}
	if cfg.OutputBytes <= 0 {
		cfg.OutputBytes = d.OutputBytes
	}
	if cfg.MemoryBytes <= 0 {
		cfg.MemoryBytes = d.MemoryBytes
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = d.CheckInterval
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = d.CheckTimeout
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = d.ReconnectMin
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = d.ReconnectMax
	}
	if cfg.ReadLimit == 0 {
		cfg.ReadLimit = d.ReadLimit
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = d.MaxStreams
	}
	if cfg.LiveOutputBytes == 0 {
		cfg.LiveOutputBytes = d.LiveOutputBytes
	}
	if cfg.LiveChunkBytes == 0 {
		cfg.LiveChunkBytes = d.LiveChunkBytes
	}
	if cfg.LiveFlushInterval == 0 {
		cfg.LiveFlushInterval = d.LiveFlushInterval
	}
	if cfg.ServiceOutputRate == 0 {
		cfg.ServiceOutputRate = d.ServiceOutputRate
	}
	if cfg.MetricsInterval == 0 {
		cfg.MetricsInterval = d.MetricsInterval
	}
	return &Worker{cfg: cfg, client: httpClient(cfg.Dial), runtimes: runtimes, log: log, available: make(map[job.Type]bool), instances: make(map[string]bool)}, nil
}

// httpClient returns the client whose connections dial makes; with a nil
// dial, http.DefaultClient.
func httpClient(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	if dial == nil {
		return http.DefaultClient
	}
	return &http.Client{Transport: &http.Transport{DialContext: dial}}
}

// resultWriteTimeout bounds the write of one result.
const resultWriteTimeout = 5 * time.Minute

// RefusedError is returned by Run when the orchestrator refused the
// worker for good (a bad join token, an unsupported protocol version):
// connecting again would be refused the same way.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// ID returns the id the orchestrator gave this worker's current session,
// or "" while it is not connected.
func (w *Worker) ID() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.id
}

// Run connects and serves until ctx is done, reconnecting with
// exponential backoff and jitter whenever the connection ends. It returns
// ctx's error, or a *RefusedError when the orchestrator refuses the worker
// for good.
func (w *Worker) Run(ctx context.Context) error {
	w.checkRuntimes(ctx)
	backoff := w.cfg.ReconnectMin
	for {
		start := time.Now()
		err := w.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var refused *RefusedError
		if errors.As(err, &refused) {
			w.log.Error("the orchestrator refuses this worker; stopping", "err", err)
			return err
		}
		if time.Since(start) > 10*time.Second {
			backoff = w.cfg.ReconnectMin
		}
		if reason, ok := protocol.ClosedCleanly(err); ok {
			w.log.Info("the orchestrator closed the connection; reconnecting", "reason", reason, "in", backoff)
		} else {
			w.log.Warn("connection to orchestrator ended; reconnecting", "err", err, "in", backoff)
		}
		sleep := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(sleep):
		}
		backoff = min(backoff*2, w.cfg.ReconnectMax)
	}
}

// checkRuntimes runs each runtime's Check and records which are
// available. It reports whether anything changed.
func (w *Worker) checkRuntimes(ctx context.Context) bool {
	avail := make(map[job.Type]bool, len(w.runtimes))
	notes := make(map[string]string)
	for t, rt := range w.runtimes {
		c, ok := rt.(runtime.Checker)
		if !ok {
			avail[t] = true
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, w.cfg.CheckTimeout)
		err := c.Check(cctx)
		cancel()
		if err != nil {
			notes[string(t)] = err.Error()
			continue
		}
		avail[t] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := !maps.Equal(avail, w.available) || !maps.Equal(notes, w.notes)
	if changed {
		for t, why := range notes {
			w.log.Warn("runtime not available", "runtime", t, "reason", why)
		}
	}
	w.available, w.notes = avail, notes
	return changed
}

// capabilities returns what the worker offers now.
func (w *Worker) capabilities() (job.Capabilities, map[string]string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var types []job.Type
	for t, ok := range w.available {
		if ok {
			types = append(types, t)
		}
	}
	slices.Sort(types)
	c := job.Capabilities{
		Runtimes:    types,
		Concurrency: w.cfg.Concurrency,
		MaxMemoryMB: w.cfg.MaxMemoryMB,
		Namespaces:  w.cfg.Namespaces,
		Version:     w.cfg.Version,
	}
	if w.available[job.TypeDocker] && w.cfg.Docker != nil {
		d := *w.cfg.Docker
		if bc, ok := w.runtimes[job.TypeDocker].(buildCacheReporter); ok && d.Build {
			d.BuildCache, d.BuiltImages = bc.BuildCache(maxReportedBuilds)
		}
		if rt, n := w.serviceRuntime(); rt == nil {
			d.Services = 0
		} else {
			d.StreamsPerInstance = streamShare(w.cfg.MaxStreams, n)
		}
		if pr, ok := w.runtimes[job.TypeDocker].(poolReporter); ok {
			d.Pool = pr.PoolStatus(maxReportedBuilds)
		}
		c.Docker = &d
	}
	return c, protocol.FitNotes(w.notes)
}

// session is one connection: register, then serve until it ends.
func (w *Worker) session(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := protocol.Dial(dctx, w.cfg.URL, w.cfg.Header, protocol.Options{ReadLimit: w.cfg.ReadLimit, HTTPClient: w.client})
	cancel()
	if err != nil {
		return fmt.Errorf("dial %s: %w", w.cfg.URL, err)
	}
	defer conn.CloseNow()

	caps, notes := w.capabilities()
	if caps.Docker != nil {
		// The register frame is read before authentication, under a
		// few KiB: the builds held follow in "capabilities" once
		// registered (reportBuilds below).
		d := *caps.Docker
		d.BuildCache, d.BuiltImages, d.Pool = nil, nil, nil
		caps.Docker = &d
	}
	err = conn.Write(ctx, protocol.Message{
		Type: protocol.TypeRegister, Version: protocol.Version, Name: w.cfg.Name,
		Capabilities: &caps, Notes: notes, Token: w.cfg.JoinToken,
	})
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	m, err := conn.Read(rctx)
	cancel()
	if err != nil {
		return fmt.Errorf("read registered: %w", err)
	}
	if m.Type == protocol.TypeError {
		err := fmt.Errorf("orchestrator refused registration: %s", m.Error)
		if m.Permanent {
			return &RefusedError{Err: err}
		}
		return err
	}
	if m.Type != protocol.TypeRegistered {
		return fmt.Errorf("expected registered, got %q", m.Type)
	}
	w.mu.Lock()
	w.id = m.WorkerID
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.id = ""
		w.mu.Unlock()
	}()
	log := w.log.With("worker_id", m.WorkerID)
	log.Info("registered with orchestrator", "runtimes", caps.Runtimes, "concurrency", caps.Concurrency, "trusted", m.Trusted)

	s := &session{w: w, conn: conn, log: log, tasks: make(map[string]*runningTask)}
	s.svc = newServices(s)
	// The session outlives ctx by the close handshake (stopClose below):
	// what it writes meanwhile must not cut the connection short.
	sctx, end := context.WithCancel(context.WithoutCancel(ctx))
	defer end()
	conn.Bind(sctx)
	heartbeat := time.Duration(m.HeartbeatMS) * time.Millisecond
	if heartbeat <= 0 {
		heartbeat = 5 * time.Second
	}
	// Both end with the session; the session waits for them (s.wg) so
	// that nothing of it runs after Run returns.
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.heartbeats(sctx, heartbeat) }()
	go func() { defer s.wg.Done(); s.watchWrites(sctx, time.Second) }()
	s.reportBuilds(sctx)
	s.svc.stopLeftovers(sctx)
	if m.StreamKey != "" && s.svc.rt != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.svc.streams(sctx, m.StreamKey) }()
	}
	// A worker that stops says so (close status 1001) rather than drop
	// the connection; the read loop ends when the close completes.
	stopClose := context.AfterFunc(ctx, func() { conn.CloseGoingAway("worker stopping") })
	defer stopClose()
	err = s.readLoop(sctx)
	end()
	s.stopAll()
	s.svc.stopAll()
	s.wg.Wait()
	return err
}

// session is the state of one connection.
type session struct {
	w    *Worker
	conn *protocol.Conn
	log  *slog.Logger
	wg   sync.WaitGroup
	svc  *services // service instances (services.go)

	mu    sync.Mutex
	tasks map[string]*runningTask // by lease id
	// buildsSent is what the worker last reported of its builds.
	buildsSent string
	// sending counts writes in progress. While one is, the orchestrator
	// sees bytes arriving and a heartbeat would only queue behind it.
	sending atomic.Int32
	// resultsSending counts the results among them; stalledSince is when
	// the last write began with none in progress, or when one last ended
	// (UnixNano). watchWrites reads them.
	resultsSending atomic.Int32
	stalledSince   atomic.Int64
}

func (s *session) readLoop(ctx context.Context) error {
	for {
		m, err := s.conn.Read(ctx)
		if err != nil {
			var de *protocol.DecodeError
			if errors.As(err, &de) {
				s.log.Warn("bad message from orchestrator", "err", err)
				continue
			}
			return err
		}
		switch m.Type {
		case protocol.TypeAssign:
			s.start(ctx, m.Task)
		case protocol.TypeCancel:
			s.mu.Lock()
			if rt, ok := s.tasks[m.LeaseID]; ok {
				rt.byRequest.Store(true)
				rt.cancel()
			}
			s.mu.Unlock()
		case protocol.TypeServiceStart:
			s.svc.start(ctx, m.Instance)
		case protocol.TypeServiceStop:
			s.svc.stop(ctx, m.InstanceID)
		case protocol.TypeError:
			s.log.Warn("orchestrator reported an error", "err", m.Error)
		}
	}
}

// runningTask is a task being run: its context's cancel, and whether the
// orchestrator asked for the stop.
type runningTask struct {
	cancel    context.CancelFunc
	byRequest atomic.Bool
}

// start runs t in its own goroutine, or rejects it when the worker does
// not offer its runtime or has no free slot.
func (s *session) start(ctx context.Context, t *job.Task) {
	s.w.mu.Lock()
	ok := s.w.available[t.Type]
	s.w.mu.Unlock()
	rt := s.w.runtimes[t.Type]
	var why string
	switch {
	case rt == nil || !ok:
		why = fmt.Sprintf("this worker does not run %s jobs", t.Type)
	case len(s.w.cfg.Namespaces) > 0 && !slices.Contains(s.w.cfg.Namespaces, t.Namespace):
		why = fmt.Sprintf("this worker does not accept namespace %s", t.Namespace)
	}
	s.mu.Lock()
	if why == "" && len(s.tasks) >= s.w.cfg.Concurrency {
		why = "no free slot"
	}
	if why != "" {
		s.mu.Unlock()
		s.send(ctx, protocol.Message{Type: protocol.TypeReject, JobID: t.JobID, LeaseID: t.LeaseID, Error: why})
		return
	}
	// One context per task: its timeout, and the stop that a cancel or
	// the session's end asks for.
	tctx, cancel := context.WithTimeout(ctx, s.w.taskTimeout(t))
	running := &runningTask{cancel: cancel}
	s.tasks[t.LeaseID] = running
	s.mu.Unlock()

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		runCtx := tctx
		var live *liveOutput
		if s.w.cfg.LiveOutputBytes > 0 {
			live = s.startLive(ctx, t)
			runCtx = runtime.WithSink(tctx, live)
		}
		t0 := time.Now()
		res, err := s.w.runTask(runCtx, rt, t, &running.byRequest)
		ran := time.Since(t0)
		s.w.tasksRun.Add(1)
		if live != nil {
			live.close(ctx)
		}
		s.mu.Lock()
		delete(s.tasks, t.LeaseID)
		s.mu.Unlock()
		if ctx.Err() != nil {
			return // the session ended; the orchestrator re-queues the job
		}
		if err != nil {
			// The runtime could not run the task: it is given back to
			// run elsewhere, as an attempt.
			s.send(ctx, protocol.Message{Type: protocol.TypeReject, JobID: t.JobID, LeaseID: t.LeaseID, Attempted: true, Error: err.Error()})
			return
		}
		// A build's image, or the prewarmed containers a docker job
		// took or grew, change what the worker holds.
		if res.Build != nil || t.Type == job.TypeDocker {
			s.reportBuilds(ctx)
		}
		s.send(ctx, protocol.Message{Type: protocol.TypeResult, JobID: t.JobID, LeaseID: t.LeaseID, Result: &res})
		if s.log.Enabled(ctx, slog.LevelDebug) { // its arguments cost allocations
			s.log.Debug("task timing", "job_id", t.JobID, "run_ms", ms(ran), "total_ms", ms(time.Since(t0)))
		}
	}()
}

// send writes m, or closes the connection when it cannot. A write that
// makes no progress is cut by watchWrites: after 30 s, or
// resultWriteTimeout while a result is being written (a result may be
// large, 16 MiB and more, and a volunteer's link slow).
func (s *session) send(ctx context.Context, m protocol.Message) {
	// The clock starts before the count shows a write in progress, so
	// that the watch never sees one with an older start.
	if s.sending.Load() == 0 {
		s.stalledSince.Store(time.Now().UnixNano())
	}
	s.sending.Add(1)
	if m.Type == protocol.TypeResult {
		s.resultsSending.Add(1)
		defer s.resultsSending.Add(-1)
	}
	err := s.conn.Write(ctx, m)
	s.stalledSince.Store(time.Now().UnixNano())
	s.sending.Add(-1)
	if err != nil {
		s.log.Warn("send to orchestrator failed", "type", m.Type, "job_id", m.JobID, "err", err)
		s.conn.CloseNow()
	}
}

// sendTimeout bounds a write of a message other than a result.
const sendTimeout = 30 * time.Second

// watchWrites closes the connection, every interval until ctx ends, when
// writes are in progress and none has ended for longer than their
// timeout: one watch for every write rather than a timer each.
func (s *session) watchWrites(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.sending.Load() == 0 {
			continue
		}
		limit := sendTimeout
		if s.resultsSending.Load() > 0 {
			limit = resultWriteTimeout
		}
		if stalled := time.Since(time.Unix(0, s.stalledSince.Load())); stalled > limit {
			s.log.Warn("a write to the orchestrator made no progress; closing the connection", "stalled", stalled.Round(time.Second))
			s.conn.CloseNow()
			return
		}
	}
}

func (s *session) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rt := range s.tasks {
		rt.cancel()
	}
}

// heartbeats tells the orchestrator every interval that the worker is
// alive and which leases it holds, and re-checks runtimes that depend on
// something outside the process.
func (s *session) heartbeats(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	lastCheck, lastReport := time.Now(), time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		leases := slices.Sorted(maps.Keys(s.tasks))
		s.mu.Unlock()
		if s.sending.Load() == 0 {
			s.send(ctx, protocol.Message{Type: protocol.TypeHeartbeat, Leases: leases})
		}
		if time.Since(lastReport) >= s.w.cfg.MetricsInterval {
			lastReport = time.Now()
			u := s.usage()
			s.send(ctx, protocol.Message{Type: protocol.TypeMetrics, Usage: &u})
		}
		s.reportBuilds(ctx) // prewarmed containers made or expired since

		if time.Since(lastCheck) >= s.w.cfg.CheckInterval {
			lastCheck = time.Now()
			if s.w.checkRuntimes(ctx) {
				caps, notes := s.w.capabilities()
				s.send(ctx, protocol.Message{Type: protocol.TypeCapabilities, Capabilities: &caps, Notes: notes})
			}
		}
	}
}

// taskTimeout is how long t may run.
func (w *Worker) taskTimeout(t *job.Task) time.Duration {
	if t.Timeout <= 0 {
		return job.DefaultRequestLimits().DefaultTimeout
	}
	return t.Timeout
}

// runTask runs t under ctx, which carries its timeout (taskTimeout). A
// task that ran, however it ended, is a result; a runtime that could not
// run it is an error, unless the task was stopped meanwhile (then its
// result says so). A runtime that panics yields a failed result.
// byRequest says whether the orchestrator asked for a stop.
func (w *Worker) runTask(ctx context.Context, rt runtime.Runtime, t *job.Task, byRequest *atomic.Bool) (res job.Result, err error) {
	if t.Limits.OutputBytes <= 0 {
		t.Limits.OutputBytes = w.cfg.OutputBytes
	}
	if t.Limits.MemoryBytes <= 0 {
		t.Limits.MemoryBytes = w.cfg.MemoryBytes
		if t.Spec.MemoryMB > 0 {
			t.Limits.MemoryBytes = int64(t.Spec.MemoryMB) << 20
		}
	}
	started := time.Now()
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("runtime panicked", "job_id", t.JobID, "runtime", t.Type, "panic", p, "stack", string(debug.Stack()))
			res, err = job.Result{Status: job.StatusFailed, Error: fmt.Sprintf("the %s runtime failed: %v", t.Type, p)}, nil
		}
		if err != nil {
			return
		}
		if res.DurationMS == 0 {
			res.DurationMS = time.Since(started).Milliseconds()
		}
		if res.Status == "" || !res.Status.Terminal() {
			res.Status = job.StatusFailed
		}
	}()
	res, err = rt.Run(ctx, *t)
	if err != nil {
		if st := runtime.Interrupted(ctx); st != "" {
			res, err = job.Result{Status: st, Error: err.Error()}, nil
		} else {
			w.log.Warn("task could not run; giving it back", "job_id", t.JobID, "runtime", t.Type, "err", err)
			return job.Result{}, err
		}
	}
	if res.Status == job.StatusCanceled && byRequest.Load() {
		res.Error = "canceled by request"
	}
	return res, nil
}

// ms is d in milliseconds, for the debug log.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
