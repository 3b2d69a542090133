package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// Two workers started from one data directory get two ids; a released
// id is the next worker's, so a restart sweeps its predecessor's leftovers.
func TestClaimWorkerID(t *testing.T) {
	dir := t.TempDir()
	a, err := ClaimWorkerID(dir, testWorkerPrefix+"claim-")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ClaimWorkerID(dir, testWorkerPrefix+"claim-")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID || !strings.HasPrefix(a.ID, testWorkerPrefix+"claim-") {
		t.Fatalf("ids %q and %q: want two distinct ids with the prefix", a.ID, b.ID)
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	c, err := ClaimWorkerID(dir, "other-")
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != a.ID {
		t.Fatalf("after a's release the next worker got %q, want a's id %q", c.ID, a.ID)
	}
	b.Release()
	c.Release()
}

// Two workers on one engine, ids from one data directory as two `serve`
// or `worker` processes take them: one runs a long job while the other
// starts and sweeps; the job survives. The running worker's own sweep
// leaves its run alone too.
func TestTwoWorkersOneEngine(t *testing.T) {
	dir := t.TempDir()
	var ds []*Docker
	for range 2 {
		claim, err := ClaimWorkerID(dir, testWorkerPrefix+"two-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { claim.Release() })
		ds = append(ds, newTestRuntime(t, func(c *Config) { c.WorkerID = claim.ID }))
	}
	jobID := newJobID()
	done := make(chan job.Result, 1)
	go func() {
		tk := testTask(jobID, testImage, "sh", "-c", "sleep 3; echo survived")
		res, err := ds[0].Run(context.Background(), tk)
		if err != nil {
			res.Error = err.Error()
		}
		done <- res
	}()
	eventually(t, 30*time.Second, func() error {
		if cs := jobContainers(t, jobID); len(cs) == 1 && cs[0].State == "running" {
			return nil
		}
		return errNotYet
	})
	for _, d := range ds {
		if _, err := d.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	res := <-done
	wantStatus(t, res, job.StatusCompleted)
	if res.Output != "survived\n" {
		t.Fatalf("output %q", res.Output)
	}
}

// startCrashChild starts a worker process that runs one job (sleep 600,
// under timeout) with workerID, and returns once its container runs.
func startCrashChild(t *testing.T, workerID string, timeout time.Duration, warm bool) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+workerID, "ZERVERLESS_DOCKER_TEST_IMAGE="+testImage,
		"ZERVERLESS_DOCKER_TEST_TIMEOUT="+timeout.String())
	if warm {
		bin, err := dockertest.AgentBinary()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(cmd.Env, crashChildWarmEnv+"="+bin)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	eventually(t, 30*time.Second, func() error {
		for _, c := range jobContainers(t, "crash-"+workerID) {
			if c.State == "running" {
				return nil
			}
		}
		return errors.New("no running job container of the child worker yet")
	})
	return cmd
}

// A worker killed mid-job (kill -9 of a real process): with another
// worker running on the engine (its own id, default upkeep), the dead
// worker's container and volumes are gone within a minute of the job's
// deadline, though no worker with the dead one's id ever starts again.
func TestKilledWorkersContainerIsReaped(t *testing.T) {
	for _, warm := range []bool{false, true} {
		t.Run(map[bool]string{false: "cold", true: "warm"}[warm], func(t *testing.T) { testKilledWorkersContainerIsReaped(t, warm) })
	}
}

func testKilledWorkersContainerIsReaped(t *testing.T, warm bool) {
	dead := testWorkerPrefix + "dead-" + randomHex(3)
	cmd := startCrashChild(t, dead, 5*time.Second, warm)
	// The job's container: the child's warm holders and prewarmed
	// containers carry deadlines of their own, minutes away; a prewarmed
	// container that a job took has the job's in its name.
	cs := jobContainers(t, "crash-"+dead)
	if len(cs) != 1 {
		t.Fatalf("job containers of the child: %v", cs)
	}
	leaseDeadlines(cs)
	secs, err := strconv.ParseInt(cs[0].Labels[LabelDeadline], 10, 64)
	if err != nil {
		t.Fatalf("the job container has no deadline label: %v", cs[0].Labels)
	}
	deadline := time.Unix(secs, 0)
	var vols []string
	for _, m := range cs[0].Mounts {
		// The agent's volume is the runtime's, shared by its prewarmed
		// containers: Sweep removes it, with them.
		if m.Type == "volume" && m.Destination != agentDir {
			vols = append(vols, m.Name)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	other := newTestRuntime(t, nil) // the defaults: UpkeepInterval, ReapGrace
	other.Start()
	// The job's container, its volumes and their holder go; the warm
	// holders the dead worker kept for later jobs go at their own deadline.
	eventually(t, time.Until(deadline)+time.Minute, func() error {
		ctx := context.Background()
		n := 0
		cs, err := testEngine.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", LabelWorkerID+"="+dead))})
		if err != nil {
			return err
		}
		var left []string
		for _, c := range cs {
			if slices.ContainsFunc(c.Mounts, func(m container.MountPoint) bool { return slices.Contains(vols, m.Name) }) {
				n++
				left = append(left, c.Names[0]+" "+c.Labels[LabelRole]+" "+c.State)
			}
		}
		vs, err := testEngine.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelWorkerID+"="+dead))})
		if err != nil {
			return err
		}
		for _, v := range vs.Volumes {
			if slices.Contains(vols, v.Name) {
				n++
				left = append(left, v.Name)
			}
		}
		if n > 0 {
			return fmt.Errorf("%d containers or volumes of the killed worker's job remain: %v", n, left)
		}
		return nil
	})
	sweeper := newTestRuntime(t, func(c *Config) { c.WorkerID = dead })
	if _, err := sweeper.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	// What a live worker runs is never reaped before its deadline.
	res := run(t, other, testTask(newJobID(), testImage, "echo", "alive"))
	wantStatus(t, res, job.StatusCompleted)
}

// freeDisk is the free space of the filesystem of the engine's root
// directory, where volumes and layers would be written.
func freeDisk(t *testing.T) int64 {
	t.Helper()
	info, err := testEngine.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(info.DockerRootDir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// A job writing without bound to /output, to a scratch volume, to a VOLUME
// of its image, or making files without bound, stops at the worker's
// limits: the kernel refuses the write, the job fails saying which volume
// is full, the host's disk takes none of it, and nothing is left.
func TestDiskLimits(t *testing.T) {
	poolModes(t, func(c *Config) { c.VolumeMB = diskLimitMB; c.VolumeInodes = 500 }, testDiskLimits)
}

// diskLimitMB is large enough that what other users of the machine's
// disk write meanwhile stays under it; a broken bound writes until the
// timeout.
const diskLimitMB = 256

func testDiskLimits(t *testing.T, d *Docker) {
	const limitMB = diskLimitMB
	volImage := "zerverless-test/volume:" + randomHex(4)
	importWithChanges(t, volImage, []string{"VOLUME /declared"})
	flood := `cat /dev/zero > %s/big; echo "write: $?"`
	cases := []struct {
		name, script, full string
		volumes            map[string]string
		image              string
	}{
		// /output is checked even when the job exits 0.
		{name: "output", script: fmt.Sprintf(flood, "/output"), full: "/output"},
		{name: "scratch", script: fmt.Sprintf(flood, "/data") + "; exit 1", full: "/data", volumes: map[string]string{"scratch": "/data"}},
		{name: "output inodes", script: `i=0; while touch /output/f$i 2>/dev/null; do i=$((i+1)); done; echo "files: $i"; exit 1`, full: "/output"},
		{name: "image volume", script: fmt.Sprintf(flood, "/declared") + "; exit 1", image: volImage},
		{name: "tmp inodes", script: `i=0; while touch /tmp/f$i 2>/dev/null; do i=$((i+1)); done; echo "files: $i"; [ $i -lt 500 ] && exit 1`},
		{name: "shm inodes", script: `i=0; while touch /dev/shm/f$i 2>/dev/null; do i=$((i+1)); done; echo "files: $i"; [ $i -lt 500 ] && exit 1`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := freeDisk(t)
			img := testImage
			if tc.image != "" {
				img = tc.image
			}
			tk := testTask(newJobID(), img, "sh", "-c", tc.script)
			tk.Timeout = 60 * time.Second
			tk.Spec.Docker.Resources.MemoryMB = 768
			tk.Spec.Docker.Volumes = tc.volumes
			res := run(t, d, tk)
			drop := before - freeDisk(t)
			t.Logf("free disk of the engine's root dropped by %d KiB; %s", drop>>10, res.Error)
			if drop > limitMB<<20 {
				t.Errorf("the host's free disk dropped by %d MiB, more than the %d MiB limit", drop>>20, limitMB)
			}
			wantStatus(t, res, job.StatusFailed)
			if tc.full != "" && !strings.Contains(res.Error, "disk limit: "+tc.full+" is full") {
				t.Errorf("error %q does not say %s is full", res.Error, tc.full)
			}
			if strings.Contains(tc.script, "write") && !strings.Contains(res.Stderr, "No space left on device") {
				t.Errorf("the write did not fail with ENOSPC: stdout %q stderr %q", res.Output, res.Stderr)
			}
			if strings.HasPrefix(res.Output, "files: ") {
				var n int
				fmt.Sscanf(res.Output, "files: %d", &n)
				if n == 0 || n > 500 {
					t.Errorf("%d files made under an inode limit of 500", n)
				}
			}
		})
	}
}

// importWithChanges makes ref from the test image with Dockerfile changes
// (VOLUME, LABEL) and removes it at the end of the test.
func importWithChanges(t *testing.T, ref string, changes []string) {
	t.Helper()
	ctx := context.Background()
	rootfs, err := dockertest.BusyboxRootfs()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := testEngine.ImageImport(ctx, image.ImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"}, ref, image.ImportOptions{Changes: changes})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	t.Cleanup(func() {
		testEngine.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true, PruneChildren: true})
	})
}

// /output names that clients would split or join wrongly (a backslash, a
// newline, another control character, invalid UTF-8) are left out, and the
// result says so.
func TestOutputUnsafeNames(t *testing.T) { poolModes(t, nil, testOutputUnsafeNames) }

func testOutputUnsafeNames(t *testing.T, d *Docker) {
	res := sh(t, d, `cd /output && echo ok > ok.txt && echo x > 'a\b' && echo x > "$(printf 'new\nline')" &&
mkdir 'd\x' && echo x > 'd\x/f' && echo x > "$(printf 'tab\tname')" && echo x > "$(printf 'bad\377')"`)
	wantStatus(t, res, job.StatusCompleted)
	if len(res.Files) != 1 || string(res.Files["ok.txt"]) != "ok\n" {
		t.Errorf("files %q, want only ok.txt", res.Files)
	}
	if !res.Truncated || !strings.Contains(res.Stderr, "5 file(s) of /output left out") {
		t.Errorf("truncated %v, stderr %q: the result does not say names were left out", res.Truncated, res.Stderr)
	}
}

// failingEngine is the real engine with the job container's create or
// start failing as an engine fault does.
type failingEngine struct {
	Engine
	create, start error
	jobIDs        map[string]bool // containers created for jobs
}

func (e *failingEngine) ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, nc *network.NetworkingConfig, p *ocispec.Platform, name string) (container.CreateResponse, error) {
	if cfg.Labels[LabelRole] == "job" && e.create != nil {
		return container.CreateResponse{}, e.create
	}
	resp, err := e.Engine.ContainerCreate(ctx, cfg, host, nc, p, name)
	if err == nil && cfg.Labels[LabelRole] == "job" {
		e.jobIDs[resp.ID] = true
	}
	return resp, err
}

func (e *failingEngine) ContainerStart(ctx context.Context, id string, o container.StartOptions) error {
	if e.jobIDs[id] && e.start != nil {
		return e.start
	}
	return e.Engine.ContainerStart(ctx, id, o)
}

// An engine fault (a lost layer at create, a start the engine cannot do)
// is an error — try elsewhere — not a failed result, and leaves nothing.
// The result shapes are those of every runtime.
func TestEngineFaultIsAnError(t *testing.T) {
	lost := errdefs.System(errors.New("RWLayer of container 0123 is unexpectedly nil"))
	for name, fe := range map[string]*failingEngine{
		"create": {create: lost},
		"start":  {start: errdefs.System(errors.New("OCI runtime create failed: cgroup busy"))},
	} {
		t.Run(name, func(t *testing.T) {
			fe.Engine, fe.jobIDs = testEngine, map[string]bool{}
			cfg := DefaultConfig()
			cfg.WorkerID = testWorkerPrefix + "fault-" + randomHex(3)
			d, err := New(cfg, fe)
			if err != nil {
				t.Fatal(err)
			}
			res, err := d.Run(context.Background(), testTask(newJobID(), testImage, "true"))
			if err == nil {
				t.Fatalf("Run returned a final result %+v for an engine fault, want an error", res)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			d.Close(ctx)
			if n := leftovers(t, cfg.WorkerID); n > 0 {
				t.Errorf("%d containers or volumes left", n)
			}
		})
	}
	d := newTestRuntime(t, func(c *Config) { c.AllowImages = []string{"zerverless-test/*"} })
	if res, want := run(t, d, testTask(newJobID(), "not-allowed/x:1", "true")), runtime.Failed(""); res.Status != want.Status || res.ExitCode != want.ExitCode || res.Error == "" {
		t.Errorf("a refusal: %+v, want runtime.Failed", res)
	}
	tk := testTask(newJobID(), testImage, "sleep", "60")
	tk.Timeout = 300 * time.Millisecond
	if res := run(t, d, tk); res.Status != job.StatusTimeout || res.Error != runtime.Stopped(job.StatusTimeout).Error || res.ExitCode != -1 {
		t.Errorf("a timeout: %+v, want runtime.Stopped", res)
	}
}

// The holder that keeps a run's volumes mounted is as confined as a job:
// user 65534, read-only root, no capability, no network, small limits;
// its volumes are tmpfs mounts of the worker's limits.
func TestHolderProfile(t *testing.T) {
	d := newTestRuntime(t, func(c *Config) { c.VolumeMB = 8; c.VolumeInodes = 100 })
	jobID := newJobID()
	tk := testTask(jobID, testImage, "sleep", "60")
	tk.Spec.Docker.Volumes = map[string]string{"s": "/scratch"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx, tk) }()
	var info container.InspectResponse
	eventually(t, 20*time.Second, func() error {
		cs, err := testEngine.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(
			filters.Arg("label", LabelJobID+"="+jobID), filters.Arg("label", LabelRole+"=holder"))})
		if err != nil || len(cs) != 1 {
			return fmt.Errorf("holder: %v %v", cs, err)
		}
		info, err = testEngine.ContainerInspect(context.Background(), cs[0].ID)
		return err
	})
	cancel()
	<-done
	h, c := info.HostConfig, info.Config
	if c.User != "65534:65534" || !h.ReadonlyRootfs || len(h.CapDrop) != 1 || h.CapDrop[0] != "ALL" ||
		h.NetworkMode != "none" || h.Memory != holderMemory || h.PidsLimit == nil || *h.PidsLimit != holderPids || h.Privileged {
		t.Errorf("holder profile: user %q ro %v capdrop %v network %s memory %d pids %v", c.User, h.ReadonlyRootfs, h.CapDrop, h.NetworkMode, h.Memory, h.PidsLimit)
	}
	if len(h.Mounts) != 3 {
		t.Fatalf("holder mounts %d, want /output, /input and one scratch volume", len(h.Mounts))
	}
	for _, m := range h.Mounts {
		o := m.VolumeOptions.DriverConfig.Options
		if m.VolumeOptions.DriverConfig.Name != "local" || o["type"] != "tmpfs" || !strings.Contains(o["o"], "size=8388608,nr_inodes=100,") {
			t.Errorf("volume %s at %s: driver %+v", m.Source, m.Target, m.VolumeOptions.DriverConfig)
		}
	}
}

// Reap: an expired warm holder stays while a job before its deadline uses
// its volume; when the job expires, the job, the holder (whatever its own
// deadline) and the volume go. Objects without a deadline are never reaped.
func TestReapHoldersGoWithTheirJob(t *testing.T) {
	ctx := context.Background()
	d := newTestRuntime(t, nil)
	owner := &Docker{cfg: Config{WorkerID: testWorkerPrefix + "reap-" + randomHex(3)}, instance: "gone"}
	vol := "zerverless-" + randomHex(8)
	start := func(role string, deadline time.Time) string {
		labels := owner.labelsUntil(role, "x", deadline)
		resp, err := testEngine.ContainerCreate(ctx, &container.Config{Image: testImage, Cmd: []string{"sleep", "600"}, Labels: labels},
			&container.HostConfig{NetworkMode: "none", Binds: []string{vol + ":/v"}}, nil, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := testEngine.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			testEngine.ContainerRemove(context.Background(), resp.ID, container.RemoveOptions{Force: true})
		})
		return resp.ID
	}
	if _, err := testEngine.VolumeCreate(ctx, volume.CreateOptions{Name: vol, Labels: owner.labelsUntil("output", "", time.Now().Add(-time.Hour))}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testEngine.VolumeRemove(context.Background(), vol, true) })
	// The jobs first: the reapers of other test processes on this engine
	// would take a holder past its deadline with no job yet.
	jobID := start("job", time.Now().Add(time.Hour))
	noDeadline := start("job", time.Time{})
	start("holder", time.Now().Add(-time.Hour))
	if _, err := d.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	if n := leftovers(t, owner.cfg.WorkerID); n != 4 {
		t.Fatalf("%d objects left after a reap with a live job, want all 4", n)
	}
	testEngine.ContainerRemove(ctx, jobID, container.RemoveOptions{Force: true})
	testEngine.ContainerRemove(ctx, noDeadline, container.RemoveOptions{Force: true})
	start("job", time.Now().Add(-time.Hour))
	start("job", time.Time{})
	if _, err := d.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	// Left: the container without a deadline, and the volume it uses.
	if n := leftovers(t, owner.cfg.WorkerID); n != 2 {
		t.Errorf("%d objects left after the job expired, want 2", n)
	}
}

// A warm holder that stopped (an engine restart stops them all) is not
// used: its volumes would lose the input and the output.
func TestStoppedWarmHolderIsNotUsed(t *testing.T) {
	d := newTestRuntime(t, func(c *Config) { c.WarmHolders = 1 })
	wantStatus(t, sh(t, d, "true"), job.StatusCompleted) // fills the pool
	ctx := context.Background()
	var warm string
	eventually(t, 30*time.Second, func() error {
		cs, err := testEngine.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(
			filters.Arg("label", LabelWorkerID+"="+d.cfg.WorkerID), filters.Arg("label", LabelRole+"=holder"))})
		for _, c := range cs {
			if c.Labels[LabelJobID] == "" {
				warm = c.ID
				return nil
			}
		}
		return fmt.Errorf("no warm holder yet (%v)", err)
	})
	if err := testEngine.ContainerKill(ctx, warm, "KILL"); err != nil {
		t.Fatal(err)
	}
	tk := testTask(newJobID(), testImage, "sh", "-c", "cat /input/input.json > /output/result.json")
	tk.Spec.Input = []byte(`{"n":1}`)
	res := run(t, d, tk)
	wantStatus(t, res, job.StatusCompleted)
	if string(res.Result) != `{"n":1}` {
		t.Errorf("result %q, want the input back", res.Result)
	}
}
