package orchestrator

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// TestEgressNotForAnonymousWorkers: an anonymous volunteer that
// advertises an egress list covering everything a job asks (a fake
// worker that would enforce none of it) never receives the job: its
// docker capabilities, the egress list among them, are dropped when it
// registers. A trusted worker with the list receives it.
func TestEgressNotForAnonymousWorkers(t *testing.T) {
	cfg := testConfig()
	cfg.Policies = &policies{m: map[string]job.NamespacePolicy{job.DefaultNamespace: {Namespace: job.DefaultNamespace, AllowEgress: true}}}
	h := newHarness(t, t.TempDir(), cfg)
	anon := h.dialAs(egressCaps("*.pythonhosted.org:443", "127.0.0.1:8081"), "")
	anon.keepAlive()
	eventually(t, 5*time.Second, func() error {
		if n := len(h.o.Workers()); n != 1 {
			return fmt.Errorf("%d workers registered", n)
		}
		return nil
	})
	j := h.submit(job.Request{Type: job.TypeDocker, DockerImage: "busybox", Network: &job.Network{Egress: []string{"files.pythonhosted.org:443", "127.0.0.1:8081"}}})
	eventually(t, 5*time.Second, func() error {
		got := h.job(j.ID)
		if got.Status != job.StatusPending || !strings.Contains(got.Reason, "no connected worker runs docker jobs") {
			return fmt.Errorf("job is %s: %q", got.Status, got.Reason)
		}
		return nil
	})
	trusted := h.dial(egressCaps("*.pythonhosted.org:443", "127.0.0.1:8081"))
	trusted.keepAlive()
	if task := trusted.next(5 * time.Second); task.JobID != j.ID {
		t.Fatalf("the trusted worker got %+v", task)
	}
	for _, w := range h.o.Workers() {
		if w.ID == anon.id && len(w.RunningJobs) > 0 {
			t.Fatalf("the anonymous worker was given %v", w.RunningJobs)
		}
	}
}
