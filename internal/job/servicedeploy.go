package job

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"strings"
	"time"
)

// ServiceConfig is what a docker service runs and how it scales: the
// "service" member of a Deployment with runtime "docker".
type ServiceConfig struct {
	ServiceSpec
	// MinInstances are kept running even without requests (default 0:
	// the service scales to zero).
	MinInstances int `json:"min_instances"`
	// MaxInstances caps the instances of one version.
	MaxInstances int `json:"max_instances"`
	// Concurrency is how many requests one instance takes at once.
	Concurrency int `json:"concurrency"`
	// IdleTimeoutSeconds is how long an instance may go without a request
	// before it is stopped (down to MinInstances).
	IdleTimeoutSeconds float64 `json:"idle_timeout_seconds"`
	// BuildJobID, for a service deployed from a Dockerfile, is the build
	// job whose image (Image) it runs; no instance starts before the build
	// succeeded.
	BuildJobID string `json:"build_job_id,omitempty"`
}

// IdleTimeout returns IdleTimeoutSeconds as a duration.
func (c *ServiceConfig) IdleTimeout() time.Duration {
	return time.Duration(c.IdleTimeoutSeconds * float64(time.Second))
}

// StartTimeout returns StartTimeoutSeconds as a duration.
func (c *ServiceConfig) StartTimeout() time.Duration {
	return time.Duration(c.StartTimeoutSeconds * float64(time.Second))
}

// ServiceRequest holds the fields of a deploy request with runtime
// "docker". Either DockerImage or Dockerfile (with its build context) is
// given; the rest take ServiceLimits' defaults.
type ServiceRequest struct {
	DockerImage   string            `json:"docker_image,omitempty"`
	DockerCommand []string          `json:"docker_command,omitempty"`
	DockerEnv     map[string]string `json:"docker_env,omitempty"`
	Resources     *Resources        `json:"resources,omitempty"`
	Port          *int              `json:"port,omitempty"`
	MinInstances  *int              `json:"min_instances,omitempty"`
	MaxInstances  *int              `json:"max_instances,omitempty"`
	Concurrency   *int              `json:"concurrency,omitempty"`
	IdleTimeout   *float64          `json:"idle_timeout_seconds,omitempty"`
	StartTimeout  *float64          `json:"start_timeout_seconds,omitempty"`
	ReadinessPath string            `json:"readiness_path,omitempty"`
	// Network asks for egress for every instance, as a docker job's
	// "network" does.
	Network *Network `json:"network,omitempty"`

	Dockerfile           string                 `json:"dockerfile,omitempty"`
	BuildContext         map[string]ContextFile `json:"build_context,omitempty"`
	BuildContextEncoding string                 `json:"build_context_encoding,omitempty"`
	BuildContextID       string                 `json:"build_context_id,omitempty"`
	BuildArgs            map[string]string      `json:"build_args,omitempty"`

	// buildJobID is the build job of the image (see Built).
	buildJobID string
}

// Builds reports whether the request builds its image.
func (s *ServiceRequest) Builds() bool { return s.Dockerfile != "" }

// BuildRequest returns the build job that makes the image of a service
// deployed from a Dockerfile.
func (s *ServiceRequest) BuildRequest(namespace string) Request {
	return Request{
		Type:                 TypeDocker,
		Namespace:            namespace,
		Dockerfile:           s.Dockerfile,
		BuildContext:         s.BuildContext,
		BuildContextEncoding: s.BuildContextEncoding,
		BuildContextID:       s.BuildContextID,
		BuildArgs:            s.BuildArgs,
		BuildOnly:            true,
	}
}

// onlyForServices refuses service fields on a function.
func (s *ServiceRequest) onlyForServices() error {
	switch {
	case s.DockerImage != "" || s.Dockerfile != "":
		return Invalid("runtime", `must be "docker" to deploy an image`)
	case len(s.DockerCommand) > 0 || len(s.DockerEnv) > 0 || s.Resources != nil || s.Port != nil ||
		s.MinInstances != nil || s.MaxInstances != nil || s.Concurrency != nil || s.IdleTimeout != nil ||
		s.StartTimeout != nil || s.ReadinessPath != "" || len(s.BuildContext) > 0 || s.BuildContextID != "" ||
		len(s.BuildArgs) > 0 || s.BuildContextEncoding != "" || s.Network != nil:
		return Invalid("runtime", `service fields are only for runtime "docker"`)
	}
	return nil
}

// ServiceLimits bound what a docker service may ask for. Every field has
// a documented default in DefaultServiceLimits.
type ServiceLimits struct {
	// DefaultMaxInstances applies when `max_instances` is absent (default
	// 10).
	DefaultMaxInstances int
	// MaxInstances caps `max_instances` and `min_instances` (default 100).
	MaxInstances int
	// DefaultConcurrency applies when `concurrency` is absent (default
	// 80, as Cloud Run's).
	DefaultConcurrency int
	// MaxConcurrency caps `concurrency` (default 1000).
	MaxConcurrency int
	// DefaultIdleTimeout applies when `idle_timeout_seconds` is absent
	// (default 5 min).
	DefaultIdleTimeout time.Duration
	// MaxIdleTimeout caps it (default 24 h).
	MaxIdleTimeout time.Duration
	// DefaultStartTimeout applies when `start_timeout_seconds` is absent
	// (default 60 s).
	DefaultStartTimeout time.Duration
	// MaxStartTimeout caps it (default 10 min).
	MaxStartTimeout time.Duration
}

// DefaultServiceLimits returns the documented defaults.
func DefaultServiceLimits() ServiceLimits {
	return ServiceLimits{
		DefaultMaxInstances: 10,
		MaxInstances:        100,
		DefaultConcurrency:  80,
		MaxConcurrency:      1000,
		DefaultIdleTimeout:  5 * time.Minute,
		MaxIdleTimeout:      24 * time.Hour,
		DefaultStartTimeout: time.Minute,
		MaxStartTimeout:     10 * time.Minute,
	}
}

// Validate refuses limits that would refuse every service or contradict
// each other, naming the field.
func (l ServiceLimits) Validate() error {
	switch {
	case l == ServiceLimits{}:
		return nil
	case l.MaxInstances < 1:
		return Invalid("MaxInstances", "must be at least 1")
	case l.DefaultMaxInstances < 1 || l.DefaultMaxInstances > l.MaxInstances:
		return Invalid("DefaultMaxInstances", "must be between 1 and MaxInstances (%d)", l.MaxInstances)
	case l.MaxConcurrency < 1:
		return Invalid("MaxConcurrency", "must be at least 1")
	case l.DefaultConcurrency < 1 || l.DefaultConcurrency > l.MaxConcurrency:
		return Invalid("DefaultConcurrency", "must be between 1 and MaxConcurrency (%d)", l.MaxConcurrency)
	case l.DefaultIdleTimeout <= 0 || l.DefaultIdleTimeout > l.MaxIdleTimeout:
		return Invalid("DefaultIdleTimeout", "must be positive and at most MaxIdleTimeout (%s)", l.MaxIdleTimeout)
	case l.DefaultStartTimeout <= 0 || l.DefaultStartTimeout > l.MaxStartTimeout:
		return Invalid("DefaultStartTimeout", "must be positive and at most MaxStartTimeout (%s)", l.MaxStartTimeout)
	}
	return nil
}

// withDefaults fills zero limits (a DeployLimits built without them).
func (l ServiceLimits) withDefaults() ServiceLimits {
	if l == (ServiceLimits{}) {
		return DefaultServiceLimits()
	}
	return l
}

// DefaultServicePort is where an instance listens when `port` is absent.
const DefaultServicePort = 8080

func validSeconds(field string, v *float64, max time.Duration) error {
	if v == nil {
		return nil
	}
	if math.IsNaN(*v) || math.IsInf(*v, 0) || *v <= 0 {
		return Invalid(field, "must be a positive number of seconds")
	}
	if *v > max.Seconds() {
		return Invalid(field, "must be at most %g", max.Seconds())
	}
	return nil
}

// validateService checks a deploy request with runtime "docker".
func (r *DeployRequest) validateService(lim DeployLimits) error {
	sl := lim.Services.withDefaults()
	s := &r.ServiceRequest
	switch {
	case r.Code != "":
		return Invalid("code", "is not used by docker services")
	case len(r.Wasm) > 0:
		return Invalid("wasm", "is not used by docker services")
	case len(r.Env) > 0:
		return Invalid("env", "docker services take docker_env")
	case r.MemoryMB != 0:
		return Invalid("memory_mb", "docker services take resources.memory_mb")
	case r.MaxConcurrency != 0:
		return Invalid("max_concurrency", "docker services take concurrency (requests per instance) and max_instances")
	case r.AnonymousWorkers:
		return Invalid("anonymous_workers", "docker services run only on trusted workers")
	case s.DockerImage != "" && s.Dockerfile != "":
		return Invalid("dockerfile", "give docker_image or a dockerfile to build, not both")
	case s.DockerImage == "" && s.Dockerfile == "":
		return Invalid("docker_image", "is required for docker services (or a dockerfile to build one)")
	case s.Dockerfile == "" && (len(s.BuildContext) > 0 || s.BuildContextID != "" || len(s.BuildArgs) > 0 || s.BuildContextEncoding != ""):
		return Invalid("dockerfile", "build_context, build_context_id and build_args need a dockerfile")
	}
	if t := r.TimeoutSeconds; t != nil {
		if err := validSeconds("timeout_seconds", t, lim.MaxTimeout); err != nil {
			return err
		}
	}
	// The container fields are checked as a docker job's are.
	jr := Request{Type: TypeDocker, DockerImage: s.DockerImage, DockerCommand: s.DockerCommand,
		DockerEnv: s.DockerEnv, Resources: s.Resources}
	if s.Builds() {
		jr = s.BuildRequest("")
	}
	rl := DefaultRequestLimits()
	rl.MaxMemoryMB = lim.MaxMemoryMB
	if err := jr.validateDocker(rl); err != nil {
		return err
	}
	if s.Builds() {
		jr := Request{Type: TypeDocker, DockerImage: "x", DockerCommand: s.DockerCommand, DockerEnv: s.DockerEnv, Resources: s.Resources}
		if err := jr.validateDocker(rl); err != nil {
			return err
		}
	}
	size := 0
	for k, v := range s.DockerEnv {
		if k == "PORT" {
			return Invalid("docker_env", "PORT is set by Zerverless from port")
		}
		size += len(k) + len(v)
	}
	if size > lim.MaxEnvBytes {
		return Invalid("docker_env", "is %d bytes, over the limit of %d", size, lim.MaxEnvBytes)
	}
	if p := s.Port; p != nil && (*p < 1 || *p > 65535) {
		return Invalid("port", "must be between 1 and 65535")
	}
	maxI := sl.DefaultMaxInstances
	if m := s.MaxInstances; m != nil {
		if *m < 1 || *m > sl.MaxInstances {
			return Invalid("max_instances", "must be between 1 and %d", sl.MaxInstances)
		}
		maxI = *m
	}
	if m := s.MinInstances; m != nil {
		if *m < 0 || *m > maxI {
			return Invalid("min_instances", "must be between 0 and max_instances (%d)", maxI)
		}
	}
	if c := s.Concurrency; c != nil && (*c < 1 || *c > sl.MaxConcurrency) {
		return Invalid("concurrency", "must be between 1 and %d", sl.MaxConcurrency)
	}
	if err := validSeconds("idle_timeout_seconds", s.IdleTimeout, sl.MaxIdleTimeout); err != nil {
		return err
	}
	if err := validSeconds("start_timeout_seconds", s.StartTimeout, sl.MaxStartTimeout); err != nil {
		return err
	}
	if p := s.ReadinessPath; p != "" && (!strings.HasPrefix(p, "/") || len(p) > 1024 || strings.ContainsAny(p, " \r\n\t\x00")) {
		return Invalid("readiness_path", "must be a URL path starting with / (at most 1024 bytes, no spaces)")
	}
	if n := s.Network; n != nil {
		if _, err := ParseEgress(n.Egress); err != nil {
			return Invalid("network.egress", "%v", err)
		}
		if len(n.Egress) > 0 && orDefault(s.Port, DefaultServicePort) == EgressProxyPort {
			return Invalid("port", "%d is where an instance with egress finds its egress proxy (127.0.0.1:%d); listen on another port", EgressProxyPort, EgressProxyPort)
		}
	}
	return nil
}

func orDefault[T any](p *T, def T) T {
	if p != nil {
		return *p
	}
	return def
}

// newService turns a validated docker request into a deployment. The
// digest, when empty, is the SHA-256 of the service's configuration.
func (r *DeployRequest) newService(namespace, path, digest string, now time.Time, lim DeployLimits) *Deployment {
	sl := lim.Services.withDefaults()
	s := &r.ServiceRequest
	cfg := &ServiceConfig{
		ServiceSpec: ServiceSpec{
			Image:               s.DockerImage,
			Command:             s.DockerCommand,
			Env:                 s.DockerEnv,
			Port:                orDefault(s.Port, DefaultServicePort),
			ReadinessPath:       s.ReadinessPath,
			StartTimeoutSeconds: orDefault(s.StartTimeout, sl.DefaultStartTimeout.Seconds()),
		},
		MinInstances:       orDefault(s.MinInstances, 0),
		MaxInstances:       orDefault(s.MaxInstances, sl.DefaultMaxInstances),
		Concurrency:        orDefault(s.Concurrency, sl.DefaultConcurrency),
		IdleTimeoutSeconds: orDefault(s.IdleTimeout, sl.DefaultIdleTimeout.Seconds()),
		BuildJobID:         s.buildJobID,
	}
	if s.Resources != nil {
		cfg.Resources = *s.Resources
	}
	if s.Network != nil && len(s.Network.Egress) > 0 {
		egress, _ := CanonicalEgress(s.Network.Egress)
		cfg.Network = &Network{Egress: egress}
	}
	if digest == "" {
		b, _ := json.Marshal(cfg)
		sum := sha256.Sum256(b)
		digest = hex.EncodeToString(sum[:])
	}
	return &Deployment{
		Namespace:      namespace,
		Path:           path,
		Runtime:        TypeDocker,
		Digest:         digest,
		TimeoutSeconds: orDefault(r.TimeoutSeconds, lim.DefaultTimeout.Seconds()),
		Public:         r.Public == nil || *r.Public,
		Service:        cfg,
		CreatedAt:      now,
		UpdatedAt:      now,
	}
}

// RunsService reports whether a worker with c may run an instance of sp:
// it offers services, its allow-list (or, for an image built on the
// platform, the images it holds) admits the image, and its owner's
// egress list covers the egress sp asks for; why says what is missing
// otherwise.
func (c Capabilities) RunsService(sp ServiceSpec) (ok bool, why string) {
	if c.Docker == nil || c.Docker.Services <= 0 {
		return false, "offers no docker services"
	}
	if ok, why := c.Docker.acceptsImage(&DockerSpec{Image: sp.Image}); !ok {
		return false, why
	}
	return c.Docker.acceptsEgress(sp.EgressOf())
}

// InstanceExit is how an instance last ended.
type InstanceExit struct {
	ExitCode int    `json:"exit_code"`
	Error    string `json:"error,omitempty"`
	// Output is the tail of its output, as its worker reported it.
	Output string    `json:"output,omitempty"`
	At     time.Time `json:"at"`
}

// InstanceView is an instance as GET /api/deploy/{namespace}/{path}
// shows it.
type InstanceView struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
	// State is starting, ready, stopping, restarting (crashed, waiting
	// for its backoff) or exited.
	State      string     `json:"state"`
	WorkerID   string     `json:"worker_id,omitempty"`
	WorkerName string     `json:"worker_name,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	ReadyAt    *time.Time `json:"ready_at,omitempty"`
	// InFlight counts the requests it is answering now.
	InFlight int           `json:"in_flight"`
	Restarts int           `json:"restarts"`
	LastExit *InstanceExit `json:"last_exit,omitempty"`
	// Egress is, for an instance with egress, what it exchanged with each
	// destination, as its worker last reported it.
	Egress []EgressRecord `json:"egress,omitempty"`
}

// Built returns s running image, made by build job jobID, in place of its
// Dockerfile.
func (s ServiceRequest) Built(image, jobID string) ServiceRequest {
	s.DockerImage = image
	s.Dockerfile, s.BuildContext, s.BuildContextEncoding, s.BuildContextID, s.BuildArgs = "", nil, "", "", nil
	s.buildJobID = jobID
	return s
}
