package orchestrator

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// TestSlowLargeResultIsNotSilence: a result that takes longer than the
// heartbeat silence limit to arrive, but keeps arriving, is taken. A worker
// cannot send heartbeats while it sends a large message, so the silence
// limit must count time without data, not the time one message takes.
func TestSlowLargeResultIsNotSilence(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	silence := h.cfg.HeartbeatInterval * time.Duration(h.cfg.HeartbeatMisses)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, h.url(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(protocol.DefaultReadLimit)
	write := func(m protocol.Message) {
		b, _ := json.Marshal(m)
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	read := func() protocol.Message {
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m, err := protocol.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if m.Type != protocol.TypeHeartbeat {
				return m
			}
		}
	}
	caps := luaCaps(1)
	write(protocol.Message{Type: protocol.TypeRegister, Version: protocol.Version, Capabilities: &caps})
	if m := read(); m.Type != protocol.TypeRegistered {
		t.Fatalf("register: %+v", m)
	}
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	m := read()
	if m.Type != protocol.TypeAssign {
		t.Fatalf("want assign, got %+v", m)
	}

	out := strings.Repeat("o", 1<<20)
	b, _ := json.Marshal(protocol.Message{Type: protocol.TypeResult, JobID: m.Task.JobID, LeaseID: m.Task.LeaseID,
		Result: &job.Result{Status: job.StatusCompleted, Output: out}})
	wr, err := ws.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	const parts = 10
	step := len(b)/parts + 1
	pause := 2 * silence / parts
	for i := 0; i < len(b); i += step {
		if _, err := wr.Write(b[i:min(i+step, len(b))]); err != nil {
			t.Fatalf("writing the result: %v", err)
		}
		time.Sleep(pause)
	}
	if err := wr.Close(); err != nil {
		t.Fatalf("finishing the result: %v", err)
	}

	v, err := h.o.Wait(ctx, j.ID, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != job.StatusCompleted || v.Attempt != 1 || v.Result == nil || len(v.Result.Output) != len(out) {
		t.Fatalf("job %s attempt %d reason %q", v.Status, v.Attempt, v.Reason)
	}
}
