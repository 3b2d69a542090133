package netlimit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/memnet"
	"github.com/zerverless/zerverless/internal/testutil"
)

func TestResolve(t *testing.T) {
	c := DefaultConfig()
	c.Descriptors = 20000
	r, err := c.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if r.MaxConns != 12800 || r.MaxSessions != 3200 {
		t.Errorf("20,000 files: %d connections and %d sessions, want 12,800 and 3,200", r.MaxConns, r.MaxSessions)
	}
	if r.MaxConnsPerAddr != DefaultConnsPerAddr {
		t.Errorf("20,000 files: %d connections per address, want %d", r.MaxConnsPerAddr, DefaultConnsPerAddr)
	}
	if small, err := (Config{Descriptors: 700, ReadHeaderTimeout: 1, IdleTimeout: 1, MinBodyRate: 1, BodyGrace: 1}).Resolve(); err != nil || small.MaxConnsPerAddr != small.MaxConns {
		t.Errorf("700 files: %+v %v, want as many per address as in all", small, err)
	}
	if r.MaxConns+r.MaxSessions > c.Descriptors-ReservedDescriptors {
		t.Errorf("derived limits leave no reserve: %+v", r)
	}
	for _, tc := range []struct {
		change func(*Config)
		flag   string
	}{
		{func(c *Config) { c.Descriptors = 100 }, "ulimit"},
		{func(c *Config) { c.MaxConns = -1 }, "--max-conns"},
		{func(c *Config) { c.MaxConns = 19900 }, "--max-conns"},
		{func(c *Config) { c.MaxSessions = -5 }, "--max-worker-sessions"},
		{func(c *Config) { c.MaxConnsPerAddr = -1 }, "--max-conns-per-addr"},
		{func(c *Config) { c.MaxConns = 10; c.MaxConnsPerAddr = 11 }, "--max-conns-per-addr"},
		{func(c *Config) { c.ReadHeaderTimeout = 0 }, "--read-header-timeout"},
		{func(c *Config) { c.IdleTimeout = -time.Second }, "--idle-timeout"},
		{func(c *Config) { c.MinBodyRate = 0 }, "--min-body-rate"},
		{func(c *Config) { c.BodyGrace = 0 }, "--body-grace"},
	} {
		c := DefaultConfig()
		c.Descriptors = 20000
		tc.change(&c)
		if _, err := c.Resolve(); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%+v: err %v, want one naming %s", c, err, tc.flag)
		}
	}
}

// dialFrom opens a TCP connection to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closed c within d: reads,
// discarding whatever the server answered first, end in an error that is
// not the deadline's.
func closedByServer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestListenerLimits fills the pool from two addresses and checks that one
// address never holds more than its share, that a newcomer from an
// address holding fewer takes the place of the oldest connection of the
// one holding most, and that promoted sessions leave the pool.
func TestListenerLimits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Descriptors = 1024
	cfg.MaxConns, cfg.MaxConnsPerAddr, cfg.MaxSessions = 6, 4, 1
	cfg, err = cfg.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, cfg)
	defer l.Close()
	accepted := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	addr := ln.Addr().String()
	stats := func(want Stats) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, func() error {
			if got := l.Stats(); got != want {
				return fmt.Errorf("stats %+v, want %+v", got, want)
			}
			return nil
		})
	}
	var a []net.Conn
	for range 5 {
		a = append(a, dialFrom(t, "127.0.0.2", addr))
	}
	stats(Stats{Conns: 4, Refused: 1})
	if !closedByServer(a[4], 5*time.Second) {
		t.Fatal("the fifth connection of one address was not closed")
	}
	b1 := dialFrom(t, "127.0.0.3", addr)
	b2 := dialFrom(t, "127.0.0.3", addr)
	stats(Stats{Conns: 6, Refused: 1})
	// Full: a newcomer from 127.0.0.4 (0 held) evicts the oldest of
	// 127.0.0.2 (4 held).
	c1 := dialFrom(t, "127.0.0.4", addr)
	stats(Stats{Conns: 6, Refused: 1, Evicted: 1})
	if !closedByServer(a[0], 5*time.Second) {
		t.Fatal("the oldest connection of the address holding most was not evicted")
	}
	if closedByServer(a[1], 100*time.Millisecond) || closedByServer(b1, 100*time.Millisecond) || closedByServer(c1, 100*time.Millisecond) {
		t.Fatal("a connection other than the oldest of the largest holder was closed")
	}
	// 127.0.0.3 holds 2, 127.0.0.2 now 3: a third from 127.0.0.3 would
	// hold as many as the largest, so it is refused.
	dialFrom(t, "127.0.0.3", addr)
	stats(Stats{Conns: 6, Refused: 2, Evicted: 1})

	// A promoted connection leaves the pool and makes room.
	var first net.Conn
	for range 6 {
		first = <-accepted
	}
	ctx := l.ConnContext(context.Background(), first)
	if err := Promote(ctx); err != nil {
		t.Fatal(err)
	}
	stats(Stats{Conns: 5, Sessions: 1, Refused: 2, Evicted: 1})
	if err := Promote(l.ConnContext(context.Background(), <-accepted)); !errors.Is(err, ErrTooManySessions) {
		t.Fatalf("a second session over MaxSessions 1: %v", err)
	}
	first.Close()
	stats(Stats{Conns: 5, Refused: 2, Evicted: 1})
	b2.Close()
}

// TestAlso checks that connections accepted from a second listener count
// with the first one's under the same limits, under an address of their
// own, and are promoted as the first one's are.
func TestAlso(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.MaxConns, cfg.MaxConnsPerAddr, cfg.MaxSessions = 6, 2, 1
	cfg, err = cfg.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, cfg)
	defer l.Close()
	mem := memnet.Listen("inprocess")
	ml := l.Also(mem)
	defer ml.Close()
	accepted := make(chan net.Conn, 100)
	for _, x := range []net.Listener{l, ml} {
		go func() {
			for {
				c, err := x.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
	}
	stats := func(want Stats) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, func() error {
			if got := l.Stats(); got != want {
				return fmt.Errorf("stats %+v, want %+v", got, want)
			}
			return nil
		})
	}
	dialFrom(t, "127.0.0.1", ln.Addr().String())
	dialFrom(t, "127.0.0.1", ln.Addr().String())
	stats(Stats{Conns: 2})
	var ms []net.Conn
	for range 3 {
		c, err := mem.Dial(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		ms = append(ms, c)
	}
	// In-process connections are not 127.0.0.1's: two join it; the
	// third is one too many of their own.
	stats(Stats{Conns: 4, Refused: 1})
	if !closedByServer(ms[2], 5*time.Second) {
		t.Fatal("the third in-process connection was not refused")
	}
	var inproc net.Conn
	for range 4 {
		if c := <-accepted; c.RemoteAddr().Network() == "memnet" {
			inproc = c
		}
	}
	if err := Promote(l.ConnContext(context.Background(), inproc)); err != nil {
		t.Fatal(err)
	}
	stats(Stats{Conns: 3, Sessions: 1, Refused: 1})
	inproc.Close()
	stats(Stats{Conns: 3, Refused: 1})
}

// TestLimitBody sends a body one byte at a time and checks that its
// connection ends once the grace has passed, while a body sent at once
// is read whole and its handler may answer long after without its
// request being canceled.
func TestLimitBody(t *testing.T) {
	cfg := DefaultConfig()
	cfg.BodyGrace = 300 * time.Millisecond
	cfg.MinBodyRate = 1 << 10
	bodyErr := make(chan error, 10)
	canceled := make(chan error, 10)
	h := LimitBody(cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		bodyErr <- err
		if err != nil {
			return
		}
		// Answer after the body's deadline would have passed.
		select {
		case <-r.Context().Done():
			canceled <- r.Context().Err()
		case <-time.After(3 * cfg.BodyGrace):
			canceled <- nil
		}
		fmt.Fprintf(w, "%d", len(b))
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	defer srv.Close()

	c := dialFrom(t, "127.0.0.1", ln.Addr().String())
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte("x")); err != nil {
			break
		}
		if closedByServer(c, 100*time.Millisecond) {
			break
		}
	}
	select {
	case err := <-bodyErr:
		if err == nil || !strings.Contains(err.Error(), "slower than") {
			t.Fatalf("slow body read: %v, want the rate error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a body sent one byte at a time was still being read")
	}
	if !closedByServer(c, 5*time.Second) {
		t.Fatal("the connection of a slow body stayed open")
	}

	resp, err := http.Post("http://"+ln.Addr().String(), "text/plain", strings.NewReader(strings.Repeat("y", 5000)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(bufio.NewReader(resp.Body))
	resp.Body.Close()
	if err := <-bodyErr; err != nil {
		t.Fatalf("body sent at once: %v", err)
	}
	if err := <-canceled; err != nil {
		t.Fatalf("the request was canceled after its body was read: %v", err)
	}
	if string(b) != "5000" {
		t.Fatalf("answer %q", b)
	}
}
