package docker

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"

	"github.com/zerverless/zerverless/internal/agent"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// Prewarmed containers.
//
// Creating and starting a container is most of a short job's time. So the
// runtime keeps, per pool key (the image's digest, the whole profile a
// job's container gets — user, limits, mounts, network — and, for an
// image a namespace built, the namespace), containers created and started
// ahead under exactly that profile, each with its own holder and volumes
// (volumes.go), each waiting in the agent's exec mode (agent.Exec) for
// one job on its attach stream. A job that finds one sends it its argv and
// environment; the agent starts the job as its child, under the
// container's init, and from there the run is the same as a cold one
// (run.go): the same attach stream, wait, kill, cgroup, removal, except
// that the job's end, exit status and /output come from the agent's
// report on the stream when it has one (report.go) rather than from the
// engine's wait, inspect and archive of /output. A container runs one job
// and is removed with its volumes: nothing of one job is ever seen by
// another. A job that finds none runs as before, on a container created
// for it.
//
// The agent comes from a volume of this runtime (agentVolume), filled
// once from an image holding only the agent binary, and mounted read-only
// at /.zerverless: no host path is mounted.
//
// Sizing, after OpenWhisk's prewarmed containers: a pool grows by
// poolIncrement after every poolThreshold jobs that found it empty (cold
// starts), is refilled in the background after every job it served,
// shrinks by one each Config.PoolTTL it goes unused, and every container
// waits at most PoolTTL. All pools together hold at most Config.PoolMax
// containers and Config.PoolMemoryMB of memory limits. Config.Prewarm
// pools are kept at their count from the start. Pools are dropped when
// their image's reference moves to another digest, when the engine comes
// back after being away, and when the runtime closes.
//
// Deadlines: a waiting container is labeled with a deadline PoolTTL plus
// poolLabelSlack after it was made (its holder and volumes too), so the
// reaper of any worker removes it should this one die. A job's deadline
// is later: the container's labels cannot change, so the runtime renames
// it, as the job takes it, to containerName(jobID)+".until-<unix time>",
// and the reaper reads a pool container's deadline from its name when it
// has one (leaseDeadlines).
const (
	// LabelPool marks a prewarmed container: the first hex digits of its
	// pool key.
	LabelPool = "io.zerverless.pool"
	// agentDir is where a prewarmed container has the agent.
	agentDir       = "/.zerverless"
	agentDirRepo   = "zerverless/agent-dir"
	poolThreshold  = 1
	poolIncrement  = 1
	poolLabelSlack = time.Minute
	leaseSep       = ".until-"
)

// pooled is one prewarmed container, started and waiting for its job.
type pooled struct {
	id       string
	kit      *kit
	hj       types.HijackedResponse
	waitC    <-chan container.WaitResponse
	waitErrC <-chan error
	stopWait context.CancelFunc
	made     time.Time
	memory   int64
}

// alive reports whether the container has not exited; an exited one's
// wait result is consumed.
func (p *pooled) alive() bool {
	select {
	case <-p.waitC:
		return false
	case <-p.waitErrC:
		return false
	default:
		return true
	}
}

// poolShape is what the containers of one pool are made for.
type poolShape struct {
	key          string
	ref          string // the image reference jobs name
	imageID      string
	tpl          job.Task // a job of the shape: its limits, volumes, input or not
	lim          limits
	imageVolumes []string
}

// pool is the containers of one key.
type pool struct {
	shape   poolShape
	ready   []*pooled
	making  int
	target  int
	floor   int // Config.Prewarm's count
	misses  int // cold starts since it last grew
	lastUse time.Time
	filling bool
}

// pools are the runtime's pools and their figures.
type pools struct {
	mu     sync.Mutex
	byKey  map[string]*pool
	count  int   // containers ready or being made
	memory int64 // their memory limits
	closed bool
	// startedUp is set by the runtime's first start-up (enginesBack).
	startedUp bool

	hits, misses, made uint64
	readyTotal         time.Duration

	volMu    sync.Mutex
	agentVol string
}

// PoolStats are the figures of the runtime's prewarmed containers.
type PoolStats struct {
	// Ready is the number of containers waiting for a job; Images the
	// image references they are for.
	Ready  int
	Images []string
	// Hits and Misses count the jobs that found a ready container and
	// those that ran on one created for them (since the runtime started,
	// jobs that could use a pool only).
	Hits, Misses uint64
	// Made counts the containers made ahead; ReadyTime is the mean time to
	// make one ready.
	Made      uint64
	ReadyTime time.Duration
}

// PoolStats returns the pools' figures now.
func (d *Docker) PoolStats() PoolStats {
	ps := &d.pools
	ps.mu.Lock()
	defer ps.mu.Unlock()
	s := PoolStats{Hits: ps.hits, Misses: ps.misses, Made: ps.made}
	if ps.made > 0 {
		s.ReadyTime = ps.readyTotal / time.Duration(ps.made)
	}
	for _, p := range ps.byKey {
		s.Ready += len(p.ready)
		if len(p.ready) > 0 && !slices.Contains(s.Images, p.shape.ref) {
			s.Images = append(s.Images, p.shape.ref)
		}
	}
	slices.Sort(s.Images)
	return s
}

// poolsOn reports whether the runtime keeps pools.
func (d *Docker) poolsOn() bool { return d.cfg.PoolMax > 0 && d.cfg.AgentBinary != "" }

// shapeOf returns the pool shape of job t (its limits lim, its image
// info), or false when t cannot run in a prewarmed container: pools are
// off, or its profile is not one a container can be made ahead for (a
// network other than none: a relay made for the job).
func (d *Docker) shapeOf(t *job.Task, lim limits, info image.InspectResponse, imageVolumes []string) (poolShape, bool) {
	if !d.poolsOn() || info.Config == nil || info.ID == "" || t.Spec.Docker.Build != nil {
		return poolShape{}, false
	}
	if len(info.Config.Entrypoint) == 0 && len(t.Spec.Docker.Command) == 0 && len(info.Config.Cmd) == 0 {
		return poolShape{}, false
	}
	tpl := job.Task{Type: job.TypeDocker, Namespace: t.Namespace, Limits: t.Limits, Timeout: t.Timeout}
	ds := *t.Spec.Docker
	ds.Command, ds.Env = nil, nil
	tpl.Spec = job.Spec{Docker: &ds, MemoryMB: t.Spec.MemoryMB}
	if len(t.Spec.Input) > 0 {
		tpl.Spec.Input = json.RawMessage("{}")
	}
	k := &kit{scratch: map[string]string{}}
	for _, p := range sortedKeys(ds.Volumes) {
		k.scratch[ds.Volumes[p]] = ""
	}
	cfg, host := d.containerConfig(&tpl, lim, k, imageVolumes, time.Time{})
	if host.NetworkMode != "none" {
		return poolShape{}, false
	}
	ns := ""
	if _, built := job.ImageNamespace(ds.Image); built {
		ns = t.Namespace
	}
	var targets []string
	for _, m := range host.Mounts {
		targets = append(targets, m.Target)
	}
	h := *host
	h.Mounts = nil
	b, _ := json.Marshal(struct {
		Image, Namespace, User string
		Mounts                 []string
		Host                   container.HostConfig
	}{info.ID, ns, cfg.User, targets, h})
	sum := sha256.Sum256(b)
	return poolShape{key: hex.EncodeToString(sum[:]), ref: ds.Image, imageID: info.ID, tpl: tpl, lim: lim, imageVolumes: imageVolumes}, true
}

// takePooled returns a ready container of shape s, or nil (a cold start,
// which may grow the pool); either way the pool is refilled in the
// background. Pools of s's image reference at another digest are dropped.
func (d *Docker) takePooled(s poolShape) *pooled {
	ps := &d.pools
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return nil
	}
	if ps.byKey == nil {
		ps.byKey = map[string]*pool{}
	}
	for key, p := range ps.byKey {
		if p.shape.ref == s.ref && p.shape.imageID != s.imageID {
			d.dropLocked(key, p)
		}
	}
	p := ps.byKey[s.key]
	if p == nil {
		p = &pool{shape: s}
		ps.byKey[s.key] = p
	}
	p.lastUse = time.Now()
	var got *pooled
	for len(p.ready) > 0 && got == nil {
		got, p.ready = p.ready[0], p.ready[1:]
		ps.count--
		ps.memory -= got.memory
		if time.Since(got.made) >= d.cfg.PoolTTL || !got.alive() {
			d.discard(got)
			got = nil
		}
	}
	if got != nil {
		ps.hits++
	} else {
		ps.misses++
		if p.misses++; p.misses >= poolThreshold {
			p.misses = 0
			p.target = min(p.target+poolIncrement, d.cfg.PoolMax)
		}
	}
	d.refillLocked(p)
	return got
}

// dropLocked removes pool key and its containers.
func (d *Docker) dropLocked(key string, p *pool) {
	ps := &d.pools
	for _, c := range p.ready {
		ps.count--
		ps.memory -= c.memory
		d.discard(c)
	}
	p.ready, p.target, p.floor = nil, 0, 0
	delete(ps.byKey, key)
}

// discard removes a prewarmed container that ran no job.
func (d *Docker) discard(c *pooled) {
	c.stopWait()
	c.hj.Close()
	d.removeLater(c.id, c.kit)
}

// refillLocked starts making p's missing containers, within the budgets.
func (d *Docker) refillLocked(p *pool) {
	ps := &d.pools
	if p.filling || ps.closed || len(p.ready)+p.making >= p.target {
		return
	}
	p.filling = true
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			ps.mu.Lock()
			mem := p.shape.lim.memoryBytes
			if ps.closed || ps.byKey[p.shape.key] != p || len(p.ready)+p.making >= p.target ||
				ps.count >= d.cfg.PoolMax || ps.memory+mem > int64(d.cfg.PoolMemoryMB)<<20 {
				p.filling = false
				ps.mu.Unlock()
				return
			}
			p.making++
			ps.count++
			ps.memory += mem
			ps.mu.Unlock()

			t0 := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			c, err := d.makePooled(ctx, p.shape)
			cancel()

			ps.mu.Lock()
			p.making--
			if err != nil || ps.closed || ps.byKey[p.shape.key] != p {
				ps.count--
				ps.memory -= mem
				p.filling = false
				ps.mu.Unlock()
				if c != nil {
					d.discard(c)
				}
				if err != nil {
					d.cfg.Logger.Warn("docker prewarm failed", "worker_id", d.cfg.WorkerID, "image", p.shape.ref, "err", err)
				}
				return
			}
			ps.made++
			ps.readyTotal += time.Since(t0)
			p.ready = append(p.ready, c)
			ps.mu.Unlock()
		}
	}()
}

// makePooled creates and starts a container of shape s waiting in the
// agent's exec mode, with its kit; on error nothing is left.
func (d *Docker) makePooled(ctx context.Context, s poolShape) (*pooled, error) {
	// Not interrupted half-way, so that no container is created unseen.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	vol, err := d.agentVolume(ctx)
	if err != nil {
		return nil, err
	}
	made := time.Now()
	st := newSteps(d.cfg.Logger)
	defer st.log(d.cfg.Logger, "", true)
	deadline := made.Add(d.cfg.PoolTTL + poolLabelSlack)
	k, err := d.makeKit(ctx, "", sortedValues(s.tpl.Spec.Docker.Volumes), deadline)
	if err != nil {
		return nil, err
	}
	st.since("kit", made)
	t0 := st.now()
	cfg, host := d.containerConfig(&s.tpl, s.lim, k, s.imageVolumes, deadline)
	cfg.Image = s.imageID
	cfg.Env = nil
	cfg.Cmd = nil
	cfg.Entrypoint = []string{agentDir + "/agent", agent.ExecCommand}
	cfg.OpenStdin, cfg.AttachStdin, cfg.StdinOnce = true, true, true
	cfg.Labels[LabelPool] = s.key[:16]
	// The agent is the container's init: the engine's would hold the
	// container's streams open as a process of the job's user, which the
	// job could reopen (/proc/1/fd/1) to read the agent's report and its
	// secret, or to write into it. The agent reaps and forwards signals
	// as that init does, and the job cannot kill or stop it.
	noInit := false
	host.Init = &noInit
	host.Mounts = append(host.Mounts, mount.Mount{
		Type: mount.TypeVolume, Source: vol, Target: agentDir, ReadOnly: true,
		VolumeOptions: &mount.VolumeOptions{NoCopy: true},
	})
	created, err := d.engine.ContainerCreate(ctx, cfg, host, nil, nil, "zerverless-pool-"+randomHex(6))
	if err != nil {
		d.removeLater("", k)
		return nil, fmt.Errorf("create prewarmed container: %w", err)
	}
	st.since("create", t0)
	t0 = st.now()
	c := &pooled{id: created.ID, kit: k, made: made, memory: s.lim.memoryBytes, stopWait: func() {}}
	fail := func(err error) (*pooled, error) {
		c.stopWait()
		if c.hj.Conn != nil {
			c.hj.Close()
		}
		d.removeLater(c.id, k)
		return nil, err
	}
	c.hj, err = d.engine.ContainerAttach(ctx, c.id, container.AttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		return fail(fmt.Errorf("attach prewarmed container: %w", err))
	}
	waitCtx, stop := context.WithCancel(context.Background())
	c.stopWait = stop
	c.waitC, c.waitErrC = d.engine.ContainerWait(waitCtx, c.id, container.WaitConditionNextExit)
	st.since("attach", t0)
	t0 = st.now()
	if err := d.engine.ContainerStart(ctx, c.id, container.StartOptions{}); err != nil {
		return fail(fmt.Errorf("start prewarmed container: %w", err))
	}
	st.since("start", t0)
	return c, nil
}

// agentVolume returns the volume holding the agent, making it once: a
// container of an image holding only the agent at agentDir is created
// (never started) with the new volume there, which the engine fills with
// the image's content.
func (d *Docker) agentVolume(ctx context.Context) (string, error) {
	ps := &d.pools
	ps.volMu.Lock()
	defer ps.volMu.Unlock()
	ps.mu.Lock()
	closed := ps.closed
	ps.mu.Unlock()
	if closed {
		return "", errors.New("the runtime is closed")
	}
	if ps.agentVol != "" {
		// A container mounting a volume that is gone would get a new,
		// empty one: check it is still there.
		// (one made so has none of the labels).
		v, err := d.engine.VolumeInspect(ctx, ps.agentVol)
		if err == nil && v.Labels[LabelInstance] == d.instance {
			return ps.agentVol, nil
		}
		if err != nil && !errdefs.IsNotFound(err) {
			return "", fmt.Errorf("inspect the agent volume: %w", err)
		}
		if err == nil {
			d.removeVolumes([]string{ps.agentVol})
		}
		ps.agentVol = ""
	}
	f, err := os.Open(d.cfg.AgentBinary)
	if err != nil {
		return "", fmt.Errorf("read agent: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return "", fmt.Errorf("read agent: %w", err)
	}
	ref := agentDirRepo + ":" + hex.EncodeToString(h.Sum(nil)[:8])
	if _, err := d.engine.ImageInspect(ctx, ref); errdefs.IsNotFound(err) {
		v, err := d.engine.ServerVersion(ctx)
		if err != nil {
			return "", fmt.Errorf("docker engine version: %w", err)
		}
		if err := checkAgentBinary(d.cfg.AgentBinary, v.Arch); err != nil {
			return "", err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", fmt.Errorf("read agent: %w", err)
		}
		pr, pw := io.Pipe()
		defer pr.Close() // ends the writer should the import stop early
		go func() {
			tw := tar.NewWriter(pw)
			epoch := time.Unix(0, 0)
			_ = tw.WriteHeader(&tar.Header{Name: agentDir[1:] + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch})
			err := tw.WriteHeader(&tar.Header{Name: agentDir[1:] + "/agent", Typeflag: tar.TypeReg, Mode: 0o555, Size: size, ModTime: epoch})
			if err == nil {
				_, err = io.Copy(tw, f)
			}
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		rc, err := d.engine.ImageImport(ctx, image.ImportSource{Source: pr, SourceName: "-"}, ref,
			image.ImportOptions{Changes: []string{`CMD ["` + agentDir + `/agent"]`, "LABEL " + LabelManagedBy + "=" + managedBy}})
		if err != nil {
			return "", fmt.Errorf("import %s: %w", ref, err)
		}
		if err := drainJSON(rc); err != nil {
			return "", fmt.Errorf("import %s: %w", ref, err)
		}
	} else if err != nil {
		return "", fmt.Errorf("inspect %s: %w", ref, err)
	}
	name := "zerverless-agent-" + d.instance + "-" + randomHex(4)
	filler, err := d.engine.ContainerCreate(ctx,
		&container.Config{Image: ref, User: strconv.Itoa(nobody) + ":" + strconv.Itoa(nobody), NetworkDisabled: true, Labels: d.labels("agent-filler", "")},
		&container.HostConfig{NetworkMode: "none", LogConfig: container.LogConfig{Type: "none"}, Mounts: []mount.Mount{{
			Type: mount.TypeVolume, Source: name, Target: agentDir,
			VolumeOptions: &mount.VolumeOptions{Labels: d.labels("agent", "")},
		}}}, nil, nil, "")
	if err != nil {
		_ = d.engine.VolumeRemove(context.WithoutCancel(ctx), name, true)
		return "", fmt.Errorf("fill the agent volume: %w", err)
	}
	if err := d.engine.ContainerRemove(context.WithoutCancel(ctx), filler.ID, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
		d.cfg.Logger.Warn("docker removal failed", "worker_id", d.cfg.WorkerID, "container", filler.ID, "err", err)
	}
	ps.agentVol = name
	return name, nil
}

// runWarm runs t in a prewarmed container when its pool has one ready;
// ok is false when it has none (or t cannot use a pool) and nothing was
// done but counting the cold start. info is t's image.
func (d *Docker) runWarm(ctx context.Context, t *job.Task, lim limits, info image.InspectResponse, imageVolumes []string, st *steps) (res job.Result, ok bool, err error) {
	t0 := st.now()
	s, poolable := d.shapeOf(t, lim, info, imageVolumes)
	if !poolable || d.skipPools {
		return job.Result{}, false, nil
	}
	c := d.takePooled(s)
	if c == nil {
		return job.Result{}, false, nil
	}
	st.since("take", t0)
	deadline, _ := ctx.Deadline()
	cfg, _ := d.containerConfig(t, lim, c.kit, imageVolumes, deadline)
	argv := append(slices.Clone(info.Config.Entrypoint), info.Config.Cmd...)
	if len(cfg.Cmd) > 0 {
		argv = append(slices.Clone(info.Config.Entrypoint), cfg.Cmd...)
	}
	r := &execution{d: d, id: c.id, task: t, kit: c.kit, warm: c, steps: st,
		job: agent.Job{Argv: argv, Env: mergeEnv(info.Config.Env, cfg.Env), Report: randomHex(16), InlineOutput: inlineOutputBytes}}
	if d.cfg.CgroupRoot != "" {
		if read := cgroupReader(d.cfg.CgroupRoot, c.id); read != nil {
			if u, ok := read(); ok {
				r.cpuBase = u.cpuTime
			}
		}
	}
	// The job's deadline, in the name the reaper reads (see above).
	renamed := make(chan struct{})
	rename := func() {
		defer close(renamed)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		name := containerName(t.JobID) + leaseSep + strconv.FormatInt(deadline.Unix()+1, 10)
		t0 := st.now()
		defer st.since("rename", t0)
		if err := d.engine.ContainerRename(rctx, c.id, name); err != nil && !errdefs.IsNotFound(err) {
			d.cfg.Logger.Warn("docker rename of a prewarmed container failed", "worker_id", d.cfg.WorkerID, "container", c.id, "err", err)
		}
	}
	go rename()
	interrupted := false
	defer func() {
		if interrupted {
			d.removeNow(c.id, c.kit)
			return
		}
		// Removed once renamed, off the result's path.
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			<-renamed
			d.removeLater(c.id, c.kit)
		}()
	}()
	if len(t.Spec.Input) > 0 {
		if err := d.engine.CopyToContainer(ctx, c.kit.holder, c.kit.slot[c.kit.input], inputTar(t.Spec.Input), container.CopyToContainerOptions{}); err != nil {
			c.stopWait()
			c.hj.Close()
			interrupted = runtime.Interrupted(ctx) != ""
			return job.Result{}, true, fmt.Errorf("copy input: %w", err)
		}
	}
	res, err = r.start(ctx)
	interrupted = runtime.Interrupted(ctx) != ""
	if errors.Is(err, errNotTaken) {
		// Nothing of the job ran: it runs on a container made for it.
		d.cfg.Logger.Warn("docker prewarmed container ended before its job", "worker_id", d.cfg.WorkerID, "container", c.id)
		return job.Result{}, false, nil
	}
	res.WarmStart = err == nil
	return res, true, err
}

// errNotTaken is a prewarmed container that ended without taking its job
// (agent.Taken): the engine or someone else stopped it.
var errNotTaken = errors.New("the prewarmed container ended before it took its job")

// prefixStripper passes what is written to w, less prefix if it comes
// first; seen says it did.
type prefixStripper struct {
	w      io.Writer
	prefix string
	n      int // bytes of prefix matched so far
	seen   bool
	passed bool // the stream did not begin with prefix
	seenAt time.Time
}

func (p *prefixStripper) Write(b []byte) (int, error) {
	total := len(b)
	for !p.seen && !p.passed && len(b) > 0 {
		if b[0] != p.prefix[p.n] {
			p.passed = true
			if _, err := io.WriteString(p.w, p.prefix[:p.n]); err != nil {
				return 0, err
			}
			break
		}
		b = b[1:]
		if p.n++; p.n == len(p.prefix) {
			p.seen = true
			p.seenAt = time.Now()
		}
	}
	if len(b) > 0 {
		if _, err := p.w.Write(b); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// send hands the waiting agent its job and closes its standard input.
func (c *pooled) send(j agent.Job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if _, err := c.hj.Conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("send the job to its prewarmed container: %w", err)
	}
	if err := c.hj.CloseWrite(); err != nil {
		return fmt.Errorf("send the job to its prewarmed container: %w", err)
	}
	return nil
}

// mergeEnv is image's environment with set's variables replacing those of
// the same name or added, as the engine merges a container's.
func mergeEnv(image, set []string) []string {
	out := slices.Clone(image)
	for _, kv := range set {
		k, _, _ := strings.Cut(kv, "=")
		if i := slices.IndexFunc(out, func(o string) bool { return strings.HasPrefix(o, k+"=") || o == k }); i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}

// maintainPools removes containers that waited PoolTTL (refilling what
// their pool still wants) and shrinks by one each pool unused for
// PoolTTL. The upkeep calls it.
func (d *Docker) maintainPools() {
	ps := &d.pools
	ps.mu.Lock()
	defer ps.mu.Unlock()
	now := time.Now()
	for key, p := range ps.byKey {
		keep := p.ready[:0]
		for _, c := range p.ready {
			if now.Sub(c.made) >= d.cfg.PoolTTL || !c.alive() {
				ps.count--
				ps.memory -= c.memory
				d.discard(c)
				continue
			}
			keep = append(keep, c)
		}
		p.ready = keep
		if now.Sub(p.lastUse) >= d.cfg.PoolTTL && p.target > p.floor {
			p.target--
			p.lastUse = now
		}
		if p.target == 0 && len(p.ready) == 0 && p.making == 0 {
			delete(ps.byKey, key)
			continue
		}
		d.refillLocked(p)
	}
}

// enginesBack drops the pools when the engine came back after being away
// (it stopped their containers); the runtime's first start-up keeps them.
func (d *Docker) enginesBack() {
	ps := &d.pools
	ps.mu.Lock()
	again := ps.startedUp
	ps.startedUp = true
	ps.mu.Unlock()
	if again {
		d.dropPools()
	}
}

// dropPools removes every prewarmed container and pool: the engine came
// back (and stopped them) or the runtime closes. Prewarm pools are made
// again by prewarm.
func (d *Docker) dropPools() {
	ps := &d.pools
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for key, p := range ps.byKey {
		d.dropLocked(key, p)
	}
}

// closePools drops the pools for good and removes the agent volume once
// the containers using it are gone.
func (d *Docker) closePools() {
	d.pools.mu.Lock()
	d.pools.closed = true
	d.pools.mu.Unlock()
	d.dropPools()
	d.pools.volMu.Lock()
	vol := d.pools.agentVol
	d.pools.agentVol = ""
	d.pools.volMu.Unlock()
	if vol == "" {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		// The containers' removals were queued first; the volume goes
		// once they are done (in use, it is refused and tried again).
		for attempt := range 20 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := d.engine.VolumeRemove(ctx, vol, true)
			cancel()
			if err == nil || errdefs.IsNotFound(err) {
				return
			}
			time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
		}
		d.cfg.Logger.Warn("docker agent volume removal failed", "worker_id", d.cfg.WorkerID, "volume", vol)
	}()
}

// prewarm makes the pools of Config.Prewarm: each image (pulled if need
// be) for jobs with the default resources, no input and no scratch volume.
func (d *Docker) prewarm(ctx context.Context) error {
	if !d.poolsOn() {
		return nil
	}
	var errs []error
	for _, ref := range sortedKeys(d.cfg.Prewarm) {
		n := d.cfg.Prewarm[ref]
		t := job.Task{Type: job.TypeDocker, Spec: job.Spec{Docker: &job.DockerSpec{Image: ref}}, Timeout: d.cfg.MaxRunTime}
		lim, err := d.checkSpec(&t.Spec, t.Limits)
		if err != nil {
			errs = append(errs, fmt.Errorf("prewarm %s: %w", ref, err))
			continue
		}
		release, err := d.ensureImage(ctx, ref)
		if err != nil {
			errs = append(errs, fmt.Errorf("prewarm %s: %w", ref, err))
			continue
		}
		info, err := d.engine.ImageInspect(ctx, ref)
		release()
		if err != nil {
			errs = append(errs, fmt.Errorf("prewarm %s: %w", ref, err))
			continue
		}
		var vols []string
		if info.Config != nil {
			vols = sortedKeys(info.Config.Volumes)
		}
		s, ok := d.shapeOf(&t, lim, info, vols)
		if !ok {
			continue
		}
		ps := &d.pools
		ps.mu.Lock()
		if ps.byKey == nil {
			ps.byKey = map[string]*pool{}
		}
		p := ps.byKey[s.key]
		if p == nil && !ps.closed {
			p = &pool{shape: s, lastUse: time.Now()}
			ps.byKey[s.key] = p
		}
		if p != nil {
			p.floor = n
			p.target = max(p.target, n)
			d.refillLocked(p)
		}
		ps.mu.Unlock()
	}
	return errors.Join(errs...)
}

// leaseDeadlines gives each prewarmed container that a job took the
// job's deadline, read from its name, in place of its label's.
func leaseDeadlines(cs []container.Summary) {
	for i, c := range cs {
		if c.Labels[LabelPool] == "" {
			continue
		}
		for _, n := range c.Names {
			if _, s, ok := strings.Cut(n, leaseSep); ok {
				if _, err := strconv.ParseInt(s, 10, 64); err == nil {
					l := make(map[string]string, len(c.Labels))
					for k, v := range c.Labels {
						l[k] = v
					}
					l[LabelDeadline] = s
					cs[i].Labels = l
				}
			}
		}
	}
}

// startPrewarm runs prewarm in the background.
func (d *Docker) startPrewarm() {
	if len(d.cfg.Prewarm) == 0 || !d.poolsOn() {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.PullTimeout+time.Minute)
		defer cancel()
		if err := d.prewarm(ctx); err != nil {
			d.cfg.Logger.Warn("docker prewarm", "worker_id", d.cfg.WorkerID, "err", err)
		}
	}()
}

// PoolStatus is PoolStats as the worker reports it, with at most max
// image references; nil when the runtime keeps no pools.
func (d *Docker) PoolStatus(max int) *job.DockerPool {
	if !d.poolsOn() {
		return nil
	}
	s := d.PoolStats()
	if len(s.Images) > max {
		s.Images = s.Images[:max]
	}
	return &job.DockerPool{Ready: s.Ready, WarmImages: s.Images, Hits: s.Hits, Misses: s.Misses,
		ReadyMS: float64(s.ReadyTime.Microseconds()) / 1000}
}

// prefill makes a prewarmed container for task t and puts it in its pool
// unless the pool has want ready (tests: poolSync), so that t, or the next
// task of its shape, finds it.
func (d *Docker) prefill(ctx context.Context, t job.Task, want int) {
	lim, err := d.checkSpec(&t.Spec, t.Limits)
	if err != nil || d.checkImageNamespace(ctx, "docker_image", t.Spec.Docker.Image, t.Namespace) != nil {
		return
	}
	release, err := d.ensureImage(ctx, t.Spec.Docker.Image)
	if err != nil {
		return
	}
	defer release()
	info, err := d.engine.ImageInspect(ctx, t.Spec.Docker.Image)
	if err != nil {
		return
	}
	var vols []string
	if info.Config != nil {
		vols = sortedKeys(info.Config.Volumes)
	}
	s, ok := d.shapeOf(&t, lim, info, vols)
	if !ok {
		return
	}
	ps := &d.pools
	ps.mu.Lock()
	p := ps.byKey[s.key]
	has := p != nil && len(p.ready) >= want
	ps.mu.Unlock()
	if has {
		return
	}
	c, err := d.makePooled(ctx, s)
	if err != nil {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.byKey == nil {
		ps.byKey = map[string]*pool{}
	}
	p = ps.byKey[s.key]
	if p == nil {
		p = &pool{shape: s, lastUse: time.Now()}
		ps.byKey[s.key] = p
	}
	if ps.closed {
		d.discard(c)
		return
	}
	p.ready = append([]*pooled{c}, p.ready...)
	ps.count++
	ps.memory += c.memory
}
