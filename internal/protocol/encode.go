package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/zerverless/zerverless/internal/job"
)

// encode appends m's JSON to buf, without a trailing newline: byte for
// byte what encoding/json writes, which browser workers and workers of
// earlier releases read. The fields of every message and those of the
// task and result are written here; what is rarer and deeper (declared
// capabilities, a docker spec, a result's files) is encoded by
// encoding/json itself. TestWireMatchesEncodingJSON and
// FuzzDecodeMatchesEncodingJSON compare the two; TestEncodedFields fails
// when one of these structs gains a field that is not written here.
func encode(buf *bytes.Buffer, m *Message) error {
	e := encoder{b: buf.AvailableBuffer()}
	e.message(m)
	if e.err != nil {
		// encoding/json refuses the same values (a raw JSON that is
		// not JSON, a number that is not finite), with its message.
		if _, err := json.Marshal(*m); err != nil {
			return fmt.Errorf("encode %s message: %w", m.Type, err)
		}
		return fmt.Errorf("encode %s message: %w", m.Type, e.err)
	}
	buf.Write(e.b)
	return nil
}

// encoder appends JSON to b; the first value it cannot encode sets err.
type encoder struct {
	b   []byte
	err error
	// more says that a member was written in the object being written.
	more bool
}

func (e *encoder) begin() { e.b = append(e.b, '{'); e.more = false }
func (e *encoder) end()   { e.b = append(e.b, '}'); e.more = true }

// key writes a member's name (which needs no escaping) and its colon.
func (e *encoder) key(name string) {
	if e.more {
		e.b = append(e.b, ',')
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, name...)
	e.b = append(e.b, '"', ':')
	e.more = true
}

func (e *encoder) str(name, s string) { e.key(name); e.b = job.AppendJSONString(e.b, s) }

func (e *encoder) strOmit(name, s string) {
	if s != "" {
		e.str(name, s)
	}
}

func (e *encoder) int(name string, n int64) { e.key(name); e.b = strconv.AppendInt(e.b, n, 10) }

func (e *encoder) intOmit(name string, n int64) {
	if n != 0 {
		e.int(name, n)
	}
}

func (e *encoder) bool(name string, v bool) { e.key(name); e.b = strconv.AppendBool(e.b, v) }

func (e *encoder) boolOmit(name string, v bool) {
	if v {
		e.bool(name, v)
	}
}

func (e *encoder) floatOmit(name string, f float64) {
	if f == 0 {
		return
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		e.fail(errors.New("a number that is not finite"))
		return
	}
	e.key(name)
	// As encoding/json writes a float64 (ES6's number to string).
	format := byte('f')
	if abs := math.Abs(f); abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	e.b = strconv.AppendFloat(e.b, f, format, -1, 64)
	if format == 'e' {
		// e-09 is written e-9
		if n := len(e.b); n >= 4 && e.b[n-4] == 'e' && e.b[n-3] == '-' && e.b[n-2] == '0' {
			e.b[n-2] = e.b[n-1]
			e.b = e.b[:n-1]
		}
	}
}

func (e *encoder) stringsOmit(name string, list []string) {
	if len(list) == 0 {
		return
	}
	e.key(name)
	e.b = append(e.b, '[')
	for i, s := range list {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.b = job.AppendJSONString(e.b, s)
	}
	e.b = append(e.b, ']')
}

func (e *encoder) bytesOmit(name string, p []byte) {
	if len(p) == 0 {
		return
	}
	e.key(name)
	e.b = append(e.b, '"')
	e.b = base64.StdEncoding.AppendEncode(e.b, p)
	e.b = append(e.b, '"')
}

// rawOmit writes raw JSON compacted, with <, >, &, U+2028 and U+2029
// escaped, as encoding/json writes a json.RawMessage (which it checks,
// allowing duplicate names and invalid UTF-8 as here).
func (e *encoder) rawOmit(name string, raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	scratch := getBuffer()
	defer putBuffer(scratch)
	scratch.Write(raw) // Compact rewrites what it is given
	v := jsontext.Value(scratch.Bytes())
	if err := v.Compact(jsontext.EscapeForHTML(true), jsontext.EscapeForJS(true)); err != nil {
		e.fail(err)
		return
	}
	e.key(name)
	e.b = append(e.b, v...)
}

// std writes v as encoding/json writes it, omitted when omit.
func (e *encoder) std(name string, v any, omit bool) {
	if omit {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		e.fail(err)
		return
	}
	e.key(name)
	e.b = append(e.b, b...)
}

func (e *encoder) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

func (e *encoder) message(m *Message) {
	e.begin()
	e.str("type", string(m.Type))
	e.intOmit("version", int64(m.Version))
	e.strOmit("name", m.Name)
	e.std("capabilities", m.Capabilities, m.Capabilities == nil)
	e.std("notes", m.Notes, len(m.Notes) == 0)
	e.strOmit("token", m.Token)
	e.strOmit("worker_id", m.WorkerID)
	e.intOmit("heartbeat_ms", m.HeartbeatMS)
	e.boolOmit("trusted", m.Trusted)
	e.strOmit("stream_key", m.StreamKey)
	if m.Task != nil {
		e.key("task")
		e.task(m.Task)
	}
	e.std("instance", m.Instance, m.Instance == nil)
	e.strOmit("instance_id", m.InstanceID)
	e.std("report", m.Report, m.Report == nil)
	e.strOmit("job_id", m.JobID)
	e.strOmit("lease_id", m.LeaseID)
	if m.Result != nil {
		e.key("result")
		e.result(m.Result)
	}
	e.strOmit("stream", string(m.Stream))
	e.strOmit("text", m.Text)
	e.intOmit("dropped", m.Dropped)
	e.std("usage", m.Usage, m.Usage == nil)
	e.stringsOmit("leases", m.Leases)
	e.strOmit("error", m.Error)
	e.boolOmit("attempted", m.Attempted)
	e.boolOmit("permanent", m.Permanent)
	e.end()
}

func (e *encoder) task(t *job.Task) {
	e.begin()
	e.str("job_id", t.JobID)
	e.str("lease_id", t.LeaseID)
	e.int("attempt", int64(t.Attempt))
	e.str("namespace", t.Namespace)
	e.str("job_type", string(t.Type))
	e.key("spec")
	e.spec(&t.Spec)
	e.int("timeout_ns", int64(t.Timeout))
	e.key("limits")
	e.begin()
	e.int("output_bytes", int64(t.Limits.OutputBytes))
	e.int("memory_bytes", t.Limits.MemoryBytes)
	e.end()
	e.end()
}

func (e *encoder) spec(s *job.Spec) {
	e.begin()
	e.strOmit("code", s.Code)
	e.bytesOmit("wasm", s.Wasm)
	e.stringsOmit("args", s.Args)
	e.rawOmit("input_data", s.Input)
	e.floatOmit("timeout_seconds", s.TimeoutSeconds)
	e.intOmit("memory_mb", int64(s.MemoryMB))
	e.std("docker", s.Docker, s.Docker == nil)
	e.intOmit("replicas", int64(s.Replicas))
	e.intOmit("quorum", int64(s.Quorum))
	e.end()
}

func (e *encoder) result(r *job.Result) {
	e.begin()
	e.str("status", string(r.Status))
	e.str("output", r.Output)
	e.str("stderr", r.Stderr)
	e.rawOmit("result", r.Result)
	e.strOmit("error", r.Error)
	e.int("exit_code", int64(r.ExitCode))
	e.int("duration_ms", r.DurationMS)
	e.bool("truncated", r.Truncated)
	e.boolOmit("oom_killed", r.OOMKilled)
	e.intOmit("peak_memory_bytes", r.PeakMemoryBytes)
	e.intOmit("cpu_time_ms", r.CPUTimeMS)
	e.boolOmit("warm_start", r.WarmStart)
	e.std("files", r.Files, len(r.Files) == 0)
	e.std("build", r.Build, r.Build == nil)
	e.std("egress", r.Egress, len(r.Egress) == 0)
	e.int("attempt", int64(r.Attempt))
	e.strOmit("worker_id", r.WorkerID)
	e.std("replicas", r.Replicas, len(r.Replicas) == 0)
	e.end()
}
