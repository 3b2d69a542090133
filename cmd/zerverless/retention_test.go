package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// bigResultCode prints more stdout than a worker keeps and returns a 7 MiB
// value: with bigResultLimit, a result as large as the limits allow.
const bigResultCode = `print(string.rep("o", 8 * 1024 * 1024 + 1000))
return string.rep("v", 7 * 1024 * 1024)`

// bigResultLimit is the workers' output limit (stdout, and a Lua job's
// value) that bigResultCode fills.
const bigResultLimit = 8 << 20

// bigServerConfig is a test server whose embedded workers keep
// bigResultCode's results whole.
func bigServerConfig(t *testing.T, workers int) ServerConfig {
	cfg := testServerConfig(t, t.TempDir(), workers)
	cfg.Worker.OutputBytes = bigResultLimit
	// Results of 15 MiB on a busy machine: the default heartbeat, not the
	// tests' short one, tells a slow worker from a lost one.
	cfg.Orchestrator.HeartbeatInterval = DefaultServerConfig().Orchestrator.HeartbeatInterval
	return cfg
}

// submitAll submits n jobs of code in namespace ns and waits for each to
// complete.
func submitAll(t *testing.T, c *client.Client, ns, code string, n int) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	for i := range ids {
		v, err := c.Submit(ctx, job.Request{Type: job.TypeLua, Code: code, Namespace: ns})
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		ids[i] = v.ID
	}
	for _, id := range ids {
		if v := waitDone(t, c, id, 2*time.Minute); v.Status != job.StatusCompleted {
			t.Fatalf("job %s ended %s: %s", id, v.Status, v.Reason)
		}
	}
	return ids
}

// procStatus returns a field of /proc/self/status in bytes (VmRSS, VmHWM).
func procStatus(t testing.TB, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// TestListingMemoryBounded: with 50 jobs holding 8 MiB of output and a
// 7 MiB returned value each, six concurrent GET /api/jobs?limit=500 each
// answer under 50 MiB, and the process (orchestrator, store and workers)
// grows by under 50 MiB of RSS while they run. Each item still says how
// large the job's output and value are, and the job view has them whole.
func TestListingMemoryBounded(t *testing.T) {
	cfg := bigServerConfig(t, 2)
	cfg.Worker.Concurrency = 2
	srv, c := startServer(t, cfg)
	ids := submitAll(t, c, "big", bigResultCode, 50)

	runtime.GC()
	debug.FreeOSMemory()
	before := procStatus(t, "VmRSS")
	// Reset the peak RSS so that VmHWM measures the listings alone
	// (Linux clear_refs 5); a sampler covers kernels that refuse it.
	hwmReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	var peak atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			if rss := procStatus(t, "VmRSS"); rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	const lists = 6
	sizes := make([]int64, lists)
	bodies := make([][]byte, lists)
	errs := make(chan error, lists)
	var wg sync.WaitGroup
	for i := range lists {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := authGet(srv, srv.URL()+"/api/jobs?limit=500")
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("list: status %d", resp.StatusCode)
				return
			}
			// Keep at most 50 MiB + 1 of the body: a larger one fails.
			b, err := io.ReadAll(io.LimitReader(resp.Body, 50<<20+1))
			sizes[i], bodies[i] = int64(len(b)), b
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	growth := peak.Load() - before
	if hwmReset {
		growth = max(growth, procStatus(t, "VmHWM")-before)
	}
	t.Logf("6 listings of 50 jobs of 15 MiB: responses %v bytes; RSS %d MiB before, grew %d KiB", sizes, before>>20, growth>>10)
	for i, n := range sizes {
		if n > 50<<20 {
			t.Errorf("listing %d answered %d bytes, over 50 MiB", i, n)
		}
	}
	if growth > 50<<20 {
		t.Errorf("RSS grew by %d MiB during the listings, over 50 MiB", growth>>20)
	}

	var list api.JobList
	if err := json.Unmarshal(bodies[0], &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Jobs) != len(ids) {
		t.Fatalf("listed %d jobs, want %d", len(list.Jobs), len(ids))
	}
	for _, s := range list.Jobs {
		if s.ResultSummary == nil || s.ResultBytes < 7<<20 || s.OutputBytes != bigResultLimit || !s.Truncated {
			t.Fatalf("job %s listed as %+v, want its sizes", s.ID, s.ResultSummary)
		}
	}
	if bytes.Contains(bodies[0], []byte("ooooooooo")) || bytes.Contains(bodies[0], []byte("vvvvvvvvv")) {
		t.Error("the listing carries job output or values")
	}
	v, err := c.Job(context.Background(), ids[0], 0)
	if err != nil || len(v.Output) != bigResultLimit || len(v.Result) < 7<<20 {
		t.Fatalf("the job view lost its result: %d bytes of output, %d of value, %v", len(v.Output), len(v.Result), err)
	}
}

// TestRetentionExpiresJobs: ended jobs are removed once the retention
// period passes, in small batches while other jobs keep running; an
// expired job answers 404 saying it expired (to its own namespace and the
// admin; another namespace sees a plain 404), and leaves lists and counts.
func TestRetentionExpiresJobs(t *testing.T) {
	cfg := bigServerConfig(t, 1)
	cfg.Orchestrator.Retention.Period = 10 * time.Second
	cfg.Orchestrator.Retention.Interval = 100 * time.Millisecond
	// One job of 15 MiB per batch: the sweep takes many writes.
	cfg.Orchestrator.Retention.BatchBytes = 1
	srv, c := startServer(t, cfg)
	ctx := context.Background()
	alice := newToken(t, c, api.TokenRequest{Namespace: "alice", Name: "alice"})
	bob := newToken(t, c, api.TokenRequest{Namespace: "bob", Name: "bob"})
	var ids []string
	for range 8 {
		v, err := c.WithToken(alice.Token).Submit(ctx, job.Request{Type: job.TypeLua, Code: bigResultCode})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	// All complete (the list shows them all at once, before the first
	// expires).
	eventually(t, time.Minute, func() error {
		list, _, err := c.Jobs(ctx, store.JobFilter{Namespace: "alice", Status: job.StatusCompleted})
		if err != nil {
			return err
		}
		if len(list) != len(ids) {
			return fmt.Errorf("%d of %d jobs completed", len(list), len(ids))
		}
		return nil
	})

	// While they expire, new jobs are scheduled and complete.
	var fresh []string
	for i := 0; ; i++ {
		v, err := c.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if w := waitDone(t, c, v.ID, 30*time.Second); w.Status != job.StatusCompleted {
			t.Fatalf("job submitted during expiry ended %s", w.Status)
		}
		fresh = append(fresh, v.ID)
		gone := 0
		for _, id := range ids {
			if _, err := c.Job(ctx, id, 0); job.ErrorCode(err) == job.CodeNotFound {
				gone++
			}
		}
		if gone == len(ids) {
			break
		}
		if i > 1000 {
			t.Fatal("the jobs never expired")
		}
	}
	t.Logf("%d jobs ran while %d expired", len(fresh), len(ids))

	for _, id := range ids {
		for _, tok := range []string{srv.AdminToken(), alice.Token} {
			a := send(t, "GET", srv.URL()+"/api/jobs/"+id, tok, "", nil)
			if a.status != http.StatusNotFound || !strings.Contains(string(a.body), "expired") {
				t.Fatalf("GET expired job %s: %d %.300s, want 404 saying it expired", id, a.status, a.body)
			}
		}
		if a := send(t, "GET", srv.URL()+"/api/jobs/"+id, bob.Token, "", nil); a.status != http.StatusNotFound || strings.Contains(string(a.body), "expired") {
			t.Fatalf("another namespace's expired job: %d %.300s, want a plain 404", a.status, a.body)
		}
		if a := send(t, "DELETE", srv.URL()+"/api/jobs/"+id, srv.AdminToken(), "", nil); a.status != http.StatusNotFound || !strings.Contains(string(a.body), "expired") {
			t.Fatalf("DELETE expired job %s: %d %.300s", id, a.status, a.body)
		}
	}
	listed, _, err := c.Jobs(ctx, store.JobFilter{Namespace: "alice", Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range listed {
		for _, id := range ids {
			if s.ID == id {
				t.Fatalf("expired job %s still listed", id)
			}
		}
	}
	eventually(t, 10*time.Second, func() error {
		st, err := c.Stats(ctx)
		if err != nil {
			return err
		}
		// Only fresh jobs younger than the retention can be left.
		if n := st.Jobs[job.StatusCompleted]; n > len(fresh) || n < 0 {
			return fmt.Errorf("%d completed jobs counted, at most %d remain", n, len(fresh))
		}
		return nil
	})
}

// TestJobStorageQuota: a namespace whose stored jobs and results exceed
// its job_storage_mb gets 429 with Retry-After on submit; another
// namespace is not affected, and raising the quota lets it submit again.
func TestJobStorageQuota(t *testing.T) {
	cfg := bigServerConfig(t, 1)
	srv, c := startServer(t, cfg)
	ctx := context.Background()
	if _, err := c.PutNamespacePolicy(ctx, job.NamespacePolicy{Namespace: "hoarder", Quotas: job.Quotas{JobStorageMB: 8}}); err != nil {
		t.Fatal(err)
	}
	submitAll(t, c, "hoarder", bigResultCode, 1)
	submit := func(ns string) answer {
		return send(t, "POST", srv.URL()+"/api/jobs", srv.AdminToken(), "application/json",
			[]byte(`{"job_type":"lua","code":"return 1","namespace":"`+ns+`"}`))
	}
	var refused answer
	eventually(t, 10*time.Second, func() error {
		if refused = submit("hoarder"); refused.status != http.StatusTooManyRequests {
			return fmt.Errorf("submit over the storage quota: %s", refused)
		}
		return nil
	})
	if refused.header.Get("Retry-After") == "" || !strings.Contains(string(refused.body), "quota of 8 MiB") {
		t.Errorf("over the storage quota: %s, Retry-After %q", refused, refused.header.Get("Retry-After"))
	}
	if a := submit("other"); a.status != http.StatusCreated {
		t.Errorf("another namespace: %s", a)
	}
	if _, err := c.PutNamespacePolicy(ctx, job.NamespacePolicy{Namespace: "hoarder", Quotas: job.Quotas{JobStorageMB: 64}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		if a := submit("hoarder"); a.status != http.StatusCreated {
			return fmt.Errorf("submit after raising the quota: %s", a)
		}
		return nil
	})
}
