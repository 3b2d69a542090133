package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
	"github.com/zerverless/zerverless/internal/store/sqlite"
)

// countingReads counts the jobs read from the store.
type countingReads struct {
	store.Store
	reads atomic.Int64
}

func (s *countingReads) GetJob(ctx context.Context, id string) (*job.Job, error) {
	s.reads.Add(1)
	return s.Store.GetJob(ctx, id)
}

// TestEndedJobReadFromMemory: a job read after it ended is answered from
// memory, exactly as stored, by Job, Wait and WaitVisible; one that the
// bounds pushed out is read from the store.
func TestEndedJobReadFromMemory(t *testing.T) {
	cr := &countingReads{}
	cfg := testConfig()
	cfg.EndedJobs.Jobs = 2
	h := newHarnessWith(t, t.TempDir(), cfg, func(st store.Store) store.Store {
		cr.Store = st
		return cr
	})
	w := h.dial(luaCaps(1))
	w.keepAlive()
	ctx := tenantCtx()
	run := func(code string) *job.Job {
		t.Helper()
		j := h.submit(job.Request{Type: job.TypeLua, Code: code, Input: json.RawMessage(`{"n":1}`)})
		task := w.next(5 * time.Second)
		m := resultMessage(task, job.StatusCompleted)
		m.Result.Output, m.Result.Result = "out "+code, json.RawMessage(`[1,2]`)
		w.send(m)
		got, err := h.o.Wait(ctx, j.ID, 5*time.Second)
		if err != nil || got.Status != job.StatusCompleted {
			t.Fatalf("job: %+v, %v", got, err)
		}
		return got
	}
	first := run("return 1")
	before := cr.reads.Load()
	reads := map[string]func() (*job.Job, error){
		"Job":  func() (*job.Job, error) { return h.o.Job(ctx, first.ID) },
		"Wait": func() (*job.Job, error) { return h.o.Wait(ctx, first.ID, time.Second) },
		"WaitVisible": func() (*job.Job, error) {
			return h.o.WaitVisible(ctx, first.ID, time.Second, func(string) bool { return true })
		},
	}
	stored, err := h.store.GetJob(context.Background(), first.ID)
	if err != nil {
		t.Fatal(err)
	}
	for name, read := range reads {
		got, err := read()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if a, b := mustJSON(t, got), mustJSON(t, stored); a != b {
			t.Errorf("%s from memory:\n%s\nstored:\n%s", name, a, b)
		}
		// The reader's copy is its own.
		got.Status, got.Reason = job.StatusFailed, "changed by a reader"
	}
	if n := cr.reads.Load() - before; n != 0 {
		t.Errorf("%d store reads for a job that just ended", n)
	}

	// Two more jobs push the first out of memory (Jobs = 2).
	run("return 2")
	run("return 3")
	if got := h.job(first.ID); got.Status != job.StatusCompleted || got.Result.Output != "out return 1" {
		t.Errorf("pushed out, read from the store: %+v", got)
	}
	if n := cr.reads.Load() - before; n != 1 {
		t.Errorf("%d store reads for a job no longer kept, want 1", n)
	}
}

// TestEndedJobExpires: a kept job is not answered from memory once its
// retention period is over, and the sweep that removes it from the store
// removes it from memory: it then answers that it expired.
func TestEndedJobExpires(t *testing.T) {
	cfg := testConfig()
	cfg.Retention.Period = time.Nanosecond
	cfg.Retention.Interval = time.Hour // swept by hand below
	cr := &countingReads{}
	h := newHarnessWith(t, t.TempDir(), cfg, func(st store.Store) store.Store {
		cr.Store = st
		return cr
	})
	ctx := tenantCtx()
	w := h.dial(luaCaps(1))
	w.keepAlive()
	kept := func() int {
		h.o.mu.Lock()
		defer h.o.mu.Unlock()
		return h.o.ended.len()
	}
	var ids []string
	for _, code := range []string{"return 1", "return 2"} {
		j := h.submit(job.Request{Type: job.TypeLua, Code: code})
		w.send(resultMessage(w.next(5*time.Second), job.StatusCompleted))
		// Woken once stored: Wait reads nothing then.
		if got, err := h.o.Wait(ctx, j.ID, 5*time.Second); err != nil || got.Status != job.StatusCompleted {
			t.Fatalf("job: %+v, %v", got, err)
		}
		ids = append(ids, j.ID)
	}
	// Past its retention a kept job is read from the store (which has
	// it, or says it expired if the sweep at start ran late), and leaves
	// memory.
	before := cr.reads.Load()
	if got, err := h.o.Job(ctx, ids[1]); err != nil && job.ErrorCode(err) != job.CodeNotFound || err == nil && got.Status != job.StatusCompleted {
		t.Fatalf("before the sweep: %+v, %v", got, err)
	}
	if n := cr.reads.Load() - before; n != 1 {
		t.Errorf("%d store reads for a job past its retention, want 1", n)
	}
	if n := kept(); n > 1 {
		t.Fatalf("%d jobs kept, want at most 1", n)
	}
	// The sweep removes the other, which nobody read.
	eventually(t, 5*time.Second, func() error {
		h.o.expireOnce()
		if n := kept(); n != 0 {
			return errorf("%d jobs kept after the sweep", n)
		}
		return nil
	})
	for _, id := range ids {
		for name, read := range map[string]func() (*job.Job, error){
			"Job":  func() (*job.Job, error) { return h.o.Job(ctx, id) },
			"Wait": func() (*job.Job, error) { return h.o.Wait(ctx, id, time.Second) },
		} {
			_, err := read()
			var exp *job.ExpiredError
			if !errors.As(err, &exp) || exp.Namespace != job.DefaultNamespace || job.ErrorCode(err) != job.CodeNotFound {
				t.Errorf("%s of expired job %s: %v", name, id, err)
			}
		}
	}
}

// TestEndedJobsCleared: the sweep removes the expired jobs it reports from
// memory, even those no reader asked for since.
func TestEndedJobsCleared(t *testing.T) {
	c := newEndedJobs(DefaultEndedJobsConfig())
	now := time.Now()
	for i := range 3 {
		c.put(&job.Job{ID: fmt.Sprint(i), Type: job.TypeLua, Status: job.StatusCompleted, FinishedAt: now})
	}
	c.remove("1")
	if _, ok := c.get("1", now.Add(-time.Hour)); ok || c.len() != 2 {
		t.Errorf("after remove: %d kept", c.len())
	}
	if _, ok := c.get("0", now.Add(-time.Hour)); !ok {
		t.Error("a job within its retention is not answered")
	}
	if _, ok := c.get("0", now.Add(time.Second)); ok || c.len() != 1 {
		t.Errorf("a job past its retention is answered, or kept (%d kept)", c.len())
	}
}

// TestEndedJobsBounds: the kept jobs stay within their count and bytes,
// the oldest going first; a job too large, a docker job and any job when
// a bound is zero are not kept.
func TestEndedJobsBounds(t *testing.T) {
	now := time.Now()
	lua := func(id string, output int) *job.Job {
		return &job.Job{ID: id, Type: job.TypeLua, Status: job.StatusCompleted, FinishedAt: now,
			Result: &job.Result{Status: job.StatusCompleted, Output: strings.Repeat("o", output)}}
	}
	has := func(c *endedJobs, id string) bool { _, ok := c.get(id, now.Add(-time.Hour)); return ok }

	c := newEndedJobs(EndedJobsConfig{Jobs: 3, Bytes: 1 << 30})
	for _, id := range []string{"a", "b", "c", "d"} {
		c.put(lua(id, 0))
	}
	if c.len() != 3 || has(c, "a") || !has(c, "d") {
		t.Errorf("count bound: %d kept, a kept: %v", c.len(), has(c, "a"))
	}

	c = newEndedJobs(EndedJobsConfig{Jobs: 1000, Bytes: 80 << 10})
	for i := range 20 {
		c.put(lua(fmt.Sprint(i), 8<<10))
	}
	if c.bytes > 80<<10 || c.len() == 0 || has(c, "0") || !has(c, "19") {
		t.Errorf("bytes bound: %d bytes in %d jobs", c.bytes, c.len())
	}
	c.put(lua("big", 10<<10+1)) // above an eighth of the bound
	if has(c, "big") {
		t.Error("a job larger than an eighth of the bytes is kept")
	}
	c.put(&job.Job{ID: "docker", Type: job.TypeDocker, Status: job.StatusCompleted, FinishedAt: now})
	if has(c, "docker") {
		t.Error("a docker job is kept")
	}

	for _, cfg := range []EndedJobsConfig{{Jobs: 0, Bytes: 1 << 20}, {Jobs: 10, Bytes: 0}} {
		c := newEndedJobs(cfg)
		c.put(lua("x", 0))
		if c.len() != 0 {
			t.Errorf("%+v: a job is kept", cfg)
		}
	}
	for _, cfg := range []EndedJobsConfig{{Jobs: -1}, {Bytes: -1}} {
		if errs := cfg.validate(); len(errs) != 1 {
			t.Errorf("%+v: %v", cfg, errs)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWaitVisibleDoesNotWaitUnseen: WaitVisible returns at once a job its
// reader does not see (nil sees: none), for the caller to hide; it would
// otherwise block for the hour asked, the job having no worker.
func TestWaitVisibleDoesNotWaitUnseen(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	ctx := tenantCtx()
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "alice"})
	for name, sees := range map[string]func(string) bool{
		"nil":   nil,
		"other": func(ns string) bool { return ns == "bob" },
	} {
		got, err := h.o.WaitVisible(ctx, j.ID, time.Hour, sees)
		if err != nil || got.ID != j.ID || got.Status != job.StatusPending || got.Namespace != "alice" {
			t.Errorf("%s: %+v, %v", name, got, err)
		}
	}
}

// BenchmarkEndedJobRead reads a job that ended, as a client that waited for
// it and reads it again does: from memory, and with no job kept
// (EndedJobs.Jobs = 0) from the store.
//
//	go test -run '^$' -bench EndedJobRead -benchmem ./internal/orchestrator
func BenchmarkEndedJobRead(b *testing.B) {
	for _, bc := range []struct {
		name string
		kept int
	}{{"memory", DefaultEndedJobsConfig().Jobs}, {"store", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			scfg := sqlite.DefaultConfig()
			scfg.Path = filepath.Join(b.TempDir(), "jobs.db")
			st, err := sqlite.Open(context.Background(), scfg)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			cfg := testConfig()
			cfg.EndedJobs.Jobs = bc.kept
			o, err := New(cfg, st, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := o.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer o.Close()
			ctx := tenantCtx()
			j, err := o.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1", Input: json.RawMessage(`{"n":1}`)})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := o.Cancel(ctx, j.ID); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := o.Job(ctx, j.ID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
