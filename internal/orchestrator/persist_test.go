package orchestrator

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// failingFinal refuses every write of a terminal state while failing is
// set.
type failingFinal struct {
	store.Store
	failing atomic.Bool
	refused atomic.Int64
}

func (s *failingFinal) UpdateJob(ctx context.Context, j *job.Job) error {
	if j.Status.Terminal() && s.failing.Load() {
		s.refused.Add(1)
		return errors.New("disk full")
	}
	return s.Store.UpdateJob(ctx, j)
}

// TestResultKeptWhileTheStoreFails: a result the store keeps refusing is
// not dropped: the job stays visible as ended, and is stored once the store
// works again.
func TestResultKeptWhileTheStoreFails(t *testing.T) {
	f := &failingFinal{}
	f.failing.Store(true)
	h := newHarnessWith(t, t.TempDir(), testConfig(), func(st store.Store) store.Store {
		f.Store = st
		return f
	})
	w := h.dial(luaCaps(1))
	w.keepAlive()
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	task := w.next(5 * time.Second)
	w.send(resultMessage(task, job.StatusCompleted))
	eventually(t, 10*time.Second, func() error {
		if f.refused.Load() < 6 {
			return errorf("%d refused writes", f.refused.Load())
		}
		return nil
	})
	if v := h.job(j.ID); v.Status != job.StatusCompleted {
		t.Fatalf("while the store fails the job reads as %s", v.Status)
	}
	f.failing.Store(false)
	eventually(t, 10*time.Second, func() error {
		if v := h.stored(j.ID); v.Status != job.StatusCompleted {
			return errorf("stored as %s", v.Status)
		}
		return nil
	})
}
