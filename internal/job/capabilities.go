package job

import (
	"fmt"
	"slices"
	"strings"
)

// Capabilities are what a worker says it can run. The scheduler matches
// jobs against them; they are data, reported at registration.
type Capabilities struct {
	// Runtimes the worker will run. A job of another type is never sent.
	Runtimes []Type `json:"runtimes"`
	// Concurrency is how many jobs the worker runs at once (at least 1).
	Concurrency int `json:"concurrency"`
	// MaxMemoryMB is the most memory one job may ask for; 0 means no
	// stated maximum.
	MaxMemoryMB int `json:"max_memory_mb,omitempty"`
	// Namespaces, when not empty, is the only namespaces whose jobs the
	// worker accepts.
	Namespaces []string `json:"namespaces,omitempty"`
	// Version is the worker's software version.
	Version string `json:"version,omitempty"`
	// Docker describes the container limits of a worker that runs docker.
	Docker *DockerCapabilities `json:"docker,omitempty"`
}

// DockerCapabilities are the most a docker worker grants one container.
// Zero fields mean no stated maximum.
type DockerCapabilities struct {
	MaxMemoryMB int     `json:"max_memory_mb,omitempty"`
	MaxCPUs     float64 `json:"max_cpus,omitempty"`
	MaxPids     int64   `json:"max_pids,omitempty"`
	// AllowImages are the image patterns the worker's owner allows; empty
	// means any image.
	AllowImages []string `json:"allow_images,omitempty"`
	// Build is set when the worker also builds images.
	Build bool `json:"build,omitempty"`
	// BuildCache lists the source keys (BuildSpec.SourceKey) of builds
	// whose image the worker holds, most recent first; the scheduler
	// prefers such a worker for the same build.
	BuildCache []string `json:"build_cache,omitempty"`
	// BuiltImages lists the tags of the images the worker built and still
	// holds. A docker job that runs a built image goes only to a worker
	// that holds it.
	BuiltImages []string `json:"built_images,omitempty"`
	// Egress are the host:port patterns the worker's owner lets
	// containers reach through its egress proxy (--docker-egress); a job
	// that asks for egress goes only to a worker whose list covers it.
	Egress []string `json:"egress,omitempty"`
	// Services is how many service instances the worker runs at once
	// (its owner opted in with --docker-services); 0: none.
	Services int `json:"services,omitempty"`
	// StreamsPerInstance is how many request streams the worker carries
	// to one instance at once (its share of the worker's streams); the
	// orchestrator keeps no more connections to one. 0: not said.
	StreamsPerInstance int `json:"streams_per_instance,omitempty"`
	// Pool reports the worker's prewarmed containers; nil when it keeps
	// none.
	Pool *DockerPool `json:"pool,omitempty"`
}

// DockerPool is the state of a docker worker's prewarmed containers.
type DockerPool struct {
	// Ready is how many containers wait for a job; WarmImages the image
	// references they are for. The scheduler prefers a worker with a
	// ready container for a job's image (WarmFor).
	Ready      int      `json:"ready"`
	WarmImages []string `json:"warm_images,omitempty"`
	// Hits and Misses count the jobs that found a ready container and
	// those that did not; ReadyMS is the mean time to make one ready.
	Hits    uint64  `json:"hits"`
	Misses  uint64  `json:"misses"`
	ReadyMS float64 `json:"ready_ms,omitempty"`
}

// WarmFor reports whether the worker said it has a prewarmed container
// ready for a docker job of image.
func (c Capabilities) WarmFor(image string) bool {
	return image != "" && c.Docker != nil && c.Docker.Pool != nil && slices.Contains(c.Docker.Pool.WarmImages, image)
}

// acceptsImage says whether dc lets a job run or build from its images.
func (dc *DockerCapabilities) acceptsImage(d *DockerSpec) (bool, string) {
	if b := d.Build; b != nil {
		if !dc.Build {
			return false, "does not build images"
		}
		for _, img := range b.BaseImages {
			if _, built := ImageNamespace(img); built {
				if !slices.Contains(dc.BuiltImages, img) {
					return false, fmt.Sprintf("does not hold base image %s", img)
				}
				continue
			}
			if len(dc.AllowImages) > 0 && !MatchImage(dc.AllowImages, img) {
				return false, fmt.Sprintf("does not allow base image %s", img)
			}
		}
		return true, ""
	}
	if _, built := ImageNamespace(d.Image); built {
		if !slices.Contains(dc.BuiltImages, d.Image) {
			return false, fmt.Sprintf("does not hold image %s (built images stay on the worker that built them)", d.Image)
		}
		return true, ""
	}
	if len(dc.AllowImages) > 0 && !MatchImage(dc.AllowImages, d.Image) {
		return false, fmt.Sprintf("does not allow image %s", d.Image)
	}
	return true, ""
}

// HoldsBuild reports whether the worker reported holding the result of
// build key.
func (c Capabilities) HoldsBuild(key string) bool {
	return key != "" && c.Docker != nil && slices.Contains(c.Docker.BuildCache, key)
}

// Has reports whether the worker offers runtime t.
func (c Capabilities) Has(t Type) bool { return slices.Contains(c.Runtimes, t) }

// Accepts reports whether a worker with these capabilities may run j, and
// if not, why. It looks at the runtime, the namespace and the resources j
// asks for; it does not look at how busy the worker is.
func (c Capabilities) Accepts(j *Job) (bool, string) {
	if !c.Has(j.Type) {
		return false, fmt.Sprintf("does not run %s", j.Type)
	}
	if len(c.Namespaces) > 0 && !slices.Contains(c.Namespaces, j.Namespace) {
		return false, fmt.Sprintf("does not accept namespace %s", j.Namespace)
	}
	if c.MaxMemoryMB > 0 && j.Spec.MemoryMB > c.MaxMemoryMB {
		return false, fmt.Sprintf("allows at most %d MB of memory", c.MaxMemoryMB)
	}
	if d := j.Spec.Docker; d != nil {
		dc := c.Docker
		if dc == nil {
			return false, "does not run docker"
		}
		switch {
		case dc.MaxMemoryMB > 0 && d.Resources.MemoryMB > dc.MaxMemoryMB:
			return false, fmt.Sprintf("allows containers at most %d MB of memory", dc.MaxMemoryMB)
		case dc.MaxCPUs > 0 && d.Resources.CPUs > dc.MaxCPUs:
			return false, fmt.Sprintf("allows containers at most %g CPUs", dc.MaxCPUs)
		case dc.MaxPids > 0 && d.Resources.Pids > dc.MaxPids:
			return false, fmt.Sprintf("allows containers at most %d processes", dc.MaxPids)
		}
		if ok, why := dc.acceptsImage(d); !ok {
			return false, why
		}
		return dc.acceptsEgress(j.Spec.EgressOf())
	}
	return true, ""
}

// acceptsEgress reports whether the owner's egress list covers want, and
// if not, why.
func (dc *DockerCapabilities) acceptsEgress(want []string) (bool, string) {
	if len(want) == 0 {
		return true, ""
	}
	if len(dc.Egress) == 0 {
		return false, "allows no egress (its owner did not set --docker-egress)"
	}
	if u := EgressUncovered(dc.Egress, want); u != "" {
		return false, fmt.Sprintf("does not allow egress to %s (its owner allows %s)", u, strings.Join(dc.Egress, ", "))
	}
	return true, ""
}
