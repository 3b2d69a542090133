package docker

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// BenchmarkVersusDockerRun runs the same trivial container (echo hello)
// through the runtime and with `docker run --rm` under the same profile
// flags, alternating the two so that both see the same machine, and
// reports the p50 and p95 of each and the ratio of the p50s. A run through
// the runtime returns once the result (output, exit code, /output files)
// is known; its container is removed in the background. `docker run --rm`
// returns after the engine removed the container.
//
//	go test -run '^$' -bench VersusDockerRun -benchtime 30x ./internal/runtime/docker
func BenchmarkVersusDockerRun(b *testing.B) {
	d := newTestRuntime(b, nil)
	ctx := context.Background()
	viaRuntime := func() error {
		res, err := d.Run(ctx, testTask(newJobID(), testImage, "echo", "hello"))
		if err == nil && (res.Status != job.StatusCompleted || res.Output != "hello\n") {
			err = fmt.Errorf("result %+v", res)
		}
		return err
	}
	cfg := d.cfg
	args := []string{"run", "--rm",
		"--user", "65534:65534", "--read-only",
		"--tmpfs", fmt.Sprintf("/tmp:rw,noexec,nosuid,nodev,size=%d", int64(cfg.TmpMB)<<20),
		"--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--network", "none",
		"--memory", fmt.Sprint(int64(cfg.MemoryMB) << 20), "--memory-swap", fmt.Sprint(int64(cfg.MemoryMB) << 20),
		"--cpus", fmt.Sprint(cfg.CPUs), "--pids-limit", fmt.Sprint(cfg.Pids),
		"--ulimit", fmt.Sprintf("nofile=%d:%d", cfg.NoFile, cfg.NoFile), "--init", "--log-driver", "none",
		"--label", LabelWorkerID + "=" + cfg.WorkerID,
		testImage, "echo", "hello"}
	viaCLI := func() error {
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err == nil && string(out) != "hello\n" {
			err = fmt.Errorf("docker run printed %q", out)
		}
		if err != nil {
			return fmt.Errorf("docker run: %v: %s", err, out)
		}
		return nil
	}
	// Warm both paths: the client's connection, the volume pool, the CLI.
	for _, f := range []func() error{viaRuntime, viaCLI} {
		if err := f(); err != nil {
			b.Fatal(err)
		}
	}
	var zv, cli []time.Duration
	timed := func(f func() error, into *[]time.Duration) {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		*into = append(*into, time.Since(start))
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			timed(viaRuntime, &zv)
			timed(viaCLI, &cli)
		} else {
			timed(viaCLI, &cli)
			timed(viaRuntime, &zv)
		}
	}
	b.StopTimer()
	zp50, zp95 := percentiles(zv)
	cp50, cp95 := percentiles(cli)
	b.ReportMetric(ms(zp50), "zerverless-p50-ms")
	b.ReportMetric(ms(zp95), "zerverless-p95-ms")
	b.ReportMetric(ms(cp50), "docker-run-p50-ms")
	b.ReportMetric(ms(cp95), "docker-run-p95-ms")
	b.ReportMetric(ms(zp50)/ms(cp50), "p50-ratio")
	b.Logf("n=%d  zerverless p50 %v p95 %v | docker run --rm p50 %v p95 %v | p50 ratio %.2f",
		len(zv), zp50.Round(time.Millisecond), zp95.Round(time.Millisecond),
		cp50.Round(time.Millisecond), cp95.Round(time.Millisecond), ms(zp50)/ms(cp50))
}

func percentiles(ds []time.Duration) (p50, p95 time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.95)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
