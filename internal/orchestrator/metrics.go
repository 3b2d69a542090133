package orchestrator

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zerverless/zerverless/internal/job"
)

type metrics struct {
	submitted    *prometheus.CounterVec
	finished     *prometheus.CounterVec
	queueWait    *prometheus.HistogramVec
	runTime      *prometheus.HistogramVec
	workers      prometheus.Gauge
	requeued     prometheus.Counter
	staleResults prometheus.Counter
}

// latencyBuckets span 100 µs to about 30 minutes.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 4, 12)

func newMetrics(reg prometheus.Registerer, o *Orchestrator) (*metrics, error) {
	m := &metrics{
		submitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerverless_jobs_submitted_total", Help: "Jobs accepted, by runtime.",
		}, []string{"runtime"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerverless_jobs_finished_total", Help: "Jobs that ended, by runtime and final status.",
		}, []string{"runtime", "status"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "zerverless_job_queue_wait_seconds", Help: "Time from queueing to assignment, by runtime.", Buckets: latencyBuckets,
		}, []string{"runtime"}),
		runTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "zerverless_job_run_seconds", Help: "Time from assignment to result, by runtime.", Buckets: latencyBuckets,
		}, []string{"runtime"}),
		workers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zerverless_workers_connected", Help: "Workers connected now.",
		}),
		requeued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zerverless_jobs_requeued_total", Help: "Runs lost (worker gone, lease expired, restart) and re-queued.",
		}),
		staleResults: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zerverless_stale_results_total", Help: "Results rejected because their lease was not current.",
		}),
	}
	jobs := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "zerverless_jobs_pending", Help: "Jobs pending now."},
		func() float64 { return o.countOf(job.StatusPending) })
	running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "zerverless_jobs_running", Help: "Jobs running now."},
		func() float64 { return o.countOf(job.StatusRunning) })
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.submitted, m.finished, m.queueWait, m.runTime, m.workers, m.requeued, m.staleResults, jobs, running, newPoolCollector(o)} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (o *Orchestrator) countOf(s job.Status) float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return float64(max(o.counts[s], 0))
}
