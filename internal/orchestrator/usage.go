package orchestrator

import (
	"maps"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// MetricsConfig bounds the labels of the orchestrator's metrics, so that
// tenants and workers cannot make the series grow without bound.
type MetricsConfig struct {
	// NamespaceLabels labels job counts with their namespace (default
	// true; serve --metrics-namespace-labels).
	NamespaceLabels bool
	// MaxNamespaces is how many distinct namespaces get a label of their
	// own (default 100); jobs of the others count under "other".
	MaxNamespaces int
	// MaxWorkers is how many workers' own reports are exposed at once,
	// labeled with their session id (default 64). Anonymous volunteers'
	// reports are never exposed: anyone may connect as many.
	MaxWorkers int
}

// DefaultMetricsConfig returns the documented defaults.
func DefaultMetricsConfig() MetricsConfig {
	return MetricsConfig{NamespaceLabels: true, MaxNamespaces: 100, MaxWorkers: 64}
}

func (c MetricsConfig) validate() []error {
	var errs []error
	if c.MaxNamespaces < 1 {
		errs = append(errs, job.Invalid("Metrics.MaxNamespaces", "must be at least 1 (got %d)", c.MaxNamespaces))
	}
	if c.MaxWorkers < 0 {
		errs = append(errs, job.Invalid("Metrics.MaxWorkers", "must be at least 0 (got %d)", c.MaxWorkers))
	}
	return errs
}

// otherNamespace is the label of namespaces past MaxNamespaces.
const otherNamespace = "other"

// usageMetrics are the metrics of what jobs used and produced.
type usageMetrics struct {
	cfg        MetricsConfig
	cpu        *prometheus.HistogramVec
	memory     *prometheus.HistogramVec
	outputB    *prometheus.CounterVec
	liveB      *prometheus.CounterVec
	buildTime  prometheus.Histogram
	builds     *prometheus.CounterVec
	nsJobs     *prometheus.CounterVec
	nsFinished *prometheus.CounterVec

	mu         sync.Mutex
	namespaces map[string]bool // those with a label of their own
}

// memoryBuckets span 1 MiB to 16 GiB.
var memoryBuckets = prometheus.ExponentialBuckets(1<<20, 4, 8)

// cpuBuckets span 1 ms to about 4.5 hours.
var cpuBuckets = prometheus.ExponentialBuckets(0.001, 4, 12)

func newUsageMetrics(cfg MetricsConfig) *usageMetrics {
	return &usageMetrics{
		cfg: cfg,
		cpu: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "zerverless_job_cpu_seconds", Help: "CPU time of ended jobs that report it, by runtime.", Buckets: cpuBuckets,
		}, []string{"runtime"}),
		memory: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "zerverless_job_peak_memory_bytes", Help: "Peak memory of ended jobs that report it, by runtime.", Buckets: memoryBuckets,
		}, []string{"runtime"}),
		outputB: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerverless_job_output_bytes_total", Help: "Bytes of stdout and stderr in ended jobs' results, by runtime and stream.",
		}, []string{"runtime", "stream"}),
		liveB: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerverless_job_log_bytes_total", Help: "Bytes of live output kept in jobs' logs, by stream.",
		}, []string{"stream"}),
		buildTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "zerverless_build_seconds", Help: "Duration of image builds that ended with a report.", Buckets: latencyBuckets,
		}),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerverless_builds_total", Help: "Image builds that ended with a report, by whether the worker's cache had the image.",
		}, []string{"cache_hit"}),
		nsJobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerverless_namespace_jobs_submitted_total", Help: "Jobs accepted, by namespace (at most Metrics.MaxNamespaces, then \"other\"; absent with namespace labels off).",
		}, []string{"namespace"}),
		nsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerverless_namespace_jobs_finished_total", Help: "Jobs that ended, by namespace (bounded as for submitted) and final status.",
		}, []string{"namespace", "status"}),
		namespaces: make(map[string]bool),
	}
}

func (m *usageMetrics) collectors() []prometheus.Collector {
	cs := []prometheus.Collector{m.cpu, m.memory, m.outputB, m.liveB, m.buildTime, m.builds}
	if m.cfg.NamespaceLabels {
		cs = append(cs, m.nsJobs, m.nsFinished)
	}
	return cs
}

// namespaceLabel is ns while fewer than MaxNamespaces have a label, and
// "other" past them.
func (m *usageMetrics) namespaceLabel(ns string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.namespaces[ns] {
		return ns
	}
	if len(m.namespaces) >= m.cfg.MaxNamespaces {
		return otherNamespace
	}
	m.namespaces[ns] = true
	return ns
}

func (m *usageMetrics) submitted(j *job.Job) {
	if m.cfg.NamespaceLabels {
		m.nsJobs.WithLabelValues(m.namespaceLabel(j.Namespace)).Inc()
	}
}

// ended observes a job that ended (once).
func (m *usageMetrics) ended(j *job.Job) {
	if m.cfg.NamespaceLabels {
		m.nsFinished.WithLabelValues(m.namespaceLabel(j.Namespace), string(j.Status)).Inc()
	}
	r := j.Result
	if r == nil {
		return
	}
	rt := string(j.Type)
	if r.CPUTimeMS > 0 {
		m.cpu.WithLabelValues(rt).Observe(float64(r.CPUTimeMS) / 1000)
	}
	if r.PeakMemoryBytes > 0 {
		m.memory.WithLabelValues(rt).Observe(float64(r.PeakMemoryBytes))
	}
	m.outputB.WithLabelValues(rt, "stdout").Add(float64(len(r.Output)))
	m.outputB.WithLabelValues(rt, "stderr").Add(float64(len(r.Stderr)))
	if b := r.Build; b != nil {
		m.buildTime.Observe(float64(b.DurationMS) / 1000)
		hit := "false"
		if b.CacheHit {
			hit = "true"
		}
		m.builds.WithLabelValues(hit).Inc()
	}
}

// workerUsage keeps what trusted workers report of themselves and exposes
// it with a worker label, for at most MaxWorkers workers at once.
type workerUsage struct {
	max int

	mu      sync.Mutex
	reports map[string]job.WorkerUsage // by session id
}

func (u *workerUsage) report(w *worker, r job.WorkerUsage) {
	if !w.trusted {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.reports[w.id]; !ok && len(u.reports) >= u.max {
		return
	}
	u.reports[w.id] = r
}

func (u *workerUsage) forget(w *worker) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.reports, w.id)
}

var workerUsageDescs = []struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(job.WorkerUsage) float64
}{
	{prometheus.NewDesc("zerverless_worker_tasks_running", "Tasks a worker runs now, as it reports.", []string{"worker"}, nil), prometheus.GaugeValue,
		func(u job.WorkerUsage) float64 { return float64(u.TasksRunning) }},
	{prometheus.NewDesc("zerverless_worker_containers_running", "Job containers a worker runs now, as it reports.", []string{"worker"}, nil), prometheus.GaugeValue,
		func(u job.WorkerUsage) float64 { return float64(u.ContainersRunning) }},
	{prometheus.NewDesc("zerverless_worker_images_cached", "Images a worker pulled or built and keeps, as it reports.", []string{"worker"}, nil), prometheus.GaugeValue,
		func(u job.WorkerUsage) float64 { return float64(u.ImagesCached) }},
	{prometheus.NewDesc("zerverless_worker_image_cache_bytes", "Bytes of the images a worker keeps, as it reports.", []string{"worker"}, nil), prometheus.GaugeValue,
		func(u job.WorkerUsage) float64 { return float64(u.ImageCacheBytes) }},
	{prometheus.NewDesc("zerverless_worker_warm_holders", "Warm container holders a worker keeps ready, as it reports.", []string{"worker"}, nil), prometheus.GaugeValue,
		func(u job.WorkerUsage) float64 { return float64(u.WarmHolders) }},
	{prometheus.NewDesc("zerverless_worker_idle_processes", "Lua and JavaScript runtime processes a worker keeps waiting, as it reports.", []string{"worker"}, nil), prometheus.GaugeValue,
		func(u job.WorkerUsage) float64 { return float64(u.IdleProcesses) }},
	{prometheus.NewDesc("zerverless_worker_tasks_total", "Tasks a worker ran since it started, as it reports.", []string{"worker"}, nil), prometheus.CounterValue,
		func(u job.WorkerUsage) float64 { return float64(u.TasksTotal) }},
	{prometheus.NewDesc("zerverless_worker_output_bytes_total", "Live output bytes a worker sent since it started, as it reports.", []string{"worker"}, nil), prometheus.CounterValue,
		func(u job.WorkerUsage) float64 { return float64(u.OutputBytesTotal) }},
}

// Describe and Collect make workerUsage a prometheus.Collector.
func (u *workerUsage) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range workerUsageDescs {
		ch <- d.desc
	}
}

func (u *workerUsage) Collect(ch chan<- prometheus.Metric) {
	u.mu.Lock()
	reports := maps.Clone(u.reports)
	u.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(reports)) {
		r := reports[id]
		for _, d := range workerUsageDescs {
			ch <- prometheus.MustNewConstMetric(d.desc, d.kind, d.value(r), id)
		}
	}
}

// startObserving makes the job logs and the usage metrics, and registers
// the metrics with reg (nil: none).
func (o *Orchestrator) startObserving(reg prometheus.Registerer, st store.Store) error {
	o.usageMetrics = newUsageMetrics(o.cfg.Metrics)
	o.workerUsage = &workerUsage{max: o.cfg.Metrics.MaxWorkers, reports: make(map[string]job.WorkerUsage)}
	o.logs = newLogBook(o.cfg.Logs, st, func(s job.LogStream, n int) {
		o.usageMetrics.liveB.WithLabelValues(string(s)).Add(float64(n))
	})
	if reg == nil {
		return nil
	}
	for _, c := range append(o.usageMetrics.collectors(), o.workerUsage) {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
