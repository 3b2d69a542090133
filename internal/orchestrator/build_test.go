package orchestrator

import (
	"fmt"
	"strings"
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

// buildLuaCaps is a build worker that also runs Lua (to take part in a vote).
func buildLuaCaps(concurrency int, cache ...string) job.Capabilities {
	return job.Capabilities{Runtimes: []job.Type{job.TypeDocker, job.TypeLua}, Concurrency: concurrency,
		Docker: &job.DockerCapabilities{Build: true, BuildCache: cache}}
}

func cachedBuild() (job.Request, string) {
	req := job.Request{Type: job.TypeDocker, Dockerfile: "FROM busybox\nRUN true", BaseImages: []string{"busybox"}}
	return req, req.NewJob("x", time.Now(), job.DefaultRequestLimits(), testBuildKey).Spec.Docker.Build.SourceKey
}

// TestBuildHolderKeepsReplicasApart: the replicas of a replicated build
// never both go to the worker holding its cache, whichever worker the
// dispatcher looks at first.
func TestBuildHolderKeepsReplicasApart(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	req, key := cachedBuild()
	req.Replicas = 2
	holder := h.dial(buildLuaCaps(2, key))
	cold := h.dial(buildLuaCaps(2))
	holder.keepAlive()
	cold.keepAlive()
	p := h.submit(req)
	a, b := holder.next(5*time.Second), cold.next(5*time.Second)
	if !strings.HasPrefix(a.JobID, p.ID) || !strings.HasPrefix(b.JobID, p.ID) || a.JobID == b.JobID {
		t.Fatalf("replicas went to %s and %s", a.JobID, b.JobID)
	}
	for _, w := range h.o.Workers() {
		if w.Running != 1 {
			t.Fatalf("worker %s runs %d replicas of one build: %v", w.ID, w.Running, w.RunningJobs)
		}
	}
}

// TestBuildHolderBanned: a banned worker gets no build job, though it
// holds the build's cache.
func TestBuildHolderBanned(t *testing.T) {
	cfg := testConfig()
	cfg.MaxStrikes = 1
	h := newHarness(t, t.TempDir(), cfg)
	req, key := cachedBuild()
	liar := h.dial(buildLuaCaps(1, key))
	a, b := h.dial(buildLuaCaps(1)), h.dial(buildLuaCaps(1))
	for _, w := range []*rawWorker{liar, a, b} {
		w.keepAlive()
	}
	// The holder loses a vote and is banned.
	vote := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Replicas: 3, Quorum: 2})
	tl, ta, tb := liar.next(5*time.Second), a.next(5*time.Second), b.next(5*time.Second)
	liar.send(protocol.Message{Type: protocol.TypeResult, JobID: tl.JobID, LeaseID: tl.LeaseID,
		Result: &job.Result{Status: job.StatusCompleted, Output: "forged"}})
	eventually(t, 5*time.Second, func() error {
		if r := h.job(vote.ID).Reason; !strings.HasPrefix(r, "replicated: 1 answers") {
			return fmt.Errorf("vote: %s", r)
		}
		return nil
	})
	a.send(resultMessage(ta, job.StatusCompleted))
	b.send(resultMessage(tb, job.StatusCompleted))
	eventually(t, 5*time.Second, func() error {
		if j := h.job(vote.ID); j.Status != job.StatusCompleted {
			return fmt.Errorf("vote is %s", j.Status)
		}
		for _, w := range h.o.Workers() {
			if w.ID == liar.id && !w.Banned {
				return fmt.Errorf("the liar is not banned yet")
			}
		}
		return nil
	})
	for range 2 {
		j := h.submit(req)
		eventually(t, 5*time.Second, func() error {
			got := h.job(j.ID)
			if got.Status != job.StatusRunning {
				return fmt.Errorf("build is %s (%s)", got.Status, got.Reason)
			}
			if got.WorkerID == liar.id {
				t.Fatalf("a banned worker got a build job")
			}
			return nil
		})
	}
}
