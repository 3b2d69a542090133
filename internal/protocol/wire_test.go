package protocol

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// stdEncode is how Conn.Write encoded a message before the protocol's JSON
// moved off encoding/json: the frames of browser workers and of earlier
// releases.
func stdEncode(t testing.TB, m *Message) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(m); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// tricky is text that encoders tell apart: HTML characters, the
// separators JavaScript does not take raw, control characters, invalid
// UTF-8, quotes and backslashes.
const tricky = "a<b>&c \b\f\r \u2028\u2029 \x00\x1f\x7f \xff\xfe bad \xe2\x82 \"q\" \\ é 𝄞 \t\n"

// wireMessages has a message of every type, with the fields its type uses
// set, empty and tricky.
func wireMessages() []Message {
	caps := &job.Capabilities{Runtimes: []job.Type{job.TypeLua, job.TypeWasm, job.TypeDocker}, Concurrency: 4, MaxMemoryMB: 512,
		Namespaces: []string{"a", tricky}, Version: "v1.2",
		Docker: &job.DockerCapabilities{MaxMemoryMB: 1, MaxCPUs: 1.5, MaxPids: 64, AllowImages: []string{"alpine:*"}, Build: true,
			BuildCache: []string{"k1", "k2"}, BuiltImages: []string{}, Egress: []string{"*.example.com:443"}, Services: 2,
			Pool: &job.DockerPool{Ready: 2, WarmImages: []string{"alpine"}, Hits: 1 << 60, Misses: 3, ReadyMS: 0.25}}}
	task := &job.Task{JobID: "j", LeaseID: "l", Attempt: 2, Namespace: "ns", Type: job.TypeDocker,
		Spec: job.Spec{Code: tricky, Wasm: []byte{0, 'a', 's', 'm', 1, 0, 0, 0, 0xff}, Args: []string{"-x", ""},
			Input: json.RawMessage(" { \"z\" : [1, 2.5e3, \"<&>\"], \"a\": null }\n"), TimeoutSeconds: 1.25, MemoryMB: 64,
			Docker: &job.DockerSpec{Image: "alpine", Command: []string{"sh", "-c", "echo <hi>"}, Env: map[string]string{"Z": "1", "A": tricky, "m": ""},
				Volumes: map[string]string{"/data": "vol"}, Resources: job.Resources{MemoryMB: 128, CPUs: 0.5, Pids: 32},
				Build: &job.BuildSpec{Dockerfile: "FROM alpine\n", Context: map[string]job.ContextFile{"b.sh": {Content: "echo", Executable: true}, "a": {Content: "AA==", Encoding: "base64"}},
					ContextID: "c", ContextURL: "http://x/?a=1&b=2", Args: map[string]string{"V": "1"}, Tag: "t", Only: true, TimeoutSeconds: 60, BaseImages: []string{"alpine"}},
				Network: &job.Network{Egress: []string{"a.example:443"}}},
			Replicas: 3, Quorum: 2},
		Timeout: 90*time.Second + 1, Limits: job.Limits{OutputBytes: 1 << 20, MemoryBytes: 1 << 30}}
	egress := []job.EgressRecord{{Host: "a.example", Port: 443, BytesSent: 1, BytesReceived: 2, Connections: 3}}
	result := &job.Result{Status: job.StatusCompleted, Output: tricky, Stderr: "", Result: json.RawMessage(`{"b" :1,"a":[true,false,null]}`),
		Error: "e", ExitCode: -1, DurationMS: 12, Truncated: true, OOMKilled: true, PeakMemoryBytes: 1 << 40, CPUTimeMS: 7, WarmStart: true,
		Files:  map[string][]byte{"out.bin": {0, 1, 2, 0xff}, "empty": {}, "a.txt": []byte("x")},
		Build:  &job.BuildResult{Image: "i", ImageID: "sha256:x", CacheHit: true, CacheKey: "k", SizeBytes: 5, Layers: 2, DurationMS: 3, Log: tricky, Egress: egress},
		Egress: egress, Attempt: 1, WorkerID: "w",
		Replicas: []job.ReplicaAnswer{{WorkerID: "w1", Owner: "o", Status: job.StatusFailed, ExitCode: 1, Hash: "h", Agreed: true}, {}}}
	inst := &job.ServiceInstance{ID: "i", Namespace: "ns", Service: "s", Version: 3,
		Spec: job.ServiceSpec{Image: "nginx", Command: []string{"a"}, Env: map[string]string{"K": "V"}, Resources: job.Resources{CPUs: 1},
			Port: 8080, ReadinessPath: "/health?x=<y>", StartTimeoutSeconds: 5, Network: &job.Network{}}}
	return []Message{
		{Type: TypeRegister, Version: Version, Name: "w <1>", Capabilities: caps, Notes: map[string]string{"python": tricky, "docker": "no engine", "a": "", tricky: "k"}, Token: "tok"},
		{Type: TypeRegister, Version: Version, Capabilities: &job.Capabilities{Concurrency: 1}},
		{Type: TypeRegistered, Version: Version, WorkerID: "w", HeartbeatMS: 5000, Trusted: true, StreamKey: "sk"},
		{Type: TypeAssign, Task: task},
		{Type: TypeAssign, Task: &job.Task{JobID: "j", LeaseID: "l"}},
		{Type: TypeAssign, Task: &job.Task{JobID: "j", LeaseID: "l", Spec: job.Spec{TimeoutSeconds: 1e-7, Input: json.RawMessage("[\"\u2028\u2029\xff\"]")}}},
		{Type: TypeAssign, Task: &job.Task{JobID: "j", LeaseID: "l", Spec: job.Spec{TimeoutSeconds: 1e21, Args: []string{tricky}}, Timeout: -1}},
		{Type: TypeAssign, Task: &job.Task{JobID: "j", LeaseID: "l", Spec: job.Spec{TimeoutSeconds: 123456789.125}}},
		{Type: TypeResult, JobID: "j", LeaseID: "l", Result: result},
		{Type: TypeResult, JobID: "j", LeaseID: "l", Result: &job.Result{Status: job.StatusFailed}},
		{Type: TypeReject, JobID: "j", LeaseID: "l", Error: tricky, Attempted: true},
		{Type: TypeCancel, JobID: "j", LeaseID: "l"},
		{Type: TypeHeartbeat, Leases: []string{"l1", "l2"}},
		{Type: TypeHeartbeat, Leases: []string{}},
		{Type: TypeHeartbeat},
		{Type: TypeCapabilities, Capabilities: caps, Notes: map[string]string{"x": "y"}},
		{Type: TypeServiceStart, Instance: inst},
		{Type: TypeServiceStop, InstanceID: "i"},
		{Type: TypeServiceState, Report: &job.InstanceReport{ID: "i", State: job.InstanceExited, ExitCode: 137, Error: tricky, Output: "out", Egress: egress}},
		{Type: TypeError, Error: tricky, Permanent: true},
		{Type: TypeOutput, JobID: "j", LeaseID: "l", Stream: job.LogStderr, Text: tricky, Dropped: 9},
		{Type: TypeServiceOutput, InstanceID: "i", Stream: job.LogStdout, Text: strings.Repeat(tricky, 100)},
		{Type: TypeMetrics, Usage: &job.WorkerUsage{TasksRunning: 1, ContainersRunning: 2, ImagesCached: 3, ImageCacheBytes: 4, WarmHolders: 5, IdleProcesses: 6, TasksTotal: 7, OutputBytesTotal: 8}},
	}
}

// TestWireMatchesEncodingJSON: every message type encodes to the bytes
// encoding/json wrote, and decodes from them to what encoding/json
// decoded; decoding what was encoded gives the message back.
func TestWireMatchesEncodingJSON(t *testing.T) {
	msgs := wireMessages()
	for _, f := range []string{"testdata/assign_function.json", "testdata/result_function.json"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m Message
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	seen := make(map[Type]bool)
	for _, m := range msgs {
		seen[m.Type] = true
		want := stdEncode(t, &m)
		var buf bytes.Buffer
		if err := encode(&buf, &m); err != nil {
			t.Fatalf("encode %s: %v", m.Type, err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s encodes differently from encoding/json:\n got %s\nwant %s", m.Type, buf.Bytes(), want)
			continue
		}
		got, err := Decode(want)
		if err != nil {
			t.Errorf("decode %s: %v", m.Type, err)
			continue
		}
		var std Message
		if err := json.Unmarshal(want, &std); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, std) {
			t.Errorf("%s decodes differently from encoding/json:\n got %+v\nwant %+v", m.Type, got, std)
		}
		// What was decoded encodes as encoding/json encodes it, and
		// decodes to itself.
		buf.Reset()
		if err := encode(&buf, &got); err != nil || !bytes.Equal(buf.Bytes(), stdEncode(t, &got)) {
			t.Errorf("%s re-encodes to %s (%v), want %s", m.Type, buf.Bytes(), err, stdEncode(t, &got))
		}
		again, err := Decode(buf.Bytes())
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("%s does not survive a second round trip (%v):\n got %+v\nwant %+v", m.Type, err, again, got)
		}
	}
	for _, typ := range []Type{TypeRegister, TypeRegistered, TypeAssign, TypeResult, TypeReject, TypeCancel, TypeHeartbeat, TypeCapabilities,
		TypeServiceStart, TypeServiceStop, TypeServiceState, TypeError, TypeOutput, TypeServiceOutput, TypeMetrics} {
		if !seen[typ] {
			t.Errorf("no %s message tested", typ)
		}
	}
}

// TestEncodeRefusesWhatEncodingJSONRefuses: a result whose raw JSON is not
// JSON is not sent, as before.
func TestEncodeRefusesWhatEncodingJSONRefuses(t *testing.T) {
	m := Message{Type: TypeResult, JobID: "j", LeaseID: "l", Result: &job.Result{Status: job.StatusCompleted, Result: json.RawMessage(`{"a":`)}}
	if _, err := json.Marshal(m); err == nil {
		t.Fatal("encoding/json accepted bad raw JSON")
	}
	if err := encode(new(bytes.Buffer), &m); err == nil {
		t.Fatal("encode accepted bad raw JSON")
	}
	m = Message{Type: TypeAssign, Task: &job.Task{JobID: "j", LeaseID: "l", Spec: job.Spec{TimeoutSeconds: math.NaN()}}}
	if err := encode(new(bytes.Buffer), &m); err == nil {
		t.Fatal("encode accepted NaN")
	}
}

// FuzzDecodeMatchesEncodingJSON: any input is accepted by Decode exactly
// when encoding/json accepts it, and decodes to the same message, which
// encodes to the same bytes.
func FuzzDecodeMatchesEncodingJSON(f *testing.F) {
	for _, m := range wireMessages() {
		var buf bytes.Buffer
		json.NewEncoder(&buf).Encode(m)
		f.Add(buf.Bytes())
	}
	for _, s := range []string{
		`{"TYPE":"heartbeat","Leases":["a"],"leases":["b"]}`,
		`{"type":"heartbeat","leases":null,"job_id":null}`,
		`{"type":"assign","task":{"job_id":"j","lease_id":"l","timeout_ns":1.5}}`,
		`{"type":"assign","task":{"job_id":"j","lease_id":"l","spec":{"wasm":"AGFz bQ=="}}}`,
		`{"type":"assign","task":{"job_id":"j","lease_id":"l","spec":{"docker":{"docker_image":"a","build":{"build_context":{"a":"x","b":{"content":"y","bad":1}}}}}}}`,
		`{"type":"result","job_id":"j","lease_id":"l","result":{"status":"completed","files":{"a":"AA=="},"result":"\ud800"}}`,
		`{"type":"metrics","usage":{"tasks_running":1e2}}`,
		`{"type":"error","error":"\xff"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var std Message
		stdErr := json.Unmarshal(data, &std)
		if stdErr == nil {
			stdErr = std.Check()
		}
		got, err := Decode(data)
		if (err == nil) != (stdErr == nil) {
			t.Fatalf("Decode(%q) error = %v; encoding/json's: %v", data, err, stdErr)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(got, std) {
			t.Fatalf("Decode(%q) = %+v; encoding/json's: %+v", data, got, std)
		}
		var buf bytes.Buffer
		if err := encode(&buf, &got); err != nil {
			t.Fatalf("encode: %v", err)
		}
		if want := stdEncode(t, &got); !bytes.Equal(buf.Bytes(), want) {
			t.Fatalf("encode = %s; encoding/json's: %s", buf.Bytes(), want)
		}
	})
}

// TestEncodedFields fails when a struct that encode writes itself gains,
// loses or renames a field: encode must then be changed with it.
func TestEncodedFields(t *testing.T) {
	want := map[reflect.Type]string{
		reflect.TypeFor[Message](): "type version,omitempty name,omitempty capabilities,omitempty notes,omitempty token,omitempty worker_id,omitempty " +
			"heartbeat_ms,omitempty trusted,omitempty stream_key,omitempty task,omitempty instance,omitempty instance_id,omitempty report,omitempty " +
			"job_id,omitempty lease_id,omitempty result,omitempty stream,omitempty text,omitempty dropped,omitempty usage,omitempty leases,omitempty " +
			"error,omitempty attempted,omitempty permanent,omitempty",
		reflect.TypeFor[job.Task]():   "job_id lease_id attempt namespace job_type spec timeout_ns limits",
		reflect.TypeFor[job.Limits](): "output_bytes memory_bytes",
		reflect.TypeFor[job.Spec](): "code,omitempty wasm,omitempty args,omitempty input_data,omitempty timeout_seconds,omitempty memory_mb,omitempty " +
			"docker,omitempty replicas,omitempty quorum,omitempty",
		reflect.TypeFor[job.Result](): "status output stderr result,omitempty error,omitempty exit_code duration_ms truncated oom_killed,omitempty " +
			"peak_memory_bytes,omitempty cpu_time_ms,omitempty warm_start,omitempty files,omitempty build,omitempty egress,omitempty attempt " +
			"worker_id,omitempty replicas,omitempty",
	}
	for typ, tags := range want {
		var got []string
		for f := range typ.Fields() {
			got = append(got, f.Tag.Get("json"))
		}
		if strings.Join(got, " ") != tags {
			t.Errorf("%v has the fields %q; encode writes %q", typ, strings.Join(got, " "), tags)
		}
	}
}
