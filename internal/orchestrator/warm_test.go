package orchestrator

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

func poolCaps(images ...string) job.Capabilities {
	return job.Capabilities{Runtimes: []job.Type{job.TypeDocker}, Concurrency: 2,
		Docker: &job.DockerCapabilities{Pool: &job.DockerPool{Ready: len(images), WarmImages: images, Hits: 3, Misses: 1, ReadyMS: 200}}}
}

// TestDockerPrefersWarmWorker: a docker job goes to the worker that
// reports a prewarmed container for its image, whichever worker the
// dispatcher looks at first; a job of another image goes anywhere; the
// pools' figures are in /metrics.
func TestDockerPrefersWarmWorker(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	plain := h.dial(job.Capabilities{Runtimes: []job.Type{job.TypeDocker}, Concurrency: 4, Docker: &job.DockerCapabilities{}})
	other := h.dial(poolCaps("busybox:other"))
	warm := h.dial(poolCaps("busybox:warm"))
	for _, w := range []*rawWorker{plain, other, warm} {
		w.keepAlive()
	}
	eventually(t, 5*time.Second, func() error {
		if n := len(h.o.Workers()); n != 3 {
			return fmt.Errorf("%d workers registered", n)
		}
		return nil
	})
	for range 6 {
		j := h.submit(job.Request{Type: job.TypeDocker, DockerImage: "busybox:warm", DockerCommand: []string{"true"}})
		task := warm.next(5 * time.Second)
		if task.JobID != j.ID {
			t.Fatalf("warm worker got %+v", task)
		}
		if got := h.job(j.ID); got.WorkerID != warm.id {
			t.Fatalf("job went to %s, not the worker with a ready container %s", got.WorkerID, warm.id)
		}
		warm.send(protocol.Message{Type: protocol.TypeResult, JobID: j.ID, LeaseID: task.LeaseID,
			Result: &job.Result{Status: job.StatusCompleted, WarmStart: true}})
		eventually(t, 5*time.Second, func() error {
			if st := h.job(j.ID).Status; st != job.StatusCompleted {
				return fmt.Errorf("job is %s", st)
			}
			return nil
		})
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newPoolCollector(h.o))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	want := map[string]float64{"zerverless_docker_pool_ready": 2, "zerverless_docker_pool_hits": 6, "zerverless_docker_pool_misses": 2, "zerverless_docker_pool_ready_seconds": 0.2}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestWarmScore(t *testing.T) {
	j := &job.Job{Type: job.TypeDocker, Spec: job.Spec{Docker: &job.DockerSpec{Image: "a:1"}}}
	if warmScore(poolCaps("a:1"), j) != 1 || warmScore(poolCaps("a:2"), j) != 0 || warmScore(job.Capabilities{}, j) != 0 {
		t.Error("warmScore")
	}
	if warmScore(poolCaps("a:1"), &job.Job{Type: job.TypeLua}) != 0 {
		t.Error("warmScore of a Lua job")
	}
}
