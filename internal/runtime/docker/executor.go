package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/strslice"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	"github.com/docker/go-units"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// The build executor.
//
// The runtime runs a build's pinned Dockerfile itself, one instruction at
// a time, with the engine's container primitives, instead of handing it to
// the engine's builder, which cannot set a step's capabilities. Each stage
// starts from its pinned image id (or an empty image for scratch) and
// keeps the image configuration it is building:
//
//   - RUN creates a container of the current image with the step's
//     environment (ENV, and the ARGs in scope with the build's values),
//     user, working directory and shell, under the build step profile
//     (stepHostConfig), starts it, streams its output into the build log,
//     and commits it to the next image when it exits 0. A non-zero exit
//     fails the build, naming the step.
//   - COPY and ADD write the selected files of the context (ADD also
//     unpacks a local tar archive), or of another stage or image (COPY
//     --from, read from a container of it that is never started), into a
//     container of the current image that is never started, and commit it.
//     --chown and --chmod apply to every file copied.
//   - WORKDIR creates its directory the same way.
//   - ENV, USER, CMD, ENTRYPOINT, LABEL, EXPOSE, VOLUME, STOPSIGNAL,
//     SHELL, HEALTHCHECK, ARG and MAINTAINER change the configuration only;
//     each commit carries it.
//
// The final stage's image is committed once more from a container created
// with exactly its configuration, with the build's labels, and tagged.
// Every container is removed after its step, and every image the build
// committed that is not a layer of the result (failed builds: all of
// them) is removed. There is no layer cache across builds: a build runs
// all of its steps unless its build key names an image already built.
//
// A committed image keeps the environment of the container it came from;
// so that no build argument's value stays in the image, the commit names
// each ARG that is not also an ENV without a value, which removes it from
// the environment of every container of the image.

// BuildCaps returns the only capabilities a RUN step has (all others are
// dropped), for a root user; a step under another USER has none in
// effect. They are what installing packages needs: changing owners and
// modes of files it does not own (CHOWN, DAC_OVERRIDE, FOWNER, FSETID),
// package managers dropping to their own users (SETUID, SETGID), and
// stopping its own processes (KILL). Not granted, among others: NET_RAW
// (raw sockets), MKNOD (device nodes), SYS_CHROOT, SETFCAP (file
// capabilities), SETPCAP, AUDIT_WRITE and NET_BIND_SERVICE.
func BuildCaps() []string {
	return []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID", "KILL"}
}

var defaultShell = []string{"/bin/sh", "-c"}

// stageState is a stage being built.
type stageState struct {
	name  string
	image string // the current image id
	cfg   container.Config
	args  map[string]string // the ARGs in scope that have a value
	// argKeys are the names of every ARG given to a step of this stage.
	argKeys map[string]bool
	// cmdSet: a CMD of this stage, which a later ENTRYPOINT keeps (it
	// clears one inherited from the base).
	cmdSet bool
}

// executor runs one build.
type executor struct {
	d        *Docker
	t        *job.Task
	cgroup   string
	deadline time.Time
	disk     *diskWatch
	log      *runtime.CappedBuffer
	ctxFile  *os.File
	ignore   *patternmatcher.PatternMatcher
	lex      *shell.Lex

	// contextDigest is the build context's SHA-256, part of the cache
	// key of a COPY or ADD from it.
	contextDigest string
	// stepKey is the cache key of the running step; its image carries it.
	stepKey string

	// egress is the build's egress, which RUN steps join; nil: none.
	egress *egressRun

	stages  []*stageState // finished stages by index
	images  []string      // committed by this build, in order
	step    int
	steps   int
	stepErr string // why the build failed, when a step failed
}

// stepError fails the build with msg.
type stepError struct{ msg string }

func (e *stepError) Error() string { return e.msg }

func stepFail(format string, args ...any) error { return &stepError{fmt.Sprintf(format, args...)} }

// execute builds the pinned dockerfile and returns the final image's id.
// A *stepError is the build's own failure; any other error is the
// engine's or the context's.
func (x *executor) execute(ctx context.Context, dockerfile string, buildLabels map[string]string) (string, error) {
	res, err := parser.Parse(strings.NewReader(dockerfile))
	if err != nil {
		return "", stepFail("dockerfile: %v", err)
	}
	x.lex = shell.NewLex(res.EscapeToken)
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return "", stepFail("dockerfile: %v", err)
	}
	for _, s := range stages {
		x.steps += 1 + len(s.Commands)
	}
	meta := map[string]string{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if v, ok := x.t.Spec.Docker.Build.Args[kv.Key]; ok {
				meta[kv.Key] = v
			} else if kv.Value != nil {
				v, _, err := x.lex.ProcessWord(*kv.Value, shell.EnvsFromSlice(envOf(meta)))
				if err != nil {
					return "", stepFail("ARG %s: %v", kv.Key, err)
				}
				meta[kv.Key] = v
			}
		}
	}
	var st *stageState
	for i := range stages {
		s := &stages[i]
		x.step++
		from := "FROM " + s.BaseName
		if s.Name != "" {
			from += " AS " + s.Name
		}
		fmt.Fprintf(x.log, "Step %d/%d : %s\n", x.step, x.steps, from)
		st, err = x.from(ctx, s)
		if err != nil {
			return "", err
		}
		for _, c := range s.Commands {
			x.step++
			fmt.Fprintf(x.log, "Step %d/%d : %s\n", x.step, x.steps, c)
			if err := x.command(ctx, st, meta, c); err != nil {
				return "", err
			}
		}
		x.stages = append(x.stages, st)
	}
	cfg := st.cfg
	cfg.Labels = maps.Clone(cfg.Labels)
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	maps.Copy(cfg.Labels, buildLabels)
	// The steps' containers carry the build's deadline and their images a
	// step key; the image carries neither.
	cfg.Labels[LabelDeadline] = ""
	cfg.Labels[LabelStepKey] = ""
	id, err := x.commitConfig(ctx, st, cfg)
	if err != nil {
		return "", err
	}
	return id, nil
}

func envOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// from starts a stage.
func (x *executor) from(ctx context.Context, s *instructions.Stage) (*stageState, error) {
	st := &stageState{name: strings.ToLower(s.Name), args: map[string]string{}, argKeys: map[string]bool{}}
	base := s.BaseName
	if prev := x.stageByName(base); prev != nil {
		st.image, st.cfg = prev.image, prev.cfg
	} else if strings.EqualFold(base, "scratch") {
		id, err := x.emptyImage(ctx)
		if err != nil {
			return nil, err
		}
		st.image = id
		st.cfg = container.Config{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}
	} else if imageIDFullRE.MatchString(base) {
		info, err := x.d.engine.ImageInspect(ctx, base)
		if err != nil {
			return nil, fmt.Errorf("inspect %s: %w", shortID(base), err)
		}
		st.image = info.ID
		if info.Config != nil {
			st.cfg = container.Config{
				Env: info.Config.Env, Cmd: info.Config.Cmd, Entrypoint: info.Config.Entrypoint,
				WorkingDir: info.Config.WorkingDir, User: info.Config.User, Labels: info.Config.Labels,
				ExposedPorts: natPorts(info.Config.ExposedPorts), Volumes: info.Config.Volumes,
				StopSignal: info.Config.StopSignal, Shell: info.Config.Shell,
			}
			if h := info.Config.Healthcheck; h != nil {
				st.cfg.Healthcheck = &container.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout,
					StartPeriod: h.StartPeriod, StartInterval: h.StartInterval, Retries: h.Retries}
			}
		}
	} else {
		return nil, stepFail("FROM %s: neither a stage nor a checked image", base)
	}
	st.cfg.Env = slices.Clone(st.cfg.Env)
	st.cfg.Labels = maps.Clone(st.cfg.Labels)
	fmt.Fprintf(x.log, " ---> %s\n", shortID(st.image))
	return st, nil
}

func natPorts(ports map[string]struct{}) nat.PortSet {
	if len(ports) == 0 {
		return nil
	}
	out := nat.PortSet{}
	for p := range ports {
		out[nat.Port(p)] = struct{}{}
	}
	return out
}

func (x *executor) stageByName(ref string) *stageState {
	if i, ok := stageNumber(ref); ok && i < len(x.stages) {
		return x.stages[i]
	}
	for _, s := range x.stages {
		if s.name != "" && s.name == strings.ToLower(ref) {
			return s
		}
	}
	return nil
}

func stageNumber(s string) (int, bool) {
	i, err := strconv.Atoi(s)
	return i, err == nil && i >= 0 && strconv.Itoa(i) == s
}

// emptyImage imports an image with no files, the start of FROM scratch.
func (x *executor) emptyImage(ctx context.Context) (string, error) {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.Close()
	labels := x.d.labels("build-layer", x.t.JobID)
	changes := []string{}
	for _, k := range sortedKeys(labels) {
		changes = append(changes, "LABEL "+k+"="+labels[k])
	}
	rc, err := x.d.engine.ImageImport(ctx, image.ImportSource{Source: &layer, SourceName: "-"}, "", image.ImportOptions{Changes: changes})
	if err != nil {
		return "", fmt.Errorf("import an empty image: %w", err)
	}
	var id string
	err = drainJSONFunc(rc, func(status string) {
		if strings.HasPrefix(status, "sha256:") {
			id = strings.TrimSpace(status)
		}
	})
	if err != nil || !imageIDFullRE.MatchString(id) {
		return "", fmt.Errorf("import an empty image: %v (%q)", err, id)
	}
	x.images = append(x.images, id)
	return id, nil
}

// env is the environment of a step: the stage's ENV and its ARGs.
func (st *stageState) env() []string {
	env := slices.Clone(st.cfg.Env)
	have := map[string]bool{}
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		have[k] = true
	}
	for _, k := range sortedKeys(st.args) {
		if !have[k] {
			env = append(env, k+"="+st.args[k])
		}
	}
	return env
}

// command runs one instruction of st.
func (x *executor) command(ctx context.Context, st *stageState, meta map[string]string, c instructions.Command) error {
	if e, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		if _, isRun := c.(*instructions.RunCommand); !isRun {
			getter := shell.EnvsFromSlice(st.env())
			if err := e.Expand(func(word string) (string, error) {
				s, _, err := x.lex.ProcessWord(word, getter)
				return s, err
			}); err != nil {
				return stepFail("%s: %v", c.Name(), err)
			}
		}
	}
	switch c := c.(type) {
	case *instructions.RunCommand:
		return x.run(ctx, st, c)
	case *instructions.CopyCommand:
		return x.copy(ctx, st, c.SourcesAndDest, c.From, c.Chown, c.Chmod, false)
	case *instructions.AddCommand:
		return x.copy(ctx, st, c.SourcesAndDest, "", c.Chown, c.Chmod, true)
	case *instructions.WorkdirCommand:
		wd := c.Path
		if !path.IsAbs(wd) {
			wd = path.Join("/", st.cfg.WorkingDir, wd)
		}
		st.cfg.WorkingDir = path.Clean(wd)
		if x.cached(ctx, st, "workdir") {
			return nil
		}
		return x.writeFiles(ctx, st, func(tw *tar.Writer) error {
			return tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(st.cfg.WorkingDir, "/") + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Now()})
		})
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			st.cfg.Env = setEnv(st.cfg.Env, kv.Key, kv.Value)
		}
	case *instructions.ArgCommand:
		for _, kv := range c.Args {
			if v, ok := x.t.Spec.Docker.Build.Args[kv.Key]; ok {
				st.args[kv.Key] = v
			} else if kv.Value != nil {
				st.args[kv.Key] = *kv.Value
			} else if v, ok := meta[kv.Key]; ok {
				st.args[kv.Key] = v
			}
		}
	case *instructions.UserCommand:
		st.cfg.User = c.User
	case *instructions.CmdCommand:
		st.cfg.Cmd = x.cmdLine(st, c.ShellDependantCmdLine)
		st.cmdSet = true
	case *instructions.EntrypointCommand:
		st.cfg.Entrypoint = x.cmdLine(st, c.ShellDependantCmdLine)
		if st.cfg.Entrypoint == nil {
			st.cfg.Entrypoint = []string{}
		}
		if !st.cmdSet {
			st.cfg.Cmd = nil
		}
	case *instructions.LabelCommand:
		if st.cfg.Labels == nil {
			st.cfg.Labels = map[string]string{}
		}
		for _, kv := range c.Labels {
			st.cfg.Labels[kv.Key] = kv.Value
		}
	case *instructions.ExposeCommand:
		if st.cfg.ExposedPorts == nil {
			st.cfg.ExposedPorts = nat.PortSet{}
		}
		for _, p := range c.Ports {
			ports, _, err := nat.ParsePortSpecs([]string{p})
			if err != nil {
				return stepFail("EXPOSE %s: %v", p, err)
			}
			for port := range ports {
				st.cfg.ExposedPorts[port] = struct{}{}
			}
		}
	case *instructions.VolumeCommand:
		if st.cfg.Volumes == nil {
			st.cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			st.cfg.Volumes[v] = struct{}{}
		}
	case *instructions.StopSignalCommand:
		st.cfg.StopSignal = c.Signal
	case *instructions.ShellCommand:
		st.cfg.Shell = c.Shell
	case *instructions.HealthCheckCommand:
		h := c.Health
		st.cfg.Healthcheck = &container.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, StartInterval: h.StartInterval, Retries: h.Retries}
	case *instructions.MaintainerCommand:
		if st.cfg.Labels == nil {
			st.cfg.Labels = map[string]string{}
		}
		st.cfg.Labels["maintainer"] = c.Maintainer
	default:
		return stepFail("%s is not supported", strings.ToUpper(c.Name()))
	}
	return nil
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			env = slices.Clone(env)
			env[i] = k + "=" + v
			return env
		}
	}
	return append(slices.Clone(env), k+"="+v)
}

func (x *executor) cmdLine(st *stageState, c instructions.ShellDependantCmdLine) []string {
	if !c.PrependShell {
		return c.CmdLine
	}
	sh := st.cfg.Shell
	if len(sh) == 0 {
		sh = defaultShell
	}
	return append(slices.Clone([]string(sh)), strings.Join(c.CmdLine, " "))
}

// stepHostConfig is the profile of a build step's container: no
// capabilities but BuildCaps, no new privileges, the build network, and
// the build's limits, inside the anchor's cgroup so that the anchor's
// pids, memory and CPU limits hold for all steps together.
func (x *executor) stepHostConfig() *container.HostConfig {
	d := x.d
	mem := int64(d.cfg.BuildMemoryMB) << 20
	pids := d.cfg.BuildPids
	network := container.NetworkMode(d.cfg.BuildNetwork)
	if x.egress != nil {
		network = x.egress.relay.networkMode()
	}
	ulimits := containerUlimits(d.cfg.NoFile)
	if fsize := x.disk.fileLimit(); fsize > 0 {
		ulimits = append(ulimits, &units.Ulimit{Name: "fsize", Soft: fsize, Hard: fsize})
	}
	return &container.HostConfig{
		NetworkMode: network,
		CapDrop:     []string{"ALL"},
		CapAdd:      BuildCaps(),
		SecurityOpt: []string{"no-new-privileges"},
		ShmSize:     64 << 20,
		LogConfig:   container.LogConfig{Type: "none"},
		Resources: container.Resources{
			CgroupParent: x.cgroup,
			Memory:       mem, MemorySwap: mem,
			CPUPeriod: 100000, CPUQuota: int64(d.cfg.BuildCPUs * 100000),
			PidsLimit: &pids,
			Ulimits:   ulimits,
		},
	}
}

// create creates a step container of st's image running cmd.
func (x *executor) create(ctx context.Context, st *stageState, cmd []string, env []string) (string, error) {
	if len(cmd) == 0 {
		cmd = []string{"/none"}
	}
	return x.createWith(ctx, st, strslice.StrSlice{}, cmd, env)
}

// createWith creates a step container of st's image with entrypoint and
// cmd as they are.
func (x *executor) createWith(ctx context.Context, st *stageState, entrypoint, cmd strslice.StrSlice, env []string) (string, error) {
	cfg := &container.Config{
		Image: st.image, User: st.cfg.User, Env: env, WorkingDir: st.cfg.WorkingDir,
		// The image's entrypoint does not wrap a step: the command is it.
		Entrypoint: entrypoint, Cmd: cmd,
		AttachStdout: true, AttachStderr: true,
		NetworkDisabled: x.d.cfg.BuildNetwork == "none",
		Labels:          x.d.labelsUntil("build", x.t.JobID, x.deadline),
	}
	if x.egress != nil {
		cfg.NetworkDisabled = false
		cfg.Env = append(slices.Clone(cfg.Env), proxyEnv()...)
	}
	// Not interrupted half-way, so that no container is left unseen.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	c, err := x.d.engine.ContainerCreate(cctx, cfg, x.stepHostConfig(), nil, nil, "")
	if err != nil {
		if errdefs.IsInvalidParameter(err) || errdefs.IsNotFound(err) {
			return "", stepFail("%v", err)
		}
		return "", fmt.Errorf("create build step: %w", err)
	}
	return c.ID, nil
}

func (x *executor) remove(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := x.d.engine.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
		x.d.cfg.Logger.Warn("docker build step removal failed", "worker_id", x.d.cfg.WorkerID, "container", id, "err", err)
	}
}

// sigxfszExit is the exit code of a step killed by SIGXFSZ: it wrote a
// file past its RLIMIT_FSIZE.
const sigxfszExit = 128 + 25

// run runs a RUN step and commits it.
func (x *executor) run(ctx context.Context, st *stageState, c *instructions.RunCommand) error {
	cmd := x.cmdLine(st, c.ShellDependantCmdLine)
	env := st.env()
	for k := range st.args {
		st.argKeys[k] = true
	}
	if x.cached(ctx, st, "run", cmd, env) {
		return nil
	}
	id, err := x.create(ctx, st, cmd, env)
	if err != nil {
		return err
	}
	defer x.remove(id)
	fmt.Fprintf(x.log, " ---> Running in %s\n", id[:12])
	x.disk.watch(id)
	hj, err := x.d.engine.ContainerAttach(ctx, id, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return fmt.Errorf("attach build step: %w", err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = stdcopy.StdCopy(x.log, x.log, hj.Reader)
	}()
	defer func() { hj.Close(); <-copied }()
	waitC, errC := x.d.engine.ContainerWait(ctx, id, container.WaitConditionNextExit)
	if err := x.d.engine.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return stepFail("step %d (%s): %v", x.step, c.String(), err)
	}
	var code int64
	select {
	case w := <-waitC:
		code = w.StatusCode
	case err := <-errC:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("wait for build step: %w", err)
	}
	<-copied
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if code == sigxfszExit && x.disk.fileLimit() > 0 {
		x.disk.fileTooLarge()
	}
	if code != 0 {
		return stepFail("step %d (%s) returned a non-zero code: %d", x.step, c.String(), code)
	}
	return x.commit(ctx, st, id)
}

// commit commits container id to st's next image, with st's
// configuration.
func (x *executor) commit(ctx context.Context, st *stageState, id string) error {
	cfg := st.cfg
	cfg.Env = slices.Clone(cfg.Env)
	have := map[string]bool{}
	for _, e := range cfg.Env {
		k, _, _ := strings.Cut(e, "=")
		have[k] = true
	}
	// A bare name removes the argument from the image's environment.
	for _, k := range sortedKeys(st.argKeys) {
		if !have[k] {
			cfg.Env = append(cfg.Env, k)
		}
	}
	cfg.Env = x.unsetProxyEnv(cfg.Env, have)
	cfg.Labels = maps.Clone(cfg.Labels)
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	maps.Copy(cfg.Labels, x.d.labels("build-layer", x.t.JobID))
	cfg.Labels[LabelNamespace] = x.t.Namespace
	cfg.Labels[LabelStepKey] = x.stepKey
	cfg.Labels[LabelDeadline] = ""
	if cfg.Entrypoint == nil {
		cfg.Entrypoint = strslice.StrSlice{} // else the container's stays
	}
	if len(cfg.Cmd) == 0 && len(cfg.Entrypoint) == 0 {
		cfg.Cmd = []string{"/none"} // else the step's command becomes the image's
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	r, err := x.d.engine.ContainerCommit(cctx, id, container.CommitOptions{Config: &cfg})
	if err != nil {
		return fmt.Errorf("commit build step: %w", err)
	}
	x.images = append(x.images, r.ID)
	st.image = r.ID
	fmt.Fprintf(x.log, " ---> %s\n", shortID(r.ID))
	return ctx.Err()
}

// commitConfig commits st's image once more with exactly cfg.
func (x *executor) commitConfig(ctx context.Context, st *stageState, cfg container.Config) (string, error) {
	cfg.Env = slices.Clone(cfg.Env)
	have := map[string]bool{}
	for _, e := range cfg.Env {
		k, _, _ := strings.Cut(e, "=")
		have[k] = true
	}
	for _, k := range sortedKeys(st.argKeys) {
		if !have[k] {
			cfg.Env = append(cfg.Env, k)
		}
	}
	cfg.Env = x.unsetProxyEnv(cfg.Env, have)
	if cfg.Entrypoint == nil {
		cfg.Entrypoint = strslice.StrSlice{} // else the container's stays
	}
	if len(cfg.Cmd) == 0 && len(cfg.Entrypoint) == 0 {
		cfg.Cmd = []string{"/none"} // else the image's last command stays
	}
	id, err := x.createWith(ctx, st, cfg.Entrypoint, cfg.Cmd, cfg.Env)
	if err != nil {
		return "", err
	}
	defer x.remove(id)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	r, err := x.d.engine.ContainerCommit(cctx, id, container.CommitOptions{Config: &cfg})
	if err != nil {
		return "", fmt.Errorf("commit the image: %w", err)
	}
	x.images = append(x.images, r.ID)
	fmt.Fprintf(x.log, " ---> %s\n", shortID(r.ID))
	return r.ID, ctx.Err()
}

// writeFiles writes what write puts in a tar stream (names relative to
// the root) into a container of st's image that is never started, and
// commits it.
func (x *executor) writeFiles(ctx context.Context, st *stageState, write func(tw *tar.Writer) error) error {
	id, err := x.create(ctx, st, []string{"/none"}, st.cfg.Env)
	if err != nil {
		return err
	}
	defer x.remove(id)
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := write(tw)
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	err = x.d.engine.CopyToContainer(ctx, id, "/", pr, container.CopyToContainerOptions{})
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		var se *stepError
		if errors.As(err, &se) {
			return se
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return stepFail("step %d: %v", x.step, err)
	}
	return x.commit(ctx, st, id)
}

// isDirDest reports whether dest names a directory of st's image.
func (x *executor) isDirDest(ctx context.Context, st *stageState, dest string) bool {
	id, err := x.create(ctx, st, []string{"/none"}, nil)
	if err != nil {
		return false
	}
	defer x.remove(id)
	stat, err := x.d.engine.ContainerStatPath(ctx, id, dest)
	return err == nil && stat.Mode.IsDir()
}

// cleanup removes every image the build committed except keep and the
// images that are its layers (the engine refuses to remove an image with
// children), newest first; a failed build passes "" and keeps none.
func (x *executor) cleanup(keep string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, id := range slices.Backward(x.images) {
		if id == keep {
			continue
		}
		_, err := x.d.engine.ImageRemove(ctx, id, image.RemoveOptions{})
		if err != nil && !errdefs.IsNotFound(err) && !errdefs.IsConflict(err) {
			x.d.cfg.Logger.Warn("docker build cleanup failed", "worker_id", x.d.cfg.WorkerID, "image", id, "err", err)
		}
	}
}

// drainJSONFunc reads a JSON message stream to its end, calling fn with
// each status, and returns the stream's error.
func drainJSONFunc(rc io.ReadCloser, fn func(status string)) error {
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
		fn(m.Status)
	}
}

// LabelStepKey is the cache key of an image a build step committed.
const LabelStepKey = "io.zerverless.step-key"

// The step cache.
//
// An image a step committed carries the step's key: a hash of the
// namespace, the build network, the image the step started from, the
// stage's whole configuration and arguments, and what the step does (its
// command; for COPY and ADD, the instruction with its variables expanded
// and the context's digest or the source image's id). A later step of the
// same namespace on this worker with the same key uses that image instead
// of running: a namespace reuses only what its own builds committed,
// never another's, whatever the engine holds.

// cached looks up the step described by parts; on a hit st moves to its
// image and it reports true. It sets x.stepKey either way.
func (x *executor) cached(ctx context.Context, st *stageState, parts ...any) bool {
	h := sha256.New()
	cfg, _ := json.Marshal(st.cfg)
	args, _ := json.Marshal(st.args)
	keys, _ := json.Marshal(sortedKeys(st.argKeys))
	what, _ := json.Marshal(parts)
	fmt.Fprintf(h, "zerverless step v1\nns %q\nnetwork %q\nparent %s\nconfig %s\nargs %s %s\nstep %s\n",
		x.t.Namespace, x.d.cfg.BuildNetwork, st.image, cfg, args, keys, what)
	for _, e := range x.t.Spec.EgressOf() {
		fmt.Fprintf(h, "egress %q\n", e)
	}
	x.stepKey = hex.EncodeToString(h.Sum(nil))
	f := x.d.ownFilter()
	f.Add("label", LabelStepKey+"="+x.stepKey)
	f.Add("label", LabelNamespace+"="+x.t.Namespace)
	imgs, err := x.d.engine.ImageList(ctx, image.ListOptions{All: true, Filters: f})
	if err != nil || len(imgs) == 0 {
		return false
	}
	st.image = imgs[0].ID
	fmt.Fprintf(x.log, " ---> Using cache\n ---> %s\n", shortID(st.image))
	return true
}
