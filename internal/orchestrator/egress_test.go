package orchestrator

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

func egressCaps(egress ...string) job.Capabilities {
	return job.Capabilities{Runtimes: []job.Type{job.TypeDocker}, Concurrency: 4,
		Docker: &job.DockerCapabilities{Egress: egress}}
}

// TestEgressGoesOnlyToAllowingWorkers: a job that asks for egress waits,
// saying why, while only workers whose owner allows no egress (or not
// this egress) are connected, and goes to the one whose list covers it;
// the other never receives it.
func TestEgressGoesOnlyToAllowingWorkers(t *testing.T) {
	cfg := testConfig()
	pol := &policies{m: map[string]job.NamespacePolicy{job.DefaultNamespace: {Namespace: job.DefaultNamespace, AllowEgress: true}}}
	cfg.Policies = pol
	h := newHarness(t, t.TempDir(), cfg)
	plain := h.dial(egressCaps())
	plain.keepAlive()
	narrow := h.dial(egressCaps("pypi.org:443"))
	narrow.keepAlive()
	eventually(t, 5*time.Second, func() error {
		if n := len(h.o.Workers()); n != 2 {
			return fmt.Errorf("%d workers registered", n)
		}
		return nil
	})
	req := job.Request{Type: job.TypeDocker, DockerImage: "busybox", Network: &job.Network{Egress: []string{"files.pythonhosted.org:443"}}}
	j := h.submit(req)
	eventually(t, 5*time.Second, func() error {
		got := h.job(j.ID)
		if got.Status != job.StatusPending || !strings.Contains(got.Reason, "allows no egress") ||
			!strings.Contains(got.Reason, "does not allow egress to files.pythonhosted.org:443") {
			return fmt.Errorf("job is %s: %q", got.Status, got.Reason)
		}
		return nil
	})

	wide := h.dial(egressCaps("pypi.org:443", "*.pythonhosted.org:443"))
	wide.keepAlive()
	task := wide.next(5 * time.Second)
	if task.JobID != j.ID || strings.Join(task.Spec.EgressOf(), ",") != "files.pythonhosted.org:443" {
		t.Fatalf("the allowing worker got %+v", task)
	}
	wide.send(resultMessage(task, job.StatusCompleted))
	for range 3 {
		j := h.submit(req)
		task := wide.next(5 * time.Second)
		if task.JobID != j.ID {
			t.Fatalf("got %s, want %s", task.JobID, j.ID)
		}
		wide.send(resultMessage(task, job.StatusCompleted))
	}
	for _, w := range h.o.Workers() {
		if w.ID != wide.id && len(w.RunningJobs) > 0 {
			t.Fatalf("worker %s was given %v", w.ID, w.RunningJobs)
		}
	}

	// The namespace's policy turns egress off: a pending egress job
	// stays pending, saying why, even once an allowing worker is there.
	wide.conn.CloseNow()
	eventually(t, 5*time.Second, func() error {
		if n := len(h.o.Workers()); n != 2 {
			return fmt.Errorf("%d workers registered", n)
		}
		return nil
	})
	waiting := h.submit(req)
	pol.mu.Lock()
	pol.m[job.DefaultNamespace] = job.NamespacePolicy{Namespace: job.DefaultNamespace}
	pol.mu.Unlock()
	offReason := func() error {
		got := h.job(waiting.ID)
		if got.Status != job.StatusPending || !strings.Contains(got.Reason, "allow_egress is off") {
			return fmt.Errorf("job is %s: %q", got.Status, got.Reason)
		}
		return nil
	}
	eventually(t, 20*time.Second, offReason)
	again := h.dial(egressCaps("*.pythonhosted.org:443"))
	again.keepAlive()
	eventually(t, 5*time.Second, func() error {
		if n := len(h.o.Workers()); n != 3 {
			return fmt.Errorf("%d workers registered", n)
		}
		return nil
	})
	if err := offReason(); err != nil {
		t.Fatal(err)
	}
}
