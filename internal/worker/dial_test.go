package worker_test

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/memnet"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/runtime"
	"github.com/zerverless/zerverless/internal/worker"
)

// TestDialReconnects checks that a worker given Config.Dial makes its
// session through it, handshake and all, and makes the next one through
// it too when the orchestrator ends the first.
func TestDialReconnects(t *testing.T) {
	ln := memnet.Listen("inprocess")
	registers := make(chan string, 4)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := protocol.Accept(w, r, nil, protocol.Options{})
		if err != nil {
			return
		}
		defer conn.CloseNow()
		m, err := conn.Read(r.Context())
		if err != nil || m.Type != protocol.TypeRegister {
			return
		}
		registers <- r.RemoteAddr + " " + r.Host
		// Ending the session at once: the worker dials again.
	})}
	go srv.Serve(ln)
	defer srv.Close()

	var dials atomic.Int32
	cfg := worker.DefaultConfig()
	cfg.URL = "ws://orchestrator.invalid:1/ws/volunteer"
	cfg.ReconnectMin, cfg.ReconnectMax = 10*time.Millisecond, 20*time.Millisecond
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return ln.Dial(ctx, network, addr)
	}
	w, err := worker.New(cfg, runtime.Set{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	for range 2 {
		select {
		case got := <-registers:
			if got != "inprocess orchestrator.invalid:1" {
				t.Errorf("session from %q, want inprocess with the URL's host", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the worker did not register (again) through Dial")
		}
	}
	cancel()
	<-done
	if dials.Load() < 2 {
		t.Fatalf("%d dials, want one per session", dials.Load())
	}
}
