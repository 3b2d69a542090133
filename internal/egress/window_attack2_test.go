package egress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// A service instance's proxy runs for as long as the instance: the
// attacks of an instance that keeps its connections, and its
// destinations, across windows.

// holdingUpstream accepts connections and keeps them open until their
// client ends its side (or the test ends).
func holdingUpstream(t *testing.T) func(ctx context.Context, network, addr string) (net.Conn, error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, l.Addr().String())
	}
}

// tunnel opens a CONNECT tunnel to target through p and reports its status.
func tunnel(t *testing.T, p *Proxy, target string) (net.Conn, int) {
	t.Helper()
	c, _ := proxyClientDone(p)
	t.Cleanup(func() { c.Close() })
	go func() { _, _ = fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	if resp.StatusCode != 200 {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	return c, resp.StatusCode
}

// An instance opens its limit of connections in a window and keeps them
// open: the next window must not let it open as many again on top of
// them (window after window, it would hold every file the worker may
// open). MaxConns is also the bound on the connections open at once; one
// closed gives its place back.
func TestAttack2WindowConnsKeptAcrossWindows(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	p := New(Config{Allow: patterns(t, "a.example:443"), Owner: patterns(t, "a.example:443"),
		Resolver: &scriptedResolver{answers: [][]netip.Addr{{netip.MustParseAddr("93.184.216.34")}}}, Dial: holdingUpstream(t),
		MaxConns: 3, MaxBytes: 1 << 20, Window: time.Hour, Now: clock, Subject: "instance"})
	defer p.Close()
	var open []net.Conn
	for i := range 3 {
		c, st := tunnel(t, p, "a.example:443")
		if st != 200 {
			t.Fatalf("tunnel %d: %d", i, st)
		}
		open = append(open, c)
	}
	for w := range 3 {
		mu.Lock()
		now = now.Add(time.Hour)
		mu.Unlock()
		if _, st := tunnel(t, p, "a.example:443"); st != http.StatusForbidden {
			t.Fatalf("window %d: a fourth connection with three kept open: %d", w+1, st)
		}
	}
	if notes := strings.Join(p.TakeNotes(), "\n"); !strings.Contains(notes, "3 connections open at once") {
		t.Fatalf("notes %q", notes)
	}
	open[0].Close()
	var st int
	deadline := time.Now().Add(10 * time.Second)
	for st != 200 && time.Now().Before(deadline) {
		_, st = tunnel(t, p, "a.example:443")
	}
	if st != 200 {
		t.Fatalf("after one closed: %d", st)
	}
}

// An instance reaches a new destination with every connection, window
// after window: the proxy's records stay within what an instance's
// report carries (job.MaxInstanceEgress), whatever it has reached.
func TestAttack2WindowDestinationsBounded(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		a, b := net.Pipe()
		go func() { _, _ = io.Copy(io.Discard, b); b.Close() }()
		return a, nil
	}
	p := New(Config{Allow: patterns(t, "*.example:443"), Owner: patterns(t, "*.example:443"),
		Resolver: &scriptedResolver{answers: [][]netip.Addr{{netip.MustParseAddr("93.184.216.34")}}}, Dial: dial,
		MaxConns: 100, Window: time.Hour, Now: clock, Subject: "instance"})
	defer p.Close()
	n := 0
	for w := range 4 {
		for range 100 {
			n++
			c, st := tunnel(t, p, fmt.Sprintf("h%d.example:443", n))
			if st != 200 {
				t.Fatalf("window %d, destination %d: %d", w, n, st)
			}
			c.Close()
		}
		mu.Lock()
		now = now.Add(time.Hour)
		mu.Unlock()
	}
	if r := p.Records(); len(r) > job.MaxInstanceEgress || r[0].Host != "h1.example" {
		t.Fatalf("%d records after %d destinations (first %+v)", len(r), n, r[0])
	}
}
