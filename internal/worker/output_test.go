package worker

import (
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// TestLiveOutputBounds: what a task writes is cut into messages of at
// most the chunk size, by stream and in order, at most LiveOutputBytes in
// all; the rest is counted as dropped on the next message, and nothing is
// kept once the task is closed.
func TestLiveOutputBounds(t *testing.T) {
	// running: no sender starts; the test reads what gathers itself.
	l := &liveOutput{running: true, msg: protocol.Message{Type: protocol.TypeOutput, JobID: "j", LeaseID: "l"}, chunk: 4, room: 10, wake: make(chan struct{}, 1), done: make(chan struct{})}
	l.WriteOutput(job.LogStdout, []byte("abcdef"))
	l.WriteOutput(job.LogStderr, []byte("gh"))
	l.WriteOutput(job.LogStdout, []byte("ijklmn"))
	var texts []string
	for _, m := range l.pending {
		if m.Type != protocol.TypeOutput || m.JobID != "j" || m.LeaseID != "l" || len(m.Text) > 4 {
			t.Errorf("message %+v", m)
		}
		texts = append(texts, string(m.Stream)+":"+m.Text)
	}
	if got := strings.Join(texts, " "); got != "stdout:abcd stdout:ef stderr:gh stdout:ij" {
		t.Errorf("messages %q", got)
	}
	if l.dropped != 4 {
		t.Errorf("dropped %d, want 4", l.dropped)
	}
	select {
	case <-l.wake:
	default:
		t.Error("a full chunk did not wake the sender")
	}
}

// TestLiveChunkBytesValidated: a chunk whose JSON could pass the
// protocol's bound is refused.
func TestLiveChunkBytesValidated(t *testing.T) {
	c := DefaultConfig()
	c.URL = "ws://localhost:1/ws/volunteer"
	c.LiveChunkBytes = protocol.MaxOutputTextBytes
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "LiveChunkBytes") {
		t.Errorf("Validate: %v", err)
	}
}

// TestInstanceOutputRate: a service instance's output is sent as
// service_output messages of its id, at most its rate's burst at once;
// the rest is counted as dropped, and the room comes back with time, up
// to one second's worth.
func TestInstanceOutputRate(t *testing.T) {
	l := &liveOutput{running: true, msg: protocol.Message{Type: protocol.TypeServiceOutput, InstanceID: "i"}, chunk: 64, rate: 10, room: 10,
		refilled: time.Now().Add(time.Hour), wake: make(chan struct{}, 1), done: make(chan struct{})}
	l.WriteOutput(job.LogStdout, []byte("0123456789abcde"))
	if len(l.pending) != 1 || l.pending[0].Text != "0123456789" || l.pending[0].InstanceID != "i" || l.pending[0].Type != protocol.TypeServiceOutput {
		t.Fatalf("pending %+v", l.pending)
	}
	if l.dropped != 5 {
		t.Fatalf("dropped %d, want 5", l.dropped)
	}
	l.refilled = time.Now().Add(-10 * time.Second) // long ago: the burst, no more
	l.WriteOutput(job.LogStderr, []byte("ABCDEFGHIJKLMNOP"))
	if len(l.pending) != 2 || l.pending[1].Text != "ABCDEFGHIJ" || l.dropped != 11 {
		t.Fatalf("after a refill: pending %+v, dropped %d", l.pending, l.dropped)
	}
}
