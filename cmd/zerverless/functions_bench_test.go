package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// BenchmarkFunctionLua invokes a trivial Lua function over HTTP — the
// invocation route, an ephemeral job over the WebSocket to one of two
// embedded workers, the cached compiled chunk, the answer back — from 1, 8
// and 32 concurrent clients, and reports requests/s and the p50/p99
// latency of one invocation.
//
//	go test ./cmd/zerverless -run '^$' -bench FunctionLua -benchtime 20000x
func BenchmarkFunctionLua(b *testing.B) {
	for _, clients := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchFunction(b, clients) })
	}
}

func benchFunction(b *testing.B, clients int) {
	cfg := testServerConfig(b, b.TempDir(), 2)
	cfg.Log = nil
	cfg.Worker.Concurrency = 16
	cfg.Runtimes.Only = []job.Type{job.TypeLua}
	srv, c := startServer(b, cfg)
	mustDeploy(b, c, "bench/hello", job.DeployRequest{Runtime: job.TypeLua,
		Code: `function handle(req) return {status = 200, headers = {["Content-Type"] = "text/plain"}, body = "hello " .. (req.query.name or "world")} end`})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
	url := srv.URL() + "/bench/hello?name=bench"
	get := func() error {
		resp, err := hc.Get(url)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || string(body) != "hello bench" {
			return fmt.Errorf("answer %d %q", resp.StatusCode, body)
		}
		return nil
	}
	// Warm up connections, workers and the compiled chunk.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 200; i++ {
		if err := get(); err != nil {
			if time.Now().After(deadline) {
				b.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := get(); err != nil {
					b.Error(err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}
