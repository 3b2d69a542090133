package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/zerverless/zerverless/internal/job"
)

// poolModes runs body with a cold runtime (pools on, every job missing
// its pool, so they grow and are refilled while jobs run on containers
// made for them) and a warm one (every job runs in a prewarmed container),
// and says which each result should be.
func poolModes(t *testing.T, tweak func(*Config), body func(t *testing.T, d *Docker)) {
	t.Helper()
	for _, warm := range []bool{false, true} {
		name := "cold"
		if warm {
			name = "warm"
		}
		t.Run(name, func(t *testing.T) {
			d := newTestRuntime(t, func(c *Config) {
				agentConfig(t)(c)
				if tweak != nil {
					tweak(c)
				}
			})
			d.poolSync = warm
			d.skipPools = !warm
			body(t, d)
		})
	}
}

// wantWarm fails unless res says it ran warm exactly when d runs warm.
func wantWarm(t *testing.T, d *Docker, res job.Result) {
	t.Helper()
	if res.WarmStart != d.poolSync {
		t.Errorf("WarmStart = %v in a %s runtime", res.WarmStart, map[bool]string{true: "warm", false: "cold"}[d.poolSync])
	}
}

// poolContainers lists the prewarmed containers of d, waiting or running.
func poolContainers(t *testing.T, d *Docker) []container.Summary {
	t.Helper()
	cs, err := testEngine.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelPool), filters.Arg("label", LabelWorkerID+"="+d.cfg.WorkerID))})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// Consecutive jobs of one pool: the first writes /tmp, /output and a
// scratch volume, leaves a process behind and has a secret in its
// environment; the next, in a prewarmed container of the same pool, sees
// none of it, and the first one's container is gone.
func TestPoolIsolation(t *testing.T) {
	d := newTestRuntime(t, agentConfig(t))
	d.poolSync = true
	task := func(script string) job.Task {
		tk := testTask(newJobID(), testImage, "sh", "-c", script)
		tk.Spec.Docker.Volumes = map[string]string{"cache": "/cache"}
		tk.Spec.Input = json.RawMessage(`{"n":1}`)
		return tk
	}
	first := task(`echo secret > /tmp/left; echo secret > /output/left; echo secret > /cache/left
setsid sleep 1000 </dev/null >/dev/null 2>&1 &
export LEFT=secret
hostname`)
	first.Spec.Docker.Env = map[string]string{"SECRET_TOKEN": "hunter2"}
	res := run(t, d, first)
	wantStatus(t, res, job.StatusCompleted)
	if !res.WarmStart || string(res.Files["left"]) != "secret\n" {
		t.Fatalf("first job: %+v", res)
	}
	firstHost := strings.TrimSpace(res.Output)
	second := task(`hostname; echo ---; ls -A /tmp /output /cache; echo ---; ps -o args | grep -c '[s]leep 1000'; echo ---; env | grep -c -e SECRET -e hunter2 -e LEFT`)
	res = run(t, d, second)
	wantStatus(t, res, job.StatusFailed) // grep -c finds nothing: exit 1
	if !res.WarmStart {
		t.Fatalf("second job ran cold: %+v", res)
	}
	parts := strings.Split(res.Output, "---\n")
	if len(parts) != 4 {
		t.Fatalf("output %q", res.Output)
	}
	if strings.TrimSpace(parts[0]) == firstHost {
		t.Errorf("the second job ran in the first one's container %s", firstHost)
	}
	if got := strings.Join(strings.Fields(parts[1]), " "); got != "/cache: /output: /tmp:" {
		t.Errorf("the second job sees files: %q", parts[1])
	}
	if strings.TrimSpace(parts[2]) != "0" {
		t.Errorf("the second job sees the first one's process: %q", parts[2])
	}
	if strings.TrimSpace(parts[3]) != "0" {
		t.Errorf("the second job sees the first one's environment: %q", parts[3])
	}
	if len(res.Files) != 0 {
		t.Errorf("files of the first job in the second's result: %v", res.Files)
	}
	eventually(t, 30*time.Second, func() error {
		for _, c := range poolContainers(t, d) {
			if strings.Contains(strings.Join(c.Names, ","), firstHost) || strings.HasPrefix(c.ID, firstHost) {
				return fmt.Errorf("the first job's container %s remains", c.ID[:12])
			}
		}
		return nil
	})
}

// The environment of a warm job is what a cold one gets, and the image's
// ENTRYPOINT, WORKDIR, user and PATH lookup apply as they do cold.
func TestPoolImageSemantics(t *testing.T) {
	img := "zerverless-test/entry:" + randomHex(4)
	importWithChanges(t, img, []string{`ENTRYPOINT ["/bin/sh", "-c"]`, `CMD ["echo default-cmd"]`, "WORKDIR /bin", "ENV FROM_IMAGE=yes PATH=/bin"})
	var out [2]string
	for i, warm := range []bool{false, true} {
		d := newTestRuntime(t, func(c *Config) { agentConfig(t)(c); c.AllowImageUser = false })
		d.poolSync, d.skipPools = warm, !warm
		tk := testTask(newJobID(), img, `pwd; id -u; echo "$0 $FROM_IMAGE $INPUT_DATA $MINE"; env | grep -v -e HOSTNAME | sort`)
		tk.Spec.Docker.Env = map[string]string{"MINE": "mine"}
		tk.Spec.Input = json.RawMessage(`{"k":2}`)
		res := run(t, d, tk)
		wantStatus(t, res, job.StatusCompleted)
		if res.WarmStart != warm {
			t.Fatalf("warm %v: WarmStart %v", warm, res.WarmStart)
		}
		out[i] = res.Output
		def := run(t, d, testTask(newJobID(), img))
		wantStatus(t, def, job.StatusCompleted)
		if def.Output != "default-cmd\n" {
			t.Errorf("warm %v: the image's CMD printed %q", warm, def.Output)
		}
	}
	if out[0] != out[1] {
		t.Errorf("cold and warm differ:\ncold %q\nwarm %q", out[0], out[1])
	}
	if !strings.HasPrefix(out[1], "/bin\n65534\n") || !strings.Contains(out[1], `yes {"k":2} mine`) {
		t.Errorf("warm output %q", out[1])
	}
}

// Pools grow from cold starts, are refilled after each job, stay within
// the count and memory budgets, shrink and empty after their TTL, are
// dropped when their image's tag moves, and Prewarm fills them at start.
func TestPoolSizing(t *testing.T) {
	t.Run("grow, refill, shrink", func(t *testing.T) {
		d := newTestRuntime(t, func(c *Config) {
			agentConfig(t)(c)
			c.PoolTTL = 20 * time.Second
			c.UpkeepInterval = 500 * time.Millisecond
		})
		d.Start()
		res := sh(t, d, "true")
		if res.WarmStart {
			t.Fatal("the first job found a ready container")
		}
		eventually(t, time.Minute, func() error {
			if n := d.PoolStats().Ready; n != 1 {
				return fmt.Errorf("%d ready, want 1 after a cold start", n)
			}
			return nil
		})
		res = sh(t, d, "true")
		if !res.WarmStart {
			t.Fatal("the second job ran cold")
		}
		eventually(t, time.Minute, func() error {
			if n := d.PoolStats().Ready; n != 1 {
				return fmt.Errorf("%d ready, want 1: refilled", n)
			}
			return nil
		})
		st := d.PoolStats()
		if st.Hits != 1 || st.Misses != 1 || st.Made < 2 || st.ReadyTime <= 0 || len(st.Images) != 1 || st.Images[0] != testImage {
			t.Errorf("stats %+v", st)
		}
		// Unused, the pool empties after its TTL.
		eventually(t, time.Minute, func() error {
			if n := len(poolContainers(t, d)); n != 0 || d.PoolStats().Ready != 0 {
				return fmt.Errorf("%d prewarmed containers remain", n)
			}
			return nil
		})
	})
	t.Run("budgets", func(t *testing.T) {
		d := newTestRuntime(t, func(c *Config) {
			agentConfig(t)(c)
			c.PoolMax = 3
			c.PoolMemoryMB = 100 // two of 48 MiB
		})
		for range 4 {
			tk := testTask(newJobID(), testImage, "true")
			tk.Spec.Docker.Resources.MemoryMB = 48
			wantStatus(t, run(t, d, tk), job.StatusCompleted)
		}
		eventually(t, time.Minute, func() error {
			if n := d.PoolStats().Ready; n != 2 {
				return fmt.Errorf("%d ready, want 2 (the memory budget)", n)
			}
			return nil
		})
		for range 3 {
			wantStatus(t, sh(t, d, "true"), job.StatusCompleted)
		}
		time.Sleep(2 * time.Second) // refills that should not happen
		if n := len(poolContainers(t, d)); n > 3 {
			t.Errorf("%d prewarmed containers, over the count budget of 3", n)
		}
	})
	t.Run("image moves", func(t *testing.T) {
		ref := "zerverless-test/moving:" + randomHex(4)
		if err := importBusybox(context.Background(), testEngine, ref); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = testEngine.ImageRemove(context.Background(), ref, image.RemoveOptions{PruneChildren: true})
		})
		d := newTestRuntime(t, agentConfig(t))
		wantStatus(t, run(t, d, testTask(newJobID(), ref, "true")), job.StatusCompleted)
		eventually(t, time.Minute, func() error {
			if n := d.PoolStats().Ready; n != 1 {
				return fmt.Errorf("%d ready", n)
			}
			return nil
		})
		old := poolContainers(t, d)[0].ImageID
		importWithChanges(t, ref, []string{"LABEL moved=yes"})
		res := run(t, d, testTask(newJobID(), ref, "true"))
		wantStatus(t, res, job.StatusCompleted)
		if res.WarmStart {
			t.Error("a job of the moved tag ran in a container of the old image")
		}
		eventually(t, time.Minute, func() error {
			for _, c := range poolContainers(t, d) {
				if c.ImageID == old {
					return fmt.Errorf("a prewarmed container of the old image remains")
				}
			}
			return nil
		})
	})
	t.Run("prewarm", func(t *testing.T) {
		d := newTestRuntime(t, func(c *Config) {
			agentConfig(t)(c)
			c.Prewarm = map[string]int{testImage: 2}
		})
		d.Start()
		eventually(t, time.Minute, func() error {
			if n := d.PoolStats().Ready; n != 2 {
				return fmt.Errorf("%d ready, want 2", n)
			}
			return nil
		})
		res := run(t, d, testTask(newJobID(), testImage, "echo", "hi"))
		wantStatus(t, res, job.StatusCompleted)
		if !res.WarmStart || res.Output != "hi\n" {
			t.Errorf("result %+v", res)
		}
	})
}

func TestPrefixStripper(t *testing.T) {
	for _, c := range []struct {
		chunks []string
		out    string
		seen   bool
	}{
		{[]string{"ab", "cdef"}, "ef", true},
		{[]string{"abcd"}, "", true},
		{[]string{"a", "b", "c", "d", "x"}, "x", true},
		{[]string{"abx", "y"}, "abxy", false},
		{[]string{"zz"}, "zz", false},
	} {
		var b strings.Builder
		p := &prefixStripper{w: &b, prefix: "abcd"}
		for _, ch := range c.chunks {
			if n, err := p.Write([]byte(ch)); err != nil || n != len(ch) {
				t.Fatalf("Write(%q) = %d, %v", ch, n, err)
			}
		}
		if b.String() != c.out || p.seen != c.seen {
			t.Errorf("%q: out %q seen %v, want %q %v", c.chunks, b.String(), p.seen, c.out, c.seen)
		}
	}
}

// A warm job's end comes from its agent's report when it can, and from
// the engine otherwise, with the same result: an /output larger than a
// report carries, a job killed by a signal, a job that kills its agent,
// and a job that writes something like a report without its secret.
func TestPoolReportFallbacks(t *testing.T) {
	d := newTestRuntime(t, agentConfig(t))
	d.poolSync = true
	for _, c := range []struct {
		name, script string
		status       job.Status
		exit         int
		check        func(res job.Result) error
	}{
		{"large output", `head -c 1500000 /dev/zero > /output/big; echo small > /output/small`, job.StatusCompleted, 0, func(res job.Result) error {
			if len(res.Files["big"]) != 1500000 || string(res.Files["small"]) != "small\n" {
				return fmt.Errorf("files %d %q", len(res.Files["big"]), res.Files["small"])
			}
			return nil
		}},
		{"signal", `echo before; kill -9 $$`, job.StatusFailed, 137, func(res job.Result) error {
			if res.OOMKilled || res.Output != "before\n" {
				return fmt.Errorf("oom %v output %q", res.OOMKilled, res.Output)
			}
			return nil
		}},
		// The agent is the container's init: the job cannot kill it, as it
		// cannot kill a cold container's init.
		{"agent killed", `echo x > /output/f; kill -9 $PPID; kill -STOP $PPID; exit 0`, job.StatusCompleted, 0, func(res job.Result) error {
			if res.OOMKilled || string(res.Files["f"]) != "x\n" {
				return fmt.Errorf("oom %v files %q", res.OOMKilled, res.Files)
			}
			return nil
		}},
		{"forged report", `printf '\000zerverless-exec-report-0123456789abcdef0123456789abcdef\n{"exit":0,"output":"inline","tar_bytes":0}\n' >&2; printf '\000zerverless-exec-report-0123456789abcdef0123456789abcdef\n'; echo out; exit 4`, job.StatusFailed, 4, func(res job.Result) error {
			if !strings.Contains(res.Stderr, `{"exit":0`) || !strings.HasSuffix(res.Output, "out\n") {
				return fmt.Errorf("stdout %q stderr %q", res.Output, res.Stderr)
			}
			return nil
		}},
	} {
		// One after another: each finds the container made for it ready
		// (jobs run at once could take the one made for another, and run
		// cold).
		t.Run(c.name, func(t *testing.T) {
			res := run(t, d, testTask(newJobID(), testImage, "sh", "-c", c.script))
			wantStatus(t, res, c.status)
			if !res.WarmStart || res.ExitCode != c.exit {
				t.Fatalf("warm %v exit %d, want %d: %+v", res.WarmStart, res.ExitCode, c.exit, res)
			}
			if err := c.check(res); err != nil {
				t.Error(err)
			}
		})
	}
}
