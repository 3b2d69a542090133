package orchestrator

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// TestInvokeWithinLimit: an invocation that a worker took and does not
// answer ends at its limit with context.DeadlineExceeded, and its worker
// is told to stop it; one answered in time returns its job.
func TestInvokeWithinLimit(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	w := h.dial(luaCaps(1))
	w.keepAlive()
	ctx := tenantCtx()

	done := make(chan error, 1)
	go func() {
		_, err := h.o.InvokeWithin(ctx, job.Request{Type: job.TypeLua, Code: "return 1"}, 5*time.Second, 500*time.Millisecond)
		done <- err
	}()
	task := w.next(5 * time.Second)
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered invocation: %v, want the deadline", err)
	}
	if m := w.read(string(protocol.TypeCancel), 5*time.Second); m.JobID != task.JobID {
		t.Errorf("cancel of %s, want %s", m.JobID, task.JobID)
	}

	go func() {
		j, err := h.o.InvokeWithin(ctx, job.Request{Type: job.TypeLua, Code: "return 2"}, 5*time.Second, time.Minute)
		if err == nil && j.Status != job.StatusCompleted {
			err = errorf("status %s", j.Status)
		}
		done <- err
	}()
	w.send(resultMessage(w.next(5*time.Second), job.StatusCompleted))
	if err := <-done; err != nil {
		t.Fatalf("answered invocation: %v", err)
	}
}
