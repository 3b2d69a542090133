package orchestrator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// registerRaw dials and sends one register message, returning the
// connection and the orchestrator's first answer (or the read's error).
func registerRaw(t *testing.T, h *harness, m protocol.Message) (*protocol.Conn, protocol.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := protocol.Dial(ctx, h.url(), nil, protocol.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	if err := conn.Write(ctx, m); err != nil {
		// The orchestrator may close before a large frame is written.
		_, rerr := conn.Read(ctx)
		return conn, protocol.Message{}, rerr
	}
	reply, err := conn.Read(ctx)
	return conn, reply, err
}

// TestRegisterDeclarationsBounded checks what a worker may declare before
// and after it is authenticated: a register frame past the
// pre-authentication limit ends the connection with 1009; oversize notes
// or lists are refused with an error naming the field, for good; once
// registered, a capabilities message larger than the register limit (the
// builds a worker holds) is read, and one over a declaration limit is
// answered with an error and changes nothing.
func TestRegisterDeclarationsBounded(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	caps := luaCaps(1)
	reg := func(mod func(*protocol.Message)) protocol.Message {
		m := protocol.Message{Type: protocol.TypeRegister, Version: protocol.Version, Name: "w", Capabilities: &caps}
		mod(&m)
		return m
	}

	// 40 MiB of notes: the frame is over the limit read before
	// authentication.
	_, _, err := registerRaw(t, h, reg(func(m *protocol.Message) {
		m.Notes = map[string]string{"python": strings.Repeat("n", 40<<20)}
	}))
	if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("40 MiB register: %v, want close status 1009", err)
	}

	for _, tc := range []struct {
		name  string
		mod   func(*protocol.Message)
		field string
	}{
		{"a 2 KiB note", func(m *protocol.Message) { m.Notes = map[string]string{"python": strings.Repeat("n", 2<<10)} }, "note"},
		{"40 notes", func(m *protocol.Message) {
			m.Notes = map[string]string{}
			for i := range 40 {
				m.Notes[fmt.Sprint(i)] = "x"
			}
		}, "notes"},
		{"a 1 KiB name", func(m *protocol.Message) { m.Name = strings.Repeat("a", 1<<10) }, "name"},
		{"300 namespaces", func(m *protocol.Message) {
			c := caps
			for i := range 300 {
				c.Namespaces = append(c.Namespaces, fmt.Sprint("n", i))
			}
			m.Capabilities = &c
		}, "capabilities.namespaces"},
	} {
		_, reply, err := registerRaw(t, h, reg(tc.mod))
		if err != nil || reply.Type != protocol.TypeError || !reply.Permanent || !strings.Contains(reply.Error, tc.field) || !strings.Contains(reply.Error, "at most") {
			t.Errorf("register with %s: %+v %v; want a permanent error naming %s", tc.name, reply, err, tc.field)
		}
	}
	if ws := h.o.Workers(); len(ws) != 0 {
		t.Fatalf("refused registrations left workers: %+v", ws)
	}

	// Registered: the read limit is the session's.
	w := h.dial(caps)
	w.keepAlive()
	big := caps
	big.Docker = &job.DockerCapabilities{}
	for i := range 256 {
		big.Docker.BuildCache = append(big.Docker.BuildCache, fmt.Sprintf("%064d", i))
	}
	big.Runtimes = append(big.Runtimes, job.TypeDocker)
	w.send(protocol.Message{Type: protocol.TypeCapabilities, Capabilities: &big})
	eventually(t, 5*time.Second, func() error {
		ws := h.o.Workers()
		if len(ws) != 1 || ws[0].Capabilities.Docker == nil || len(ws[0].Capabilities.Docker.BuildCache) != 256 {
			return fmt.Errorf("workers %+v: the 16 KiB+ capabilities were not applied", ws)
		}
		return nil
	})
	w.send(protocol.Message{Type: protocol.TypeCapabilities, Capabilities: &caps, Notes: map[string]string{"js": strings.Repeat("n", 1<<20)}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		m, err := w.conn.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for the error answering oversize notes: %v", err)
		}
		if m.Type == protocol.TypeError {
			if !strings.Contains(m.Error, "note") {
				t.Fatalf("error %q does not name the notes", m.Error)
			}
			break
		}
	}
	if ws := h.o.Workers(); len(ws) != 1 || len(ws[0].Notes) != 0 || len(ws[0].Capabilities.Docker.BuildCache) != 256 {
		t.Fatalf("oversize capabilities changed the worker: %+v", ws)
	}
}
