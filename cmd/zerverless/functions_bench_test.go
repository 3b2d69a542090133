package main

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/orchestrator"
)

// BenchmarkFunctionLua invokes a trivial Lua function over HTTP — the
// invocation route, an ephemeral job over the WebSocket to one of two
// embedded workers, the cached compiled chunk, the answer back — from 1, 8,
// 16 and 32 concurrent clients, and reports requests/s and the p50/p99
// latency of one invocation.
//
//	go test ./cmd/zerverless -run '^$' -bench FunctionLua -benchtime 20000x
func BenchmarkFunctionLua(b *testing.B) {
	for _, clients := range []int{1, 8, 16, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchFunction(b, clients) })
	}
}

func benchFunction(b *testing.B, clients int) {
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

	drive(b, clients, "req/s", get)
}
