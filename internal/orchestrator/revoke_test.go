package orchestrator

import (
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// TestBannedWorkerLosesItsReplicas: when a worker is banned, the replicas
// it still holds are taken back and run elsewhere, so its pending answers
// never count toward a quorum.
func TestBannedWorkerLosesItsReplicas(t *testing.T) {
	cfg := testConfig()
	cfg.MaxStrikes = 1
	h := newHarness(t, t.TempDir(), cfg)
	defer h.close()
	a, b, liar := h.dial(luaCaps(2)), h.dial(luaCaps(2)), h.dial(luaCaps(2))
	for _, w := range []*rawWorker{a, b, liar} {
		w.keepAlive()
	}
	honest := func(w *rawWorker, task *job.Task) { w.send(resultMessage(task, job.StatusCompleted)) }

	// Job 2 needs all three replicas to agree; the liar holds its replica.
	job2 := h.submit(job.Request{Type: job.TypeLua, Code: "return 2", Replicas: 3, Quorum: 3})
	honest(a, a.next(5*time.Second))
	honest(b, b.next(5*time.Second))
	held := liar.next(5 * time.Second)

	// Job 1: the liar answers first and loses the vote: one strike bans it.
	job1 := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Replicas: 3, Quorum: 2})
	ta, tb, tl := a.next(5*time.Second), b.next(5*time.Second), liar.next(5*time.Second)
	liar.send(protocol.Message{Type: protocol.TypeResult, JobID: tl.JobID, LeaseID: tl.LeaseID,
		Result: &job.Result{Status: job.StatusCompleted, Output: "forged"}})
	time.Sleep(100 * time.Millisecond)
	honest(a, ta)
	honest(b, tb)
	eventually(t, 5*time.Second, func() error {
		if j := h.job(job1.ID); j.Status != job.StatusCompleted {
			return errorf("job 1 is %s", j.Status)
		}
		return nil
	})

	// The liar's replica of job 2 goes to a new worker.
	c := h.dial(luaCaps(2))
	c.keepAlive()
	task := c.next(5 * time.Second)
	if task.JobID != held.JobID {
		t.Fatalf("the new worker got %s, want the liar's replica %s", task.JobID, held.JobID)
	}
	honest(c, task)
	// The liar's late answer changes nothing.
	liar.send(protocol.Message{Type: protocol.TypeResult, JobID: held.JobID, LeaseID: held.LeaseID,
		Result: &job.Result{Status: job.StatusCompleted, Output: "forged"}})
	eventually(t, 5*time.Second, func() error {
		j := h.job(job2.ID)
		if j.Status != job.StatusCompleted {
			return errorf("job 2 is %s (%s)", j.Status, j.Reason)
		}
		for _, ans := range j.Result.Replicas {
			if ans.WorkerID == liar.id {
				return errorf("the banned worker's answer counted: %+v", j.Result.Replicas)
			}
		}
		return nil
	})
}
