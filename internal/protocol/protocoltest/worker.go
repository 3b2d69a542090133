// Package protocoltest holds the protocol-level test helpers: a fake
// worker that speaks the worker protocol by hand over a real WebSocket, so
// that a test can hold a lease, answer late or falsely, drop every lease,
// or see exactly what the orchestrator sends a worker.
package protocoltest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// Worker is a registered fake worker. Its connection is closed when the
// test ends.
type Worker struct {
	T       testing.TB
	Conn    *protocol.Conn
	ID      string
	Trusted bool
	// StreamKey is the key given in registered (services).
	StreamKey string
	// Src is the local address it connected from ("" when the system
	// chose).
	Src string
}

// dialTimeout bounds connecting and registering.
const dialTimeout = 5 * time.Second

// dial connects to url and sends register with token ("" for an anonymous
// volunteer) and caps; it returns the connection and the first answer.
func dial(t testing.TB, url, src, token string, caps job.Capabilities) (*protocol.Conn, protocol.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	var conn *protocol.Conn
	if src == "" {
		c, err := protocol.Dial(ctx, url, nil, protocol.Options{})
		if err != nil {
			return nil, protocol.Message{}, err
		}
		conn = c
	} else {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client, CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			return nil, protocol.Message{}, err
		}
		conn = protocol.NewConn(ws, protocol.Options{})
	}
	t.Cleanup(func() { conn.CloseNow() })
	reg := protocol.Message{Type: protocol.TypeRegister, Version: protocol.Version, Name: "fake", Capabilities: &caps, Token: token}
	if err := conn.Write(ctx, reg); err != nil {
		return conn, protocol.Message{}, err
	}
	m, err := conn.Read(ctx)
	return conn, m, err
}

// Register connects a fake worker to url presenting token ("" for an
// anonymous volunteer); the test fails unless it is registered.
func Register(t testing.TB, url, token string, caps job.Capabilities) *Worker {
	t.Helper()
	return RegisterFrom(t, url, "", token, caps)
}

// RegisterFrom is Register from local address src (such as "127.0.0.2",
// so that one test can be volunteers at several addresses); "" lets the
// system choose.
func RegisterFrom(t testing.TB, url, src, token string, caps job.Capabilities) *Worker {
	t.Helper()
	conn, m, err := dial(t, url, src, token, caps)
	if err != nil || m.Type != protocol.TypeRegistered {
		t.Fatalf("register: %+v %v", m, err)
	}
	return &Worker{T: t, Conn: conn, ID: m.WorkerID, Trusted: m.Trusted, StreamKey: m.StreamKey, Src: src}
}

// Refused tries to register as Register does and returns the
// orchestrator's error answer; the test fails if the worker is registered.
func Refused(t testing.TB, url, token string, caps job.Capabilities) protocol.Message {
	t.Helper()
	return RefusedFrom(t, url, "", token, caps)
}

// TryRegisterFrom connects and registers as RegisterFrom does and returns
// the connection (nil when it failed) and the orchestrator's first answer,
// whatever it is; the connection is closed when the test ends.
func TryRegisterFrom(t testing.TB, url, src, token string, caps job.Capabilities) (*protocol.Conn, protocol.Message, error) {
	t.Helper()
	return dial(t, url, src, token, caps)
}

// RefusedFrom is Refused from local address src.
func RefusedFrom(t testing.TB, url, src, token string, caps job.Capabilities) protocol.Message {
	t.Helper()
	conn, m, err := dial(t, url, src, token, caps)
	if conn != nil {
		defer conn.CloseNow()
	}
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if m.Type != protocol.TypeError {
		t.Fatalf("a worker presenting %q was registered: %+v", token, m)
	}
	return m
}

// ErrClosed is returned by TryNext when the orchestrator closed the
// connection.
var ErrClosed = errors.New("the connection was closed")

// TryNext reads until an assignment arrives and returns it; it returns an
// error (context.DeadlineExceeded) when none came within d, or ErrClosed
// when the connection ended. A read that times out closes the connection
// (the WebSocket library does), so a worker that waited in vain is done.
func (w *Worker) TryNext(d time.Duration) (*job.Task, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		m, err := w.Conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, errors.Join(ErrClosed, err)
		}
		if m.Type == protocol.TypeAssign {
			return m.Task, nil
		}
	}
}

// Next is TryNext that fails the test when no assignment arrives.
func (w *Worker) Next(d time.Duration) *job.Task {
	w.T.Helper()
	task, err := w.TryNext(d)
	if err != nil {
		w.T.Fatalf("fake worker waiting for an assignment: %v", err)
	}
	return task
}

// WaitClosed reads, dropping what arrives, until the orchestrator closes
// the connection; it fails the test when that takes longer than d. It
// returns the assignments that arrived meanwhile.
func (w *Worker) WaitClosed(d time.Duration) []*job.Task {
	w.T.Helper()
	var got []*job.Task
	for {
		task, err := w.TryNext(d)
		switch {
		case errors.Is(err, ErrClosed):
			return got
		case err != nil:
			w.T.Fatalf("the connection is still open after %s", d)
		}
		got = append(got, task)
	}
}

// Send writes m; the test fails if it cannot.
func (w *Worker) Send(m protocol.Message) {
	w.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	if err := w.Conn.Write(ctx, m); err != nil {
		w.T.Fatalf("fake worker send: %v", err)
	}
}

// Answer sends r as the result of task.
func (w *Worker) Answer(task *job.Task, r job.Result) {
	w.T.Helper()
	w.Send(protocol.Message{Type: protocol.TypeResult, JobID: task.JobID, LeaseID: task.LeaseID, Result: &r})
}

// Close drops the connection at once, as a worker that vanishes does.
func (w *Worker) Close() { w.Conn.CloseNow() }

// KeepAlive sends heartbeats until the test ends or the connection fails.
func (w *Worker) KeepAlive() {
	done := make(chan struct{})
	w.T.Cleanup(func() { close(done) })
	go func() {
		t := time.NewTicker(30 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				err := w.Conn.Write(ctx, protocol.Message{Type: protocol.TypeHeartbeat})
				cancel()
				if err != nil {
					return
				}
			}
		}
	}()
}
