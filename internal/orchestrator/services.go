package orchestrator

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/yamux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zerverless/zerverless/internal/agent"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// ServicesConfig tunes docker services. Start from DefaultServicesConfig;
// every field has a documented default.
type ServicesConfig struct {
	// MaxWaiting is how many requests may wait at once for an instance
	// of one service, while instances start (default 1000); one more is
	// answered 503 with Retry-After at once.
	MaxWaiting int
	// MaxWait bounds how long a request waits for a free instance
	// (default 0: the service's start_timeout_seconds).
	MaxWait time.Duration
	// RestartBackoff is the wait before a crashed instance's first
	// restart; it doubles at every crash in a row up to MaxRestartBackoff
	// (defaults 1 s and 1 min).
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	// ReconcileInterval is how often instances are matched to the
	// services deployed: minimum instances started, idle ones stopped,
	// crashed ones restarted, old versions drained (default 1 s).
	ReconcileInterval time.Duration
	// StreamOpenTimeout bounds the wait for a worker's answer to a
	// stream opened to an instance (default 10 s).
	StreamOpenTimeout time.Duration
	// IdleConnTimeout is how long a connection to an instance is kept
	// idle for the next request to it (default 1 s, shorter than the
	// keep-alive timeouts of common HTTP servers; see servicepool.go).
	IdleConnTimeout time.Duration
	// MaxLogBytes bounds the recent output kept per service (default
	// 256 KiB).
	MaxLogBytes int
	// FollowersPerService bounds the followers of one service's live log
	// at once (default 16); FollowersPerToken those of one token, all
	// services together (default 8). One more is refused as unavailable.
	FollowersPerService int
	FollowersPerToken   int
	// FollowerBytes is how much output a follower of a service's log may
	// fall behind (default 64 KiB): one further behind skips to the
	// newest FollowerBytes and is told what it missed.
	FollowerBytes int
	// MaxMetricServices bounds the services named in metrics' labels
	// (default 100); the others are counted under "other".
	MaxMetricServices int
}

// DefaultServicesConfig returns the documented defaults.
func DefaultServicesConfig() ServicesConfig {
	return ServicesConfig{
		MaxWaiting:        1000,
		RestartBackoff:    time.Second,
		MaxRestartBackoff: time.Minute,
		ReconcileInterval: time.Second,
		StreamOpenTimeout: 10 * time.Second,
		IdleConnTimeout:   time.Second,
		MaxLogBytes:       256 << 10,
		MaxMetricServices: 100,

		FollowersPerService: 16,
		FollowersPerToken:   8,
		FollowerBytes:       64 << 10,
	}
}

// validate checks c; a zero field takes its default.
func (c ServicesConfig) withDefaults() ServicesConfig {
	d := DefaultServicesConfig()
	if c.MaxWaiting == 0 {
		c.MaxWaiting = d.MaxWaiting
	}
	if c.RestartBackoff == 0 {
		c.RestartBackoff = d.RestartBackoff
	}
	if c.MaxRestartBackoff == 0 {
		c.MaxRestartBackoff = d.MaxRestartBackoff
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = d.ReconcileInterval
	}
	if c.StreamOpenTimeout == 0 {
		c.StreamOpenTimeout = d.StreamOpenTimeout
	}
	if c.IdleConnTimeout == 0 {
		c.IdleConnTimeout = d.IdleConnTimeout
	}
	if c.MaxLogBytes == 0 {
		c.MaxLogBytes = d.MaxLogBytes
	}
	if c.MaxMetricServices == 0 {
		c.MaxMetricServices = d.MaxMetricServices
	}
	if c.FollowersPerService == 0 {
		c.FollowersPerService = d.FollowersPerService
	}
	if c.FollowersPerToken == 0 {
		c.FollowersPerToken = d.FollowersPerToken
	}
	if c.FollowerBytes == 0 {
		c.FollowerBytes = d.FollowerBytes
	}
	return c
}

// Validate refuses negative settings.
func (c ServicesConfig) Validate() error {
	var errs []error
	for name, v := range map[string]int64{
		"Services.MaxWaiting": int64(c.MaxWaiting), "Services.MaxWait": int64(c.MaxWait),
		"Services.RestartBackoff": int64(c.RestartBackoff), "Services.MaxRestartBackoff": int64(c.MaxRestartBackoff),
		"Services.ReconcileInterval": int64(c.ReconcileInterval), "Services.StreamOpenTimeout": int64(c.StreamOpenTimeout),
		"Services.IdleConnTimeout": int64(c.IdleConnTimeout),
		"Services.MaxLogBytes":     int64(c.MaxLogBytes), "Services.MaxMetricServices": int64(c.MaxMetricServices),
		"Services.FollowersPerService": int64(c.FollowersPerService), "Services.FollowersPerToken": int64(c.FollowersPerToken),
		"Services.FollowerBytes": int64(c.FollowerBytes),
	} {
		if v < 0 {
			errs = append(errs, job.Invalid(name, "must not be negative (0: the default)"))
		}
	}
	return errors.Join(errs...)
}

// services runs the instances of docker services on the workers that
// offer them. Its fields are guarded by mu; it never takes
// Orchestrator.mu while holding mu.
type services struct {
	o   *Orchestrator
	cfg ServicesConfig
	m   *serviceMetrics

	mu    sync.Mutex
	list  func() []*job.Deployment
	svcs  map[string]*service // by "namespace/path"
	hosts map[string]*host    // by worker id
	keys  map[string]*host    // by stream key
	// quotas holds each namespace's instance quota, read from its policy
	// outside mu (the read may reach the store).
	quotas map[string]int

	kick chan struct{}

	// followMu guards the counts of log followers: per token, and (in
	// serviceLog.following) per log, whose logs are in following.
	followMu       sync.Mutex
	followByToken  map[string]int
	following      map[*serviceLog]bool
	followersEnded bool
}

// host is a worker session that offers services.
type host struct {
	w         *worker
	key       string
	remote    string
	caps      job.Capabilities
	sess      *yamux.Session // nil until its stream connection is open
	instances map[string]*instance
	gone      bool
	// dialing: a stream connection passed AcceptStreams and is being
	// upgraded; a second one is refused meanwhile, as while one is open.
	dialing bool
}

// service is one deployed docker service and its instances, of every
// version still running.
type service struct {
	name      string
	namespace string
	d         *job.Deployment // the version deployed now
	// gen counts the deployments seen: it grows at every redeploy, and
	// at a new deployment under the same name (whose version starts at
	// 1 again).
	gen int
	// built is the gen whose image was seen built (builds only).
	built int
	// noHost says why the last instance asked for could not start.
	noHost error
	// removed: undeployed; requests get not_found and nothing starts.
	removed   bool
	instances []*instance
	// changed is closed and replaced whenever an instance becomes ready
	// or frees a slot.
	changed chan struct{}
	waiting int
	// buildErr says why the image could not be built.
	buildErr string
	// log is its instances' output (servicelogs.go); see logLocked.
	log   *serviceLog
	label string
}

// instance is one instance of a service: one container on one worker at a
// time. A crashed instance keeps its record (restarts, last exit) and runs
// again under a new id.
type instance struct {
	id        string
	svc       *service
	version   int64
	gen       int // the service's gen when started
	spec      job.ServiceSpec
	host      *host
	state     job.InstanceState
	created   time.Time
	startedAt time.Time
	readyAt   time.Time
	lastUsed  time.Time
	inflight  int
	restarts  int
	crashes   int // in a row, for the backoff
	lastExit  *job.InstanceExit
	// egress is what its worker last reported of its egress.
	egress []job.EgressRecord
	// stopping: asked to stop; its exit is not a crash.
	stopping bool
	// retryAt, for a crashed instance (state exited, no host), is when
	// it starts again.
	retryAt time.Time
	// pool holds the connections to this run of it (servicepool.go).
	pool *instancePool
	// liveOutput: its worker sent its output as it ran, so the tail in
	// its exit report is logged already.
	liveOutput bool
}

func (in *instance) live() bool { return in.host != nil && !in.stopping }

func newServices(o *Orchestrator, cfg ServicesConfig, reg prometheus.Registerer) (*services, error) {
	s := &services{
		o:     o,
		cfg:   cfg.withDefaults(),
		svcs:  make(map[string]*service),
		hosts: make(map[string]*host),
		keys:  make(map[string]*host),
		kick:  make(chan struct{}, 1),

		followByToken: make(map[string]int),
		following:     make(map[*serviceLog]bool),

		quotas: make(map[string]int),
	}
	m, err := newServiceMetrics(reg, s)
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

// SetServiceDeployments gives the orchestrator the docker services
// deployed (internal/deploy's Services); without it no instance runs.
func (o *Orchestrator) SetServiceDeployments(list func() []*job.Deployment) {
	o.svc.mu.Lock()
	o.svc.list = list
	o.svc.mu.Unlock()
	o.ReconcileServices()
}

// ReconcileServices asks for the services' instances to be matched to the
// deployments soon; it never blocks.
func (o *Orchestrator) ReconcileServices() {
	select {
	case o.svc.kick <- struct{}{}:
	default:
	}
}

// loop reconciles until stop is closed.
func (s *services) loop(stop <-chan struct{}) {
	t := time.NewTicker(s.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			s.closeAll()
			return
		case <-t.C:
		case <-s.kick:
		}
		s.reconcile()
	}
}

func (s *services) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.hosts {
		if h.sess != nil {
			h.sess.Close()
		}
	}
}

// streamKey returns a new random stream key.
func streamKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// offersServices says whether a worker session may run instances: trusted,
// with docker and service slots.
func offersServices(trusted bool, caps *job.Capabilities) bool {
	return trusted && caps != nil && caps.Docker != nil && caps.Docker.Services > 0
}

// addHost registers w's session as a host when it offers services and
// returns its stream key ("" when it does not).
func (s *services) addHost(w *worker) string {
	if !offersServices(w.trusted, &w.caps) {
		return ""
	}
	h := &host{w: w, key: streamKey(), remote: remoteIdentity(w.remote), caps: w.caps, instances: make(map[string]*instance)}
	s.mu.Lock()
	s.hosts[w.id] = h
	s.keys[h.key] = h
	s.mu.Unlock()
	return h.key
}

// updateHost applies w's new capabilities: a worker that stops offering
// services keeps its running instances but gets no new one.
func (s *services) updateHost(w *worker, caps job.Capabilities) {
	s.mu.Lock()
	if h := s.hosts[w.id]; h != nil {
		h.caps = caps
		s.broadcastAllLocked()
	}
	s.mu.Unlock()
	s.o.ReconcileServices()
}

// dropHost ends w's hosting: its stream connection is closed at once (the
// requests in flight on it end, answered 502) and its instances start
// elsewhere.
func (s *services) dropHost(w *worker) {
	s.mu.Lock()
	h := s.hosts[w.id]
	if h == nil {
		s.mu.Unlock()
		return
	}
	h.gone = true
	delete(s.hosts, w.id)
	delete(s.keys, h.key)
	sess := h.sess
	h.sess = nil
	now := time.Now()
	for _, in := range h.instances {
		s.exitedLocked(in, &job.InstanceReport{ID: in.id, State: job.InstanceExited, Error: "its worker went away"}, now, true)
	}
	s.mu.Unlock()
	if sess != nil {
		sess.Close()
	}
	s.o.ReconcileServices()
}

// hostForKey returns the host whose stream key is key, when the stream
// connection comes from the worker session's own address.
func (s *services) hostForKey(key, remote string) (*host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.keys[key]
	if h == nil || h.gone {
		return nil, job.Errorf(job.CodeUnauthorized, "unknown stream key")
	}
	if remoteIdentity(remote) != h.remote {
		return nil, job.Errorf(job.CodeUnauthorized, "this stream key belongs to a worker at another address")
	}
	if h.dialing || h.streamsUp() {
		return nil, job.Errorf(job.CodeConflict, "this stream key's connection is open already")
	}
	h.dialing = true
	return h, nil
}

// undial ends the upgrade that hostForKey let through, which did not
// happen.
func (s *services) undial(h *host) {
	s.mu.Lock()
	h.dialing = false
	s.mu.Unlock()
}

// attach makes sess h's stream session until it closes.
func (s *services) attach(h *host, sess *yamux.Session) bool {
	s.mu.Lock()
	h.dialing = false
	if h.gone || h.streamsUp() {
		s.mu.Unlock()
		return false
	}
	h.sess = sess
	s.broadcastAllLocked()
	s.mu.Unlock()
	s.o.ReconcileServices()
	<-sess.CloseChan()
	s.mu.Lock()
	if h.sess == sess {
		h.sess = nil
	}
	s.mu.Unlock()
	return true
}

// serviceLocked returns the state of d's service, creating it, and moves
// it to d's version when d is newer.
func (s *services) serviceLocked(d *job.Deployment) *service {
	sv := s.svcs[d.Name()]
	if sv == nil {
		sv = &service{name: d.Name(), namespace: d.Namespace, d: d, gen: 1, changed: make(chan struct{})}
		sv.label = sv.name
		if len(s.svcs) >= s.cfg.MaxMetricServices {
			sv.label = "other"
		}
		s.svcs[d.Name()] = sv
		return sv
	}
	if d.Version > sv.d.Version || !d.CreatedAt.Equal(sv.d.CreatedAt) && d.UpdatedAt.After(sv.d.UpdatedAt) {
		sv.d = d
		sv.gen++
		sv.buildErr = ""
		sv.removed = false
	}
	return sv
}

func (sv *service) broadcast() {
	close(sv.changed)
	sv.changed = make(chan struct{})
}

// pickLocked returns the ready instance of sv with the fewest requests in
// flight and a free slot: of the version deployed now, or, while none of
// it is ready, of an older one.
func (sv *service) pickLocked() *instance {
	var best *instance
	current := false
	for _, in := range sv.instances {
		if in.state == job.InstanceReady && in.gen == sv.gen && in.live() {
			current = true
		}
	}
	for _, in := range sv.instances {
		if in.state != job.InstanceReady || !in.live() || !in.host.streamsUp() {
			continue
		}
		if current && in.gen != sv.gen {
			continue
		}
		if in.inflight >= sv.d.Service.Concurrency {
			continue
		}
		if best == nil || in.inflight < best.inflight {
			best = in
		}
	}
	return best
}

// currentLocked counts sv's instances of its current version that run or
// start, and how many of those are starting. A ready instance whose
// worker's stream connection is down counts as starting: the worker
// dials it again (or its session ends and the instance starts
// elsewhere), so requests wait for it rather than start another beside
// it.
func (sv *service) currentLocked() (running, starting int) {
	for _, in := range sv.instances {
		if in.gen != sv.gen || in.stopping {
			continue
		}
		if in.host != nil || !in.retryAt.IsZero() {
			running++
		}
		if in.host != nil && (in.state == job.InstanceStarting || !in.host.streamsUp()) {
			starting++
		}
	}
	return running, starting
}

// streamsUp says whether h's stream connection is open.
func (h *host) streamsUp() bool { return h.sess != nil && !h.sess.IsClosed() }

// ServiceHosts is how many workers services can be placed on now: those
// offering services whose stream connection is up.
func (o *Orchestrator) ServiceHosts() int {
	o.svc.mu.Lock()
	defer o.svc.mu.Unlock()
	n := 0
	for _, h := range o.svc.hosts {
		if !h.gone && h.streamsUp() {
			n++
		}
	}
	return n
}

// errBusy: every instance is busy and no more may start.
var errBusy = errors.New("busy")

// growLocked starts an instance of sv when the requests waiting need one:
// none is starting with room for them, and fewer than max_instances run.
// A crashed instance whose backoff passed starts again here at once; one
// still in its backoff counts as starting, so that the requests wait for
// its restart instead of starting another beside it. It returns errBusy
// when none may start and none is starting.
func (s *services) growLocked(ctx context.Context, sv *service, now time.Time) error {
	if err := s.buildReadyLocked(ctx, sv); err != nil {
		return err
	}
	running, starting := sv.currentLocked()
	for _, in := range slices.Clone(sv.instances) {
		if in.gen != sv.gen || in.host != nil || in.retryAt.IsZero() {
			continue
		}
		if now.Before(in.retryAt) {
			starting++
			continue
		}
		if _, err := s.startLocked(ctx, sv, in, now); err != nil {
			in.retryAt = now.Add(s.cfg.RestartBackoff)
			if job.ErrorCode(err) == job.CodeUnavailable {
				sv.noHost = err
			}
		}
		starting++
	}
	if starting*sv.d.Service.Concurrency > sv.waiting {
		return nil
	}
	if running >= sv.d.Service.MaxInstances {
		if starting > 0 {
			return nil
		}
		return errBusy
	}
	if _, err := s.startLocked(ctx, sv, nil, now); err != nil {
		if starting > 0 {
			return nil
		}
		if job.ErrorCode(err) == job.CodeUnavailable {
			// No worker may run it now: the request waits for one to
			// connect (or get a free slot), as for a start.
			sv.noHost = err
			return nil
		}
		return err
	}
	sv.noHost = nil
	return nil
}

// broadcastAllLocked wakes every waiting request: a host came or
// changed.
func (s *services) broadcastAllLocked() {
	for _, sv := range s.svcs {
		sv.broadcast()
	}
}

// restartPendingLocked says whether a crashed instance of sv's current
// version waits for its restart.
func (s *services) restartPendingLocked(sv *service) bool {
	for _, in := range sv.instances {
		if in.gen == sv.gen && in.host == nil && !in.retryAt.IsZero() {
			return true
		}
	}
	return false
}

// buildReadyLocked says whether the image of a service deployed from a
// Dockerfile is built; no instance starts before.
func (s *services) buildReadyLocked(ctx context.Context, sv *service) error {
	id := sv.d.Service.BuildJobID
	if id == "" || sv.built == sv.gen {
		return nil
	}
	if sv.buildErr != "" {
		return job.Errorf(job.CodeBadGateway, "the image of %s could not be built: %s", sv.name, sv.buildErr)
	}
	j, err := s.o.Job(ctx, id)
	if err != nil {
		return job.Errorf(job.CodeUnavailable, "the build of %s (job %s) cannot be read: %v", sv.name, id, err)
	}
	switch j.Status {
	case job.StatusCompleted:
		sv.built = sv.gen
		return nil
	case job.StatusPending, job.StatusRunning:
		return job.Errorf(job.CodeUnavailable, "the image of %s is being built (job %s)", sv.name, id)
	}
	why := string(j.Status)
	if j.Result != nil && j.Result.Error != "" {
		why += ": " + job.CutText(j.Result.Error, 512)
	}
	sv.buildErr = why
	return job.Errorf(job.CodeBadGateway, "the image of %s could not be built: %s", sv.name, why)
}

// nsInstancesLocked counts the instances namespace ns runs or starts.
func (s *services) nsInstancesLocked(ns string) int {
	n := 0
	for _, sv := range s.svcs {
		if sv.namespace != ns {
			continue
		}
		for _, in := range sv.instances {
			if in.host != nil {
				n++
			}
		}
	}
	return n
}

// startLocked starts an instance of sv's current version on the least
// loaded host that may run it: in, when given, is a crashed instance
// started again. The namespace's max_instances quota applies.
func (s *services) startLocked(ctx context.Context, sv *service, in *instance, now time.Time) (*instance, error) {
	cfg := sv.d.Service
	if q := s.quotas[sv.namespace]; q > 0 && s.nsInstancesLocked(sv.namespace) >= q {
		return nil, job.Errorf(job.CodeTooMany, "namespace %s runs %d service instances, its quota", sv.namespace, q)
	}
	// Checked at deploy too; here, a policy changed since holds.
	if why := s.o.cachedPolicyLocked(sv.namespace).EgressRefusal(cfg.EgressOf()); why != "" {
		return nil, job.Errorf(job.CodeUnavailable, "no instance of %s may start: %s", sv.name, why)
	}
	h, whyNot := s.placeLocked(sv, cfg.ServiceSpec)
	if h == nil {
		msg := fmt.Sprintf("no connected trusted worker offers docker services that may run %s", cfg.Image)
		if len(cfg.EgressOf()) > 0 {
			msg += " with egress to " + strings.Join(cfg.EgressOf(), ", ")
		}
		if whyNot != "" {
			msg += " (" + whyNot + ")"
		}
		return nil, job.Errorf(job.CodeUnavailable, "%s", msg)
	}
	if in == nil {
		in = &instance{svc: sv, created: now}
		sv.instances = append(sv.instances, in)
	}
	in.id = uuid.NewString()
	in.version = sv.d.Version
	in.gen = sv.gen
	in.spec = cfg.ServiceSpec
	in.host = h
	in.state = job.InstanceStarting
	in.startedAt = now
	in.readyAt = time.Time{}
	in.lastUsed = now
	in.retryAt = time.Time{}
	in.stopping = false
	in.egress = nil
	conns := cfg.Concurrency
	if share := h.caps.Docker.StreamsPerInstance; share > 0 {
		conns = min(conns, share)
	}
	in.pool = s.newInstancePool(in, conns)
	h.instances[in.id] = in
	h.w.send(protocol.Message{Type: protocol.TypeServiceStart, Instance: &job.ServiceInstance{
		ID: in.id, Namespace: sv.namespace, Service: sv.name, Version: in.version, Spec: in.spec,
	}})
	s.m.coldStarts.WithLabelValues(sv.label).Inc()
	return in, nil
}

// placeLocked returns the host for a new instance of sv running spec: a
// trusted worker's session with its stream connection open, a free
// service slot, an image allow-list that admits the image and an
// owner's egress list that covers the egress spec asks for; of those,
// the one with the fewest instances of sv, then the fewest in all. With
// none, whyNot says what the connected service workers lack.
func (s *services) placeLocked(sv *service, spec job.ServiceSpec) (best *host, whyNot string) {
	var bestMine, bestAll int
	var whys []string
	for _, h := range s.hosts {
		if h.gone || !h.streamsUp() || !h.w.trusted {
			continue
		}
		if ok, why := h.caps.RunsService(spec); !ok {
			whys = append(whys, fmt.Sprintf("worker %s %s", cmp.Or(h.w.name, h.w.id), why))
			continue
		}
		if len(h.instances) >= h.caps.Docker.Services {
			whys = append(whys, fmt.Sprintf("worker %s has all %d service slots taken", cmp.Or(h.w.name, h.w.id), h.caps.Docker.Services))
			continue
		}
		mine := 0
		for _, in := range h.instances {
			if in.svc == sv {
				mine++
			}
		}
		all := len(h.instances)
		if best == nil || mine < bestMine || (mine == bestMine && (all < bestAll || (all == bestAll && h.w.id < best.w.id))) {
			best, bestMine, bestAll = h, mine, all
		}
	}
	if best != nil {
		return best, ""
	}
	slices.Sort(whys)
	if len(whys) > maxPlaceReasons {
		whys = append(whys[:maxPlaceReasons], fmt.Sprintf("and %d more", len(whys)-maxPlaceReasons))
	}
	return nil, strings.Join(whys, "; ")
}

// maxPlaceReasons bounds the workers a placement's refusal names.
const maxPlaceReasons = 5

// stopLocked asks in's worker to stop it; it stays counted on its host
// until the worker reports it exited (or goes away).
func (s *services) stopLocked(in *instance, why string) {
	if in.host == nil {
		s.removeLocked(in)
		return
	}
	if in.stopping {
		return
	}
	in.stopping = true
	in.pool.close()
	in.host.w.send(protocol.Message{Type: protocol.TypeServiceStop, InstanceID: in.id})
	s.o.log.Info("service instance stopping", "service", in.svc.name, "instance", in.id, "worker_id", in.host.w.id, "why", why)
}

func (s *services) removeLocked(in *instance) {
	sv := in.svc
	sv.instances = slices.DeleteFunc(sv.instances, func(x *instance) bool { return x == in })
}

// report applies a worker's service_state.
func (s *services) report(w *worker, r *job.InstanceReport) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hosts[w.id]
	if h == nil {
		return
	}
	in := h.instances[r.ID]
	if in == nil {
		return // an instance this session was never given, or one ended
	}
	sv := in.svc
	switch r.State {
	case job.InstanceStarting:
	case job.InstanceReady:
		if in.state == job.InstanceStarting {
			in.state = job.InstanceReady
			in.readyAt = now
			in.crashes = 0
			s.m.startSeconds.WithLabelValues(sv.label).Observe(now.Sub(in.startedAt).Seconds())
			s.o.log.Info("service instance ready", "service", sv.name, "instance", in.id, "worker_id", w.id)
			sv.broadcast()
		}
	case job.InstanceExited:
		live := in.liveOutput
		s.exitedLocked(in, r, now, false)
		if r.Output != "" && !live {
			s.logLocked(sv).output(in.id, job.LogStdout, r.Output, 0)
		}
		s.logLocked(sv).flush(in.id)
	}
	if r.Egress != nil {
		in.egress = r.Egress[:min(len(r.Egress), job.MaxInstanceEgress)]
	}
	if r.Output != "" && r.State == job.InstanceReady {
		// A ready report's output is its egress proxy's refusal lines.
		s.logLocked(sv).output(in.id, job.LogStderr, r.Output, 0)
	}
}

// exitedLocked records that in ended. An instance asked to stop is
// removed; one that crashed (or whose worker went away: lost) is started
// again, a crash after a backoff.
func (s *services) exitedLocked(in *instance, r *job.InstanceReport, now time.Time, lost bool) {
	if in.host != nil {
		delete(in.host.instances, in.id)
		in.host = nil
	}
	in.pool.close()
	sv := in.svc
	if sv.log != nil {
		// What the run wrote after its last line ended: its id is
		// never used again (a lost worker sends nothing more).
		sv.log.flush(in.id)
	}
	in.state = job.InstanceExited
	in.lastExit = &job.InstanceExit{ExitCode: r.ExitCode, Error: r.Error, Output: r.Output, At: now}
	if in.stopping {
		s.removeLocked(in)
		sv.broadcast()
		return
	}
	in.restarts++
	wait := time.Duration(0)
	if !lost {
		wait = s.cfg.RestartBackoff << min(in.crashes, 20)
		wait = min(wait, s.cfg.MaxRestartBackoff)
		in.crashes++
	}
	in.retryAt = now.Add(wait)
	s.m.crashes.WithLabelValues(sv.label).Inc()
	s.o.log.Info("service instance exited", "service", sv.name, "instance", in.id, "exit_code", r.ExitCode, "error", r.Error, "lost", lost, "restart_in", wait)
	sv.broadcast()
}

// reconcile matches every service's instances to its deployment.
func (s *services) reconcile() {
	ctx := context.Background()
	s.mu.Lock()
	listFn := s.list
	s.mu.Unlock()
	if listFn == nil {
		return
	}
	list := listFn()
	quotas := make(map[string]int)
	for _, d := range list {
		if _, ok := quotas[d.Namespace]; !ok {
			quotas[d.Namespace] = s.o.Quotas(ctx, d.Namespace).MaxInstances
		}
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for ns, q := range quotas {
		s.quotas[ns] = q
	}
	deployed := make(map[string]bool)
	for _, d := range list {
		if d.Service == nil {
			continue
		}
		deployed[d.Name()] = true
		s.serviceLocked(d).removed = false
	}
	for name, sv := range s.svcs {
		if !deployed[name] {
			sv.removed = true
			if sv.log != nil {
				sv.log.end("the service was undeployed")
			}
			for _, in := range slices.Clone(sv.instances) {
				s.stopLocked(in, "undeployed")
			}
			sv.broadcast()
			if len(sv.instances) == 0 && sv.waiting == 0 {
				delete(s.svcs, name)
			}
			continue
		}
		s.reconcileLocked(ctx, sv, now)
	}
}

func (s *services) reconcileLocked(ctx context.Context, sv *service, now time.Time) {
	cfg := sv.d.Service
	idle := cfg.IdleTimeout()
	if s.buildReadyLocked(ctx, sv) != nil {
		return
	}
	currentReady := false
	oldLive := 0
	for _, in := range sv.instances {
		if in.gen == sv.gen && in.state == job.InstanceReady && in.live() {
			currentReady = true
		}
		if in.gen != sv.gen && in.live() {
			oldLive++
		}
	}
	for _, in := range slices.Clone(sv.instances) {
		switch {
		case in.gen != sv.gen:
			// A redeploy: the old version drains once the new one is
			// ready; its crashed instances are not restarted.
			if in.host == nil {
				s.removeLocked(in)
			} else if currentReady && in.inflight == 0 {
				s.stopLocked(in, fmt.Sprintf("replaced by version %d", sv.d.Version))
			}
		case in.host != nil && in.state == job.InstanceStarting && !in.stopping &&
			now.Sub(in.startedAt) > time.Duration(in.spec.StartTimeoutSeconds*float64(time.Second))+s.cfg.StreamOpenTimeout:
			s.stopLocked(in, "not ready within its start timeout")
		case in.host != nil && !in.stopping && len(in.spec.EgressOf()) > 0:
			if why := s.o.cachedPolicyLocked(sv.namespace).EgressRefusal(in.spec.EgressOf()); why != "" {
				s.stopLocked(in, "its namespace's policy no longer allows its egress: "+why)
			}
		}
	}
	running, _ := sv.currentLocked()
	// Idle instances stop, down to min_instances.
	for _, in := range slices.Clone(sv.instances) {
		if running <= cfg.MinInstances {
			break
		}
		if in.gen == sv.gen && in.live() && in.inflight == 0 && in.state == job.InstanceReady && now.Sub(in.lastUsed) >= idle && sv.waiting == 0 {
			s.stopLocked(in, "idle")
			running--
		}
	}
	// Crashed instances start again once their backoff passed, unless
	// they would be idle.
	for _, in := range slices.Clone(sv.instances) {
		if in.gen != sv.gen || in.host != nil || in.retryAt.IsZero() {
			continue
		}
		if now.Sub(in.lastUsed) >= idle && running > cfg.MinInstances && sv.waiting == 0 {
			s.removeLocked(in)
			running--
			continue
		}
		if now.Before(in.retryAt) {
			continue
		}
		if _, err := s.startLocked(ctx, sv, in, now); err != nil {
			in.retryAt = now.Add(s.cfg.RestartBackoff)
			sv.noHost = err
		}
	}
	// min_instances, and as many new instances as the old version ran.
	want := max(cfg.MinInstances, min(oldLive, cfg.MaxInstances))
	if oldLive > 0 {
		want = max(want, 1)
	}
	for running < want {
		if _, err := s.startLocked(ctx, sv, nil, now); err != nil {
			sv.noHost = err
			break
		}
		sv.noHost = nil
		running++
	}
	if running >= want && sv.waiting == 0 && !s.restartPendingLocked(sv) {
		sv.noHost = nil // nothing waits to start
	}
}

// ConnectService picks a ready instance of d (a docker service) for one
// request and returns the transport that sends it there, over the
// instance's pooled connections (servicepool.go), holding one of the
// instance's concurrency slots until release is called, once the
// answer's body is done (release is idempotent). It starts instances as
// needed, and waits (at most ServicesConfig.MaxWait, or the service's
// start timeout, and never past ctx) while they start. A failure to reach
// the instance is the transport's error (502).
//
// Errors, by code: unavailable when no instance is free in time, or the
// service is at max_instances with every slot taken (Retry-After),
// or no worker may run it; too_many when the namespace's instance quota
// is taken.
func (o *Orchestrator) ConnectService(ctx context.Context, d *job.Deployment) (rt http.RoundTripper, release func(), err error) {
	s := o.svc
	if d == nil || d.Service == nil {
		return nil, nil, job.Errorf(job.CodeNotFound, "not a docker service")
	}
	if _, err := job.ActsIn(ctx, d.Namespace); err != nil {
		return nil, nil, err
	}
	wait := s.cfg.MaxWait
	if wait <= 0 {
		wait = d.Service.StartTimeout()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	begin := time.Now()
	quota := o.Quotas(ctx, d.Namespace).MaxInstances
	s.mu.Lock()
	s.quotas[d.Namespace] = quota
	if s.list == nil {
		s.mu.Unlock()
		return nil, nil, job.Errorf(job.CodeUnavailable, "docker services are not served here")
	}
	sv := s.serviceLocked(d)
	for {
		now := time.Now()
		if sv.removed {
			s.mu.Unlock()
			return nil, nil, job.Errorf(job.CodeNotFound, "no service is deployed at %s", sv.name)
		}
		if in := sv.pickLocked(); in != nil {
			in.inflight++
			in.lastUsed = now
			pool := in.pool
			s.mu.Unlock()
			s.m.wait.WithLabelValues(sv.label).Observe(time.Since(begin).Seconds())
			var once sync.Once
			return poolTransport{pool}, func() { once.Do(func() { s.release(in, pool) }) }, nil
		}
		if err := s.growLocked(ctx, sv, now); err != nil {
			s.mu.Unlock()
			if err == errBusy {
				return nil, nil, job.Errorf(job.CodeUnavailable, "service %s: all %d instances are busy (%d requests each)", sv.name, d.Service.MaxInstances, d.Service.Concurrency)
			}
			return nil, nil, err
		}
		if sv.waiting >= s.cfg.MaxWaiting {
			s.mu.Unlock()
			return nil, nil, job.Errorf(job.CodeUnavailable, "service %s: %d requests wait for an instance already", sv.name, sv.waiting)
		}
		sv.waiting++
		ch := sv.changed
		s.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-timer.C:
			err = job.Errorf(job.CodeUnavailable, "service %s: no instance was free within %s", sv.name, wait)
			s.mu.Lock()
			if sv.noHost != nil {
				err = sv.noHost
			}
			s.mu.Unlock()
		case <-ctx.Done():
			err = ctx.Err()
		}
		s.mu.Lock()
		sv.waiting--
		if err != nil {
			s.mu.Unlock()
			return nil, nil, err
		}
	}
}

// release gives back in's slot; the connections of a run that ended or
// stops are closed as their requests end.
func (s *services) release(in *instance, pool *instancePool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in.inflight--
	in.lastUsed = time.Now()
	if in.pool != pool || !in.live() {
		pool.close()
	}
	if in.gen != in.svc.gen && in.inflight == 0 && in.host != nil {
		s.o.ReconcileServices()
	}
	in.svc.broadcast()
}

// ObserveServiceRequest records a request's latency to a service.
func (o *Orchestrator) ObserveServiceRequest(d *job.Deployment, status int, took time.Duration) {
	s := o.svc
	s.mu.Lock()
	label := "other"
	if sv := s.svcs[d.Name()]; sv != nil {
		label = sv.label
	}
	s.mu.Unlock()
	s.m.latency.WithLabelValues(label, fmt.Sprintf("%dxx", status/100)).Observe(took.Seconds())
}

// ServiceInstances returns the instances of the service d, by creation.
func (o *Orchestrator) ServiceInstances(d *job.Deployment) []job.InstanceView {
	s := o.svc
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.svcs[d.Name()]
	out := []job.InstanceView{}
	if sv == nil {
		return out
	}
	for _, in := range sv.instances {
		v := job.InstanceView{ID: in.id, Version: in.version, State: string(in.state), StartedAt: in.startedAt,
			InFlight: in.inflight, Restarts: in.restarts, LastExit: in.lastExit, Egress: in.egress}
		if !in.readyAt.IsZero() {
			t := in.readyAt
			v.ReadyAt = &t
		}
		switch {
		case in.host != nil:
			v.WorkerID = in.host.w.id
			v.WorkerName = in.host.w.name
			if in.stopping {
				v.State = "stopping"
			}
		case !in.retryAt.IsZero():
			v.State = "restarting"
		}
		out = append(out, v)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// ServicePending says why an instance of the service d that should run
// could not start when last tried (no worker may run it, its namespace's
// policy refuses its egress, …); "" when none waits to start.
func (o *Orchestrator) ServicePending(d *job.Deployment) string {
	s := o.svc
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv := s.svcs[d.Name()]; sv != nil && sv.noHost != nil {
		return sv.noHost.Error()
	}
	return ""
}

// ServiceLogs returns the recent output of the service d's instances, as
// their workers reported it.
func (o *Orchestrator) ServiceLogs(d *job.Deployment) string {
	s := o.svc
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv := s.svcs[d.Name()]; sv != nil && sv.log != nil {
		return sv.log.text()
	}
	return ""
}

type serviceMetrics struct {
	coldStarts   *prometheus.CounterVec
	crashes      *prometheus.CounterVec
	startSeconds *prometheus.HistogramVec
	wait         *prometheus.HistogramVec
	latency      *prometheus.HistogramVec
}

func newServiceMetrics(reg prometheus.Registerer, s *services) (*serviceMetrics, error) {
	m := &serviceMetrics{
		coldStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerverless_service_cold_starts_total", Help: "Service instances started, by service.",
		}, []string{"service"}),
		crashes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerverless_service_instance_exits_total", Help: "Service instances that ended unasked (crash, lost worker), by service.",
		}, []string{"service"}),
		startSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "zerverless_service_start_seconds", Help: "Time from start to ready of service instances, by service.", Buckets: latencyBuckets,
		}, []string{"service"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "zerverless_service_wait_seconds", Help: "Time requests waited for a free instance, by service.", Buckets: latencyBuckets,
		}, []string{"service"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "zerverless_service_request_seconds", Help: "Time to answer requests to services (to the end of the body), by service and status class.", Buckets: latencyBuckets,
		}, []string{"service", "code"}),
	}
	instances := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "zerverless_service_instances", Help: "Service instances running or starting now."},
		func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			n := 0
			for _, h := range s.hosts {
				n += len(h.instances)
			}
			return float64(n)
		})
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.coldStarts, m.crashes, m.startSeconds, m.wait, m.latency, instances} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// AcceptStreams checks a worker's stream connection before it is
// upgraded: key must be the stream key of a live session that offers
// services, presented from that session's address, with no stream
// connection open or being upgraded. serve then runs the connection (a
// yamux client over conn, the orchestrator opening the streams) until it
// or the session ends; it must be called once, with nil when the upgrade
// did not happen, which lets the next connection through.
func (o *Orchestrator) AcceptStreams(key, remote string) (serve func(conn net.Conn), err error) {
	h, err := o.svc.hostForKey(key, remote)
	if err != nil {
		return nil, err
	}
	return func(conn net.Conn) {
		if conn == nil {
			o.svc.undial(h)
			return
		}
		sess, err := yamux.Client(agent.FrameConn(conn), agent.YamuxConfig())
		if err != nil {
			o.svc.undial(h)
			conn.Close()
			return
		}
		defer sess.Close()
		// Only the orchestrator opens streams: one the worker opens
		// would hold what it writes there, unread, until the session
		// ends. It ends now.
		go func() {
			if st, err := sess.AcceptStream(); err == nil {
				st.Close()
				o.log.Warn("a worker opened a stream on its stream connection; closing it", "worker_id", h.w.id)
				sess.Close()
			}
		}()
		if !o.svc.attach(h, sess) {
			return
		}
	}, nil
}
