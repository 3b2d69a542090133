package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/runtime"
	"github.com/zerverless/zerverless/internal/worker"
)

// writingRuntime runs service instances that write, through the sink of
// their start's context, what the test gives write, and end when
// stopped.
var _ worker.ServiceRuntime = (*writingRuntime)(nil)

type writingRuntime struct {
	mu     sync.Mutex
	sinks  map[string]runtime.Sink
	report map[string]func(job.InstanceReport)
}

func (r *writingRuntime) Run(context.Context, job.Task) (job.Result, error) {
	return job.Result{}, errors.New("runs no tasks")
}

func (r *writingRuntime) StartInstance(ctx context.Context, inst job.ServiceInstance, report func(job.InstanceReport)) error {
	r.mu.Lock()
	r.sinks[inst.ID] = runtime.SinkFrom(ctx)
	r.report[inst.ID] = report
	r.mu.Unlock()
	report(job.InstanceReport{ID: inst.ID, State: job.InstanceReady})
	return nil
}

func (r *writingRuntime) StopInstance(_ context.Context, id, reason string) error {
	r.mu.Lock()
	report := r.report[id]
	r.mu.Unlock()
	report(job.InstanceReport{ID: id, State: job.InstanceExited, Error: reason, Output: "the tail\n"})
	return nil
}

func (r *writingRuntime) DialInstance(context.Context, string) (net.Conn, func() error, error) {
	return nil, nil, errors.New("no port")
}

func (r *writingRuntime) write(id string, stream job.LogStream, s string) {
	r.mu.Lock()
	sink := r.sinks[id]
	r.mu.Unlock()
	sink.WriteOutput(stream, []byte(s))
}

// TestWorkerSendsInstanceOutput: what an instance writes reaches the
// orchestrator as service_output messages of its id while it runs, at
// most ServiceOutputRate bytes a second (the rest counted as dropped), and
// all of it before the instance's exited report.
func TestWorkerSendsInstanceOutput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt := &writingRuntime{sinks: map[string]runtime.Sink{}, report: map[string]func(job.InstanceReport){}}
	f := newFakeOrchestrator(t, "sk-"+randomHex(8))
	wcfg := worker.DefaultConfig()
	wcfg.URL = f.url()
	wcfg.Docker = &job.DockerCapabilities{Services: 1}
	wcfg.ServiceOutputRate = 1000
	w, err := worker.New(wcfg, runtime.Set{job.TypeDocker: rt}, slog.New(slog.NewTextHandler(testLog{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()
	defer func() { cancel(); <-ran }() // nothing logs after the test
	recv(t, f.register, "register")
	conn := recv(t, f.sessions, "session")
	conn.Write(ctx, protocol.Message{Type: protocol.TypeRegistered, WorkerID: "w-1", Trusted: true, HeartbeatMS: 1000, StreamKey: f.key})
	inst := &job.ServiceInstance{ID: "i-" + randomHex(4), Namespace: "user", Service: "user/svc", Version: 1,
		Spec: job.ServiceSpec{Image: "x:1", Port: 8080}}
	conn.Write(ctx, protocol.Message{Type: protocol.TypeServiceStart, Instance: inst})
	nextState(t, conn, inst.ID) // starting
	if rep := nextState(t, conn, inst.ID); rep.State != job.InstanceReady {
		t.Fatalf("report %+v", rep)
	}
	rt.write(inst.ID, job.LogStdout, "first line\n")
	m := nextOutput(t, conn)
	if m.InstanceID != inst.ID || m.Stream != job.LogStdout || m.Text != "first line\n" || m.Dropped != 0 {
		t.Fatalf("first output %+v", m)
	}
	// Past the rate's burst: the rest is dropped, and counted.
	rt.write(inst.ID, job.LogStderr, strings.Repeat("x", 5000))
	var sent, dropped int64
	for sent+dropped < 5000 {
		m := nextOutput(t, conn)
		sent += int64(len(m.Text))
		dropped += m.Dropped
	}
	if sent > 1000 || sent+dropped != 5000 {
		t.Fatalf("%d bytes sent and %d dropped of 5000 at 1000 a second", sent, dropped)
	}
	// Its last words come (sent, or counted as dropped) before its exit.
	rt.write(inst.ID, job.LogStdout, "last words\n")
	conn.Write(ctx, protocol.Message{Type: protocol.TypeServiceStop, InstanceID: inst.ID})
	var last strings.Builder
	var lastDropped int64
	for {
		m, err := conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == protocol.TypeServiceOutput {
			last.WriteString(m.Text)
			lastDropped += m.Dropped
		}
		if m.Type == protocol.TypeServiceState && m.Report.ID == inst.ID {
			if m.Report.State != job.InstanceExited {
				t.Fatalf("report %+v", m.Report)
			}
			break
		}
	}
	if int64(last.Len())+lastDropped != int64(len("last words\n")) {
		t.Fatalf("before the exit: %q sent and %d bytes dropped, want the last words", last.String(), lastDropped)
	}
}

// nextOutput reads the session until a service_output.
func nextOutput(t *testing.T, c *protocol.Conn) protocol.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		m, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read the session: %v", err)
		}
		if m.Type == protocol.TypeServiceOutput {
			return m
		}
		if m.Type == protocol.TypeServiceState {
			t.Fatalf("a service_state before the output: %+v", m.Report)
		}
	}
}
