package orchestrator

import (
	"context"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// TestCloseDoesNotPassJobsAround: closing the orchestrator ends every
// session at once. A job running on one of them is lost once, and must not
// be handed to another session that is ending too, losing an attempt each
// time: a graceful restart would fail jobs that had attempts left.
func TestCloseDoesNotPassJobsAround(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, testConfig())
	var workers []*rawWorker
	for range 8 {
		w := h.dial(luaCaps(1))
		w.keepAlive()
		workers = append(workers, w)
	}
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", MaxAttempts: 3})
	eventually(t, 5*time.Second, func() error {
		if v := h.job(j.ID); v.Status != job.StatusRunning {
			return errorf("job is %s", v.Status)
		}
		return nil
	})
	h.o.Close()
	v := h.stored(j.ID)
	if v.Status != job.StatusPending || v.Attempt != 2 {
		t.Fatalf("after Close the job is %s with attempt %d (%q), want pending with attempt 2", v.Status, v.Attempt, v.Reason)
	}

	// A restart runs it.
	h.close()
	h2 := newHarness(t, dir, testConfig())
	w := h2.dial(luaCaps(1))
	task := w.next(5 * time.Second)
	w.send(resultMessage(task, job.StatusCompleted))
	got, err := h2.o.Wait(context.Background(), j.ID, 5*time.Second)
	if err != nil || got.Status != job.StatusCompleted || got.Attempt != 2 {
		t.Fatalf("after restart: %+v %v", got, err)
	}
}
