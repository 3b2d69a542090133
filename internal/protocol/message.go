// Package protocol is the WebSocket protocol between the orchestrator and
// its workers (native binaries and browser tabs). docs/protocol.md is its
// specification; this package is its Go implementation.
//
// Every frame is one JSON text message with a "type" field. A worker opens
// with "register"; the orchestrator answers "registered" (or "error" and
// closes). Then the orchestrator sends "assign" and "cancel"; the worker
// sends "result", "reject", "heartbeat", "capabilities", "output" (a
// running task's output) and "metrics" (its own usage). A worker that
// runs service instances also gets "service_start" and "service_stop",
// and sends "service_state" and "service_output" (a running instance's
// output).
package protocol

import (
	"fmt"

	"github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/zerverless/zerverless/internal/job"
)

// Version is the protocol version this package speaks. A worker sends it in
// "register"; the orchestrator refuses versions it does not speak.
const Version = 1

// Type is the kind of a message.
type Type string

const (
	// TypeRegister opens a session (worker → orchestrator).
	TypeRegister Type = "register"
	// TypeRegistered accepts it (orchestrator → worker).
	TypeRegistered Type = "registered"
	// TypeAssign hands a task under a lease (orchestrator → worker).
	TypeAssign Type = "assign"
	// TypeResult returns a task's result (worker → orchestrator).
	TypeResult Type = "result"
	// TypeReject gives back a task the worker cannot run now
	// (worker → orchestrator); it is not counted as an attempt unless
	// Attempted is set.
	TypeReject Type = "reject"
	// TypeCancel asks the worker to stop a task (orchestrator → worker).
	TypeCancel Type = "cancel"
	// TypeHeartbeat says the worker is alive and which leases it holds
	// (worker → orchestrator).
	TypeHeartbeat Type = "heartbeat"
	// TypeCapabilities replaces the worker's capabilities, for example
	// when its Docker Engine goes away or comes back (worker → orchestrator).
	TypeCapabilities Type = "capabilities"
	// TypeServiceStart asks the worker to start a service instance
	// (orchestrator → worker; Instance).
	TypeServiceStart Type = "service_start"
	// TypeServiceStop asks the worker to stop one (orchestrator → worker;
	// InstanceID).
	TypeServiceStop Type = "service_stop"
	// TypeServiceState reports an instance's state (worker →
	// orchestrator; Report).
	TypeServiceState Type = "service_state"
	// TypeError reports a protocol error; the sender closes after it.
	TypeError Type = "error"
	// TypeOutput carries output a task wrote while it runs, for its live
	// log (worker → orchestrator). The result still carries the whole
	// output, as without it.
	TypeOutput Type = "output"
	// TypeServiceOutput carries output a service instance wrote while it
	// runs (worker → orchestrator; InstanceID, Stream, Text, Dropped).
	TypeServiceOutput Type = "service_output"
	// TypeMetrics reports the worker's own usage (worker → orchestrator).
	TypeMetrics Type = "metrics"
)

// Message is every message of the protocol; Type says which fields are set.
type Message struct {
	Type Type `json:"type"`

	// register
	Version      int               `json:"version,omitempty"`
	Name         string            `json:"name,omitempty"`
	Capabilities *job.Capabilities `json:"capabilities,omitempty"`
	// Notes say why a runtime is not offered, by runtime name.
	Notes map[string]string `json:"notes,omitempty"`
	// Token is the worker's join token, when it has one: a worker that
	// presents a valid one is trusted.
	Token string `json:"token,omitempty"`

	// registered
	WorkerID string `json:"worker_id,omitempty"`
	// HeartbeatMS is how often the worker must send a heartbeat.
	HeartbeatMS int64 `json:"heartbeat_ms,omitempty"`
	// Trusted says whether the orchestrator trusts the worker (it joined
	// with a valid join token).
	Trusted bool `json:"trusted,omitempty"`

	// StreamKey, on registered, is given to a worker that offers
	// services: it opens its stream connection with it (see
	// docs/protocol.md, "Services").
	StreamKey string `json:"stream_key,omitempty"`

	// assign
	Task *job.Task `json:"task,omitempty"`

	// service_start, service_stop, service_state
	Instance   *job.ServiceInstance `json:"instance,omitempty"`
	InstanceID string               `json:"instance_id,omitempty"`
	Report     *job.InstanceReport  `json:"report,omitempty"`

	// result, reject, cancel
	JobID   string      `json:"job_id,omitempty"`
	LeaseID string      `json:"lease_id,omitempty"`
	Result  *job.Result `json:"result,omitempty"`

	// output: what the task of job_id and lease_id wrote to stream since
	// the last output message, and how many bytes of it the worker left
	// out before this text (its bounds on live output).
	Stream  job.LogStream `json:"stream,omitempty"`
	Text    string        `json:"text,omitempty"`
	Dropped int64         `json:"dropped,omitempty"`

	// metrics: the worker's usage.
	Usage *job.WorkerUsage `json:"usage,omitempty"`

	// heartbeat: the leases the worker holds.
	Leases []string `json:"leases,omitempty"`

	// error, reject
	Error string `json:"error,omitempty"`
	// Attempted, on a reject, says that the worker tried to run the task
	// and its runtime could not (an engine error): the attempt counts, and
	// the job is tried on another worker.
	Attempted bool `json:"attempted,omitempty"`
	// Permanent, on an error answering register, says that registering
	// again will be refused the same way (a bad join token, an unknown
	// protocol version): the worker should stop rather than retry.
	Permanent bool `json:"permanent,omitempty"`
}

// Decode parses and checks one message. It returns an error for malformed
// JSON, an unknown type, or a message missing the fields its type needs; it
// never panics on any input.
func Decode(data []byte) (Message, error) {
	// Unmarshal refuses trailing data after the message, and keeps no
	// reference to data.
	var m Message
	if err := json.Unmarshal(data, &m, wire); err != nil {
		return Message{}, fmt.Errorf("decode message: %w", err)
	}
	return m, m.Check()
}

// wire is how the protocol's JSON is decoded: as encoding/json decodes it
// (names matched without regard to case, the last of duplicate names
// kept, invalid UTF-8 replaced, durations in nanoseconds), in about half
// its CPU and a quarter of its allocations (docs/rationale.md, "Protocol
// JSON"). github.com/go-json-experiment/json is the upstream of
// encoding/json/v2. Only its errors are not encoding/json's: a message is
// read in one pass rather than checked whole first, and fails at its first
// error, which costs a fifth less; what is accepted, and what it decodes
// to, is the same.
var wire = json.JoinOptions(jsonv1.DefaultOptionsV1(), jsonv1.ReportErrorsWithLegacySemantics(false))

// Check reports whether m has the fields its type needs.
func (m *Message) Check() error {
	switch m.Type {
	case TypeRegister:
		if m.Version == 0 {
			return fmt.Errorf("register: version is required")
		}
		if m.Capabilities == nil {
			return fmt.Errorf("register: capabilities are required")
		}
		return checkCapabilities(m.Capabilities)
	case TypeCapabilities:
		if m.Capabilities == nil {
			return fmt.Errorf("capabilities: capabilities are required")
		}
		return checkCapabilities(m.Capabilities)
	case TypeRegistered:
		if m.WorkerID == "" {
			return fmt.Errorf("registered: worker_id is required")
		}
	case TypeAssign:
		if m.Task == nil || m.Task.JobID == "" || m.Task.LeaseID == "" {
			return fmt.Errorf("assign: task with job_id and lease_id is required")
		}
	case TypeResult:
		if m.JobID == "" || m.LeaseID == "" || m.Result == nil {
			return fmt.Errorf("result: job_id, lease_id and result are required")
		}
		if !m.Result.Status.Terminal() {
			return fmt.Errorf("result: status %q is not a final status", m.Result.Status)
		}
	case TypeReject, TypeCancel:
		if m.JobID == "" || m.LeaseID == "" {
			return fmt.Errorf("%s: job_id and lease_id are required", m.Type)
		}
	case TypeServiceStart:
		if m.Instance == nil || m.Instance.ID == "" || m.Instance.Spec.Image == "" || m.Instance.Spec.Port < 1 || m.Instance.Spec.Port > 65535 {
			return fmt.Errorf("service_start: instance with id, docker_image and a port is required")
		}
	case TypeServiceStop:
		if m.InstanceID == "" {
			return fmt.Errorf("service_stop: instance_id is required")
		}
	case TypeServiceState:
		if m.Report == nil || m.Report.ID == "" {
			return fmt.Errorf("service_state: report with id is required")
		}
		switch m.Report.State {
		case job.InstanceStarting, job.InstanceReady, job.InstanceExited:
		default:
			return fmt.Errorf("service_state: unknown state %q", m.Report.State)
		}
		if len(m.Report.Output) > job.MaxInstanceOutput || len(m.Report.Error) > job.MaxInstanceOutput {
			return fmt.Errorf("service_state: output and error are at most %d bytes", job.MaxInstanceOutput)
		}
		if len(m.Report.Egress) > job.MaxInstanceEgress {
			return fmt.Errorf("service_state: at most %d egress records", job.MaxInstanceEgress)
		}
		for _, e := range m.Report.Egress {
			if len(e.Host) > job.MaxEgressPatternLen || e.Port < 0 || e.Port > 65535 || e.BytesSent < 0 || e.BytesReceived < 0 || e.Connections < 0 {
				return fmt.Errorf("service_state: a bad egress record")
			}
		}
	case TypeOutput:
		if m.JobID == "" || m.LeaseID == "" {
			return fmt.Errorf("output: job_id and lease_id are required")
		}
		if m.Stream != job.LogStdout && m.Stream != job.LogStderr {
			return fmt.Errorf("output: stream must be stdout or stderr, not %.40q", m.Stream)
		}
		if len(m.Text) > MaxOutputTextBytes {
			return fmt.Errorf("output: text is %d bytes; at most %d are accepted", len(m.Text), MaxOutputTextBytes)
		}
		if m.Dropped < 0 {
			return fmt.Errorf("output: dropped must not be negative")
		}
	case TypeServiceOutput:
		if m.InstanceID == "" {
			return fmt.Errorf("service_output: instance_id is required")
		}
		if m.Stream != job.LogStdout && m.Stream != job.LogStderr {
			return fmt.Errorf("service_output: stream must be stdout or stderr, not %.40q", m.Stream)
		}
		if len(m.Text) > MaxOutputTextBytes {
			return fmt.Errorf("service_output: text is %d bytes; at most %d are accepted", len(m.Text), MaxOutputTextBytes)
		}
		if m.Dropped < 0 {
			return fmt.Errorf("service_output: dropped must not be negative")
		}
	case TypeMetrics:
		if m.Usage == nil || !m.Usage.Valid() {
			return fmt.Errorf("metrics: usage with no negative number is required")
		}
	case TypeHeartbeat, TypeError:
	default:
		return fmt.Errorf("unknown message type %q", m.Type)
	}
	return nil
}

// MaxOutputTextBytes bounds the text of one "output" message: a worker
// sends its output in chunks of at most this.
const MaxOutputTextBytes = 64 << 10

// MaxConcurrency bounds what a worker may claim, so that a bad claim cannot
// make the scheduler hold an unbounded number of leases for one connection.
const MaxConcurrency = 1024

func checkCapabilities(c *job.Capabilities) error {
	if c.Concurrency < 1 || c.Concurrency > MaxConcurrency {
		return fmt.Errorf("capabilities: concurrency must be between 1 and %d", MaxConcurrency)
	}
	for _, t := range c.Runtimes {
		if !t.Known() {
			return fmt.Errorf("capabilities: unknown runtime %q", t)
		}
	}
	if c.MaxMemoryMB < 0 {
		return fmt.Errorf("capabilities: max_memory_mb must not be negative")
	}
	return nil
}
