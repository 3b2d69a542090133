package orchestrator

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// series returns, for the metric family name in reg, each series' value
// by its labels (name=value pairs, in order).
func series(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + ","
			}
			out[key] = metricValue(m)
		}
	}
	return out
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// TestNamespaceLabelsBounded: past Metrics.MaxNamespaces, namespaces count
// as "other"; with namespace labels off the series do not exist.
func TestNamespaceLabelsBounded(t *testing.T) {
	cfg := testConfig()
	cfg.Metrics.MaxNamespaces = 2
	reg := prometheus.NewRegistry()
	h := newHarnessMetrics(t, t.TempDir(), cfg, nil, reg)
	for _, ns := range []string{"a", "b", "c", "d", "a"} {
		h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: ns})
	}
	got := series(t, reg, "zerverless_namespace_jobs_submitted_total")
	want := map[string]float64{"namespace=a,": 2, "namespace=b,": 1, "namespace=other,": 2}
	if len(got) != len(want) {
		t.Fatalf("series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("series %v, want %v", got, want)
		}
	}

	cfg.Metrics.NamespaceLabels = false
	reg = prometheus.NewRegistry()
	h = newHarnessMetrics(t, t.TempDir(), cfg, nil, reg)
	h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "a"})
	if got := series(t, reg, "zerverless_namespace_jobs_submitted_total"); len(got) != 0 {
		t.Errorf("with namespace labels off: %v", got)
	}
}

// TestWorkerReportsBounded: a trusted worker's report is exposed with its
// worker label and goes when it disconnects; anonymous volunteers' reports
// are never exposed, however many connect; past Metrics.MaxWorkers,
// further workers are not either.
func TestWorkerReportsBounded(t *testing.T) {
	cfg := testConfig()
	cfg.Metrics.MaxWorkers = 1
	reg := prometheus.NewRegistry()
	h := newHarnessMetrics(t, t.TempDir(), cfg, nil, reg)
	usage := job.WorkerUsage{TasksRunning: 1, ContainersRunning: 3, ImagesCached: 2, ImageCacheBytes: 1 << 20, IdleProcesses: 4, TasksTotal: 9}
	report := protocol.Message{Type: protocol.TypeMetrics, Usage: &usage}

	for range 5 {
		anon := h.dialAs(luaCaps(1), "")
		anon.send(report)
	}
	w1 := h.dial(luaCaps(1))
	w1.send(report)
	eventually(t, 5*time.Second, func() error {
		got := series(t, reg, "zerverless_worker_containers_running")
		if len(got) != 1 || got["worker="+w1.id+","] != 3 {
			return errorf("containers running %v, want only worker %s at 3", got, w1.id)
		}
		return nil
	})
	w2 := h.dial(luaCaps(1))
	w2.send(report)
	// w2's report is read after a heartbeat sent behind it.
	w2.send(protocol.Message{Type: protocol.TypeHeartbeat})
	eventually(t, 5*time.Second, func() error {
		h.o.mu.Lock()
		defer h.o.mu.Unlock()
		if w, ok := h.o.workers[w2.id]; !ok || w.lastSeen.Load() <= w.connectedAt.UnixNano() {
			return errorf("w2 not seen yet")
		}
		return nil
	})
	if got := series(t, reg, "zerverless_worker_idle_processes"); len(got) != 1 {
		t.Errorf("past MaxWorkers: %v, want one worker", got)
	}
	w1.Close()
	eventually(t, 5*time.Second, func() error {
		if got := series(t, reg, "zerverless_worker_tasks_total"); len(got) != 0 {
			return errorf("after w1 left: %v", got)
		}
		return nil
	})
}

// TestUsageObserved: a job's CPU time, peak memory, output and build
// report are observed once it ends, by runtime.
func TestUsageObserved(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarnessMetrics(t, t.TempDir(), testConfig(), nil, reg)
	w := h.dial(luaCaps(1))
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	task := w.next(5 * time.Second)
	w.send(protocol.Message{Type: protocol.TypeResult, JobID: task.JobID, LeaseID: task.LeaseID, Result: &job.Result{
		Status: job.StatusCompleted, Output: "12345", Stderr: "ab", CPUTimeMS: 1500, PeakMemoryBytes: 8 << 20}})
	if v, err := h.o.Wait(tenantCtx(), j.ID, 5*time.Second); err != nil || !v.Status.Terminal() {
		t.Fatalf("wait: %v %v", v, err)
	}
	eventually(t, 5*time.Second, func() error {
		for name, want := range map[string]map[string]float64{
			"zerverless_job_cpu_seconds":               {"runtime=lua,": 1},
			"zerverless_job_peak_memory_bytes":         {"runtime=lua,": 1},
			"zerverless_job_output_bytes_total":        {"runtime=lua,stream=stdout,": 5, "runtime=lua,stream=stderr,": 2},
			"zerverless_namespace_jobs_finished_total": {"namespace=default,status=completed,": 1},
		} {
			got := series(t, reg, name)
			for k, v := range want {
				if got[k] != v {
					return errorf("%s = %v, want %v", name, got, want)
				}
			}
		}
		return nil
	})
}
