package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// BenchmarkCreateUpdate runs the three durable writes of a trivial job's
// life (create, running, completed) from many goroutines at once, as the
// orchestrator does, and reports writes/s and the latency of one write.
// One op is one job, three writes.
//
//	go test -run '^$' -bench CreateUpdate ./internal/store/sqlite
func BenchmarkCreateUpdate(b *testing.B) {
	for _, bc := range []struct {
		name       string
		fullSync   bool
		goroutines int
	}{
		{"goroutines=1", false, 1},
		{"goroutines=8", false, 8},
		{"goroutines=64", false, 64},
		{"goroutines=64/fullsync", true, 64},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Path = filepath.Join(b.TempDir(), "bench.db")
			cfg.FullSync = bc.fullSync
			s, err := Open(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var seq atomic.Int64
			var mu sync.Mutex
			var lat []time.Duration
			body := func(next func() bool) {
				ctx := context.Background()
				local := make([]time.Duration, 0, 1024)
				timed := func(f func() error) {
					t0 := time.Now()
					if err := f(); err != nil {
						b.Error(err)
					}
					local = append(local, time.Since(t0))
				}
				for next() {
					n := seq.Add(1)
					j := &job.Job{
						ID: fmt.Sprintf("bench-%d", n), Namespace: "default", Type: job.TypeLua,
						Status: job.StatusPending, Attempt: 1, MaxAttempts: 3,
						Spec:      job.Spec{Code: "return 1", Input: json.RawMessage(`{"n":1}`), TimeoutSeconds: 30},
						CreatedAt: time.Now(),
					}
					timed(func() error { return s.CreateJob(ctx, j) })
					j.Status, j.WorkerID, j.LeaseID, j.StartedAt = job.StatusRunning, "w1", fmt.Sprintf("l-%d", n), time.Now()
					timed(func() error { return s.UpdateJob(ctx, j) })
					j.Status, j.FinishedAt = job.StatusCompleted, time.Now()
					j.Result = &job.Result{Status: job.StatusCompleted, Result: json.RawMessage("1"), DurationMS: 0, Attempt: 1, WorkerID: "w1"}
					timed(func() error { return s.UpdateJob(ctx, j) })
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			}
			var taken atomic.Int64
			next := func() bool { return taken.Add(1) <= int64(b.N) }
			b.ResetTimer()
			cpu0 := processCPU()
			start := time.Now()
			var wg sync.WaitGroup
			for range bc.goroutines {
				wg.Go(func() { body(next) })
			}
			wg.Wait()
			elapsed := time.Since(start)
			cpu := processCPU() - cpu0
			b.StopTimer()
			slices.Sort(lat)
			if len(lat) == 0 {
				return
			}
			pct := func(p float64) float64 {
				return float64(lat[int(p*float64(len(lat)-1))].Microseconds())
			}
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "writes/s")
			b.ReportMetric(pct(0.50), "p50-µs/write")
			b.ReportMetric(pct(0.99), "p99-µs/write")
			// The CPU one job's three writes cost the process: steadier
			// than throughput on a shared machine.
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// processCPU is the CPU time (user and system) this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
