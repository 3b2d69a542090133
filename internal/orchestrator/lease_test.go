package orchestrator

import (
	"fmt"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// TestAnswerForAnotherJobKeepsTheLease: a result or reject that names the
// worker's lease with some other job id must not free the lease. Otherwise
// the job stays running on the worker with no lease to take it back, and
// when the worker goes away it is never re-queued.
func TestAnswerForAnotherJobKeepsTheLease(t *testing.T) {
	for _, typ := range []protocol.Type{protocol.TypeResult, protocol.TypeReject} {
		t.Run(string(typ), func(t *testing.T) {
			h := newHarness(t, t.TempDir(), testConfig())
			w := h.dial(luaCaps(1))
			j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
			task := w.next(5 * time.Second)
			m := protocol.Message{Type: typ, JobID: "some-other-job", LeaseID: task.LeaseID, Error: "x"}
			if typ == protocol.TypeResult {
				m.Result = &job.Result{Status: job.StatusCompleted}
			}
			w.send(m)
			w.send(protocol.Message{Type: protocol.TypeHeartbeat})
			time.Sleep(50 * time.Millisecond)
			if s, _ := h.o.Stats(t.Context()); s.SlotsBusy != 1 {
				t.Errorf("slots busy after a bogus answer: %d, want 1", s.SlotsBusy)
			}
			w.conn.CloseNow()

			eventually(t, 5*time.Second, func() error {
				if v := h.job(j.ID); v.Status != job.StatusPending || v.Attempt != 2 {
					return fmt.Errorf("job %s attempt %d, want pending attempt 2", v.Status, v.Attempt)
				}
				return nil
			})
		})
	}
}
