package docker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/errdefs"
)

// Upkeep: what the runtime does by itself while it lives.
//
// Start begins a loop that, every Config.UpkeepInterval, probes the engine
// and:
//
//   - when the engine answers for the first time, or again after it was
//     away, runs the start-up: Sweep (a crashed predecessor's leftovers),
//     LoadBuilt (when the worker builds), and Prepull in the background.
//     Check runs it too (or waits for the one running) when it finds the
//     engine back, so the worker never advertises docker before the
//     runtime knows its images;
//   - reaps: removes every container of any Zerverless worker on the
//     engine whose LabelDeadline plus Config.ReapGrace has passed, with
//     its volumes, and every such volume no container uses. A worker kills
//     its own containers at their deadline; what the reaper finds is what a
//     dead worker left, so no container outlives its job's deadline by more
//     than ReapGrace plus UpkeepInterval while any worker runs on the engine.

// LabelDeadline is the Unix time (seconds) by which the container, or the
// volume, is done: its job's deadline. Past it plus Config.ReapGrace, any
// Zerverless worker on the engine removes it.
const LabelDeadline = "io.zerverless.deadline"

// errStarting is what Check says between the engine's return and the end
// of the start-up.
var errStarting = errors.New("docker engine answers; the runtime is starting (sweep, built images)")

// upkeep is the state of the upkeep loop.
type upkeep struct {
	startMu sync.Mutex // held while a start-up runs

	mu      sync.Mutex // guards what follows
	started bool       // Start was called
	ready   bool       // the start-up ran since the engine last answered
	pulling bool       // a Prepull is running
	stop    chan struct{}
	cancel  context.CancelFunc // of the prepull
}

// Start begins the runtime's upkeep (see above) in the background; it
// returns at once. Close stops it. Calling Start twice does nothing.
func (d *Docker) Start() {
	u := &d.upkeep
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.started {
		return
	}
	u.started = true
	u.stop = make(chan struct{})
	stop := u.stop
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(d.cfg.UpkeepInterval)
		defer t.Stop()
		for {
			d.upkeepOnce()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
}

// stopUpkeep ends the loop and a prepull in progress.
func (d *Docker) stopUpkeep() {
	u := &d.upkeep
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.started && u.stop != nil {
		close(u.stop)
		u.stop = nil
	}
	if u.cancel != nil {
		u.cancel()
	}
}

// engineState records a probe: an engine that did not answer needs the
// start-up again. It returns the probe's error.
func (d *Docker) engineState(err error) error {
	if err != nil {
		d.upkeep.mu.Lock()
		d.upkeep.ready = false
		d.upkeep.mu.Unlock()
	}
	return err
}

// ensureStarted runs the start-up once since the engine last answered, if
// Start was called. Callers wait for one that is running. A start-up that
// ctx cut short is run again next time.
func (d *Docker) ensureStarted(ctx context.Context) error {
	u := &d.upkeep
	u.startMu.Lock()
	defer u.startMu.Unlock()
	u.mu.Lock()
	skip := !u.started || u.ready
	u.mu.Unlock()
	if skip {
		return nil
	}
	d.startUp(ctx)
	if ctx.Err() != nil {
		return errStarting
	}
	u.mu.Lock()
	u.ready = true
	u.mu.Unlock()
	return nil
}

// upkeepOnce is one round of the loop.
func (d *Docker) upkeepOnce() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := d.engineState(d.probe(ctx)); err != nil {
		return
	}
	if d.ensureStarted(ctx) != nil {
		return
	}
	d.maintainPools()
	if n, err := d.Reap(ctx); err != nil {
		d.cfg.Logger.Warn("docker reap of expired containers failed", "worker_id", d.cfg.WorkerID, "err", err)
	} else if n > 0 {
		d.cfg.Logger.Info("removed containers and volumes past their deadline", "count", n, "worker_id", d.cfg.WorkerID)
	}
}

// startUp sweeps, loads the built images and starts the prepulls.
func (d *Docker) startUp(ctx context.Context) {
	log := d.cfg.Logger
	if n, err := d.Sweep(ctx); err != nil {
		log.Warn("sweep of containers left by a previous run failed", "worker_id", d.cfg.WorkerID, "err", err)
	} else if n > 0 {
		log.Info("removed containers and volumes left by a previous run", "count", n, "worker_id", d.cfg.WorkerID)
	}
	d.enginesBack()
	if d.cfg.Build {
		if err := d.LoadBuilt(ctx); err != nil {
			log.Warn("built images of a previous run", "worker_id", d.cfg.WorkerID, "err", err)
		}
	}
	d.startPrewarm()
	if len(d.cfg.Prepull) == 0 {
		return
	}
	u := &d.upkeep
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.pulling || u.stop == nil {
		return
	}
	u.pulling = true
	pctx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer cancel()
		if err := d.Prepull(pctx); err != nil {
			log.Warn("pre-pull", "worker_id", d.cfg.WorkerID, "err", err)
		}
		u.mu.Lock()
		u.pulling = false
		u.mu.Unlock()
	}()
}

// Reap removes the containers of any Zerverless worker on the engine whose
// deadline (LabelDeadline) plus Config.ReapGrace has passed, running or
// not, with their named volumes, and such volumes that no container uses.
// A container is kept while a job container before its deadline uses a
// volume of its (a warm holder that a job took), and a holder goes with
// the expired job that uses its volumes, whatever its own deadline.
// Objects without a deadline label are left alone, but for the service
// instances of dead workers (reapServices). It returns the number
// of objects removed and the errors of those it could not remove.
func (d *Docker) Reap(ctx context.Context) (int, error) {
	f := filters.NewArgs(
		filters.Arg("label", LabelManagedBy+"="+managedBy),
		filters.Arg("label", LabelDeadline),
	)
	cutoff := time.Now().Add(-d.cfg.ReapGrace)
	expired := func(labels map[string]string) bool {
		s, err := strconv.ParseInt(labels[LabelDeadline], 10, 64)
		return err == nil && time.Unix(s, 0).Before(cutoff)
	}
	cs, err := d.engine.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	leaseDeadlines(cs)
	n := 0
	var errs []error
	volumesOf := func(c container.Summary) []string {
		var vols []string
		for _, m := range c.Mounts {
			// The agent's volume is shared by a runtime's prewarmed
			// containers (pool.go) and goes with the runtime.
			if m.Type == "volume" && m.Name != "" && m.Destination != agentDir {
				vols = append(vols, m.Name)
			}
		}
		return vols
	}
	// live: volumes of jobs before their deadline; dead: of expired jobs.
	live, dead := map[string]bool{}, map[string]bool{}
	for _, c := range cs {
		if c.Labels[LabelRole] == "holder" {
			continue
		}
		for _, v := range volumesOf(c) {
			if expired(c.Labels) {
				dead[v] = true
			} else {
				live[v] = true
			}
		}
	}
	// Expired containers go, unless a live job uses their volumes (a warm
	// holder that the job took); a holder goes with its expired job too.
	var doomed []container.Summary
	for _, c := range cs {
		vols := volumesOf(c)
		if slices.ContainsFunc(vols, func(v string) bool { return live[v] }) {
			continue
		}
		if expired(c.Labels) || (c.Labels[LabelRole] == "holder" && slices.ContainsFunc(vols, func(v string) bool { return dead[v] })) {
			doomed = append(doomed, c)
		}
	}
	// Jobs first, then holders: a volume goes once no container uses it.
	slices.SortStableFunc(doomed, func(a, b container.Summary) int {
		return cmp.Compare(boolInt(a.Labels[LabelRole] == "holder"), boolInt(b.Labels[LabelRole] == "holder"))
	})
	for _, c := range doomed {
		if err := d.engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID[:12], err))
			continue
		}
		n++
	}
	for _, c := range doomed {
		for _, v := range volumesOf(c) {
			switch err := d.engine.VolumeRemove(ctx, v, true); {
			case err == nil:
				n++
			case errdefs.IsNotFound(err), errdefs.IsConflict(err):
			default:
				errs = append(errs, fmt.Errorf("remove volume %s: %w", v, err))
			}
		}
	}
	// Service instances carry no deadline: those of dead workers go by
	// their relays (service.go).
	if m, err := d.reapServices(ctx); err != nil {
		errs = append(errs, err)
	} else {
		n += m
	}
	vs, err := d.engine.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return n, errors.Join(append(errs, fmt.Errorf("list volumes: %w", err))...)
	}
	for _, v := range vs.Volumes {
		if !expired(v.Labels) {
			continue
		}
		err := d.engine.VolumeRemove(ctx, v.Name, true)
		switch {
		case err == nil:
			n++
		case errdefs.IsNotFound(err), errdefs.IsConflict(err):
			// gone, or in use by a container not yet reaped
		default:
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
		}
	}
	return n, errors.Join(errs...)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
