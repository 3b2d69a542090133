package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// withCustomSection returns module with a custom section of n bytes
// appended, which makes it larger without changing what it does.
func withCustomSection(module []byte, n int) []byte {
	name := "zerverless-padding"
	payload := append([]byte{byte(len(name))}, name...)
	payload = append(payload, make([]byte, n)...)
	out := append([]byte(nil), module...)
	out = append(out, 0) // custom section id
	size := uint64(len(payload))
	for {
		b := byte(size & 0x7f)
		size >>= 7
		if size != 0 {
			out = append(out, b|0x80)
			continue
		}
		out = append(out, b)
		break
	}
	return append(out, payload...)
}

// TestLargePayloads: a 17 MiB Wasm module reaches its worker and 16 MiB of
// output comes back, over the real WebSocket.
func TestLargePayloads(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 1)
	cfg.Worker.OutputBytes = 17 << 20
	_, c := startServer(t, cfg)

	big := withCustomSection(wasmEcho, 17<<20)
	v := submitWait(t, c, job.Request{Type: job.TypeWasm, Wasm: big, Input: json.RawMessage(`"big"`)})
	if v.Status != job.StatusCompleted || !strings.HasPrefix(v.Output, `wasm got "big"`) {
		t.Fatalf("large module: %s %q %q", v.Status, v.Error, v.Output)
	}

	const n = 16 << 20
	v = submitWait(t, c, job.Request{Type: job.TypeLua, Code: fmt.Sprintf(`print(string.rep("z", %d - 1))`, n)})
	if v.Status != job.StatusCompleted || len(v.Output) != n || v.Truncated {
		t.Fatalf("large output: %s %q, %d bytes (truncated %v)", v.Status, v.Error, len(v.Output), v.Truncated)
	}
}

// TestBadInputEndToEnd: malformed requests get clear 4xx errors naming the
// field, nothing is stored, and the server stays healthy.
func TestBadInputEndToEnd(t *testing.T) {
	srv, c := startServer(t, testServerConfig(t, t.TempDir(), 1))
	huge := `{"job_type":"lua","code":"` + strings.Repeat("x", 65<<20) + `"}`
	tests := []struct {
		name   string
		body   string
		status int
		field  string
	}{
		{"malformed JSON", `{"job_type":"lua",`, 400, ""},
		{"not an object", `[1,2]`, 400, ""},
		{"wrong type", `{"job_type":"lua","code":42}`, 400, "code"},
		{"wrong type of known field", `{"job_type":"lua","code":"1","timeout_seconds":"soon"}`, 400, "timeout_seconds"},
		{"unknown field", `{"job_type":"lua","code":"1","colour":"blue"}`, 400, "colour"},
		{"unknown job type", `{"job_type":"cobol","code":"1"}`, 400, "job_type"},
		{"negative timeout", `{"job_type":"lua","code":"1","timeout_seconds":-1}`, 400, "timeout_seconds"},
		{"invalid base64", `{"job_type":"wasm","wasm":"***"}`, 400, "wasm"},
		{"not a wasm module", `{"job_type":"wasm","wasm":"` + base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\necho hi")) + `"}`, 400, "wasm"},
		{"missing code", `{"job_type":"lua"}`, 400, "code"},
		{"bad namespace", `{"job_type":"lua","code":"1","namespace":"../etc"}`, 400, "namespace"},
		{"too many attempts", `{"job_type":"lua","code":"1","max_attempts":1000}`, 400, "max_attempts"},
		{"privileged container", `{"job_type":"docker","docker_image":"alpine","privileged":true}`, 400, "privileged"},
		{"body over the limit", huge, 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := authPost(srv, srv.URL()+"/api/jobs", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct{ Error, Field string }
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != tt.status || e.Error == "" || e.Field != tt.field {
				t.Fatalf("got %d %+v, want %d with field %q", resp.StatusCode, e, tt.status, tt.field)
			}
		})
	}
	ctx := context.Background()
	jobs, _, err := c.Jobs(ctx, store.JobFilter{})
	if err != nil || len(jobs) != 0 {
		t.Fatalf("bad requests stored jobs: %d %v", len(jobs), err)
	}
	if err := c.Health(ctx); err != nil {
		t.Fatalf("server unhealthy after bad input: %v", err)
	}
	if v := submitWait(t, c, job.Request{Type: job.TypeLua, Code: "return 1"}); v.Status != job.StatusCompleted {
		t.Fatalf("a good job after bad ones: %s", v.Status)
	}
}

// TestOperatorEndpoints checks /health, /info, /stats, /api/workers,
// /metrics and the job list against a running platform.
func TestOperatorEndpoints(t *testing.T) {
	srv, c := startServer(t, testServerConfig(t, t.TempDir(), 2))
	ctx := context.Background()
	eventually(t, 5*time.Second, func() error {
		ws, err := c.Workers(ctx)
		if err != nil {
			return err
		}
		if len(ws) != 2 {
			return fmt.Errorf("%d workers", len(ws))
		}
		for _, w := range ws {
			if !w.Capabilities.Has(job.TypeLua) || !w.Capabilities.Has(job.TypeJS) || !w.Capabilities.Has(job.TypeWasm) {
				return fmt.Errorf("worker %s offers %v", w.ID, w.Capabilities.Runtimes)
			}
			if w.Capabilities.Concurrency != 4 || w.LastHeartbeat.IsZero() {
				return fmt.Errorf("worker %+v", w)
			}
		}
		return nil
	})
	var ids []string
	for i := range 7 {
		v := submitWait(t, c, job.Request{Type: job.TypeLua, Code: fmt.Sprintf("return %d", i), Namespace: []string{"alpha", "beta"}[i%2]})
		ids = append(ids, v.ID)
	}
	failed := submitWait(t, c, job.Request{Type: job.TypeLua, Code: `error("boom")`, Namespace: "alpha"})

	stats, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.WorkersConnected != 2 || stats.Jobs[job.StatusCompleted] != 7 || stats.Jobs[job.StatusFailed] != 1 || stats.SlotsTotal != 8 {
		t.Fatalf("stats %+v", stats)
	}
	info, err := c.Info(ctx)
	if err != nil || info.ProtocolVersion != 1 || info.UptimeSeconds <= 0 {
		t.Fatalf("info %+v %v", info, err)
	}

	// Paging: newest first, no duplicates, filters.
	var seen []string
	cursor := ""
	for {
		page, next, err := c.Jobs(ctx, store.JobFilter{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page {
			seen = append(seen, v.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	want := append(append([]string(nil), ids...), failed.ID)
	if len(seen) != len(want) {
		t.Fatalf("listed %d jobs, want %d", len(seen), len(want))
	}
	for i := range want {
		if seen[i] != want[len(want)-1-i] {
			t.Fatalf("list order %v, want newest first of %v", seen, want)
		}
	}
	alphaFailed, _, err := c.Jobs(ctx, store.JobFilter{Namespace: "alpha", Status: job.StatusFailed})
	if err != nil || len(alphaFailed) != 1 || alphaFailed[0].ID != failed.ID {
		t.Fatalf("filtered list: %v %v", alphaFailed, err)
	}

	resp, err := authGet(srv, srv.URL()+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`zerverless_jobs_finished_total{runtime="lua",status="completed"} 7`,
		`zerverless_jobs_finished_total{runtime="lua",status="failed"} 1`,
		`zerverless_workers_connected 2`,
		`zerverless_job_queue_wait_seconds_count{runtime="lua"} 8`,
		`zerverless_job_run_seconds_count{runtime="lua"} 8`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if resp, err := authGet(srv, srv.URL()+"/api/jobs/does-not-exist"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("unknown job: %v %v", resp.StatusCode, err)
	}
}

// TestCLIAgainstServer runs the client commands of the binary against a
// running platform.
func TestCLIAgainstServer(t *testing.T) {
	srv, _ := startServer(t, testServerConfig(t, t.TempDir(), 1))
	env := func(k string) string {
		switch k {
		case "ZERVERLESS_SERVER":
			return srv.URL()
		case "ZERVERLESS_DATA": // the CLI reads the admin token there
			return srv.cfg.DataDir
		}
		return ""
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"run", "--type", "lua", "--input", `{"n":2}`, "--code", `print("n is " .. INPUT.n) return INPUT.n * 10`}, &out, &errOut, env)
	if code != 0 || !strings.Contains(out.String(), "n is 2") || !strings.Contains(out.String(), "20") {
		t.Fatalf("run: exit %d stdout %q stderr %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code = run(context.Background(), []string{"run", "--server", srv.URL(), "--token", srv.AdminToken(), "--type", "js", "--code", `throw new Error("nope")`}, &out, &errOut, func(string) string { return "" })
	if code == 0 || !strings.Contains(errOut.String(), "nope") {
		t.Fatalf("failing run: exit %d stdout %q stderr %q", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"jobs"}, &out, &errOut, env); code != 0 || strings.Count(out.String(), "\n") < 3 {
		t.Fatalf("jobs: exit %d %q", code, out.String())
	}
}

// TestInvokeEphemeral: an invocation runs like a job but is never stored;
// one that no worker can take is refused after the queue wait.
func TestInvokeEphemeral(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 1)
	cfg.Runtimes.Only = []job.Type{job.TypeLua}
	srv, c := startServer(t, cfg)
	// The orchestrator acts for a principal only: here, an admin.
	ctx := job.WithPrincipal(context.Background(), job.Principal{Kind: job.TokenAdmin, Name: "test"})
	o := srv.Orchestrator()
	j, err := o.Invoke(ctx, job.Request{Type: job.TypeLua, Code: `return INPUT.n + 1`, Input: json.RawMessage(`{"n":41}`)}, time.Second)
	if err != nil || j.Status != job.StatusCompleted || !jsonEqual(j.Result.Result, "42") {
		t.Fatalf("invoke: %+v %v", j, err)
	}
	start := time.Now()
	_, err = o.Invoke(ctx, job.Request{Type: job.TypeJS, Code: `1`}, 200*time.Millisecond)
	if job.ErrorCode(err) != job.CodeUnavailable || !strings.Contains(err.Error(), "no connected worker runs js") {
		t.Fatalf("invoke without a worker: %v", err)
	}
	t.Logf("refused after %s", time.Since(start))
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := o.Invoke(cctx, job.Request{Type: job.TypeLua, Code: `while true do end`}, time.Second); err == nil {
		t.Fatal("an abandoned invocation returned no error")
	}
	jobs, _, err := c.Jobs(ctx, store.JobFilter{})
	if err != nil || len(jobs) != 0 {
		t.Fatalf("invocations were stored: %d %v", len(jobs), err)
	}
	eventually(t, 5*time.Second, func() error {
		s, err := c.Stats(ctx)
		if err != nil {
			return err
		}
		if s.SlotsBusy != 0 || s.Jobs[job.StatusPending] != 0 || s.Jobs[job.StatusRunning] != 0 {
			return fmt.Errorf("stats after invocations: %+v", s)
		}
		return nil
	})
}

// TestStartOnATakenPort: a server whose port is taken fails at once and
// leaves nothing in its data directory (no admin token nobody was shown).
func TestStartOnATakenPort(t *testing.T) {
	srv, _ := startServer(t, testServerConfig(t, t.TempDir(), 0))
	cfg := testServerConfig(t, t.TempDir()+"/data", 0)
	cfg.Addr = srv.ln.Addr().String()
	if _, err := StartServer(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("start on a taken port: %v", err)
	}
	if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
		t.Fatalf("the failed start left its data directory: %v", err)
	}
}
