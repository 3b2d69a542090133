package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/orchestrator"
	"github.com/zerverless/zerverless/internal/testutil"
)

// BenchmarkEndToEndLua drives the full path — an HTTP submit that waits
// for its job (POST /api/jobs?wait=), store, WebSocket assignment, a Lua
// run on one of two embedded workers, the result back in the submit's
// answer — for trivial Lua jobs from 4, 8, 16 and 32 concurrent clients,
// and reports jobs/s and the p50/p99 latency of submit-to-result.
// BenchmarkEndToEndLuaSubmitGet is the same with two requests per job, a
// submit and a blocking GET, as clients made before the submit could wait.
//
//	go test ./cmd/zerverless -run '^$' -bench EndToEndLua -benchtime 20000x
func BenchmarkEndToEndLua(b *testing.B) {
	for _, clients := range []int{4, 8, 16, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			benchEndToEnd(b, clients, func(ctx context.Context, c *client.Client, req job.Request) (client.View, error) {
				return c.Run(ctx, req, 10*time.Second)
			})
		})
	}
}

// BenchmarkEndToEndLuaSubmitGet is BenchmarkEndToEndLua with a submit and
// then a blocking GET of the job: two requests per job.
func BenchmarkEndToEndLuaSubmitGet(b *testing.B) {
	for _, clients := range []int{4, 8, 16, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchEndToEnd(b, clients, submitGet) })
	}
}

// submitGet submits req and waits for its job with a second request.
func submitGet(ctx context.Context, c *client.Client, req job.Request) (client.View, error) {
	v, err := c.Submit(ctx, req)
	if err != nil {
		return v, err
	}
	return c.Job(ctx, v.ID, 10*time.Second)
}

// benchEndToEnd drives trivial Lua jobs from clients concurrent loops,
// each job submitted and waited for by run.
func benchEndToEnd(b *testing.B, clients int, run func(context.Context, *client.Client, job.Request) (client.View, error)) {
	cfg := testServerConfig(b, b.TempDir(), 2)
	cfg.Log = nil
	cfg.Worker.Concurrency = 16
	// The platform's default heartbeat, not the tests' 200 ms: on a
	// loaded machine a session starved for three of those is dropped, and
	// its calls fail.
	cfg.Orchestrator.HeartbeatInterval = orchestrator.DefaultConfig().HeartbeatInterval
	// The namespace's rate quota (job.DefaultQuotas) is not what is
	// measured: past it calls would be refused with 429.
	cfg.Orchestrator.DefaultQuotas.SubmitsPerSecond = 1e9
	cfg.Runtimes.Only = []job.Type{job.TypeLua}
	_, c := startServer(b, cfg)
	ctx := context.Background()
	req := job.Request{Type: job.TypeLua, Code: `return INPUT.n + 1`, Input: []byte(`{"n":1}`)}
	// Warm up connections and the runtime.
	for range 50 {
		if _, err := run(ctx, c, req); err != nil {
			b.Fatal(err)
		}
	}

	drive(b, clients, "jobs/s", func() error {
		v, err := run(ctx, c, req)
		if err != nil || v.Status != job.StatusCompleted {
			return fmt.Errorf("job %s: %v %s", v.ID, err, v.Status)
		}
		return nil
	})
}

// drive runs one from clients concurrent loops until b.N calls are done,
// and reports calls per second (as unit) and the p50/p99 latency of one
// call.
func drive(b *testing.B, clients int, unit string, call func() error) {
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := testutil.TreeCPU()
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := call(); err != nil {
					b.Error(err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := testutil.TreeCPU() - cpu0
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), unit)
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	// The CPU one call costs, in this process and its runtime processes:
	// steadier than throughput on a shared machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(all)), "cpu-µs/op")
}

// BenchmarkEndToEndLuaSerial is the latency of one job at a time through
// the full path, with nothing else in flight.
func BenchmarkEndToEndLuaSerial(b *testing.B) {
	cfg := testServerConfig(b, b.TempDir(), 2)
	cfg.Log = nil
	cfg.Runtimes.Only = []job.Type{job.TypeLua}
	_, c := startServer(b, cfg)
	ctx := context.Background()
	req := job.Request{Type: job.TypeLua, Code: `return 1`}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		v, err := c.Submit(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if v, err = c.Job(ctx, v.ID, 10*time.Second); err != nil || v.Status != job.StatusCompleted {
			b.Fatalf("%v %s", err, v.Status)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
