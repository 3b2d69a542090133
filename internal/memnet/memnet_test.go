package memnet_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/memnet"
)

func pair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	a, b := memnet.Pipe(memnet.Addr{Name: "test"})
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Both ends writing more than the buffer holds, at once, finish: each
// end's reader drains while its writer blocks.
func TestBothEndsWriteAtOnce(t *testing.T) {
	a, b := pair(t)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 3*memnet.BufferBytes/16+7)
	errs := make(chan error, 4)
	for _, c := range []net.Conn{a, b} {
		go func() {
			_, err := c.Write(payload)
			errs <- err
		}()
		go func() {
			got := make([]byte, len(payload))
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, payload) {
				errs <- errors.New("data differs")
				return
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// A written message fits the buffer: the write returns before any read.
func TestWriteIsBuffered(t *testing.T) {
	a, b := pair(t)
	if _, err := a.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	a.Close()
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v; want hello and EOF", got, err)
	}
	if _, err := b.Write([]byte("x")); err == nil {
		t.Fatal("write to a closed peer succeeded")
	}
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
}

func TestDeadlines(t *testing.T) {
	a, b := pair(t)
	a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := a.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	// A passed deadline fails at once; a cleared one lets data through.
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with a passed deadline: %v", err)
	}
	a.SetReadDeadline(time.Time{})
	b.Write([]byte("x"))
	if _, err := a.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}

	// A deadline moved into the past wakes a blocked read (as
	// http.Server does to abort its background read).
	done := make(chan error, 1)
	go func() {
		_, err := a.Read(make([]byte, 1))
		done <- err
	}()
	a.SetReadDeadline(time.Now().Add(-time.Second))
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked read after the deadline moved: %v", err)
	}

	// A writer blocked on a full buffer times out.
	b.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	n, err := b.Write(make([]byte, memnet.BufferBytes+1))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n != memnet.BufferBytes {
		t.Fatalf("write of more than the buffer: %d, %v; want %d and a timeout", n, err, memnet.BufferBytes)
	}
}

// Closing an end wakes its peer's blocked read (EOF) and its own.
func TestCloseWakesReads(t *testing.T) {
	a, b := pair(t)
	peer := make(chan error, 1)
	own := make(chan error, 1)
	go func() { _, err := b.Read(make([]byte, 1)); peer <- err }()
	go func() { _, err := a.Read(make([]byte, 1)); own <- err }()
	a.Close()
	if err := <-peer; err != io.EOF {
		t.Fatalf("peer read: %v, want EOF", err)
	}
	if err := <-own; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("own read: %v, want net.ErrClosed", err)
	}
}

func TestListener(t *testing.T) {
	l := memnet.Listen("inprocess")
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	c, err := l.Dial(context.Background(), "tcp", "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RemoteAddr().String(); got != "inprocess" {
		t.Fatalf("RemoteAddr %q, want inprocess", got)
	}
	c.Write([]byte("echo"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "echo" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Dial(ctx, "tcp", ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial nobody accepts: %v, want the context's error", err)
	}
	l.Close()
	if _, err := l.Dial(context.Background(), "tcp", ""); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("dial a closed listener: %v, want net.ErrClosed", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept on a closed listener: %v", err)
	}
}

// BenchmarkPingPong sends 64-byte messages back and forth over a memnet
// pipe, and reports its round trips against those of net.Pipe and of a
// loopback TCP connection measured in the same run.
func BenchmarkPingPong(b *testing.B) {
	roundTrips := func(b *testing.B, dial func(*testing.B) (net.Conn, net.Conn)) time.Duration {
		a, c := dial(b)
		defer a.Close()
		defer c.Close()
		go func() {
			buf := make([]byte, 64)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
		buf := make([]byte, 64)
		t0 := time.Now()
		for range b.N {
			if _, err := a.Write(buf); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(a, buf); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	tcp := func(b *testing.B) (net.Conn, net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, _ := ln.Accept()
			accepted <- c
		}()
		a, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		return a, <-accepted
	}
	mem := roundTrips(b, func(*testing.B) (net.Conn, net.Conn) { return memnet.Pipe(memnet.Addr{Name: "bench"}) })
	syncPipe := roundTrips(b, func(*testing.B) (net.Conn, net.Conn) { return net.Pipe() })
	loop := roundTrips(b, tcp)
	b.ReportMetric(float64(syncPipe)/float64(mem), "x-net.Pipe")
	b.ReportMetric(float64(loop)/float64(mem), "x-tcp")
}
