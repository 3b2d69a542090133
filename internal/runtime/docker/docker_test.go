package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"github.com/zerverless/zerverless/internal/job"
)

// testTask returns a task running argv in img with a 30 s timeout.
func testTask(jobID, img string, argv ...string) job.Task {
	return job.Task{
		JobID:   jobID,
		Attempt: 1,
		Type:    job.TypeDocker,
		Spec:    job.Spec{Docker: &job.DockerSpec{Image: img, Command: argv}},
		Timeout: 30 * time.Second,
	}
}

func newJobID() string { return "job-" + randomHex(6) }

func run(t *testing.T, d *Docker, tk job.Task) job.Result {
	t.Helper()
	res, err := d.Run(context.Background(), tk)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func sh(t *testing.T, d *Docker, script string) job.Result {
	t.Helper()
	return run(t, d, testTask(newJobID(), testImage, "sh", "-c", script))
}

func wantStatus(t *testing.T, res job.Result, want job.Status) {
	t.Helper()
	if res.Status != want {
		t.Fatalf("Status = %s, want %s (error %q, exit %d, stdout %q, stderr %q)",
			res.Status, want, res.Error, res.ExitCode, res.Output, res.Stderr)
	}
}

// The example job of docker-support.md, with the locally built image in
// place of alpine:latest.
func TestExampleJob(t *testing.T) { poolModes(t, nil, testExampleJob) }

func testExampleJob(t *testing.T, d *Docker) {
	req, err := job.DecodeRequest([]byte(fmt.Sprintf(
		`{"job_type":"docker","docker_image":%q,"docker_command":["echo","Hello"],"input_data":{"key":"value"},"timeout_seconds":30}`,
		testImage)), job.DefaultRequestLimits())
	if err != nil {
		t.Fatal(err)
	}
	j := req.NewJob(newJobID(), time.Now(), job.DefaultRequestLimits(), nil) // not a build: no build key
	ctx, cancel := context.WithTimeout(context.Background(), j.Spec.Timeout())
	defer cancel()
	res, err := d.Run(ctx, job.Task{JobID: j.ID, Type: j.Type, Spec: j.Spec, Timeout: j.Spec.Timeout()})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, res, job.StatusCompleted)
	if res.Output != "Hello\n" || res.ExitCode != 0 || res.Truncated {
		t.Errorf("result = %+v", res)
	}
}

func TestInsideTheContainer(t *testing.T) { poolModes(t, nil, testInsideTheContainer) }

func testInsideTheContainer(t *testing.T, d *Docker) {
	t.Run("user is 65534", func(t *testing.T) {
		res := sh(t, d, "id -u; id -g")
		wantStatus(t, res, job.StatusCompleted)
		if res.Output != "65534\n65534\n" {
			t.Errorf("id = %q", res.Output)
		}
	})
	t.Run("root filesystem is read-only", func(t *testing.T) {
		res := sh(t, d, "echo x > /x")
		wantStatus(t, res, job.StatusFailed)
		if !strings.Contains(res.Stderr, "Read-only file system") {
			t.Errorf("stderr = %q", res.Stderr)
		}
	})
	t.Run("tmp is writable, limited, noexec", func(t *testing.T) {
		res := sh(t, d, `echo ok > /tmp/a && cat /tmp/a
grep ' /tmp ' /proc/mounts
dd if=/dev/zero of=/tmp/big bs=1M count=100 2>&1 && echo WROTE-ALL
ls -l /tmp/big | awk '{print $5}'`)
		wantStatus(t, res, job.StatusCompleted)
		lines := strings.Split(strings.TrimSpace(res.Output), "\n")
		if lines[0] != "ok" {
			t.Fatalf("output %q", res.Output)
		}
		for _, opt := range []string{"tmpfs", "rw", "nosuid", "nodev", "noexec", "size=65536k"} {
			if !strings.Contains(lines[1], opt) {
				t.Errorf("/tmp mount %q lacks %s", lines[1], opt)
			}
		}
		if strings.Contains(res.Output, "WROTE-ALL") || !strings.Contains(res.Output, "No space left") {
			t.Errorf("100 MiB fit in /tmp: %q", res.Output)
		}
		var size int
		fmt.Sscan(lines[len(lines)-1], &size)
		if size > 64<<20 || size < 63<<20 {
			t.Errorf("/tmp/big is %d bytes, want about the tmpfs size %d", size, 64<<20)
		}
	})
	t.Run("only lo and no route out", func(t *testing.T) {
		res := sh(t, d, `ls /sys/class/net; echo ---; cat /proc/net/route | wc -l; echo ---; nc -w 2 1.1.1.1 80 </dev/null 2>&1; echo rc=$?`)
		wantStatus(t, res, job.StatusCompleted)
		parts := strings.Split(res.Output, "---\n")
		if strings.TrimSpace(parts[0]) != "lo" {
			t.Errorf("interfaces = %q, want only lo", parts[0])
		}
		if strings.TrimSpace(parts[1]) != "1" { // the header line only
			t.Errorf("routing table has %s lines, want only the header", parts[1])
		}
		if !strings.Contains(parts[2], "Network is unreachable") || strings.Contains(parts[2], "rc=0") {
			t.Errorf("connecting out: %q", parts[2])
		}
	})
	t.Run("capabilities are dropped", func(t *testing.T) {
		res := sh(t, d, `grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status`)
		wantStatus(t, res, job.StatusCompleted)
		for _, want := range []string{"CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1"} {
			if !strings.Contains(res.Output, want) {
				t.Errorf("status %q lacks %q", res.Output, want)
			}
		}
	})
	t.Run("pids limit stops a fork bomb", func(t *testing.T) {
		tk := testTask(newJobID(), testImage, "sh", "-c",
			`(i=0; while [ $i -lt 100 ]; do sleep 5 & i=$((i+1)); done) 2>/dev/null
echo started
read m < /sys/fs/cgroup/pids/pids.max || read m < /sys/fs/cgroup/pids.max; echo $m
n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n`)
		tk.Spec.Docker.Resources.Pids = 20
		res := run(t, d, tk)
		wantStatus(t, res, job.StatusCompleted)
		f := strings.Fields(res.Output)
		if len(f) != 3 || f[1] != "20" {
			t.Fatalf("output %q, want pids.max 20", res.Output)
		}
		var n int
		fmt.Sscan(f[2], &n)
		if n > 20 {
			t.Errorf("%d processes running under a limit of 20", n)
		}
		// A real fork bomb ends with the job at its deadline (the guest
		// would run for 30 s), and the machine still works. The bound is
		// generous: it tells a deadline that acts from one that does not.
		tk = testTask(newJobID(), testImage, "sh", "-c", `f(){ f | f & }; f; sleep 30`)
		tk.Timeout = 2 * time.Second
		start := time.Now()
		res = run(t, d, tk)
		wantStatus(t, res, job.StatusTimeout)
		if el := time.Since(start); el > tk.Timeout+10*time.Second {
			t.Errorf("fork bomb run took %v: the deadline did not end it", el)
		}
		wantStatus(t, sh(t, d, "true"), job.StatusCompleted)
	})
	t.Run("memory hog is OOM killed", func(t *testing.T) {
		tk := testTask(newJobID(), testImage, "sh", "-c", `x=aaaaaaaaaaaaaaaa; while :; do x="$x$x"; done`)
		tk.Spec.Docker.Resources.MemoryMB = 32
		res := run(t, d, tk)
		wantStatus(t, res, job.StatusFailed)
		if !res.OOMKilled {
			t.Errorf("OOMKilled = false: %+v", res)
		}
		if res.PeakMemoryBytes > 0 && res.PeakMemoryBytes > 33<<20 {
			t.Errorf("peak memory %d over the 32 MiB limit", res.PeakMemoryBytes)
		}
		t.Logf("peak %d bytes, cpu %d ms, %d ms", res.PeakMemoryBytes, res.CPUTimeMS, res.DurationMS)
	})
	t.Run("exit code", func(t *testing.T) {
		res := sh(t, d, "echo oops >&2; exit 3")
		wantStatus(t, res, job.StatusFailed)
		if res.ExitCode != 3 || res.Stderr != "oops\n" || res.Error == "" {
			t.Errorf("result %+v", res)
		}
	})
	t.Run("command not in image", func(t *testing.T) {
		res := run(t, d, testTask(newJobID(), testImage, "/no/such/program"))
		wantStatus(t, res, job.StatusFailed)
	})
}

// docker inspect of a running job's container shows the whole profile.
func TestInspectRunningProfile(t *testing.T) { poolModes(t, nil, testInspectRunningProfile) }

func testInspectRunningProfile(t *testing.T, d *Docker) {
	jobID := newJobID()
	tk := testTask(jobID, testImage, "sleep", "60")
	tk.Spec.Docker.Resources = job.Resources{MemoryMB: 100, CPUs: 0.5, Pids: 50}
	tk.Spec.Docker.Volumes = map[string]string{"cache": "/cache"}
	tk.Spec.Input = json.RawMessage(`{"a":1}`)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan job.Result, 1)
	go func() {
		res, err := d.Run(ctx, tk)
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- res
	}()
	var info container.InspectResponse
	eventually(t, 20*time.Second, func() error {
		cs := jobContainers(t, jobID)
		if len(cs) != 1 || cs[0].State != "running" {
			return fmt.Errorf("containers of %s: %d, not running yet", jobID, len(cs))
		}
		var err error
		info, err = testEngine.ContainerInspect(context.Background(), cs[0].ID)
		return err
	})
	h, c := info.HostConfig, info.Config
	checks := []struct {
		name string
		ok   bool
	}{
		{"User 65534:65534", c.User == "65534:65534"},
		{"ReadonlyRootfs", h.ReadonlyRootfs},
		{"tmpfs /tmp", strings.Contains(h.Tmpfs["/tmp"], "noexec") && strings.Contains(h.Tmpfs["/tmp"], "nosuid") && strings.Contains(h.Tmpfs["/tmp"], "nodev") && strings.Contains(h.Tmpfs["/tmp"], "size=")},
		{"CapDrop ALL", len(h.CapDrop) == 1 && h.CapDrop[0] == "ALL" && len(h.CapAdd) == 0},
		{"no-new-privileges", len(h.SecurityOpt) == 1 && strings.HasPrefix(h.SecurityOpt[0], "no-new-privileges")},
		{"default seccomp", !strings.Contains(strings.Join(h.SecurityOpt, ","), "seccomp")},
		{"NetworkMode none", h.NetworkMode == "none"},
		{"Memory 100 MiB", h.Memory == 100<<20},
		{"MemorySwap = Memory", h.MemorySwap == h.Memory},
		{"NanoCPUs 0.5", h.NanoCPUs == 5e8},
		{"PidsLimit 50", h.PidsLimit != nil && *h.PidsLimit == 50},
		{"nofile 1024, core 0", len(h.Ulimits) == 2 && h.Ulimits[0].Name == "nofile" && h.Ulimits[0].Hard == 1024 &&
			h.Ulimits[1].Name == "core" && h.Ulimits[1].Soft == 0 && h.Ulimits[1].Hard == 0},
		// A prewarmed container's init is the agent (report.go).
		{"Init", h.Init != nil && (*h.Init || d.poolSync && len(c.Entrypoint) > 0 && c.Entrypoint[0] == agentDir+"/agent")},
		{"not privileged", !h.Privileged},
		{"no devices", len(h.Devices) == 0 && len(h.DeviceRequests) == 0},
		{"no binds", len(h.Binds) == 0},
		// A prewarmed container was made before its job: it carries the
		// job's id, and deadline, in its name.
		{"labels", (c.Labels[LabelJobID] == jobID || d.poolSync && c.Labels[LabelPool] != "" && strings.Contains(info.Name, jobID+"-")) &&
			c.Labels[LabelWorkerID] == d.cfg.WorkerID && c.Labels[LabelManagedBy] == managedBy && c.Labels[LabelDeadline] != ""},
	}
	for _, ck := range checks {
		if !ck.ok {
			t.Errorf("profile: %s does not hold", ck.name)
		}
	}
	for _, m := range info.Mounts {
		if m.Type != "volume" {
			t.Errorf("mount %s is a %s, want only volumes", m.Destination, m.Type)
		}
		if m.Destination == agentDir && m.RW {
			t.Errorf("the agent's volume is writable")
		}
	}
	var targets []string
	for _, m := range h.Mounts {
		targets = append(targets, m.Target)
	}
	want := "/output,/cache,/input"
	if d.poolSync {
		want += "," + agentDir // the agent, from a volume, read-only
	}
	if got := strings.Join(targets, ","); got != want {
		t.Errorf("mounts %s", got)
	}
	cancel()
	res := <-done
	wantStatus(t, res, job.StatusCanceled)
	if n := len(jobContainers(t, jobID)); n != 0 {
		t.Errorf("%d containers left after cancel", n)
	}
}

func TestTimeoutKillsAndRemoves(t *testing.T) { poolModes(t, nil, testTimeoutKillsAndRemoves) }

func testTimeoutKillsAndRemoves(t *testing.T, d *Docker) {
	jobID := newJobID()
	tk := testTask(jobID, testImage, "sleep", "60")
	tk.Timeout = 1500 * time.Millisecond
	if d.poolSync {
		d.prefill(context.Background(), tk, 1) // before the clock starts
	}
	start := time.Now()
	res, err := d.Run(context.Background(), tk)
	el := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, res, job.StatusTimeout)
	// The timeout ended it, not its sleep of 60 s (no tighter bound: the
	// machine is shared).
	if el > 30*time.Second {
		t.Errorf("Run returned %v after start, with a timeout of %v", el, tk.Timeout)
	}
	// Removed at once, or in the background when the engine is slow to.
	eventually(t, 30*time.Second, func() error {
		if n := len(jobContainers(t, jobID)); n != 0 {
			return fmt.Errorf("%d containers of the timed-out job remain", n)
		}
		return nil
	})
}

func TestCancelRemovesContainer(t *testing.T) { poolModes(t, nil, testCancelRemovesContainer) }

func testCancelRemovesContainer(t *testing.T, d *Docker) {
	jobID := newJobID()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		eventually(t, 20*time.Second, func() error {
			if cs := jobContainers(t, jobID); len(cs) == 1 && cs[0].State == "running" {
				return nil
			}
			return errNotYet
		})
		cancel()
	}()
	res, err := d.Run(ctx, testTask(jobID, testImage, "sleep", "60"))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, res, job.StatusCanceled)
	if n := len(jobContainers(t, jobID)); n != 0 {
		t.Errorf("%d containers of the canceled job remain", n)
	}
}

// A predecessor's labeled containers and volumes are removed by Sweep;
// another worker's are not.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	mine := testWorkerPrefix + "sweep-" + randomHex(3)
	other := testWorkerPrefix + "other-" + randomHex(3)
	var otherIDs []string
	for _, w := range []string{mine, other, mine} {
		dd := &Docker{cfg: Config{WorkerID: w}}
		resp, err := testEngine.ContainerCreate(ctx, &container.Config{Image: testImage, Cmd: []string{"sleep", "600"}, Labels: dd.labels("job", "x")},
			&container.HostConfig{NetworkMode: "none"}, nil, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := testEngine.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		v, err := testEngine.VolumeCreate(ctx, volume.CreateOptions{Name: "zerverless-" + randomHex(8), Labels: dd.labels("output", "x")})
		if err != nil {
			t.Fatal(err)
		}
		if w == other {
			otherIDs = append(otherIDs, resp.ID, v.Name)
		}
	}
	d := newTestRuntime(t, func(c *Config) { c.WorkerID = mine })
	n, err := d.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("Sweep removed %d objects, want 4", n)
	}
	if left := leftovers(t, mine); left != 0 {
		t.Errorf("%d objects of %s left", left, mine)
	}
	if left := leftovers(t, other); left != 2 {
		t.Errorf("another worker's objects: %d left, want 2", left)
	}
	_ = testEngine.ContainerRemove(ctx, otherIDs[0], container.RemoveOptions{Force: true})
	_ = testEngine.VolumeRemove(ctx, otherIDs[1], true)
}

// A worker process killed mid-job leaves a labeled container; the next
// worker with the same id sweeps it at start.
func TestCrashedWorkerIsSwept(t *testing.T) {
	workerID := testWorkerPrefix + "crash-" + randomHex(3)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+workerID, "ZERVERLESS_DOCKER_TEST_IMAGE="+testImage)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	eventually(t, 30*time.Second, func() error {
		cs, err := testEngine.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(
			filters.Arg("label", LabelWorkerID+"="+workerID), filters.Arg("label", LabelRole+"=job"))})
		if err != nil || len(cs) == 0 {
			return fmt.Errorf("no running job container of the child worker yet (%v)", err)
		}
		return nil
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	if leftovers(t, workerID) == 0 {
		t.Fatal("the killed worker left nothing to sweep; the test proves nothing")
	}
	d := newTestRuntime(t, func(c *Config) { c.WorkerID = workerID })
	if _, err := d.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := leftovers(t, workerID); n != 0 {
		t.Errorf("%d labeled objects remain after the sweep", n)
	}
}

func TestOutputCap(t *testing.T) { poolModes(t, nil, testOutputCap) }

func testOutputCap(t *testing.T, d *Docker) {
	tk := testTask(newJobID(), testImage, "sh", "-c", "head -c 10485760 /dev/zero | tr '\\0' x; head -c 5000 /dev/zero | tr '\\0' e >&2")
	tk.Limits.OutputBytes = 1 << 20
	var before, after goruntime.MemStats
	goruntime.GC()
	goruntime.ReadMemStats(&before)
	res := run(t, d, tk)
	goruntime.ReadMemStats(&after)
	wantStatus(t, res, job.StatusCompleted)
	if len(res.Output) != 1<<20 || strings.Trim(res.Output, "x") != "" {
		t.Errorf("len(Output) = %d, want exactly %d", len(res.Output), 1<<20)
	}
	if len(res.Stderr) != 5000 {
		t.Errorf("len(Stderr) = %d, want 5000", len(res.Stderr))
	}
	if !res.Truncated {
		t.Error("Truncated = false")
	}
	// 10 MiB went through; the runtime allocated a fixed amount for the
	// 1 MiB cap (the buffer's growth, the result's string), which does not
	// grow with the flood: 40 MiB allocates the same.
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 9<<20 {
		t.Errorf("the run allocated %d bytes for 10 MiB of output capped at 1 MiB", grown)
	}
	// An exact cap that is not a round number.
	tk.Limits.OutputBytes = 1000
	res = run(t, d, tk)
	if len(res.Output) != 1000 || len(res.Stderr) != 1000 || !res.Truncated {
		t.Errorf("cap 1000: stdout %d, stderr %d, truncated %v", len(res.Output), len(res.Stderr), res.Truncated)
	}
}

func TestInputAndOutputFiles(t *testing.T) {
	poolModes(t, func(c *Config) { c.MaxOutputFiles = 3 }, testInputAndOutputFiles)
}

func testInputAndOutputFiles(t *testing.T, d *Docker) {
	tk := testTask(newJobID(), testImage, "sh", "-c", `cat /input/input.json; echo; echo "$INPUT_DATA"
ls -ln /input/input.json | awk '{print $1, $3, $4}'
echo x > /input/input.json 2>/dev/null && echo WROTE-INPUT
touch /input/new 2>/dev/null && echo WROTE-INPUT-DIR
echo hello > /output/a.txt
mkdir -p /output/d && printf '\001\002' > /output/d/b.bin
echo '{"answer":42}' > /output/result.json
ln -s /etc/passwd /output/link`)
	tk.Spec.Input = json.RawMessage(`{"key":"value"}`)
	res := run(t, d, tk)
	wantStatus(t, res, job.StatusCompleted)
	want := "{\"key\":\"value\"}\n{\"key\":\"value\"}\n-r--r--r-- 0 0\n"
	if res.Output != want {
		t.Errorf("output %q, want %q", res.Output, want)
	}
	if string(res.Files["a.txt"]) != "hello\n" || string(res.Files["d/b.bin"]) != "\x01\x02" {
		t.Errorf("files %q", res.Files)
	}
	if _, ok := res.Files["link"]; ok {
		t.Error("a symbolic link came back as a file")
	}
	if string(res.Result) != `{"answer":42}`+"\n" || res.Truncated {
		t.Errorf("result %q truncated %v", res.Result, res.Truncated)
	}

	// Past the file cap, truncated is set.
	res = sh(t, d, `for i in 1 2 3 4 5; do echo $i > /output/f$i; done`)
	wantStatus(t, res, job.StatusCompleted)
	if len(res.Files) != 3 || !res.Truncated {
		t.Errorf("%d files, truncated %v; want 3 and true", len(res.Files), res.Truncated)
	}
}

func TestOutputBytesCap(t *testing.T) {
	poolModes(t, func(c *Config) { c.MaxOutputBytes = 1000 }, testOutputBytesCap)
}

func testOutputBytesCap(t *testing.T, d *Docker) {
	res := sh(t, d, `head -c 600 /dev/zero > /output/a; head -c 600 /dev/zero > /output/b`)
	wantStatus(t, res, job.StatusCompleted)
	if len(res.Files) != 1 || !res.Truncated {
		t.Errorf("%d files, truncated %v; want 1 and true", len(res.Files), res.Truncated)
	}
}

func TestScratchVolumes(t *testing.T) { poolModes(t, nil, testScratchVolumes) }

func testScratchVolumes(t *testing.T, d *Docker) {
	tk := testTask(newJobID(), testImage, "sh", "-c", `echo s > /scratch/f && cat /scratch/f && id -u`)
	tk.Spec.Docker.Volumes = map[string]string{"work": "/scratch"}
	res := run(t, d, tk)
	wantStatus(t, res, job.StatusCompleted)
	if res.Output != "s\n65534\n" {
		t.Errorf("output %q", res.Output)
	}
}

// Refusals come before any image pull or container.
func TestRefusedBeforeAnyContainer(t *testing.T) {
	d := newTestRuntime(t, func(c *Config) {
		c.AllowImages = []string{"zerverless-test/*"}
		c.MaxMemoryMB = 512
	})
	cases := map[string]func(*job.Task){
		"image outside the allow-list": func(tk *job.Task) { tk.Spec.Docker.Image = "evil.example/miner:latest" },
		"host bind mount":              func(tk *job.Task) { tk.Spec.Docker.Volumes = map[string]string{"/etc": "/host-etc"} },
		"relative bind":                func(tk *job.Task) { tk.Spec.Docker.Volumes = map[string]string{"../x": "/x"} },
		"reserved mount path":          func(tk *job.Task) { tk.Spec.Docker.Volumes = map[string]string{"v": "/input"} },
		"memory over the maximum":      func(tk *job.Task) { tk.Spec.Docker.Resources.MemoryMB = 1024 },
		"cpus over the maximum":        func(tk *job.Task) { tk.Spec.Docker.Resources.CPUs = 1000 },
		"input that is not JSON":       func(tk *job.Task) { tk.Spec.Input = json.RawMessage(`{"x":`) },
		"INPUT_DATA in env":            func(tk *job.Task) { tk.Spec.Docker.Env = map[string]string{"INPUT_DATA": "x"} },
		"no docker spec":               func(tk *job.Task) { tk.Spec.Docker = nil },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			jobID := newJobID()
			tk := testTask(jobID, testImage, "true")
			mutate(&tk)
			res := run(t, d, tk)
			wantStatus(t, res, job.StatusFailed)
			if res.Error == "" {
				t.Error("no error message")
			}
			t.Logf("error: %s", res.Error)
			if n := len(jobContainers(t, jobID)); n != 0 {
				t.Errorf("%d containers created for a refused job", n)
			}
		})
	}
	// The API refuses what a job spec cannot even express.
	for _, body := range []string{
		`{"job_type":"docker","docker_image":"x","privileged":true}`,
		`{"job_type":"docker","docker_image":"x","cap_add":["SYS_ADMIN"]}`,
		`{"job_type":"docker","docker_image":"x","binds":["/:/host"]}`,
		`{"job_type":"docker","docker_image":"x","docker_volumes":{"/var/run/docker.sock":"/s"}}`,
	} {
		if _, err := job.DecodeRequest([]byte(body), job.DefaultRequestLimits()); job.ErrorCode(err) != job.CodeInvalid {
			t.Errorf("%s: err %v, want invalid", body, err)
		}
	}
}

func TestCheckAndCapabilities(t *testing.T) {
	d := newTestRuntime(t, func(c *Config) { c.AllowImages = []string{"a/*"}; c.MaxMemoryMB = 999 })
	if err := d.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := d.Capabilities()
	if c.MaxMemoryMB != 999 || c.MaxPids != 1024 || c.MaxCPUs <= 0 || len(c.AllowImages) != 1 {
		t.Errorf("capabilities %+v", c)
	}
	if _, err := New(Config{}, testEngine); err == nil {
		t.Error("New accepted a zero Config")
	}
}

// Jobs run side by side without mixing their outputs.
func TestConcurrentRuns(t *testing.T) { poolModes(t, nil, testConcurrentRuns) }

func testConcurrentRuns(t *testing.T, d *Docker) {
	const n = 4
	errs := make(chan error, n)
	for i := range n {
		go func() {
			tk := testTask(newJobID(), testImage, "sh", "-c", fmt.Sprintf("echo %d; echo %d > /output/n", i, i))
			res, err := d.Run(context.Background(), tk)
			switch {
			case err != nil:
				errs <- err
			case res.Output != fmt.Sprintf("%d\n", i) || string(res.Files["n"]) != fmt.Sprintf("%d\n", i):
				errs <- fmt.Errorf("job %d: output %q files %q", i, res.Output, res.Files)
			default:
				errs <- nil
			}
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
