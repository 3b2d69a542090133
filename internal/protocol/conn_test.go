package protocol

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// connPair returns the two ends of a protocol session over a real
// WebSocket: the dialing side and the accepting side.
func connPair(t *testing.T) (dialed, accepted *Conn) {
	t.Helper()
	got := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, nil, Options{})
		if err != nil {
			t.Error(err)
			return
		}
		if err := c.Authenticated(); err != nil {
			t.Error(err)
		}
		got <- c
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.CloseNow() })
	select {
	case a := <-got:
		t.Cleanup(func() { a.CloseNow() })
		return d, a
	case <-ctx.Done():
		t.Fatal("no connection accepted")
		return nil, nil
	}
}

// TestConnMessagesOfEverySize: messages written from many goroutines at
// once, small ones and ones larger than the buffers kept for reuse, arrive
// whole and unchanged at both Read and ReadIdle, each in one message.
func TestConnMessagesOfEverySize(t *testing.T) {
	dialed, accepted := connPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const writers, each = 8, 25
	// The largest is a message over maxPooledBuffer (an output's text may
	// be 64 KiB), read into a buffer that is then not kept.
	sizes := []int{0, 10, 4 << 10, 32 << 10, 64<<10 - 8}
	text := func(w, i int) string {
		return fmt.Sprintf("%d/%d:", w, i) + strings.Repeat("x", sizes[(w+i)%len(sizes)])
	}
	for _, dir := range []struct {
		name string
		from *Conn
		read func() (Message, error)
	}{
		{"to the accepting side", dialed, func() (Message, error) { return accepted.ReadIdle(ctx, 10*time.Second) }},
		{"to the dialing side", accepted, func() (Message, error) { return dialed.Read(ctx) }},
	} {
		t.Run(dir.name, func(t *testing.T) {
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						m := Message{Type: TypeOutput, JobID: "j", LeaseID: "l", Stream: job.LogStdout, Text: text(w, i)}
						if err := dir.from.Write(ctx, m); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			want := make(map[string]bool)
			for w := range writers {
				for i := range each {
					want[text(w, i)] = true
				}
			}
			for range writers * each {
				m, err := dir.read()
				if err != nil {
					cancel()
					t.Fatal(err)
				}
				if m.Type != TypeOutput || !want[m.Text] {
					t.Fatalf("read a message not written (or twice): type %s, %d bytes of text starting %.20q", m.Type, len(m.Text), m.Text)
				}
				delete(want, m.Text)
			}
			wg.Wait()
		})
	}
}

// TestConnIdleBindAndWriteTimeout: ReadIdle's one timer serves message
// after message and ends a silent connection with ErrIdle; the end of the
// context given to Bind closes the connection under a blocked Read, which
// reports that context's error; WriteWithin gives up on a peer that does
// not read, with ErrWriteTimeout, and closes the connection.
func TestConnIdleBindAndWriteTimeout(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		dialed, accepted := connPair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		accepted.Bind(ctx)
		for i := range 20 {
			if err := dialed.Write(ctx, Message{Type: TypeHeartbeat}); err != nil {
				t.Fatal(err)
			}
			if m, err := accepted.ReadIdle(ctx, 5*time.Second); err != nil || m.Type != TypeHeartbeat {
				t.Fatalf("message %d: %v %v", i, m.Type, err)
			}
		}
		_, err := accepted.ReadIdle(ctx, 50*time.Millisecond)
		if !errors.Is(err, ErrIdle) {
			t.Fatalf("silence: got %v, want ErrIdle", err)
		}
		if _, err := dialed.Read(ctx); err == nil {
			t.Fatal("the idle connection is still open")
		}
	})
	t.Run("bind", func(t *testing.T) {
		dialed, accepted := connPair(t)
		ctx, cancel := context.WithCancel(context.Background())
		accepted.Bind(ctx)
		for range 5 {
			if err := accepted.Write(ctx, Message{Type: TypeHeartbeat}); err != nil {
				t.Fatal(err)
			}
			if _, err := dialed.Read(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() { _, err := accepted.Read(ctx); done <- err }()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Read under the bound context's end: got %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Read did not return when the bound context ended")
		}
		if _, err := dialed.Read(context.Background()); err == nil {
			t.Fatal("the peer still reads from a closed connection")
		}
	})
	t.Run("write timeout", func(t *testing.T) {
		dialed, _ := connPair(t) // the accepting side never reads
		ctx := context.Background()
		dialed.Bind(ctx)
		big := Message{Type: TypeOutput, JobID: "j", LeaseID: "l", Stream: job.LogStdout, Text: strings.Repeat("x", 1<<20)}
		var err error
		for range 1000 {
			if err = dialed.WriteWithin(ctx, big, 200*time.Millisecond); err != nil {
				break
			}
		}
		if !errors.Is(err, ErrWriteTimeout) {
			t.Fatalf("writing to a peer that does not read: got %v, want ErrWriteTimeout", err)
		}
		if err := dialed.Write(ctx, Message{Type: TypeHeartbeat}); err == nil {
			t.Fatal("the connection is still open after the write timed out")
		}
	})
}
