package docker

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/go-units"

	"github.com/zerverless/zerverless/internal/job"
)

// The strict profile. Every container the runtime starts has:
//
//   - user 65534:65534, unless Config.AllowImageUser;
//   - a read-only root filesystem, and tmpfs mounts at /tmp and /dev/shm,
//     rw,noexec,nosuid,nodev, with sizes Config.TmpMB and 64 MiB and
//     Config.VolumeInodes inodes;
//   - every capability dropped, no-new-privileges, the engine's default
//     seccomp profile (no seccomp option is ever set), not privileged, no
//     devices;
//   - network "none": only the loopback interface;
//   - a memory limit with MemorySwap equal to it (no swap), a CPU quota
//     (NanoCPUs), a pids limit and a nofile ulimit;
//   - the engine's init process as PID 1, so signals and orphans are
//     handled;
//   - no host bind mount: only the runtime's own labeled tmpfs volumes at
//     /output, /input and the job's scratch paths (Config.VolumeMB,
//     Config.VolumeInodes each; volumes.go), and a tmpfs of the same limits
//     over each VOLUME path of the image; nothing the job writes reaches
//     the host's disk;
//   - the labels of LabelManagedBy, LabelWorkerID, LabelInstance,
//     LabelJobID, LabelRole and LabelDeadline (the run's deadline, which
//     the upkeep of any worker on the engine enforces if this one dies);
//   - logging driver "none": output is read from the attach stream, and
//     nothing the container prints is written to the host's disk.

// shmMB is the size of /dev/shm, the engine's default.
const shmMB = 64

// limits are the resources one run gets.
type limits struct {
	memoryBytes int64
	nanoCPUs    int64
	pids        int64
}

// specError is a job the runtime refuses before creating anything. It
// becomes a failed Result, not an error: no other worker with the same
// policy would run it either.
type specError struct{ msg string }

func (e *specError) Error() string { return e.msg }

func refuse(format string, args ...any) *specError {
	return &specError{msg: fmt.Sprintf(format, args...)}
}

var scratchNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// checkSpec applies the worker's policy to s and returns the limits of
// the run. It touches nothing.
func (d *Docker) checkSpec(s *job.Spec, l job.Limits) (limits, error) {
	ds := s.Docker
	if ds == nil {
		return limits{}, refuse("not a docker job: docker_image is missing")
	}
	if len(s.Input) > 0 && !json.Valid(s.Input) {
		return limits{}, refuse("input_data is not valid JSON")
	}
	if err := job.ValidateImageRef(ds.Image); err != nil {
		return limits{}, refuse("docker_image: %v", err)
	}
	if _, built := job.ImageNamespace(ds.Image); !built && len(d.cfg.AllowImages) > 0 && !job.MatchImage(d.cfg.AllowImages, ds.Image) {
		return limits{}, refuse("docker_image: image %q is not allowed on this worker (allowed: %v)", ds.Image, d.cfg.AllowImages)
	}
	for k := range ds.Env {
		if k == "" || k == "INPUT_DATA" || !envNameRE.MatchString(k) {
			return limits{}, refuse("docker_env: %q may not be set", k)
		}
	}
	for name, target := range ds.Volumes {
		if !scratchNameRE.MatchString(name) {
			return limits{}, refuse("docker_volumes: %q: host bind mounts are never allowed; give a scratch volume name", name)
		}
		clean := path.Clean(target)
		if !path.IsAbs(target) || clean != target || clean == "/" {
			return limits{}, refuse("docker_volumes: mount path %q must be a clean absolute path", target)
		}
		if job.ReservedMountPath(clean) {
			return limits{}, refuse("docker_volumes: mount path %q is reserved", target)
		}
	}
	if len(ds.Volumes) > provisionSlots {
		return limits{}, refuse("docker_volumes: at most %d scratch volumes", provisionSlots)
	}
	r := ds.Resources
	memMB := d.cfg.MemoryMB
	switch {
	case r.MemoryMB > 0:
		memMB = r.MemoryMB
	case s.MemoryMB > 0:
		memMB = s.MemoryMB
	case l.MemoryBytes > 0:
		memMB = int(max(l.MemoryBytes>>20, 6))
	}
	cpus := d.cfg.CPUs
	if r.CPUs > 0 {
		cpus = r.CPUs
	}
	pids := d.cfg.Pids
	if r.Pids > 0 {
		pids = r.Pids
	}
	switch {
	case memMB < 6:
		return limits{}, refuse("resources.memory_mb: %d is under the engine's minimum of 6", memMB)
	case memMB > d.cfg.MaxMemoryMB:
		return limits{}, refuse("resources.memory_mb: %d is over this worker's maximum of %d", memMB, d.cfg.MaxMemoryMB)
	case cpus > d.cfg.MaxCPUs:
		return limits{}, refuse("resources.cpus: %g is over this worker's maximum of %g", cpus, d.cfg.MaxCPUs)
	case cpus < 0.01:
		return limits{}, refuse("resources.cpus: %g is under the minimum of 0.01", cpus)
	case pids > d.cfg.MaxPids:
		return limits{}, refuse("resources.pids: %d is over this worker's maximum of %d", pids, d.cfg.MaxPids)
	}
	return limits{
		memoryBytes: int64(memMB) << 20,
		nanoCPUs:    int64(cpus * 1e9),
		pids:        pids,
	}, nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// containerConfig returns the create options of a job's container: its
// mounts are the volumes of k (prepared and held) and a tmpfs over each
// path of imageVolumes (the image's VOLUME lines); deadline is the run's,
// as a label.
func (d *Docker) containerConfig(t *job.Task, lim limits, k *kit, imageVolumes []string, deadline time.Time) (*container.Config, *container.HostConfig) {
	ds := t.Spec.Docker
	env := make([]string, 0, len(ds.Env)+1)
	for _, k := range sortedKeys(ds.Env) {
		env = append(env, k+"="+ds.Env[k])
	}
	if in := t.Spec.Input; len(in) > 0 && len(in) <= d.cfg.MaxInputEnvBytes {
		env = append(env, "INPUT_DATA="+string(in))
	}
	user := strconv.Itoa(nobody) + ":" + strconv.Itoa(nobody)
	if d.cfg.AllowImageUser {
		user = ""
	}
	cfg := &container.Config{
		Image:           ds.Image,
		User:            user,
		Env:             env,
		AttachStdout:    true,
		AttachStderr:    true,
		NetworkDisabled: true,
		Labels:          d.labelsUntil("job", t.JobID, deadline),
	}
	if len(ds.Command) > 0 {
		cfg.Cmd = ds.Command
	}
	held := func(vol, target string) mount.Mount {
		// NoCopy: the engine would otherwise copy the image's content, and
		// the owner of its directory, into the volume.
		return mount.Mount{Type: mount.TypeVolume, Source: vol, Target: target, VolumeOptions: &mount.VolumeOptions{NoCopy: true}}
	}
	mounts := []mount.Mount{held(k.output, "/output")}
	taken := map[string]bool{"/output": true, "/tmp": true, "/dev/shm": true}
	for _, target := range sortedKeys(k.scratch) {
		mounts = append(mounts, held(k.scratch[target], target))
		taken[target] = true
	}
	if len(t.Spec.Input) > 0 {
		mounts = append(mounts, held(k.input, "/input"))
		taken["/input"] = true
	}
	tmpfs := map[string]string{
		"/tmp": fmt.Sprintf("rw,noexec,nosuid,nodev,size=%d,nr_inodes=%d", int64(d.cfg.TmpMB)<<20, d.cfg.VolumeInodes),
		// The engine's own /dev/shm has its size but millions of inodes.
		"/dev/shm": fmt.Sprintf("rw,noexec,nosuid,nodev,size=%d,nr_inodes=%d", int64(shmMB)<<20, d.cfg.VolumeInodes),
	}
	for _, p := range imageVolumes {
		if p = path.Clean(p); path.IsAbs(p) && !taken[p] {
			tmpfs[p] = fmt.Sprintf("rw,nosuid,nodev,size=%d,nr_inodes=%d", d.volumeBytes(), d.cfg.VolumeInodes)
			taken[p] = true
		}
	}
	init := true
	pids := lim.pids
	host := &container.HostConfig{
		NetworkMode:    "none",
		Privileged:     false,
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		Init:           &init,
		Tmpfs:          tmpfs,
		Mounts:         mounts,
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

// containerUlimits are the rlimits of every container the runtime starts:
// nofile at nofile, and core 0, soft and hard, so that no process in it can
// dump core. On a host whose kernel.core_pattern is a pipe (systemd-coredump,
// apport) a dump is taken by a handler of the host's, outside the
// container's disk and CPU limits; the engine's default hard limit (often
// unlimited) would let a guest raise its soft limit and crash on purpose,
// and a build step that passes its RLIMIT_FSIZE is killed by SIGXFSZ, a
// signal that dumps core.
func containerUlimits(nofile int64) []*units.Ulimit {
	return []*units.Ulimit{{Name: "nofile", Soft: nofile, Hard: nofile}, {Name: "core", Soft: 0, Hard: 0}}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// sortedValues returns m's values in the order of their keys.
func sortedValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, m[k])
	}
	return out
}
