package orchestrator

import (
	"fmt"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

func buildCaps(cache ...string) job.Capabilities {
	return job.Capabilities{Runtimes: []job.Type{job.TypeDocker}, Concurrency: 1,
		Docker: &job.DockerCapabilities{Build: true, BuildCache: cache}}
}

// TestBuildPrefersCachedWorker: a build job goes to the worker that
// reports holding its build, whichever worker the dispatcher looks at
// first; a worker that does not build never gets it; the task tells the
// worker where to fetch an uploaded context.
func TestBuildPrefersCachedWorker(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	req := job.Request{Type: job.TypeDocker, Dockerfile: "FROM busybox\nRUN true", BaseImages: []string{"busybox"},
		BuildContextID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	key := req.NewJob("x", time.Now(), job.DefaultRequestLimits(), testBuildKey).Spec.Docker.Build.SourceKey

	plain := h.dial(job.Capabilities{Runtimes: []job.Type{job.TypeDocker}, Concurrency: 4, Docker: &job.DockerCapabilities{}})
	cold := h.dial(buildCaps("other-key"))
	warm := h.dial(buildCaps(key))
	for _, w := range []*rawWorker{plain, cold, warm} {
		w.keepAlive()
	}
	eventually(t, 5*time.Second, func() error {
		if n := len(h.o.Workers()); n != 3 {
			return fmt.Errorf("%d workers registered", n)
		}
		return nil
	})
	for range 8 {
		j := h.submit(req)
		task := warm.next(5 * time.Second)
		if task.JobID != j.ID || task.Spec.Docker.Build.ContextURL != BuildContextPath(req.BuildContextID) {
			t.Fatalf("warm worker got %+v", task)
		}
		if got := h.job(j.ID); got.WorkerID != warm.id {
			t.Fatalf("build job went to %s, not the worker holding its build %s", got.WorkerID, warm.id)
		}
		if held, ok := h.o.HeldJob(j.ID, task.LeaseID); !ok || held.ID != j.ID {
			t.Fatalf("HeldJob does not know the lease")
		}
		if _, ok := h.o.HeldJob(j.ID, "not-the-lease"); ok {
			t.Fatalf("HeldJob accepts a wrong lease")
		}
		warm.send(protocol.Message{Type: protocol.TypeResult, JobID: j.ID, LeaseID: task.LeaseID,
			Result: &job.Result{Status: job.StatusCompleted}})
		eventually(t, 5*time.Second, func() error {
			if st := h.job(j.ID).Status; st != job.StatusCompleted {
				return fmt.Errorf("job is %s", st)
			}
			return nil
		})
	}
	// Two builds at once: one per build worker, none on the worker that
	// does not build.
	other := h.submit(job.Request{Type: job.TypeDocker, Dockerfile: "FROM busybox\nRUN sleep 1", BaseImages: []string{"busybox"}})
	again := h.submit(req)
	eventually(t, 5*time.Second, func() error {
		a, b := h.job(other.ID), h.job(again.ID)
		if a.Status != job.StatusRunning || b.Status != job.StatusRunning {
			return fmt.Errorf("jobs are %s and %s", a.Status, b.Status)
		}
		if a.WorkerID == plain.id || b.WorkerID == plain.id || a.WorkerID == b.WorkerID {
			t.Fatalf("builds went to %s and %s (plain %s)", a.WorkerID, b.WorkerID, plain.id)
		}
		return nil
	})
}
