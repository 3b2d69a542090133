package docker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/errdefs"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// Docker runs docker jobs as containers of a Docker Engine, under the
// strict profile (see profile.go). It is safe for concurrent use.
type Docker struct {
	cfg    Config
	engine Engine
	// instance labels what this runtime makes (LabelInstance).
	instance string

	provMu    sync.Mutex
	provReady bool

	agentMu  sync.Mutex
	agentRef string // the agent image, once imported

	pool  kitPool
	pools pools
	// skipPools and poolSync are for tests: every job misses its pool (a
	// cold start with pools on), or one that misses makes a prewarmed
	// container and runs in it.
	skipPools, poolSync bool
	images              imageCache
	// services are the service instances running (service.go).
	services serviceSet

	upkeep upkeep
	// running counts the job containers started and not yet ended.
	running atomic.Int64

	wg     sync.WaitGroup
	closed sync.Once
}

var (
	_ runtime.Runtime = (*Docker)(nil)
	_ runtime.Checker = (*Docker)(nil)
)

// New returns a runtime that talks to engine with cfg. It does not touch
// the engine: Start begins its upkeep (start-up whenever the engine
// answers, reaping), Check says whether it can run tasks now. Close
// releases it.
func New(cfg Config, engine Engine) (*Docker, error) {
	if engine == nil {
		return nil, errors.New("docker: no engine")
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	d := &Docker{cfg: cfg, engine: engine, instance: randomHex(8)}
	d.images.init()
	return d, nil
}

// Check pings the engine and reads its version; it returns nil when the
// engine answers with API version 1.41 or later and, once Start was
// called, the start-up since the engine last answered is done: it runs it,
// or waits for the one running, within ctx.
func (d *Docker) Check(ctx context.Context) error {
	if err := d.engineState(d.probe(ctx)); err != nil {
		return err
	}
	return d.ensureStarted(ctx)
}

// probe pings the engine and checks its API version.
func (d *Docker) probe(ctx context.Context) error {
	if _, err := d.engine.Ping(ctx); err != nil {
		return fmt.Errorf("docker engine did not answer: %w", err)
	}
	v, err := d.engine.ServerVersion(ctx)
	if err != nil {
		return fmt.Errorf("docker engine version: %w", err)
	}
	if versionLess(v.APIVersion, "1.41") {
		return fmt.Errorf("docker engine %s speaks API %s; 1.41 or later is needed", v.Version, v.APIVersion)
	}
	return nil
}

// Capabilities returns what the worker advertises for docker: the maximum
// resources of one container, the allowed images, whether it builds and
// how many service instances it runs.
func (d *Docker) Capabilities() job.DockerCapabilities {
	return job.DockerCapabilities{
		MaxMemoryMB: d.cfg.MaxMemoryMB,
		MaxCPUs:     d.cfg.MaxCPUs,
		MaxPids:     d.cfg.MaxPids,
		AllowImages: append([]string(nil), d.cfg.AllowImages...),
		Build:       d.cfg.Build,
		Services:    d.cfg.Services,
		Egress:      d.egressAllowed(),
	}
}

// Close stops the upkeep and preparing warm holders, removes the warm ones
// and the service instances, and waits, up to ctx, for every background removal to end. Runs still in progress are
// not stopped: cancel their contexts first.
func (d *Docker) Close(ctx context.Context) error {
	d.closed.Do(func() {
		d.stopUpkeep()
		d.drainPool()
		d.closePools()
	})
	if err := d.stopInstances(ctx); err != nil {
		return fmt.Errorf("docker: close: stop service instances: %w", err)
	}
	if err := d.Idle(ctx); err != nil {
		return fmt.Errorf("docker: close: %w", err)
	}
	return nil
}

// Idle waits until no background removal is pending, or ctx ends.
func (d *Docker) Idle(ctx context.Context) error {
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// background runs fn off the caller's path, retrying it up to three times
// (a not-found error counts as done). Failures are logged; Sweep at the
// next start removes whatever is left.
func (d *Docker) background(fn func(ctx context.Context) error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		var err error
		for attempt := range 3 {
			if attempt > 0 {
				time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err = fn(ctx)
			cancel()
			if err == nil || errdefs.IsNotFound(err) {
				return
			}
		}
		d.cfg.Logger.Warn("docker cleanup failed", "worker_id", d.cfg.WorkerID, "err", err)
	}()
}

// versionLess compares dotted API versions such as "1.41".
func versionLess(a, b string) bool {
	var a1, a2, b1, b2 int
	fmt.Sscanf(a, "%d.%d", &a1, &a2)
	fmt.Sscanf(b, "%d.%d", &b1, &b2)
	return a1 < b1 || (a1 == b1 && a2 < b2)
}
