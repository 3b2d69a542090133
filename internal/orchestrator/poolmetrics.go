package orchestrator

import "github.com/prometheus/client_golang/prometheus"

// poolCollector exports the prewarmed containers the connected docker
// workers report (job.DockerPool), summed over the workers: a label per
// worker would not scale with their number.
type poolCollector struct {
	o                           *Orchestrator
	ready, hits, misses, readyS *prometheus.Desc
}

func newPoolCollector(o *Orchestrator) *poolCollector {
	return &poolCollector{o: o,
		ready:  prometheus.NewDesc("zerverless_docker_pool_ready", "Prewarmed containers ready for a job, over the connected workers.", nil, nil),
		hits:   prometheus.NewDesc("zerverless_docker_pool_hits", "Docker jobs that found a prewarmed container, as the connected workers report since they started.", nil, nil),
		misses: prometheus.NewDesc("zerverless_docker_pool_misses", "Docker jobs that found none (cold starts), as the connected workers report since they started.", nil, nil),
		readyS: prometheus.NewDesc("zerverless_docker_pool_ready_seconds", "Mean time a connected worker takes to make a prewarmed container ready.", nil, nil),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ready
	ch <- c.hits
	ch <- c.misses
	ch <- c.readyS
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	var ready, hits, misses, readyMS, made float64
	c.o.mu.Lock()
	for _, w := range c.o.workers {
		if w.caps.Docker == nil || w.caps.Docker.Pool == nil {
			continue
		}
		p := w.caps.Docker.Pool
		ready += float64(p.Ready)
		hits += float64(p.Hits)
		misses += float64(p.Misses)
		if p.ReadyMS > 0 {
			readyMS += p.ReadyMS
			made++
		}
	}
	c.o.mu.Unlock()
	mean := 0.0
	if made > 0 {
		mean = readyMS / made / 1000
	}
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready)
	ch <- prometheus.MustNewConstMetric(c.hits, prometheus.GaugeValue, hits)
	ch <- prometheus.MustNewConstMetric(c.misses, prometheus.GaugeValue, misses)
	ch <- prometheus.MustNewConstMetric(c.readyS, prometheus.GaugeValue, mean)
}
