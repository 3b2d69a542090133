package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime/docker"
)

// BenchmarkDockerEndToEnd runs the same trivial container through the
// whole platform — HTTP submit, the orchestrator, a WebSocket to an
// embedded worker, the container under the strict profile, the result
// back, a blocking GET — and with `docker run --rm` under the same profile
// flags, alternating, in one process; it prints p50/p95 of each and the
// ratio of the p50s (below 1: Zerverless is faster). "cold" runs each job
// on a container created for it (no pools); "warm" lets the worker keep
// prewarmed containers (its pool grows from the first cold start and is
// refilled between jobs), and reports the share of jobs that ran warm.
//
//	go test ./cmd/zerverless -run '^$' -bench DockerEndToEnd -benchtime 30x
//
// With ZV_BENCH_LOG=1 and -v it also logs, at debug level, the time of
// each step of every run ("docker job steps"), of the worker's part
// ("task timing"), and each job's submit and total time (BENCHJOB).
func BenchmarkDockerEndToEnd(b *testing.B) {
	for _, warm := range []bool{false, true} {
		// One platform for every round of the sub-benchmark, closed at the
		// end of the benchmark.
		var c *client.Client
		var img string
		parent := b
		b.Run(map[bool]string{false: "cold", true: "warm"}[warm], func(b *testing.B) {
			if c == nil {
				c = benchPlatform(parent, warm)
				// A name of this process's own: other test processes on
				// the engine remove the images they imported.
				img = testImage(parent, fmt.Sprintf("zerverless-test/busybox:e2e-%d", time.Now().UnixNano()))
			}
			benchDockerEndToEnd(b, c, img, warm)
		})
	}
}

// benchPlatform starts the platform of BenchmarkDockerEndToEnd.
func benchPlatform(b *testing.B, warm bool) *client.Client {
	cfg := dockerServerConfig(b, 1)
	if os.Getenv("ZV_BENCH_LOG") == "" {
		cfg.Log = nil
	}
	cfg.Runtimes.DockerConfig.PoolMax = 0
	if warm {
		bin, err := dockertest.AgentBinary()
		if err != nil {
			b.Fatal(err)
		}
		cfg.Runtimes.DockerConfig.AgentBinary = bin
		cfg.Runtimes.DockerConfig.PoolMax = 4
	}
	_, c := startServer(b, cfg)
	return c
}

func benchDockerEndToEnd(b *testing.B, c *client.Client, img string, warm bool) {
	warmRuns := 0
	dc := docker.DefaultConfig()
	args := []string{"run", "--rm",
		"--user", "65534:65534", "--read-only",
		"--tmpfs", fmt.Sprintf("/tmp:rw,noexec,nosuid,nodev,size=%d", int64(dc.TmpMB)<<20),
		"--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--network", "none",
		"--memory", fmt.Sprint(int64(dc.MemoryMB) << 20), "--memory-swap", fmt.Sprint(int64(dc.MemoryMB) << 20),
		"--cpus", fmt.Sprint(dc.CPUs), "--pids-limit", fmt.Sprint(dc.Pids),
		"--ulimit", fmt.Sprintf("nofile=%d:%d", dc.NoFile, dc.NoFile), "--init", "--log-driver", "none",
		img, "echo", "hello"}
	ctx := context.Background()
	wait := 2 * time.Minute // the first job may wait for the worker's start-up
	viaPlatform := func() time.Duration {
		t0 := time.Now()
		v, err := c.Submit(ctx, job.Request{Type: job.TypeDocker, DockerImage: img, DockerCommand: []string{"echo", "hello"}})
		if err != nil {
			b.Fatal(err)
		}
		submitted := time.Since(t0)
		if v, err = c.Job(ctx, v.ID, wait); err != nil || v.Status != job.StatusCompleted || v.Output != "hello\n" {
			b.Fatalf("job: %v %s %q %+v", err, v.Status, v.Reason, v.ResultView)
		}
		if v.WarmStart {
			warmRuns++
		}
		if os.Getenv("ZV_BENCH_LOG") != "" {
			fmt.Fprintf(os.Stderr, "BENCHJOB job_id=%s warm=%v submit_ms=%.1f total_ms=%.1f\n", v.ID, v.WarmStart, ms(submitted), ms(time.Since(t0)))
		}
		return time.Since(t0)
	}
	viaCLI := func() time.Duration {
		t0 := time.Now()
		if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil || string(out) != "hello\n" {
			b.Fatalf("docker run: %v %q", err, out)
		}
		return time.Since(t0)
	}
	viaPlatform()
	viaCLI()
	wait = 30 * time.Second
	var zv, dr []time.Duration
	warmRuns = 0
	b.ResetTimer()
	for range b.N {
		zv = append(zv, viaPlatform())
		dr = append(dr, viaCLI())
	}
	b.StopTimer()
	slices.Sort(zv)
	slices.Sort(dr)
	pct := func(d []time.Duration, p int) float64 { return float64(d[(len(d)-1)*p/100].Microseconds()) / 1000 }
	b.ReportMetric(pct(zv, 50), "zerverless-p50-ms")
	b.ReportMetric(pct(zv, 95), "zerverless-p95-ms")
	b.ReportMetric(pct(dr, 50), "docker-run-p50-ms")
	b.ReportMetric(pct(dr, 95), "docker-run-p95-ms")
	b.ReportMetric(pct(zv, 50)/pct(dr, 50), "p50-ratio")
	b.ReportMetric(float64(warmRuns)/float64(len(zv)), "warm-share")
	b.Logf("warm %v: %d of %d jobs ran warm", warm, warmRuns, len(zv))
	b.Logf("n=%d through Zerverless p50 %.0fms p95 %.0fms | docker run --rm p50 %.0fms p95 %.0fms | p50 ratio %.2f",
		len(zv), pct(zv, 50), pct(zv, 95), pct(dr, 50), pct(dr, 95), pct(zv, 50)/pct(dr, 50))
}
