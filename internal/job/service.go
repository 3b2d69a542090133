package job

// A docker service is a Deployment with runtime "docker": an image that
// listens on a port, run as instances on trusted docker workers that
// offer services, reached through the worker's own connection to the
// orchestrator (see docs/protocol.md, "Services").

// ServiceSpec is what every instance of a service runs; the orchestrator
// gives it to a worker in "service_start".
type ServiceSpec struct {
	Image   string            `json:"docker_image"`
	Command []string          `json:"docker_command,omitempty"`
	Env     map[string]string `json:"docker_env,omitempty"`
	// Resources bound each instance, as a container job's do.
	Resources Resources `json:"resources,omitzero"`
	// Port is where the instance's server listens inside its container;
	// the instance gets it as the PORT variable (default 8080).
	Port int `json:"port"`
	// ReadinessPath, when set, is an HTTP path that must answer 2xx or
	// 3xx before the instance takes requests; else a TCP connection to
	// Port is the check.
	ReadinessPath string `json:"readiness_path,omitempty"`
	// StartTimeoutSeconds bounds the time from start to ready.
	StartTimeoutSeconds float64 `json:"start_timeout_seconds"`
	// Network asks for egress, as a docker job's does: the instance
	// reaches the listed host:port patterns through its worker's egress
	// proxy, and nothing else.
	Network *Network `json:"network,omitempty"`
}

// EgressOf returns the egress patterns the spec asks for (nil when none).
func (s ServiceSpec) EgressOf() []string {
	if s.Network == nil {
		return nil
	}
	return s.Network.Egress
}

// ServiceInstance is one instance of a service on one worker.
type ServiceInstance struct {
	// ID names the instance (unique on the platform).
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	// Service is the deployment's "namespace/path"; Version its version.
	Service string      `json:"service"`
	Version int64       `json:"version"`
	Spec    ServiceSpec `json:"spec"`
}

// InstanceState is where an instance is in its life.
type InstanceState string

const (
	// InstanceStarting: asked for, not yet ready.
	InstanceStarting InstanceState = "starting"
	// InstanceReady: it passed its readiness check and takes requests.
	InstanceReady InstanceState = "ready"
	// InstanceExited: its container ended (ExitCode and Output say how),
	// or it could not start (Error says why). Terminal.
	InstanceExited InstanceState = "exited"
)

// InstanceReport is a worker's word on an instance ("service_state").
type InstanceReport struct {
	ID       string        `json:"id"`
	State    InstanceState `json:"state"`
	ExitCode int           `json:"exit_code,omitempty"`
	// Error says why an instance could not start or was stopped.
	Error string `json:"error,omitempty"`
	// Output is the tail of the instance's stdout and stderr, bounded by
	// the worker (at most MaxInstanceOutput bytes). In a report of a
	// ready instance it is what the instance's egress proxy refused
	// since the last report, for the service's logs.
	Output string `json:"output,omitempty"`
	// Egress, for an instance with egress, is what it exchanged with each
	// destination since it started (at most MaxInstanceEgress records);
	// a ready instance reports it again when it changed.
	Egress []EgressRecord `json:"egress,omitempty"`
}

// MaxInstanceEgress bounds InstanceReport.Egress: past it the records of
// the destinations reached first are kept.
const MaxInstanceEgress = 256

// MaxInstanceOutput bounds InstanceReport.Output.
const MaxInstanceOutput = 64 << 10
