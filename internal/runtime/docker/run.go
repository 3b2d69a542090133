package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/zerverless/zerverless/internal/agent"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// runContainer runs t's container and returns its result, in the shape
// of every runtime (runtime.Failed, Stopped, Timed).
//
// Everything outside the worker's policy (an image not allowed, a
// resource over the maximum, a scratch volume that names a host path) is
// refused with a failed Result before any image is pulled or container is
// created. A run that ends — exit code, OOM, timeout, cancel — is a Result
// and a nil error. An error means the task could not run here and should
// be tried elsewhere (runtime.Runtime): the engine failed or went away
// (a create, start or wait the engine could not do, a layer it lost), or
// the image is not on this worker and it does not pull.
//
// When ctx's deadline passes or ctx is canceled, the container is killed
// through the API at once and Run returns with Status timeout or canceled
// after removing the container. Otherwise the container and its volumes
// are removed in the background: Close and Idle wait for that.
func (d *Docker) runContainer(ctx context.Context, t job.Task) (job.Result, error) {
	if d.poolSync && t.Spec.Docker != nil {
		// Tests: this task, and the next ones of its shape, run warm (up
		// to three are kept ready: a warm job can end before the container
		// made after the one before it is ready).
		d.prefill(ctx, t, 1)
		defer func() {
			d.wg.Add(1)
			go func() { defer d.wg.Done(); d.prefill(context.Background(), t, 3) }()
		}()
	}
	if _, ok := ctx.Deadline(); !ok && t.Timeout <= 0 {
		// Every container carries a deadline that the upkeep of any worker
		// enforces should this one die.
		t.Timeout = d.cfg.MaxRunTime
	}
	var ranMS int64 // a finished container's own run time
	res, err := runtime.Timed(ctx, t, func(ctx context.Context, t job.Task) (job.Result, error) {
		if st := runtime.Interrupted(ctx); st != "" {
			return runtime.Stopped(st), nil
		}
		res, err := d.run(ctx, &t)
		var se *specError
		switch {
		case err == nil:
		case errors.As(err, &se):
			return runtime.Failed(se.msg), nil
		case runtime.Interrupted(ctx) != "":
			return runtime.Stopped(runtime.Interrupted(ctx)), nil
		default:
			return job.Result{}, fmt.Errorf("docker: job %s: %w", t.JobID, err)
		}
		if res.Status != job.StatusTimeout && res.Status != job.StatusCanceled {
			ranMS = res.DurationMS
		}
		return res, nil
	})
	if err != nil {
		return job.Result{}, err
	}
	// A finished container's duration is its own run time; a stopped one's
	// is how long the job held the worker before it was stopped.
	if ranMS > 0 {
		res.DurationMS = ranMS
	}
	return res, nil
}

// run does the work of Run; a *specError is a refusal.
func (d *Docker) run(ctx context.Context, t *job.Task) (res job.Result, err error) {
	st := newSteps(d.cfg.Logger)
	defer func() { st.log(d.cfg.Logger, t.JobID, res.WarmStart) }()
	lim, err := d.checkSpec(&t.Spec, t.Limits)
	if err != nil {
		return job.Result{}, err
	}
	if err := d.checkEgress(t.Spec.EgressOf()); err != nil {
		return job.Result{}, err
	}
	ds := t.Spec.Docker
	t0 := st.now()
	if err := d.checkImageNamespace(ctx, "docker_image", ds.Image, t.Namespace); err != nil {
		return job.Result{}, err
	}
	release, err := d.ensureImage(ctx, ds.Image)
	if err != nil {
		return job.Result{}, err
	}
	defer release()
	st.since("image_check", t0)

	t0 = st.now()
	info, err := d.engine.ImageInspect(ctx, ds.Image)
	if err != nil {
		return job.Result{}, fmt.Errorf("inspect image: %w", err)
	}
	st.since("image_inspect", t0)
	var imageVolumes []string
	if info.Config != nil {
		imageVolumes = sortedKeys(info.Config.Volumes)
	}

	if res, ok, err := d.runWarm(ctx, t, lim, info, imageVolumes, st); ok {
		return res, err
	}

	deadline, _ := ctx.Deadline()
	k, err := d.prepareKit(ctx, t, sortedValues(ds.Volumes), deadline)
	if err != nil {
		return job.Result{}, err
	}

	eg, err := d.startEgress(ctx, t.JobID, t.Spec.EgressOf(), "job-relay", deadline)
	if err != nil {
		d.removeLater("", k)
		return job.Result{}, err
	}
	defer eg.end()
	cfg, host := d.containerConfig(t, lim, k, imageVolumes, deadline)
	eg.join(cfg, host)
	// Create is not interrupted half-way: the engine could finish creating a
	// container whose id this run would never learn. It is short.
	createCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	created, err := d.engine.ContainerCreate(createCtx, cfg, host, nil, nil, containerName(t.JobID))
	cancel()
	if err == nil && ctx.Err() != nil {
		d.removeNow(created.ID, k)
		return job.Result{}, ctx.Err()
	}
	if err != nil {
		d.removeLater("", k)
		// A create the engine refuses as invalid is the job's (a mount
		// path its image cannot take); anything else, a vanished image
		// included, is this engine's.
		if errdefs.IsInvalidParameter(err) {
			return job.Result{}, refuse("create container: %v", err)
		}
		return job.Result{}, fmt.Errorf("create container: %w", err)
	}
	id := created.ID
	r := &execution{d: d, id: id, task: t, kit: k, steps: st}
	interrupted := false
	defer func() {
		if interrupted {
			d.removeNow(id, k)
		} else {
			d.removeLater(id, k)
		}
	}()

	if len(t.Spec.Input) > 0 {
		if err := d.engine.CopyToContainer(ctx, k.holder, k.slot[k.input], inputTar(t.Spec.Input), container.CopyToContainerOptions{}); err != nil {
			return job.Result{}, fmt.Errorf("copy input: %w", err)
		}
	}
	res, err = r.start(ctx)
	interrupted = runtime.Interrupted(ctx) != ""
	if err == nil {
		eg.report(&res)
	}
	return res, err
}

// execution is one container's run, from attach to result.
type execution struct {
	d    *Docker
	id   string
	task *job.Task
	kit  *kit
	// warm is the prewarmed container the run uses, waiting for job
	// (pool.go); nil for a container created for the run.
	warm     *pooled
	job      agent.Job
	stopWait context.CancelFunc
	// cpuBase is the CPU time a prewarmed container used before its job.
	cpuBase time.Duration
	steps   *steps
}

// start attaches, starts, waits and collects the result. A warm run
// whose agent reports the job's end takes it from the report (report.go).
func (r *execution) start(ctx context.Context) (job.Result, error) {
	d, id := r.d, r.id
	hj, waitC, waitErrC, err := r.attach(ctx)
	if err != nil {
		return job.Result{}, err
	}
	defer hj.Close()
	defer r.stopWait()

	outCap := r.task.Limits.OutputBytes
	if outCap <= 0 {
		outCap = d.cfg.OutputBytes
	}
	stdout := runtime.Output(ctx, job.LogStdout, outCap)
	stderr := runtime.Output(ctx, job.LogStderr, outCap)
	var outW, errW io.Writer = stdout, stderr
	var taken *prefixStripper
	var rep *reportReader
	if r.warm != nil {
		if r.job.Report != "" {
			rep = newReportReader(stdout, stderr, r.job.Report)
			outW, errW = rep.stdout, rep.stderr
		}
		taken = &prefixStripper{w: errW, prefix: agent.Taken}
		errW = taken
	}
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		_, _ = stdcopy.StdCopy(outW, errW, hj.Reader)
		if rep != nil {
			rep.flush()
		}
	}()

	st := r.steps
	t0 := st.now()
	if err := r.begin(ctx); err != nil {
		if runtime.Interrupted(ctx) != "" {
			return job.Result{}, err
		}
		// The engine refuses to start a command that is not in the image
		// (or not executable): that is the job's fault.
		if errdefs.IsInvalidParameter(err) || errdefs.IsNotFound(err) {
			return job.Result{Status: job.StatusFailed, ExitCode: 127, Error: fmt.Sprintf("container did not start: %v", err)}, nil
		}
		return job.Result{}, fmt.Errorf("start: %w", err)
	}
	st.since("begin", t0)
	startedAt := time.Now()
	d.running.Add(1)
	defer d.running.Add(-1)
	sampler := d.startSampler(id, streamDone)

	var (
		exit     container.WaitResponse
		killed   bool
		waitErr  error
		reported <-chan struct{}
		usage    usage
		// fast: the result is the agent's report's, the container may
		// still be exiting.
		fast bool
	)
	if rep != nil {
		reported = rep.done
	}
wait:
	for {
		select {
		case exit = <-waitC:
		case waitErr = <-waitErrC:
		case <-reported:
			reported = nil
			u, visible := sampler.stop()
			if !visible || rep.report.Signal != 0 {
				// An OOM kill would go unseen, or the job was killed:
				// the engine says how it ended.
				continue wait
			}
			usage, fast = u, true
		case <-ctx.Done():
			killed = true
			d.kill(id)
			select {
			case exit = <-waitC:
			case waitErr = <-waitErrC:
			case <-time.After(5 * time.Second):
				waitErr = errors.New("container did not stop after kill")
			}
		}
		break
	}
	ranFor := time.Since(startedAt)
	st.since("wait", startedAt)
	// cut: the streams were cut before their end, so what they would
	// still have said is unknown.
	cut := false
	if !fast {
		t0 = st.now()
		select {
		case <-streamDone:
		case <-time.After(2 * time.Second):
			hj.Close() // a grandchild holding the streams open cannot delay the result
			<-streamDone
			cut = true
		}
		usage, _ = sampler.stop()
		st.since("streams", t0)
	}
	if waitErr != nil && !killed {
		return job.Result{}, fmt.Errorf("wait: %w", waitErr)
	}
	// Only streams that ended whole can say that the job was never
	// taken: one cut before the agent's mark was read may still have run
	// the job, which must then not run again.
	if taken != nil && !taken.seen && !killed && !cut {
		return job.Result{}, errNotTaken
	}

	res := job.Result{
		Output:          stdout.String(),
		Stderr:          stderr.String(),
		Truncated:       stdout.Truncated() || stderr.Truncated(),
		ExitCode:        int(exit.StatusCode),
		DurationMS:      ranFor.Milliseconds(),
		PeakMemoryBytes: usage.peakMemory,
		CPUTimeMS:       max(usage.cpuTime-r.cpuBase, 0).Milliseconds(),
	}
	if killed {
		stopped := runtime.Stopped(runtime.Interrupted(ctx))
		res.Status, res.Error, res.ExitCode = stopped.Status, stopped.Error, stopped.ExitCode
		return res, nil
	}
	infoCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if fast {
		res.ExitCode = rep.report.Exit
		res.OOMKilled = usage.oomKills > 0
	} else if info, err := r.inspect(infoCtx); err == nil && info.State != nil {
		res.OOMKilled = info.State.OOMKilled
		lim, _ := d.checkSpec(&r.task.Spec, r.task.Limits)
		// The engine learns of an OOM kill from an event that can come
		// after the exit; the cgroup's own count, or a SIGKILL that this
		// runtime did not send at a peak at the limit, says it too.
		if !res.OOMKilled && (usage.oomKills > 0 || (info.State.ExitCode == 137 && usage.peakMemory >= lim.memoryBytes)) {
			res.OOMKilled = true
		}
		res.ExitCode = info.State.ExitCode
		// A prewarmed container started before its job: its run time is
		// the job's, measured here.
		if s, f := parseTime(info.State.StartedAt), parseTime(info.State.FinishedAt); r.warm == nil && !s.IsZero() && f.After(s) {
			res.DurationMS = f.Sub(s).Milliseconds()
		}
	}
	// Without its holder the volumes were unmounted when the container
	// stopped: the files are lost, which is this worker's fault.
	var (
		files     map[string][]byte
		truncated bool
		outUse    use
		skipped   int
	)
	if fast && rep.report.Output == "inline" {
		files, truncated, outUse, skipped = d.parseOutput(bytes.NewReader(rep.archive))
	} else {
		t0 = st.now()
		if err := d.holding(infoCtx, r.kit); err != nil {
			return job.Result{}, err
		}
		st.since("inspect_holder", t0)
		t0 = st.now()
		files, truncated, outUse, skipped, err = d.readOutput(infoCtx, r.kit.holder, r.kit.slot[r.kit.output])
		if err != nil {
			return job.Result{}, err
		}
		st.since("output", t0)
	}
	res.Files = files
	res.Truncated = res.Truncated || truncated || skipped > 0
	if skipped > 0 {
		res.Stderr += fmt.Sprintf("\nzerverless: %d file(s) of /output left out: a name holds a backslash, a control character or invalid UTF-8\n", skipped)
	}
	if v, ok := files[resultFile]; ok && json.Valid(v) {
		res.Result = json.RawMessage(v)
	}
	full := ""
	if d.full(outUse) {
		full = "/output"
	} else if res.ExitCode != 0 {
		// A job that failed may have failed on a full scratch volume.
		for _, p := range sortedKeys(r.kit.scratch) {
			if u, err := d.volumeUse(infoCtx, r.kit.holder, r.kit.slot[r.kit.scratch[p]]); err == nil && d.full(u) {
				full = p
				break
			}
		}
	}
	switch {
	case res.OOMKilled:
		res.Status = job.StatusFailed
		res.Error = fmt.Sprintf("out of memory: the container used its limit of %d MiB (files in /tmp, /output and scratch volumes count against it)", r.memoryMB())
	case full != "":
		res.Status = job.StatusFailed
		res.Error = fmt.Sprintf("disk limit: %s is full (this worker allows %d MiB and %d files in each volume)", full, d.cfg.VolumeMB, d.cfg.VolumeInodes)
		if res.ExitCode != 0 {
			res.Error += fmt.Sprintf("; exit code %d", res.ExitCode)
		}
	case res.ExitCode != 0:
		res.Status = job.StatusFailed
		res.Error = fmt.Sprintf("exit code %d", res.ExitCode)
	default:
		res.Status = job.StatusCompleted
	}
	return res, nil
}

// inspect inspects the run's container, timed.
func (r *execution) inspect(ctx context.Context) (container.InspectResponse, error) {
	t0 := r.steps.now()
	defer r.steps.since("inspect", t0)
	return r.d.engine.ContainerInspect(ctx, r.id)
}

// attach returns the container's attach stream and wait; the wait
// outlives ctx: after a kill the exit is still awaited. Closing the
// stream, and the wait, is the caller's.
func (r *execution) attach(ctx context.Context) (types.HijackedResponse, <-chan container.WaitResponse, <-chan error, error) {
	if c := r.warm; c != nil {
		// A prewarmed container was attached to, and its wait made, with it.
		r.stopWait = c.stopWait
		return c.hj, c.waitC, c.waitErrC, nil
	}
	hj, err := r.d.engine.ContainerAttach(ctx, r.id, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return hj, nil, nil, fmt.Errorf("attach: %w", err)
	}
	waitCtx, stopWait := context.WithCancel(context.WithoutCancel(ctx))
	r.stopWait = stopWait
	waitC, waitErrC := r.d.engine.ContainerWait(waitCtx, r.id, container.WaitConditionNextExit)
	return hj, waitC, waitErrC, nil
}

// begin starts the container, or hands a prewarmed one its job.
func (r *execution) begin(ctx context.Context) error {
	if r.warm != nil {
		return r.warm.send(r.job)
	}
	// Start is not interrupted: a container can be running, and writing,
	// before the engine answers, and a stop that comes then is the kill
	// of start, which keeps what the job wrote.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	return r.d.engine.ContainerStart(ctx, r.id, container.StartOptions{})
}

func (r *execution) memoryMB() int64 {
	lim, _ := r.d.checkSpec(&r.task.Spec, r.task.Limits)
	return lim.memoryBytes >> 20
}

// kill sends SIGKILL to the container, not bound to the job's context.
func (d *Docker) kill(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.engine.ContainerKill(ctx, id, "KILL"); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsConflict(err) {
		d.cfg.Logger.Warn("docker kill failed", "worker_id", d.cfg.WorkerID, "container", id, "err", err)
	}
}

// removeLater removes the container id ("" when none was created), the
// holder and the volumes of k in the background.
func (d *Docker) removeLater(id string, k *kit) {
	d.background(func(ctx context.Context) error { return d.removeRun(ctx, id, k) })
}

// removeNow removes the job's container and the holder at once, both at
// the same time, and the volumes in the background; it falls back to the
// background for all when the engine is slow.
func (d *Docker) removeNow(id string, k *kit) {
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	errc := make(chan error, 2)
	for _, c := range []string{id, k.holder} {
		go func() {
			if c == "" {
				errc <- nil
				return
			}
			err := d.engine.ContainerRemove(ctx, c, container.RemoveOptions{Force: true, RemoveVolumes: true})
			if errdefs.IsNotFound(err) {
				err = nil
			}
			errc <- err
		}()
	}
	if err := errors.Join(<-errc, <-errc); err != nil {
		d.removeLater(id, k)
		return
	}
	d.removeVolumes(k.vols)
}

// removeRun force-removes the job's container id and the holder, then the
// volumes of k. Not-found counts as removed.
func (d *Docker) removeRun(ctx context.Context, id string, k *kit) error {
	st := newSteps(d.cfg.Logger)
	defer func() {
		if id != "" {
			st.log(d.cfg.Logger, "removal "+shortID(id), false)
		}
	}()
	var ids []string
	if id != "" {
		ids = append(ids, id)
	}
	if k.holder != "" {
		ids = append(ids, k.holder)
	}
	for _, c := range ids {
		t0 := st.now()
		if err := d.forceRemove(ctx, c); err != nil {
			return err
		}
		st.since("remove", t0)
	}
	return d.removeVolumesNow(ctx, k.vols)
}

// remove force-removes container id with its anonymous volumes, then the
// named volumes vols. Not-found counts as removed.
func (d *Docker) remove(ctx context.Context, id string, vols []string) error {
	if err := d.forceRemove(ctx, id); err != nil {
		return err
	}
	return d.removeVolumesNow(ctx, vols)
}

// forceRemove force-removes container id with its anonymous volumes and
// returns once it is gone (not-found counts as removed). A removal the
// engine has in progress already (one whose caller gave up waiting, as
// removeNow does) is waited for, up to ctx, so that what follows (its
// volumes, Close) finds it gone.
func (d *Docker) forceRemove(ctx context.Context, id string) error {
	err := d.engine.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err == nil || errdefs.IsNotFound(err) {
		return nil
	}
	if !errdefs.IsConflict(err) {
		return fmt.Errorf("remove container: %w", err)
	}
	for {
		if _, ierr := d.engine.ContainerInspect(ctx, id); errdefs.IsNotFound(ierr) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove container: %w (waited for the removal in progress: %v)", err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (d *Docker) removeVolumesNow(ctx context.Context, vols []string) error {
	var errs []error
	for _, v := range vols {
		if err := d.engine.VolumeRemove(ctx, v, true); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v, err))
		}
	}
	return errors.Join(errs...)
}

var nameUnsafeRE = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// containerName is "zerverless-<job id>-<random>", for people reading
// `docker ps`.
func containerName(jobID string) string {
	s := nameUnsafeRE.ReplaceAllString(jobID, "-")
	if len(s) > 40 {
		s = s[:40]
	}
	if s == "" {
		s = "job"
	}
	return "zerverless-" + s + "-" + randomHex(4)
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 2000 {
		return time.Time{}
	}
	return t
}
