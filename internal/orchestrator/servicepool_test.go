package orchestrator

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/yamux"

	"github.com/zerverless/zerverless/internal/agent"
)

// deadConn is a connection that, once dead, writes nothing.
type deadConn struct {
	net.Conn
	dead atomic.Bool
}

func (c *deadConn) Write(p []byte) (int, error) {
	if c.dead.Load() {
		return 0, errInstanceClosed
	}
	return c.Conn.Write(p)
}

// A request whose kept connection is found closed before any of it was
// written goes again on a new one, with its body, whatever its method.
func TestPoolSendsAgainWhatWasNotWritten(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+string(b))
	}))
	defer srv.Close()
	var conns []*deadConn
	p := &instancePool{}
	p.t = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err != nil {
			return nil, err
		}
		dc := &deadConn{Conn: c}
		conns = append(conns, dc)
		return dc, nil
	}}
	defer p.t.CloseIdleConnections()
	c := &http.Client{Transport: poolTransport{p}}
	post := func(body string) string {
		t.Helper()
		// A body of unknown length, as a proxied one is.
		resp, err := c.Post(srv.URL, "text/plain", io.NopCloser(strings.NewReader(body)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := post("one"); got != "POST one" {
		t.Fatalf("first: %q", got)
	}
	conns[0].dead.Store(true)
	big := strings.Repeat("x", 40<<10) // more than the write buffer
	if got := post(big); got != "POST "+big {
		t.Fatalf("again: %d bytes", len(got))
	}
	if len(conns) != 2 {
		t.Fatalf("%d connections", len(conns))
	}
}

// A stream whose instance ended it refuses writes, writing nothing; the
// worker's error line is the connection's error.
func TestStreamConnAnswerAndEnd(t *testing.T) {
	a, b := net.Pipe()
	cs, err := yamux.Client(a, agent.YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	ss, err := yamux.Server(b, agent.YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	go func() {
		for i := 0; ; i++ {
			st, err := ss.AcceptStream()
			if err != nil {
				return
			}
			line, _, _ := agent.ReadHeader(st)
			if line == "instance bad" {
				io.WriteString(st, "error no such instance on this worker\n")
			} else {
				io.WriteString(st, "ok\nhello")
			}
			st.Close()
		}
	}()
	s := &services{cfg: DefaultServicesConfig()}
	c, err := s.open(cs, "good")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(c); err != nil || string(b) != "hello" {
		t.Fatalf("read %q %v", b, err)
	}
	if n, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); n != 0 || !errors.Is(err, errInstanceClosed) {
		t.Fatalf("a write after the end: %d %v", n, err)
	}
	c, _ = s.open(cs, "bad")
	if _, err := c.Read(make([]byte, 10)); err == nil || !strings.Contains(err.Error(), "no such instance") {
		t.Fatalf("the worker's error: %v", err)
	}
}
