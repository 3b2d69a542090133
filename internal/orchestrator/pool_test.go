package orchestrator

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// TestDispatchTakesWorkersInTurn: jobs go to the ready workers in turn, so
// that four jobs on four idle workers of two slots each run one per worker
// rather than two on each of two.
func TestDispatchTakesWorkersInTurn(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	var ws []*rawWorker
	for range 4 {
		w := h.dial(luaCaps(2))
		w.keepAlive()
		ws = append(ws, w)
	}
	eventually(t, 5*time.Second, func() error {
		if n := len(h.o.Workers()); n != 4 {
			return errorf("%d workers registered", n)
		}
		return nil
	})
	for i := range 4 {
		h.submit(job.Request{Type: job.TypeLua, Code: fmt.Sprintf("return %d", i)})
	}
	for _, w := range ws {
		w.next(5 * time.Second)
	}
	for _, info := range h.o.Workers() {
		if info.Running != 1 {
			t.Errorf("worker %s runs %d jobs, want 1", info.ID, info.Running)
		}
	}
}

// TestReplicaFindsTheOtherIdentityAmongMany: with thirty workers of one
// owner and one of another, a job of two replicas (which go to distinct
// identities) runs one on each owner's workers: the owner already used is
// skipped whole, however many workers it has.
func TestReplicaFindsTheOtherIdentityAmongMany(t *testing.T) {
	cfg := testConfig()
	cfg.Auth = joinTokens{}
	h := newHarness(t, t.TempDir(), cfg)
	var alice []*rawWorker
	for range 30 {
		w := h.dialAs(luaCaps(1), "alice")
		w.keepAlive()
		alice = append(alice, w)
	}
	bob := h.dialAs(luaCaps(1), "bob")
	bob.keepAlive()
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Replicas: 2, Quorum: 2})
	task := bob.next(5 * time.Second)
	if !strings.HasPrefix(task.JobID, j.ID) {
		t.Fatalf("bob's worker got %s, not a replica of %s", task.JobID, j.ID)
	}
	eventually(t, 5*time.Second, func() error {
		running := 0
		for _, info := range h.o.Workers() {
			running += info.Running
		}
		if running != 2 {
			return errorf("%d replicas running, want 2", running)
		}
		return nil
	})
}

// TestPendingReasonIsSummarised: a job that hundreds of workers refuse
// says how many refuse it for each reason and how many are full, in a
// few lines, not one line per worker; more reasons than a few are
// counted, not listed.
func TestPendingReasonIsSummarised(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	for i := range 200 {
		caps := luaCaps(1)
		// Eight distinct refusals: workers restricted to other
		// namespaces, each group to its own, and memory caps.
		switch i % 4 {
		case 0:
			caps.Namespaces = []string{"other"}
		case 1:
			caps.MaxMemoryMB = 16 + i%5
		default:
			caps.Namespaces = []string{fmt.Sprintf("team-%d", i%3)}
		}
		h.dial(caps).keepAlive()
	}
	busy := h.dial(luaCaps(1))
	busy.keepAlive()
	eventually(t, 10*time.Second, func() error {
		if n := len(h.o.Workers()); n != 201 {
			return errorf("%d workers registered", n)
		}
		return nil
	})
	// The one worker that accepts everything gets the first job...
	h.submit(job.Request{Type: job.TypeLua, Code: "return 1", MemoryMB: 64})
	busy.next(5 * time.Second)
	// ...and the second waits.
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 2", MemoryMB: 64})
	reason := h.job(j.ID).Reason
	t.Logf("reason: %s", reason)
	for _, want := range []string{"waiting for a free worker slot", "of 201 workers that run lua jobs", "refuse it: does not accept namespace", "other reasons", "1 have no free slot"} {
		if !strings.Contains(reason, want) {
			t.Errorf("reason %q does not say %q", reason, want)
		}
	}
	if len(reason) > 600 {
		t.Errorf("the reason is %d bytes: %q", len(reason), reason)
	}
}

// TestStatsFollowSessions: the slots and busy workers /stats shows are
// kept as leases come and go, without a walk over the workers.
func TestStatsFollowSessions(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	a, b := h.dial(luaCaps(3)), h.dial(luaCaps(2))
	a.keepAlive()
	b.keepAlive()
	stats := func(connected, busy, total, slotsBusy int) {
		t.Helper()
		eventually(t, 5*time.Second, func() error {
			s, err := h.o.Stats(tenantCtx())
			if err != nil {
				return err
			}
			if s.WorkersConnected != connected || s.WorkersBusy != busy || s.SlotsTotal != total || s.SlotsBusy != slotsBusy {
				return errorf("stats %+v, want %d connected, %d busy, %d slots, %d busy", s, connected, busy, total, slotsBusy)
			}
			return nil
		})
	}
	stats(2, 0, 5, 0)
	h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	h.submit(job.Request{Type: job.TypeLua, Code: "return 2"})
	stats(2, 2, 5, 2)
	b.conn.CloseNow()
	// b's job goes back to the queue, and to a.
	stats(1, 1, 3, 2)
	t1, t2 := a.next(5*time.Second), a.next(5*time.Second)
	a.send(resultMessage(t1, job.StatusCompleted))
	a.send(resultMessage(t2, job.StatusCompleted))
	stats(1, 0, 3, 0)
}

// TestWorkerPages: GET /api/workers's listing comes in pages by id, with a
// cursor to the next, and filters by runtime, trust and namespace.
func TestWorkerPages(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	for i := range 25 {
		token := harnessSecret
		if i%5 == 0 {
			token = ""
		}
		caps := luaCaps(1)
		if i%2 == 0 {
			caps.Namespaces = []string{"alice"}
		}
		h.dialAs(caps, token).keepAlive()
	}
	eventually(t, 5*time.Second, func() error {
		if n := len(h.o.Workers()); n != 25 {
			return errorf("%d workers registered", n)
		}
		return nil
	})
	var all []string
	f := job.WorkerFilter{Limit: 10}
	for page := 0; ; page++ {
		ws, next := h.o.WorkerPage(f)
		for _, w := range ws {
			all = append(all, w.ID)
		}
		if next == "" {
			if page != 2 || len(ws) != 5 {
				t.Fatalf("the last page is page %d with %d workers, want page 2 with 5", page, len(ws))
			}
			break
		}
		if len(ws) != 10 {
			t.Fatalf("page %d has %d workers", page, len(ws))
		}
		f.Cursor = next
	}
	for i := 1; i < len(all); i++ {
		if all[i-1] >= all[i] {
			t.Fatalf("the pages are not in order of id: %v", all)
		}
	}
	if len(all) != 25 {
		t.Fatalf("%d workers in all pages, want 25", len(all))
	}
	count := func(f job.WorkerFilter) int {
		ws, next := h.o.WorkerPage(f)
		if next != "" {
			t.Fatalf("a page of every match has a next cursor")
		}
		return len(ws)
	}
	if n := count(job.WorkerFilter{Trusted: ptr(false)}); n != 5 {
		t.Errorf("%d untrusted workers, want 5", n)
	}
	if n := count(job.WorkerFilter{Namespace: "bob"}); n != 12 {
		t.Errorf("%d workers accept bob's jobs, want 12", n)
	}
	if n := count(job.WorkerFilter{Runtime: job.TypeJS}); n != 0 {
		t.Errorf("%d workers run js, want 0", n)
	}
}
