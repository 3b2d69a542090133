package docker

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
)

// Confining build steps.
//
// Each RUN step runs in a container of its own (executor.go), with the
// build's memory and CPU limits, network and capability set; so that the
// limits hold for all steps of a build together, each build first starts an
// anchor: a container of the runtime's own tiny image (provisionImage, whose
// program waits forever, as the volume holders do: volumes.go) under the strict profile, with the
// build's pids, memory and CPU limits (Config.BuildPids, BuildMemoryMB,
// BuildCPUs), no capabilities and no network. Its cgroup is the build's
// cgroup parent, so every RUN container is created inside it and the
// kernel applies the anchor's limits to all of them together: a fork bomb
// stops at BuildPids processes, however many steps run. This needs the
// engine's cgroupfs driver (where a container's cgroup is
// <parent>/<id>) on cgroup v1. With the systemd driver a container's
// cgroup cannot be nested in another's, and cgroup v2 gives no
// controllers to the children of a cgroup that holds a process (the
// anchor's), so there builds are refused.
//
// What a RUN step writes goes to its container's writable layer, on the
// engine's disk, which the storage drivers (overlay2 without project
// quotas, fuse-overlayfs) do not bound. One file is bounded by the kernel:
// a step runs with RLIMIT_FSIZE at seven eighths of what the limit leaves
// after the steps before it, and a step killed by SIGXFSZ fails the build
// naming the limit. All of a step's files together the runtime measures:
// while a step runs, its container's writable-layer size (SizeRw) is read
// every diskPollEvery; the sizes of the build's steps add up, and when
// they would pass Config.BuildDiskMB before the next measurement (at
// twice the pace the step wrote since the last one) the step is killed, the build
// fails with an error naming the limit, and its containers and layers are
// removed.

const (
	// diskPollEvery is how often a running build step's size is read.
	diskPollEvery = 200 * time.Millisecond
)

// anchorCgroupParent is the cgroup parent of the anchors; an anchor's own
// cgroup, the parent of its build's steps, is anchorCgroupParent/<id>.
const anchorCgroupParent = "/zerverless-build"

// startAnchor starts the anchor of a build of jobID and returns the
// cgroup parent for its steps; remove stops and removes it.
func (d *Docker) startAnchor(ctx context.Context, jobID string) (cgroup string, remove func(), err error) {
	info, err := d.engine.Info(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("engine info: %w", err)
	}
	if info.CgroupDriver != "cgroupfs" || info.CgroupVersion == "2" {
		return "", nil, refuse("this worker's engine uses the %s cgroup driver with cgroup v%s; build steps can be confined only with cgroupfs on cgroup v1, so this worker does not build",
			info.CgroupDriver, cmp.Or(info.CgroupVersion, "1"))
	}
	if err := d.ensureProvisionImage(ctx); err != nil {
		return "", nil, err
	}
	mem := int64(d.cfg.BuildMemoryMB) << 20
	pids := d.cfg.BuildPids
	// Not interrupted half-way, so that no anchor is left unseen.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	// The anchor carries the build's deadline, so that the reaper of any
	// worker on this engine removes it when its worker died mid-build.
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(d.cfg.MaxRunTime)
	}
	c, err := d.engine.ContainerCreate(cctx,
		&container.Config{Image: provisionImage, User: strconv.Itoa(nobody), Labels: d.labelsUntil("build-anchor", jobID, deadline), NetworkDisabled: true},
		&container.HostConfig{
			NetworkMode: "none", CapDrop: []string{"ALL"}, ReadonlyRootfs: true,
			SecurityOpt: []string{"no-new-privileges"},
			Resources: container.Resources{
				CgroupParent: anchorCgroupParent,
				Memory:       mem, MemorySwap: mem,
				CPUPeriod: 100000, CPUQuota: int64(d.cfg.BuildCPUs * 100000),
				PidsLimit: &pids,
			},
		}, nil, nil, "")
	if err != nil {
		return "", nil, fmt.Errorf("create build anchor: %w", err)
	}
	remove = func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := d.engine.ContainerRemove(rctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
			d.cfg.Logger.Warn("docker build anchor removal failed", "worker_id", d.cfg.WorkerID, "container", c.ID, "err", err)
		}
	}
	if err := d.engine.ContainerStart(cctx, c.ID, container.StartOptions{}); err != nil {
		remove()
		return "", nil, fmt.Errorf("start build anchor: %w", err)
	}
	return anchorCgroupParent + "/" + c.ID, remove, nil
}

// diskWatch measures the writable layers of a build's step containers.
type diskWatch struct {
	d     *Docker
	limit int64
	stop  func() // ends the build
	ctx   context.Context

	mu       sync.Mutex
	done     int64            // bytes of the steps that ended
	current  map[string]int64 // running steps by container id
	watching map[string]bool
	over     string
	wg       sync.WaitGroup
}

func (d *Docker) newDiskWatch(ctx context.Context, stop func()) *diskWatch {
	return &diskWatch{d: d, limit: int64(d.cfg.BuildDiskMB) << 20, stop: stop, ctx: ctx,
		current: map[string]int64{}, watching: map[string]bool{}}
}

// watch starts measuring container id (a short id from the build log).
func (w *diskWatch) watch(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.limit <= 0 || w.watching[id] {
		return
	}
	w.watching[id] = true
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(diskPollEvery)
		defer tick.Stop()
		for {
			info, _, err := w.d.engine.ContainerInspectWithRaw(w.ctx, id, true)
			// Created but not yet started counts as running.
			ended := err != nil || info.State == nil || info.State.Status == "exited" || info.State.Status == "dead"
			if err == nil && info.SizeRw != nil {
				w.measured(id, *info.SizeRw, ended)
			} else if ended {
				w.measured(id, -1, true)
			}
			if ended {
				return
			}
			select {
			case <-w.ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// measured records size for container id (-1: unknown) and ends the
// build when the steps together pass the limit.
func (w *diskWatch) measured(id string, size int64, ended bool) {
	w.mu.Lock()
	growth := int64(0)
	if size >= 0 {
		growth = max(size-w.current[id], 0)
		w.current[id] = max(w.current[id], size)
	}
	total := w.done
	for _, s := range w.current {
		total += s
	}
	if ended {
		w.done += w.current[id]
		delete(w.current, id)
	}
	// A step still writing is stopped when it would pass the limit before
	// the next measurement, at the pace it wrote since the last one, with
	// as much again for the time the measurement itself and the kill take
	// (a loaded engine walks a large layer slowly).
	if ended {
		growth = 0
	}
	over := total+2*growth > w.limit && w.over == ""
	if over {
		w.over = fmt.Sprintf("build steps wrote %.0f MiB and were passing this worker's build disk limit of %d MiB; the build was stopped",
			float64(total)/(1<<20), w.d.cfg.BuildDiskMB)
	}
	w.mu.Unlock()
	if over {
		kctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.d.engine.ContainerKill(kctx, id, "KILL"); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsConflict(err) {
			w.d.cfg.Logger.Warn("docker build step kill failed", "worker_id", w.d.cfg.WorkerID, "container", id, "err", err)
		}
		w.stop()
	}
}

// fileLimit is the largest file the next step may write (0: no limit):
// seven eighths of what the limit leaves after the steps that ended, the
// rest being room for the step's other files until the next measurement.
// A step's files are bounded by it in the kernel (RLIMIT_FSIZE), whatever
// the measurements' pace, so one file can never take the build past its
// limit.
func (w *diskWatch) fileLimit() int64 {
	if w.limit <= 0 {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return max((w.limit-w.done)/8*7, 1)
}

// fileTooLarge records that a step was ended by its file size limit.
func (w *diskWatch) fileTooLarge() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.over == "" {
		w.over = fmt.Sprintf("a build step wrote a file past this worker's build disk limit of %d MiB; the build was stopped", w.d.cfg.BuildDiskMB)
	}
}

// result waits for the watchers and returns why the build was stopped,
// or "".
func (w *diskWatch) result() string {
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.over
}
