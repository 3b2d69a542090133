package egress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestProxyWindow: with a Window (a service instance), the connection
// and byte limits hold per window: past them requests are refused, and
// the next window allows them again; TakeNotes hands each refusal over
// once; the records count everything.
func TestProxyWindow(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, strings.Repeat("x", 1000))
	}))
	defer srv.Close()
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	p := New(Config{Allow: patterns(t, "a.example:80"), Owner: patterns(t, "a.example:80"),
		Resolver: &scriptedResolver{answers: [][]netip.Addr{{netip.MustParseAddr("93.184.216.34")}}}, Dial: dial,
		MaxConns: 2, MaxBytes: 1 << 20, Window: time.Hour, Now: clock, Subject: "instance"})
	get := func() int {
		c, served := proxyClientDone(p)
		defer func() { c.Close(); <-served }()
		go func() { _, _ = io.WriteString(c, "GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n") }()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0 // cut
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	if a, b, c := get(), get(), get(); a != 200 || b != 200 || c != http.StatusForbidden {
		t.Fatalf("three requests with a limit of two per window: %d %d %d", a, b, c)
	}
	notes := p.TakeNotes()
	if len(notes) != 1 || !strings.Contains(notes[0], "the instance opened its limit of 2 connections per 1h0m0s") {
		t.Fatalf("notes %q", notes)
	}
	if again := p.TakeNotes(); len(again) != 0 {
		t.Fatalf("notes taken twice: %q", again)
	}
	advance(time.Hour)
	if s := get(); s != 200 {
		t.Fatalf("a new window: %d", s)
	}
	if rec := p.Records(); len(rec) != 1 || rec[0].Connections != 3 {
		t.Fatalf("records %+v", rec)
	}

	// Bytes: past the limit in a window, cut and refused until it ends.
	p = New(Config{Allow: patterns(t, "a.example:80"), Owner: patterns(t, "a.example:80"),
		Resolver: &scriptedResolver{answers: [][]netip.Addr{{netip.MustParseAddr("93.184.216.34")}}}, Dial: dial,
		MaxBytes: 1500, Window: time.Minute, Now: clock, Subject: "instance"})
	if s := get(); s != 200 {
		t.Fatalf("within the byte limit: %d", s)
	}
	get() // passes the limit: cut
	if s := get(); s != http.StatusForbidden {
		t.Fatalf("past the byte limit: %d", s)
	}
	if notes := strings.Join(p.TakeNotes(), "\n"); !strings.Contains(notes, "limit of 1500 bytes (sent and received) per 1m0s") {
		t.Fatalf("notes %q", notes)
	}
	advance(time.Minute)
	c, served := proxyClientDone(p)
	go func() { _, _ = io.WriteString(c, "GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n") }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the next window: %v %v", resp, err)
	}
	c.Close()
	<-served
}
