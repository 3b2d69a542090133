package orchestrator

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// TestBigJobsDoNotHideSmallOnes: jobs that ask for more memory than any
// worker allows, however many, do not keep a worker from the smaller job
// queued behind them.
func TestBigJobsDoNotHideSmallOnes(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	defer h.close()
	var first string
	for i := range 3 * scanDepth {
		j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", MemoryMB: 4096})
		if i == 0 {
			first = j.ID
		}
	}
	small := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", MemoryMB: 64})
	caps := luaCaps(1)
	caps.MaxMemoryMB = 128
	w := h.dial(caps)
	w.keepAlive()
	if task := w.next(3 * time.Second); task.JobID != small.ID {
		t.Fatalf("the worker was given %s, want the small job %s", task.JobID, small.ID)
	}
	big := h.job(first)
	if big.Status != job.StatusPending || big.Reason == "" {
		t.Fatalf("a big job: %s %q", big.Status, big.Reason)
	}
	if want := "allows at most 128 MB"; !strings.Contains(big.Reason, want) {
		t.Fatalf("reason %q does not say %q", big.Reason, want)
	}
}

// TestRequeuedJobsKeepTheirOrder: jobs that lose their worker go back to
// the front of their lane in the order they were submitted.
func TestRequeuedJobsKeepTheirOrder(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	w1 := h.dial(luaCaps(8))
	w1.keepAlive()
	var ids []string
	for range 10 {
		ids = append(ids, h.submit(job.Request{Type: job.TypeLua, Code: "return 1"}).ID)
	}
	for range 8 {
		w1.next(5 * time.Second)
	}
	w1.conn.CloseNow()
	eventually(t, 5*time.Second, func() error {
		if v := h.job(ids[0]); v.Status != job.StatusPending {
			return errorf("first job is %s", v.Status)
		}
		return nil
	})
	w2 := h.dial(luaCaps(1))
	w2.keepAlive()
	for i, id := range ids {
		task := w2.next(5 * time.Second)
		if task.JobID != id {
			t.Fatalf("job %d given was %s, want %s", i, task.JobID, id)
		}
		w2.send(resultMessage(task, job.StatusCompleted))
	}
}

// TestNamespacesTakeTurns: bob queues a backlog, then alice and carol
// queue a few jobs each. A worker that runs one job at a time is given
// them in turns — bob, alice, carol, bob, alice — rather than all of
// bob's backlog first.
func TestNamespacesTakeTurns(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	defer h.close()
	for range 20 {
		h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "bob"})
	}
	for range 2 {
		h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "alice"})
	}
	h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "carol"})
	w := h.dial(luaCaps(1))
	w.keepAlive()
	var got []string
	for range 6 {
		task := w.next(5 * time.Second)
		got = append(got, task.Namespace)
		w.send(resultMessage(task, job.StatusCompleted))
	}
	if want := "bob alice carol bob alice bob"; strings.Join(got, " ") != want {
		t.Fatalf("a one-slot worker ran namespaces %v, want %s", got, want)
	}
}

// TestNamespaceLanesAreBounded: a namespace that asks for ever new
// requirements (here memory_mb no worker offers) opens at most
// Config.MaxNamespaceLanes lanes, which every dispatch of every namespace looks
// at; past them its submission is too_many and not stored, while its jobs
// of a class already queued, and another namespace's, are accepted.
func TestNamespaceLanesAreBounded(t *testing.T) {
	cfg := testConfig()
	if cfg.MaxNamespaceLanes != DefaultConfig().MaxNamespaceLanes {
		t.Fatalf("the tests' configuration changes MaxNamespaceLanes")
	}
	const maxNamespaceLanes = 16 // a setting, below its default of 256
	cfg.MaxNamespaceLanes = maxNamespaceLanes
	h := newHarness(t, t.TempDir(), cfg)
	defer h.close()
	lua := func(ns string, mb int) job.Request {
		return job.Request{Type: job.TypeLua, Code: "return 1", Namespace: ns, MemoryMB: mb}
	}
	first := h.submit(lua("bob", 1))
	for mb := 2; mb <= maxNamespaceLanes; mb++ {
		h.submit(lua("bob", mb))
	}
	_, err := h.o.Submit(tenantCtx(), lua("bob", maxNamespaceLanes+1))
	if job.ErrorCode(err) != job.CodeTooMany {
		t.Fatalf("a job opening lane %d of one namespace: err = %v, want too_many", maxNamespaceLanes+1, err)
	}
	if n, _ := h.store.CountJobs(context.Background()); n[job.StatusPending] != maxNamespaceLanes {
		t.Fatalf("%d jobs pending in the store, want %d (the refused one not stored)", n[job.StatusPending], maxNamespaceLanes)
	}
	h.submit(lua("bob", 7))
	h.submit(lua("alice", maxNamespaceLanes+1))
	// The last job of a lane, canceled, frees it.
	if _, err := h.o.Cancel(tenantCtx(), first.ID); err != nil {
		t.Fatal(err)
	}
	h.submit(lua("bob", maxNamespaceLanes+1))
}

// TestNamespaceLanesBoundedAtOnce: submissions that each open a new lane,
// made all at once, do not pass Config.MaxNamespaceLanes together (each
// holds its place while it is stored).
func TestNamespaceLanesBoundedAtOnce(t *testing.T) {
	const maxLanes, tries = 8, 64
	cfg := testConfig()
	cfg.MaxNamespaceLanes = maxLanes
	h := newHarness(t, t.TempDir(), cfg)
	defer h.close()
	var wg sync.WaitGroup
	var accepted, refused atomic.Int64
	for mb := 1; mb <= tries; mb++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.o.Submit(tenantCtx(), job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "bob", MemoryMB: mb})
			switch job.ErrorCode(err) {
			case "":
				accepted.Add(1)
			case job.CodeTooMany:
				refused.Add(1)
			default:
				t.Errorf("submission of %d MB: %v", mb, err)
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != maxLanes || refused.Load() != tries-maxLanes {
		t.Fatalf("%d accepted and %d refused of %d submissions opening a lane each, want %d and %d",
			accepted.Load(), refused.Load(), tries, maxLanes, tries-maxLanes)
	}
}
