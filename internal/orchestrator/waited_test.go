package orchestrator

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/store"
)

// countingStore counts the job writes that reach the store, and refuses
// them while failing is set.
type countingStore struct {
	store.Store
	creates, updates atomic.Int64
	failing          atomic.Bool
}

func (s *countingStore) CreateJob(ctx context.Context, j *job.Job) error {
	if s.failing.Load() {
		return errors.New("disk full")
	}
	s.creates.Add(1)
	return s.Store.CreateJob(ctx, j)
}

func (s *countingStore) UpdateJob(ctx context.Context, j *job.Job) error {
	if s.failing.Load() {
		return errors.New("disk full")
	}
	s.updates.Add(1)
	return s.Store.UpdateJob(ctx, j)
}

// TestWaitedJobStoredLate: a job whose submitter waits for it is not
// written before it runs; one that ends soon is written once, as it
// ended. Returned unfinished (the wait passed), it is stored before the
// answer; left alone, it is stored RunningWriteDelay after its submission.
// A job that cannot be stored when it would be returned unfinished is
// refused (unavailable) and canceled, so that no id of a job the store
// does not hold is handed out.
func TestWaitedJobStoredLate(t *testing.T) {
	cfg := testConfig()
	cfg.RunningWriteDelay = 2 * time.Second
	cs := &countingStore{}
	h := newHarnessWith(t, t.TempDir(), cfg, func(st store.Store) store.Store {
		cs.Store = st
		return cs
	})
	ctx := tenantCtx()

	t.Run("ends soon: one write", func(t *testing.T) {
		w := h.dial(luaCaps(1))
		defer func() {
			w.conn.CloseNow()
			eventually(t, 10*time.Second, func() error {
				if st, _ := h.o.Stats(ctx); st.WorkersConnected != 0 {
					return errorf("%d workers connected", st.WorkersConnected)
				}
				return nil
			})
		}()
		w.keepAlive()
		creates, updates := cs.creates.Load(), cs.updates.Load()
		j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Waited: true})
		if _, err := h.store.GetJob(context.Background(), j.ID); job.ErrorCode(err) != job.CodeNotFound {
			t.Fatalf("stored before it ran: %v", err)
		}
		task := w.next(5 * time.Second)
		w.send(resultMessage(task, job.StatusCompleted))
		v, err := h.o.WaitVisible(ctx, j.ID, 10*time.Second, func(string) bool { return true })
		if err != nil || v.Status != job.StatusCompleted {
			t.Fatalf("wait: %v %v", v, err)
		}
		if s := h.stored(j.ID); s.Status != job.StatusCompleted || s.Result == nil {
			t.Fatalf("stored as %s, result %v", s.Status, s.Result)
		}
		if c, u := cs.creates.Load()-creates, cs.updates.Load()-updates; c != 1 || u != 0 {
			t.Fatalf("%d creates and %d updates for one waited job, want 1 and 0", c, u)
		}
	})

	t.Run("returned unfinished: stored first", func(t *testing.T) {
		// No worker: the job stays pending.
		j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Waited: true})
		v, err := h.o.WaitVisible(ctx, j.ID, 50*time.Millisecond, func(string) bool { return true })
		if err != nil || v.Status != job.StatusPending {
			t.Fatalf("wait: %v %v", v, err)
		}
		if s := h.stored(j.ID); s.Status != job.StatusPending {
			t.Fatalf("stored as %s", s.Status)
		}
		if _, err := h.o.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("left alone: stored after the delay", func(t *testing.T) {
		j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Waited: true})
		eventually(t, 10*time.Second, func() error {
			if _, err := h.store.GetJob(context.Background(), j.ID); err != nil {
				return err
			}
			return nil
		})
		if _, err := h.o.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("cannot be stored: refused and canceled", func(t *testing.T) {
		cs.failing.Store(true)
		j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Waited: true})
		_, err := h.o.WaitVisible(ctx, j.ID, 50*time.Millisecond, func(string) bool { return true })
		if job.ErrorCode(err) != job.CodeUnavailable {
			t.Fatalf("wait with the store failing: %v, want unavailable", err)
		}
		cs.failing.Store(false)
		eventually(t, 15*time.Second, func() error {
			s, err := h.store.GetJob(context.Background(), j.ID)
			if err != nil {
				return err
			}
			if s.Status != job.StatusCanceled {
				return errorf("stored as %s", s.Status)
			}
			return nil
		})
	})
}

// TestWaitedJobLog: a waited job's log holds what any job's does: the line
// of its end, and no line for the pending state it was stored in late.
func TestWaitedJobLog(t *testing.T) {
	cfg := testConfig()
	cfg.RunningWriteDelay = 50 * time.Millisecond
	h := newHarness(t, t.TempDir(), cfg)
	ctx := tenantCtx()
	for _, waited := range []bool{false, true} {
		// Stored late while pending (no worker yet), then run.
		j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Waited: waited})
		eventually(t, 10*time.Second, func() error {
			_, err := h.store.GetJob(context.Background(), j.ID)
			return err
		})
		w := h.dial(luaCaps(1))
		w.keepAlive()
		task := w.next(5 * time.Second)
		w.send(resultMessage(task, job.StatusCompleted))
		if v, err := h.o.WaitVisible(ctx, j.ID, 10*time.Second, func(string) bool { return true }); err != nil || v.Status != job.StatusCompleted {
			t.Fatalf("waited=%v: %v %v", waited, v, err)
		}
		// The log's line is written once the waiters are woken.
		eventually(t, 10*time.Second, func() error {
			events, _, err := h.o.JobLog(ctx, j.ID, 0, 100)
			if err != nil {
				return err
			}
			if n := len(events); n == 0 || events[n-1].Status != job.StatusCompleted {
				return errorf("log: %+v, want it to end with the completed line", events)
			}
			for _, ev := range events {
				if ev.Status == job.StatusPending {
					return errorf("waited=%v: log: %+v has a pending line", waited, events)
				}
			}
			return nil
		})
		w.conn.CloseNow()
		eventually(t, 10*time.Second, func() error {
			if st, _ := h.o.Stats(ctx); st.WorkersConnected != 0 {
				return errorf("%d workers connected", st.WorkersConnected)
			}
			return nil
		})
	}
}

// TestWaitedJobNotReportedUnstored: a waited job whose end could not be
// stored before the orchestrator closed is reported to its waiter as not
// accepted (unavailable), not as ended; and the output of a waited job
// is stored only once the job is.
func TestWaitedJobNotReportedUnstored(t *testing.T) {
	ctx := tenantCtx()
	t.Run("output", func(t *testing.T) {
		cfg := testConfig()
		cfg.RunningWriteDelay = 3 * time.Second // Close waits for it
		h := newHarness(t, t.TempDir(), cfg)
		w := h.dial(luaCaps(1))
		w.keepAlive()
		j := h.submit(job.Request{Type: job.TypeLua, Code: "print(1)", Waited: true})
		task := w.next(5 * time.Second)
		w.send(protocol.Message{Type: protocol.TypeOutput, JobID: task.JobID, LeaseID: task.LeaseID, Stream: job.LogStdout, Text: "1\n"})
		eventually(t, 10*time.Second, func() error {
			events, _, err := h.o.JobLog(ctx, j.ID, 0, 100)
			if err != nil {
				return err
			}
			if len(events) == 0 {
				return errorf("no output in the log yet")
			}
			return nil
		})
		if s := h.stored(j.ID); s.Status != job.StatusRunning {
			t.Fatalf("with its output stored, the job is stored as %s", s.Status)
		}
		w.send(resultMessage(task, job.StatusCompleted))
	})
	t.Run("closed before its end was stored", func(t *testing.T) {
		cfg := testConfig()
		cfg.RunningWriteDelay = 3 * time.Second // Close waits for it
		cs := &countingStore{}
		h := newHarnessWith(t, t.TempDir(), cfg, func(st store.Store) store.Store {
			cs.Store = st
			return cs
		})
		w := h.dial(luaCaps(1))
		w.keepAlive()
		j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Waited: true})
		task := w.next(5 * time.Second)
		cs.failing.Store(true)
		type answer struct {
			j   *job.Job
			err error
		}
		got := make(chan answer, 1)
		go func() {
			v, err := h.o.WaitVisible(ctx, j.ID, 30*time.Second, func(string) bool { return true })
			got <- answer{v, err}
		}()
		w.send(resultMessage(task, job.StatusCompleted))
		time.Sleep(100 * time.Millisecond) // the result's write is being retried
		h.o.Close()
		select {
		case a := <-got:
			if job.ErrorCode(a.err) != job.CodeUnavailable {
				t.Fatalf("the waiter got %v %v, want unavailable", a.j, a.err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the waiter was not answered")
		}
		if _, err := h.o.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1", Waited: true}); job.ErrorCode(err) != job.CodeUnavailable {
			t.Fatalf("a waited submission after Close: %v, want unavailable", err)
		}
	})
}
