package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// Config tunes function deployments and invocations. Start from
// DefaultConfig; every limit has a documented default.
type Config struct {
	// QueueWait is how long an invocation waits for a worker to take it,
	// and, separately, for a slot under the function's max_concurrency,
	// before it is answered 503 with Retry-After (default 5 s).
	QueueWait time.Duration
	// StopGrace is how long past a function's timeout (plus the queue
	// wait) an invocation waits for its worker's answer before it gives up
	// with 504 itself (default 1 s).
	StopGrace time.Duration
	// MaxAttempts is how many runs an invocation gets when its worker is
	// lost mid-run (default 1: an HTTP request is not retried behind the
	// caller's back).
	MaxAttempts int
	// Limits bound what a deployment may ask for.
	Limits job.DeployLimits
	// CodeCacheBytes bounds the code and modules kept in memory for
	// invocations (default 256 MiB); beyond it code is read from the store
	// again when next invoked.
	CodeCacheBytes int
	// Quotas, when set, gives each namespace's quotas; a namespace may
	// hold at most Quotas.Deployments functions.
	Quotas QuotaSource
	// RefreshInterval is how often the table of deployments is reloaded
	// from the store, to see deployments made through another
	// orchestrator on a shared store (default 10 s; negative: never).
	RefreshInterval time.Duration
	// OnChange, when set, is called (without blocking) after the table
	// of deployments changed: the orchestrator's services then match
	// their instances to the docker services deployed.
	OnChange func()
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		QueueWait:       5 * time.Second,
		StopGrace:       time.Second,
		MaxAttempts:     1,
		Limits:          job.DefaultDeployLimits(),
		CodeCacheBytes:  256 << 20,
		RefreshInterval: 10 * time.Second,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.QueueWait <= 0 {
		c.QueueWait = d.QueueWait
	}
	if c.StopGrace <= 0 {
		c.StopGrace = d.StopGrace
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.Limits == (job.DeployLimits{}) {
		c.Limits = d.Limits
	}
	if c.CodeCacheBytes <= 0 {
		c.CodeCacheBytes = d.CodeCacheBytes
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = d.RefreshInterval
	}
	return c
}

// Store is what deployments need of the store.
type Store interface {
	PutDeployment(ctx context.Context, d *job.Deployment) error
	GetDeployment(ctx context.Context, namespace, path string) (*job.Deployment, error)
	ListDeployments(ctx context.Context, f store.DeploymentFilter) ([]*job.Deployment, error)
	DeleteDeployment(ctx context.Context, namespace, path string) error
}

// Invoker runs an ephemeral job; the orchestrator implements it (see
// orchestrator.Invoke for its contract).
type Invoker interface {
	// InvokeWithin runs r, waiting at most queueWait for a worker to
	// take it and limit in all (context.DeadlineExceeded).
	InvokeWithin(ctx context.Context, r job.Request, queueWait, limit time.Duration) (*job.Job, error)
}

// Service keeps the table of deployments and runs invocations. Create it
// with New, load the table with Start, stop its refresh with Close.
type Service struct {
	cfg   Config
	store Store
	inv   Invoker
	log   *slog.Logger
	now   func() time.Time

	mu sync.RWMutex
	// table holds every deployment, without code, by "namespace/path".
	table map[string]*entry
	// cached is the size of the code held by entries.
	cached int

	stop chan struct{}
	wg   sync.WaitGroup
}

// entry is one deployment as invocations see it.
type entry struct {
	d *job.Deployment // without code
	// sem holds a token per running invocation when MaxConcurrency > 0.
	sem chan struct{}

	codeMu sync.Mutex
	code   *prepared // nil until loaded; guarded by Service.mu for eviction
}

// prepared is a version's code as jobs carry it.
type prepared struct {
	version int64
	code    string // wrapped source
	wasm    []byte
}

func (p *prepared) size() int { return len(p.code) + len(p.wasm) }

// New returns a service over st that runs invocations with inv. A nil log
// discards.
func New(cfg Config, st Store, inv Invoker, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		cfg:   cfg.withDefaults(),
		store: st,
		inv:   inv,
		log:   log,
		now:   time.Now,
		table: map[string]*entry{},
		stop:  make(chan struct{}),
	}
}

// Start loads the table of deployments and starts its periodic refresh.
func (s *Service) Start(ctx context.Context) error {
	if err := s.refresh(ctx); err != nil {
		return fmt.Errorf("load deployments: %w", err)
	}
	if s.cfg.RefreshInterval > 0 {
		s.wg.Add(1)
		go s.refreshLoop()
	}
	return nil
}

// Close stops the refresh. Invocations in flight go on.
func (s *Service) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

func (s *Service) refreshLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RefreshInterval)
			if err := s.refresh(ctx); err != nil {
				s.log.Warn("reload deployments", "err", err)
			}
			cancel()
		}
	}
}

// refresh replaces the table with the store's, keeping the entries (their
// concurrency slots and cached code) of deployments whose version has not
// changed.
func (s *Service) refresh(ctx context.Context) error {
	list, err := s.store.ListDeployments(ctx, store.DeploymentFilter{})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	table := make(map[string]*entry, len(list))
	cached := 0
	for _, d := range list {
		if old, ok := s.table[d.Name()]; ok && old.d.Version == d.Version {
			table[d.Name()] = old
			if old.code != nil {
				cached += old.code.size()
			}
			continue
		}
		table[d.Name()] = newEntry(d)
	}
	s.table, s.cached = table, cached
	s.changed()
	return nil
}

func newEntry(d *job.Deployment) *entry {
	e := &entry{d: d.WithoutCode()}
	if d.MaxConcurrency > 0 {
		e.sem = make(chan struct{}, d.MaxConcurrency)
	}
	return e
}

// Deploy validates r (again: the API decodes it with the same limits) and
// stores it as the function at namespace/path, replacing any previous
// version. It returns the deployment as stored, with its new version and
// without its code. ctx must carry a principal that may act in namespace
// (job.ActsIn).
func (s *Service) Deploy(ctx context.Context, namespace, path string, r job.DeployRequest) (*job.Deployment, error) {
	if _, err := job.ActsIn(ctx, namespace); err != nil {
		return nil, err
	}
	if err := job.ValidateFunctionName(namespace, path); err != nil {
		return nil, err
	}
	if err := r.Validate(s.cfg.Limits); err != nil {
		return nil, err
	}
	if err := s.checkQuota(ctx, namespace, path); err != nil {
		return nil, err
	}
	digest := ""
	if r.Runtime != job.TypeDocker {
		sum := sha256.New()
		sum.Write([]byte(r.Code))
		sum.Write(r.Wasm)
		digest = hex.EncodeToString(sum.Sum(nil))
	}
	d := r.NewDeployment(namespace, path, digest, s.now().UTC(), s.cfg.Limits)
	if err := s.store.PutDeployment(ctx, d); err != nil {
		return nil, err
	}
	e := newEntry(d)
	p := prepare(d)
	s.mu.Lock()
	if old, ok := s.table[d.Name()]; !ok || old.d.Version < d.Version {
		if ok && old.code != nil {
			s.cached -= old.code.size()
		}
		e.code = p
		s.cached += p.size()
		s.table[d.Name()] = e
		s.evictLocked(e)
	}
	s.mu.Unlock()
	s.log.Info("function deployed", "namespace", namespace, "path", path, "version", d.Version, "runtime", d.Runtime)
	s.changed()
	return d.WithoutCode(), nil
}

// Deployment returns the function at namespace/path with its code, or a
// not_found error.
func (s *Service) Deployment(ctx context.Context, namespace, path string) (*job.Deployment, error) {
	d, err := s.store.GetDeployment(ctx, namespace, path)
	if job.ErrorCode(err) == job.CodeNotFound {
		return nil, job.Errorf(job.CodeNotFound, "no function is deployed at %s/%s", namespace, path)
	}
	return d, err
}

// Deployments lists the functions (of namespace, when not empty) by
// namespace then path, with their code when withCode.
func (s *Service) Deployments(ctx context.Context, namespace string, withCode bool) ([]*job.Deployment, error) {
	return s.store.ListDeployments(ctx, store.DeploymentFilter{Namespace: namespace, WithCode: withCode})
}

// Undeploy removes the function at namespace/path; its URL answers 404 at
// once. Invocations in flight finish. ctx must carry a principal that may
// act in namespace (job.ActsIn).
func (s *Service) Undeploy(ctx context.Context, namespace, path string) error {
	if _, err := job.ActsIn(ctx, namespace); err != nil {
		return err
	}
	err := s.store.DeleteDeployment(ctx, namespace, path)
	if job.ErrorCode(err) == job.CodeNotFound {
		return job.Errorf(job.CodeNotFound, "no function is deployed at %s/%s", namespace, path)
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	if e, ok := s.table[namespace+"/"+path]; ok {
		if e.code != nil {
			s.cached -= e.code.size()
		}
		delete(s.table, namespace+"/"+path)
	}
	s.mu.Unlock()
	s.log.Info("function removed", "namespace", namespace, "path", path)
	s.changed()
	return nil
}

func prepare(d *job.Deployment) *prepared {
	p := &prepared{version: d.Version}
	if d.Runtime == job.TypeWasm {
		p.wasm = d.Wasm
	} else {
		p.code = wrapCode(d.Runtime, d.Code)
	}
	return p
}

// evictLocked drops cached code of entries other than keep until the
// cache is within its budget.
func (s *Service) evictLocked(keep *entry) {
	for _, e := range s.table {
		if s.cached <= s.cfg.CodeCacheBytes {
			return
		}
		if e == keep || e.code == nil {
			continue
		}
		s.cached -= e.code.size()
		e.code = nil
	}
}

// code returns e's prepared code, reading it from the store when it is not
// cached.
func (s *Service) code(ctx context.Context, e *entry) (*prepared, error) {
	s.mu.RLock()
	p := e.code
	s.mu.RUnlock()
	if p != nil {
		return p, nil
	}
	e.codeMu.Lock()
	defer e.codeMu.Unlock()
	s.mu.RLock()
	p = e.code
	s.mu.RUnlock()
	if p != nil {
		return p, nil
	}
	d, err := s.store.GetDeployment(ctx, e.d.Namespace, e.d.Path)
	if err != nil {
		if job.ErrorCode(err) == job.CodeNotFound {
			return nil, job.Errorf(job.CodeNotFound, "no function is deployed at %s", e.d.Name())
		}
		return nil, fmt.Errorf("load function %s: %w", e.d.Name(), err)
	}
	if d.Version != e.d.Version {
		// Redeployed through another orchestrator since the table was
		// loaded: run what is deployed now, and let the refresh catch up.
		return prepare(d), nil
	}
	p = prepare(d)
	s.mu.Lock()
	if s.table[e.d.Name()] == e {
		e.code = p
		s.cached += p.size()
		s.evictLocked(e)
	}
	s.mu.Unlock()
	return p, nil
}

// QuotaSource gives a namespace's quotas.
type QuotaSource interface {
	Quotas(ctx context.Context, namespace string) job.Quotas
}

// checkQuota refuses a new function in a namespace that holds its quota of
// deployments; redeploying an existing one is always allowed.
func (s *Service) checkQuota(ctx context.Context, namespace, path string) error {
	if s.cfg.Quotas == nil {
		return nil
	}
	limit := s.cfg.Quotas.Quotas(ctx, namespace).Deployments
	if limit <= 0 {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.table[namespace+"/"+path]; ok {
		return nil
	}
	n := 0
	for _, e := range s.table {
		if e.d.Namespace == namespace {
			n++
		}
	}
	if n >= limit {
		return job.Errorf(job.CodeTooMany, "namespace %s has %d functions, its quota; delete one first", namespace, n)
	}
	return nil
}
