package protocol

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/zerverless/zerverless/internal/job"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"register", `{"type":"register","version":1,"capabilities":{"runtimes":["lua"],"concurrency":2}}`, true},
		{"register without caps", `{"type":"register","version":1}`, false},
		{"register zero concurrency", `{"type":"register","version":1,"capabilities":{"runtimes":["lua"],"concurrency":0}}`, false},
		{"register unknown runtime", `{"type":"register","version":1,"capabilities":{"runtimes":["cobol"],"concurrency":1}}`, false},
		{"result", `{"type":"result","job_id":"j","lease_id":"l","result":{"status":"completed"}}`, true},
		{"result not final", `{"type":"result","job_id":"j","lease_id":"l","result":{"status":"running"}}`, false},
		{"result without lease", `{"type":"result","job_id":"j","result":{"status":"completed"}}`, false},
		{"heartbeat", `{"type":"heartbeat","leases":["a"]}`, true},
		{"output", `{"type":"output","job_id":"j","lease_id":"l","stream":"stdout","text":"hi\n"}`, true},
		{"output stderr dropped", `{"type":"output","job_id":"j","lease_id":"l","stream":"stderr","text":"","dropped":10}`, true},
		{"output status stream", `{"type":"output","job_id":"j","lease_id":"l","stream":"status","text":"x"}`, false},
		{"output without lease", `{"type":"output","job_id":"j","stream":"stdout","text":"x"}`, false},
		{"output too large", `{"type":"output","job_id":"j","lease_id":"l","stream":"stdout","text":"` + strings.Repeat("x", MaxOutputTextBytes+1) + `"}`, false},
		{"service output", `{"type":"service_output","instance_id":"i","stream":"stderr","text":"hi\n","dropped":3}`, true},
		{"service output without instance", `{"type":"service_output","stream":"stdout","text":"x"}`, false},
		{"service output status stream", `{"type":"service_output","instance_id":"i","stream":"status","text":"x"}`, false},
		{"service output too large", `{"type":"service_output","instance_id":"i","stream":"stdout","text":"` + strings.Repeat("x", MaxOutputTextBytes+1) + `"}`, false},
		{"output negative dropped", `{"type":"output","job_id":"j","lease_id":"l","stream":"stdout","dropped":-1}`, false},
		{"metrics", `{"type":"metrics","usage":{"tasks_running":1,"containers_running":2}}`, true},
		{"metrics without usage", `{"type":"metrics"}`, false},
		{"metrics negative", `{"type":"metrics","usage":{"images_cached":-1}}`, false},
		{"service_state egress", `{"type":"service_state","report":{"id":"i","state":"ready","egress":[{"host":"a.example","port":443,"bytes_sent":1,"bytes_received":2,"connections":1}]}}`, true},
		{"service_state negative egress", `{"type":"service_state","report":{"id":"i","state":"ready","egress":[{"host":"a.example","port":443,"bytes_sent":-1}]}}`, false},
		{"service_state long egress host", `{"type":"service_state","report":{"id":"i","state":"ready","egress":[{"host":"` + strings.Repeat("a", 300) + `","port":443}]}}`, false},
		{"service_state too many records", `{"type":"service_state","report":{"id":"i","state":"ready","egress":[` + strings.Repeat(`{"host":"a","port":1},`, 256) + `{"host":"a","port":1}]}}`, false},
		{"unknown", `{"type":"nope"}`, false},
		{"not json", `{"type":`, false},
		{"trailing", `{"type":"heartbeat"} {}`, false},
		{"array", `[]`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("Decode(%s) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	m := Message{Type: TypeAssign, Task: &job.Task{JobID: "j", LeaseID: "l", Type: job.TypeWasm,
		Spec: job.Spec{Wasm: []byte{0, 'a', 's', 'm', 1, 0, 0, 0}, Input: json.RawMessage(`{"x":1}`)}}}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Task.Spec.Wasm) != string(m.Task.Spec.Wasm) || string(got.Task.Spec.Input) != `{"x":1}` {
		t.Fatalf("round trip lost data: %+v", got.Task)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"type":"register","version":1,"capabilities":{"runtimes":["lua"],"concurrency":2}}`))
	f.Add([]byte(`{"type":"result","job_id":"j","lease_id":"l","result":{"status":"completed","output":"x"}}`))
	f.Add([]byte(`{"type":"capabilities","capabilities":{"concurrency":1,"docker":{"build_cache":["a"]}},"notes":{"python":"no"}}`))
	f.Add([]byte(`{"type":"output","job_id":"j","lease_id":"l","stream":"stdout","text":"x"}`))
	f.Add([]byte(`{"type":"metrics","usage":{"tasks_running":1}}`))
	f.Add([]byte(`{"type":"assign","task":{"job_id":"j","lease_id":"l","spec":{"wasm":"AGFzbQEAAAA="}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		// Whatever decodes must pass its own check and survive a round trip.
		if err := m.Check(); err != nil {
			t.Fatalf("decoded message fails Check: %v", err)
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := Decode(out); err != nil {
			t.Fatalf("re-decode of %s: %v", out, err)
		}
		// The declaration check never panics, and what it accepts
		// fits its bounds.
		lim := DefaultDeclarationLimits()
		if lim.Check(&m) == nil && len(m.Notes) > lim.MaxNotes {
			t.Fatalf("accepted %d notes", len(m.Notes))
		}
	})
}

// TestFitNotes checks that FitNotes makes any notes acceptable to
// DefaultDeclarationLimits.
func TestFitNotes(t *testing.T) {
	notes := map[string]string{"python": strings.Repeat("é", 4000), "lua": "ok"}
	for i := range 50 {
		notes[fmt.Sprint("z", i)] = "x"
	}
	fit := FitNotes(notes)
	m := Message{Type: TypeRegister, Notes: fit}
	if err := DefaultDeclarationLimits().Check(&m); err != nil {
		t.Fatalf("fitted notes refused: %v", err)
	}
	if fit["lua"] != "ok" || !strings.HasPrefix(fit["python"], "éé") || !utf8.ValidString(fit["python"]) {
		t.Fatalf("fitted notes lost or broke what fits: %q", fit["lua"])
	}
	if len(notes["python"]) != 8000 {
		t.Fatal("FitNotes changed its argument")
	}
}
