package docker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/zerverless/zerverless/internal/egress"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// Service instances.
//
// An instance of a docker service is two containers: a relay (relay.go,
// role "service-relay") and the instance's own container (role
// "service"), which joins the relay's network namespace and so has the
// loopback only. It runs under the strict profile (profile.go) with its
// image checked as a job's is (allow-list, namespace of built images),
// the resources of its spec within the worker's maxima, PORT set to its
// port, and the labels of every container, LabelJobID being the
// instance's id and LabelRelay its relay's container id. It can open no
// connection anywhere: the namespace has no route, and the relay dials
// only the namespace's loopback when the worker asks. Requests reach it
// through Dial.
//
// An instance whose spec asks for egress (job.ServiceSpec.Network) gets
// it as a job does (egress.go): its relay also listens on egressListen,
// the proxy variables point there, and each connection goes to an
// egress.Proxy of the worker with the instance's patterns and the
// owner's. Its limits, EgressBytes and EgressConns, hold per
// ServiceEgressWindow, since an instance runs for as long as it is
// deployed. Every egressReportEvery, a ready instance whose egress did
// something is reported again (state ready) with the refusals since the
// last report as its Output, for the service's logs, and its records;
// its exited report carries the rest. Without egress the relay listens
// on nothing.
//
// Instances are long-running, so they carry no deadline label. What ends
// them:
//
//   - StopInstance, or Close: the container is killed and both containers
//     removed;
//   - the container exiting (a crash): both removed, its exit code and the
//     tail of its output reported;
//   - the worker process dying (kill -9): the relay's standard input is
//     its attach stream from the worker (StdinOnce), so the kernel closing
//     the worker's connection to the engine ends the relay's agent and its
//     container. The upkeep of any worker on the engine (Reap) then removes
//     every instance container whose relay is not running, and every relay
//     that stopped; a restarted worker with the same id sweeps them too.
//     The relay's own attach stream is the lease: no label to renew.
const (
	// LabelRelay is, on an instance's container, the id of its relay's
	// container.
	LabelRelay = "io.zerverless.relay"

	roleService      = "service"
	roleServiceRelay = "service-relay"

	// readinessEvery is the pause between readiness checks.
	readinessEvery = 50 * time.Millisecond
	// readinessTimeout bounds one readiness check.
	readinessTimeout = 5 * time.Second
	// staleCreated is how long a relay may stay created, never started,
	// before the reaper takes it for a dead worker's.
	staleCreated = 2 * time.Minute
	// egressReportEvery is how often a ready instance's egress is
	// reported, when it changed.
	egressReportEvery = 2 * time.Second
)

// ErrNoInstance is returned for an instance id this runtime does not run.
var ErrNoInstance = errors.New("no such service instance on this worker")

// ErrInstanceNotReady is returned by Dial for an instance that has not
// passed its readiness check, or is ending.
var ErrInstanceNotReady = errors.New("service instance is not ready")

// instance is one running service instance.
type instance struct {
	id     string
	cid    string // its container
	port   int
	relay  *netRelay
	egress *egressRun // nil: no egress
	ready  atomic.Bool
	output *lockedTail
	stop   chan struct{} // closed to stop it
	once   sync.Once
	reason string        // why it was stopped; set before stop is closed
	done   chan struct{} // closed once removed and reported
}

func (in *instance) stopWith(reason string) {
	in.once.Do(func() {
		in.reason = reason
		close(in.stop)
	})
}

// serviceSet is the instances of a runtime.
type serviceSet struct {
	mu   sync.Mutex
	byID map[string]*instance // guarded by mu; nil value: starting
	wg   sync.WaitGroup
}

// StartInstance starts inst and returns once it is ready (nil) or has
// ended (the reason). report is called with the instance's states in
// order, from one goroutine at a time: ready when it passed its readiness
// check, then exited exactly once, however it ended — refused, never
// ready within its start timeout, crashed, stopped — with its exit code,
// the tail of its output (at most job.MaxInstanceOutput bytes) and what
// ended it. What the instance writes is also handed, as it is written,
// to the sink ctx carries (runtime.WithSink), if any, which bounds what
// it sends itself. StartInstance returns after the first report was made. ctx
// bounds the start only: once ready the instance runs until
// StopInstance, Close, or its own exit. Nothing is left of an instance
// after its exited report but what a failed removal leaves for the
// reaper.
func (d *Docker) StartInstance(ctx context.Context, inst job.ServiceInstance, report func(job.InstanceReport)) error {
	exited := func(err error) error {
		report(job.InstanceReport{ID: inst.ID, State: job.InstanceExited, Error: limitOutput(err.Error())})
		return err
	}
	if d.cfg.Services <= 0 {
		return exited(refuse("this worker runs no service instances (--docker-services)"))
	}
	s := &d.services
	s.mu.Lock()
	if s.byID == nil {
		s.byID = map[string]*instance{}
	}
	_, dup := s.byID[inst.ID]
	switch {
	case dup:
		s.mu.Unlock()
		return exited(refuse("instance %s is already running here", inst.ID))
	case len(s.byID) >= d.cfg.Services:
		s.mu.Unlock()
		return exited(refuse("all %d service instance slots of this worker are taken", d.cfg.Services))
	}
	s.byID[inst.ID] = nil
	s.wg.Add(1)
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.byID, inst.ID)
		s.mu.Unlock()
		s.wg.Done()
	}

	in, wait, release, err := d.createInstance(ctx, inst)
	if err != nil {
		forget()
		return exited(err)
	}
	s.mu.Lock()
	s.byID[inst.ID] = in
	s.mu.Unlock()
	started := make(chan error, 1)
	go func() {
		defer forget()
		defer release()
		d.superviseInstance(ctx, in, inst.Spec, wait, report, started)
	}()
	return <-started
}

// serviceTask is inst as a container job's spec, for checkSpec.
func serviceTask(inst job.ServiceInstance) *job.Spec {
	return &job.Spec{Docker: &job.DockerSpec{
		Image: inst.Spec.Image, Command: inst.Spec.Command, Env: inst.Spec.Env, Resources: inst.Spec.Resources,
	}}
}

// checkService applies the worker's policy to inst.
func (d *Docker) checkService(inst job.ServiceInstance) (limits, error) {
	sp := inst.Spec
	if sp.Port < 1 || sp.Port > 65535 {
		return limits{}, refuse("port: %d is not a TCP port", sp.Port)
	}
	if p := sp.ReadinessPath; p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f })) {
		return limits{}, refuse("readiness_path: %q must be a path starting with / without spaces or control characters", p)
	}
	if sp.StartTimeoutSeconds < 0 {
		return limits{}, refuse("start_timeout_seconds: must not be negative")
	}
	if v, ok := sp.Env["PORT"]; ok && v != strconv.Itoa(sp.Port) {
		return limits{}, refuse("docker_env: PORT is the service's port (%d)", sp.Port)
	}
	if want := sp.EgressOf(); len(want) > 0 {
		if sp.Port == job.EgressProxyPort {
			return limits{}, refuse("port: %d is the egress proxy's port of an instance with egress", sp.Port)
		}
		if err := d.checkEgress(want); err != nil {
			return limits{}, err
		}
	}
	return d.checkSpec(serviceTask(inst), job.Limits{})
}

// createInstance checks inst, makes its image present, starts its relay
// and creates, attaches and starts its container. It returns the
// instance, the wait for its exit and the release of its image; on error
// nothing is left.
func (d *Docker) createInstance(ctx context.Context, inst job.ServiceInstance) (*instance, <-chan container.WaitResponse, func(), error) {
	lim, err := d.checkService(inst)
	if err != nil {
		return nil, nil, nil, err
	}
	sp := inst.Spec
	if err := d.checkImageNamespace(ctx, "docker_image", sp.Image, inst.Namespace); err != nil {
		return nil, nil, nil, err
	}
	release, err := d.ensureImage(ctx, sp.Image)
	if err != nil {
		return nil, nil, nil, err
	}
	fail := func(err error) (*instance, <-chan container.WaitResponse, func(), error) {
		release()
		return nil, nil, nil, err
	}
	info, err := d.engine.ImageInspect(ctx, sp.Image)
	if err != nil {
		return fail(fmt.Errorf("inspect image: %w", err))
	}
	var imageVolumes []string
	if info.Config != nil {
		imageVolumes = sortedKeys(info.Config.Volumes)
	}
	rc := relayConfig{role: roleServiceRelay, jobID: inst.ID, socket: true}
	var r *netRelay
	var e *egressRun
	if want := sp.EgressOf(); len(want) > 0 {
		// The proxy lives as long as the instance, not the start.
		e, err = d.startEgressRelay(context.WithoutCancel(ctx), want, rc, egress.Config{
			MaxBytes: d.cfg.EgressBytes, MaxConns: d.cfg.EgressConns, Window: d.cfg.ServiceEgressWindow, Subject: "instance"})
		if err != nil {
			return fail(err)
		}
		r = e.relay
	} else if r, err = d.startRelay(ctx, rc); err != nil {
		return fail(err)
	}
	in := &instance{id: inst.ID, port: sp.Port, relay: r, egress: e, output: &lockedTail{max: job.MaxInstanceOutput},
		stop: make(chan struct{}), done: make(chan struct{})}
	cfg, host := d.instanceConfig(inst, lim, r, imageVolumes)
	if e != nil {
		cfg.Env = append(cfg.Env, proxyEnv()...)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	created, err := d.engine.ContainerCreate(cctx, cfg, host, nil, nil, containerName(inst.ID))
	if err != nil {
		e.end()
		r.close()
		if errdefs.IsInvalidParameter(err) {
			return fail(refuse("create container: %v", err))
		}
		return fail(fmt.Errorf("create container: %w", err))
	}
	cid := created.ID
	undo := func(err error) (*instance, <-chan container.WaitResponse, func(), error) {
		d.removeInstance(cid, r, e)
		return fail(err)
	}
	hj, err := d.engine.ContainerAttach(cctx, cid, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return undo(fmt.Errorf("attach: %w", err))
	}
	sink := runtime.SinkFrom(ctx)
	go func() {
		defer hj.Close()
		_, _ = stdcopy.StdCopy(teeSink(in.output, sink, job.LogStdout), teeSink(in.output, sink, job.LogStderr), hj.Reader)
	}()
	// The wait is registered before the start, so that no exit is missed.
	waitC, errC := d.engine.ContainerWait(context.Background(), cid, container.WaitConditionNextExit)
	wait := make(chan container.WaitResponse, 1)
	go func() {
		select {
		case w := <-waitC:
			wait <- w
		case err := <-errC:
			wait <- container.WaitResponse{StatusCode: -1, Error: &container.WaitExitError{Message: err.Error()}}
		}
	}()
	if err := d.engine.ContainerStart(cctx, cid, container.StartOptions{}); err != nil {
		hj.Close()
		if errdefs.IsInvalidParameter(err) || errdefs.IsNotFound(err) {
			return undo(refuse("container did not start: %v", err))
		}
		return undo(fmt.Errorf("start: %w", err))
	}
	in.cid = cid
	return in, wait, release, nil
}

// instanceConfig returns the create options of an instance's container.
func (d *Docker) instanceConfig(inst job.ServiceInstance, lim limits, r *netRelay, imageVolumes []string) (*container.Config, *container.HostConfig) {
	sp := inst.Spec
	env := make([]string, 0, len(sp.Env)+1)
	for _, k := range sortedKeys(sp.Env) {
		if k != "PORT" {
			env = append(env, k+"="+sp.Env[k])
		}
	}
	env = append(env, "PORT="+strconv.Itoa(sp.Port))
	user := strconv.Itoa(nobody) + ":" + strconv.Itoa(nobody)
	if d.cfg.AllowImageUser {
		user = ""
	}
	labels := d.labels(roleService, inst.ID)
	labels[LabelRelay] = r.id
	cfg := &container.Config{
		Image: sp.Image, User: user, Env: env, Labels: labels,
		AttachStdout: true, AttachStderr: true,
	}
	if len(sp.Command) > 0 {
		cfg.Cmd = sp.Command
	}
	tmpfs := map[string]string{
		"/tmp":     fmt.Sprintf("rw,noexec,nosuid,nodev,size=%d,nr_inodes=%d", int64(d.cfg.TmpMB)<<20, d.cfg.VolumeInodes),
		"/dev/shm": fmt.Sprintf("rw,noexec,nosuid,nodev,size=%d,nr_inodes=%d", int64(shmMB)<<20, d.cfg.VolumeInodes),
	}
	for _, p := range imageVolumes {
		if p = path.Clean(p); path.IsAbs(p) && tmpfs[p] == "" {
			tmpfs[p] = fmt.Sprintf("rw,nosuid,nodev,size=%d,nr_inodes=%d", d.volumeBytes(), d.cfg.VolumeInodes)
		}
	}
	init := true
	pids := lim.pids
	host := &container.HostConfig{
		NetworkMode:    r.networkMode(),
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		Init:           &init,
		Tmpfs:          tmpfs,
		LogConfig:      container.LogConfig{Type: "none"},
		Resources: container.Resources{
			Memory:     lim.memoryBytes,
			MemorySwap: lim.memoryBytes,
			NanoCPUs:   lim.nanoCPUs,
			PidsLimit:  &pids,
			Ulimits:    containerUlimits(d.cfg.NoFile),
		},
	}
	return cfg, host
}

// superviseInstance waits for in to be ready, reports it, then waits for
// its end, removes it and reports that. The start's result goes to
// started once.
func (d *Docker) superviseInstance(ctx context.Context, in *instance, sp job.ServiceSpec, wait <-chan container.WaitResponse, report func(job.InstanceReport), started chan<- error) {
	defer close(in.done)
	timeout := d.cfg.ServiceStartTimeout
	if s := sp.StartTimeoutSeconds; s > 0 {
		timeout = min(timeout, time.Duration(s*float64(time.Second)))
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	readyErr := d.awaitReady(rctx, in, sp, wait)
	cancel()
	var exit *container.WaitResponse
	var why string
	var early exitedEarly
	if errors.As(readyErr, &early) {
		exit = &early.w
	}
	if readyErr == nil {
		in.ready.Store(true)
		report(job.InstanceReport{ID: in.id, State: job.InstanceReady})
		started <- nil
		var tick <-chan time.Time
		if in.egress != nil {
			t := time.NewTicker(egressReportEvery)
			defer t.Stop()
			tick = t.C
		}
		var last []job.EgressRecord
	running:
		for {
			select {
			case w := <-wait:
				exit = &w
				break running
			case <-in.stop:
				why = in.reason
				break running
			case <-in.relay.done():
				why = "the instance's relay ended: " + strings.TrimSpace(in.relay.stderr.String())
				break running
			case <-tick:
				notes, recs := in.egressSince(last)
				if notes != "" || recs != nil {
					report(job.InstanceReport{ID: in.id, State: job.InstanceReady, Output: limitOutput(notes), Egress: recs})
				}
				if recs != nil {
					last = recs
				}
			}
		}
	} else {
		why = readyErr.Error()
	}
	in.ready.Store(false)
	if exit == nil {
		d.kill(in.cid)
		select {
		case w := <-wait:
			exit = &w
		case <-time.After(10 * time.Second):
		}
	}
	rep := job.InstanceReport{ID: in.id, State: job.InstanceExited}
	if exit != nil && exit.StatusCode >= 0 {
		rep.ExitCode = int(exit.StatusCode)
	}
	if why == "" && exit != nil && exit.Error != nil && exit.Error.Message != "" {
		why = "wait for the instance's exit: " + exit.Error.Message
	}
	if why == "" {
		why = fmt.Sprintf("exited with code %d", rep.ExitCode)
		ictx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if info, err := d.engine.ContainerInspect(ictx, in.cid); err == nil && info.State != nil && info.State.OOMKilled {
			why = "out of memory: " + why
		}
		cancel()
	}
	rep.Error = limitOutput(why)
	d.removeInstance(in.cid, in.relay, in.egress)
	rep.Output = in.output.String()
	if in.egress != nil {
		rep.Output = appendLines(rep.Output, strings.Join(in.egress.proxy.TakeNotes(), "\n"))
		rep.Egress = capRecords(in.egress.proxy.Records())
	}
	rep.Output = limitOutput(rep.Output)
	report(rep)
	if readyErr != nil {
		started <- readyErr
	}
}

// exitedEarly is a container that ended before it was ready.
type exitedEarly struct{ w container.WaitResponse }

func (e exitedEarly) Error() string {
	return fmt.Sprintf("exited with code %d before it was ready", e.w.StatusCode)
}

// awaitReady checks in until it is ready, it exits, it is stopped or ctx
// ends.
func (d *Docker) awaitReady(ctx context.Context, in *instance, sp job.ServiceSpec, wait <-chan container.WaitResponse) error {
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, readinessTimeout)
		err := checkReady(cctx, in, sp)
		cancel()
		if err == nil {
			return nil
		}
		if last == nil || ctx.Err() == nil {
			last = err // what a check cut short by the timeout says is noise
		}
		select {
		case w := <-wait:
			return exitedEarly{w}
		case <-in.stop:
			return errors.New(in.reason)
		case <-in.relay.done():
			return errors.New("the instance's relay ended")
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("not ready within its start timeout: %v", last)
			}
			return fmt.Errorf("start canceled: %w", context.Cause(ctx))
		case <-time.After(readinessEvery):
		}
	}
}

// checkReady dials in's port through its relay and, with a readiness
// path, asks it with GET: a 2xx or 3xx answer is ready.
func checkReady(ctx context.Context, in *instance, sp job.ServiceSpec) error {
	c, dialed, err := in.relay.dial(ctx, in.port)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := dialed(); err != nil {
		return err
	}
	if sp.ReadinessPath == "" {
		return nil
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	req := "GET " + sp.ReadinessPath + " HTTP/1.1\r\nHost: localhost\r\nUser-Agent: zerverless-readiness\r\nConnection: close\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return fmt.Errorf("readiness: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("readiness: GET %s: %w", sp.ReadinessPath, err)
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("readiness: GET %s answered %s", sp.ReadinessPath, resp.Status)
	}
	return nil
}

// egressSince returns the refusal lines of in's egress since the last
// call, newline-terminated, and its records when they differ from last
// (else nil).
func (in *instance) egressSince(last []job.EgressRecord) (notes string, recs []job.EgressRecord) {
	if n := in.egress.proxy.TakeNotes(); len(n) > 0 {
		notes = strings.Join(n, "\n") + "\n"
	}
	if r := capRecords(in.egress.proxy.Records()); !slices.Equal(r, last) {
		recs = r
	}
	return notes, recs
}

// capRecords keeps the first job.MaxInstanceEgress records.
func capRecords(r []job.EgressRecord) []job.EgressRecord {
	return r[:min(len(r), job.MaxInstanceEgress)]
}

// removeInstance force-removes an instance's container and its relay,
// and ends its egress (e may be nil).
func (d *Docker) removeInstance(cid string, r *netRelay, e *egressRun) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.engine.ContainerRemove(ctx, cid, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !errdefs.IsNotFound(err) {
		d.cfg.Logger.Warn("docker instance removal failed; the reaper removes it", "worker_id", d.cfg.WorkerID, "container", cid, "err", err)
	}
	e.end()
	r.close()
}

// StopInstance stops the instance id: its container is killed, both its
// containers removed, and it is reported exited (with reason, or
// "stopped"). It waits for that, or for ctx. It returns ErrNoInstance
// when id is not running here.
func (d *Docker) StopInstance(ctx context.Context, id, reason string) error {
	var in *instance
	for {
		d.services.mu.Lock()
		got, ok := d.services.byID[id]
		d.services.mu.Unlock()
		if !ok {
			return ErrNoInstance
		}
		if in = got; in != nil {
			break
		}
		// Its containers are being created: it is stopped once they are.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(readinessEvery):
		}
	}
	in.stopWith(cmpString(reason, "stopped"))
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// DialInstance opens a connection to the port of the ready instance id,
// through its relay. It returns ErrNoInstance or ErrInstanceNotReady at
// once; the dial itself may go on behind it (what is written to c
// follows it at once): dialed waits for its outcome, up to ctx, and c's
// reads wait for it too. Over the relay's socket c is the instance's
// connection itself, handed over by the relay (netRelay.dial).
func (d *Docker) DialInstance(ctx context.Context, id string) (c net.Conn, dialed func() error, err error) {
	d.services.mu.Lock()
	in, ok := d.services.byID[id]
	d.services.mu.Unlock()
	switch {
	case !ok:
		return nil, nil, ErrNoInstance
	case in == nil || !in.ready.Load():
		return nil, nil, ErrInstanceNotReady
	}
	return in.relay.dial(ctx, in.port)
}

// stopInstances stops every instance and waits for their ends, up to ctx.
func (d *Docker) stopInstances(ctx context.Context) error {
	s := &d.services
	for {
		s.mu.Lock()
		var pending bool
		for _, in := range s.byID {
			if in == nil {
				pending = true
				continue
			}
			in.stopWith("the worker is stopping")
		}
		empty := len(s.byID) == 0
		s.mu.Unlock()
		if empty {
			return nil
		}
		if !pending {
			done := make(chan struct{})
			go func() { s.wg.Wait(); close(done) }()
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(readinessEvery):
		}
	}
}

// reapServices removes the instances of dead workers on the engine: each
// instance container whose relay is not running, and each relay that
// stopped (or was created and never started). It returns the number of
// containers removed.
func (d *Docker) reapServices(ctx context.Context) (int, error) {
	cs, err := d.engine.ContainerList(ctx, container.ListOptions{All: true, Filters: managedFilter()})
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	relays := map[string]container.Summary{}
	for _, c := range cs {
		if c.Labels[LabelRole] == roleServiceRelay {
			relays[c.ID] = c
		}
	}
	dead := func(c container.Summary) bool {
		switch c.State {
		case "running", "restarting", "paused", "removing":
			return false
		case "created":
			return time.Since(time.Unix(c.Created, 0)) > staleCreated
		}
		return true
	}
	var doomed []string
	for _, c := range cs {
		if c.Labels[LabelRole] != roleService {
			continue
		}
		if r, ok := relays[c.Labels[LabelRelay]]; !ok || dead(r) {
			doomed = append(doomed, c.ID)
		}
	}
	for id, r := range relays {
		if dead(r) {
			doomed = append(doomed, id)
		}
	}
	n := 0
	var errs []error
	for _, id := range doomed {
		if err := d.engine.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", id[:12], err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// managedFilter matches what any Zerverless worker made.
func managedFilter() filters.Args {
	return filters.NewArgs(filters.Arg("label", LabelManagedBy+"="+managedBy))
}

// limitOutput is the end of s as valid UTF-8 within job.MaxInstanceOutput
// bytes: a report's text must be valid UTF-8 to cross JSON unchanged in
// size (an invalid byte would grow into a 3-byte replacement).
func limitOutput(s string) string {
	return tailString(strings.ToValidUTF8(tailString(s, job.MaxInstanceOutput), "\uFFFD"), job.MaxInstanceOutput)
}

// tailString is the last n bytes of s, cut at a UTF-8 boundary.
func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	for i := 0; i < len(s) && i < 4; i++ {
		if s[i]&0xc0 != 0x80 {
			return s[i:]
		}
	}
	return s
}

func cmpString(s, otherwise string) string {
	if s != "" {
		return s
	}
	return otherwise
}

// teeSink writes to tail and hands the same bytes to sink (nil: none)
// as what stream wrote: an instance's live output.
func teeSink(tail io.Writer, sink runtime.Sink, stream job.LogStream) io.Writer {
	if sink == nil {
		return tail
	}
	return sinkWriter{tail: tail, sink: sink, stream: stream}
}

type sinkWriter struct {
	tail   io.Writer
	sink   runtime.Sink
	stream job.LogStream
}

func (w sinkWriter) Write(p []byte) (int, error) {
	w.sink.WriteOutput(w.stream, p)
	return w.tail.Write(p)
}
