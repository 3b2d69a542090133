package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// logKeepalive is how often a follow stream with nothing to say sends an
// SSE comment, so that proxies and clients keep the connection open.
const logKeepalive = 15 * time.Second

// followWriteTimeout bounds one write to a follower of a log: one that
// takes nothing for that long (its connection is stuck) is cut off, and
// gives back its follower slot.
const followWriteTimeout = 30 * time.Second

// sseStream is one Server-Sent Events response of a log follower. Its
// header goes out with the first write (open or event), so that a refusal
// found before it can still be a JSON error; keepalive comments go out
// every logKeepalive once it is open; every write has followWriteTimeout
// to go through. Its methods may be called from several goroutines.
type sseStream struct {
	w  http.ResponseWriter
	rc *http.ResponseController

	mu       sync.Mutex // orders writes: events and keepalives
	started  bool       // the header is written; guarded by mu
	finished bool       // end was called: nothing more is written; guarded by mu
	stop     chan struct{}
}

// newSSE returns the stream answering r on w, its keepalives running
// until end is called or r's context is done.
func newSSE(w http.ResponseWriter, r *http.Request) *sseStream {
	s := &sseStream{w: w, rc: http.NewResponseController(w), stop: make(chan struct{})}
	go s.keepalive(r)
	return s
}

func (s *sseStream) keepalive(r *http.Request) {
	t := time.NewTicker(logKeepalive)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		if s.started && !s.finished {
			_ = s.writeLocked(": keepalive\n\n")
		}
		s.mu.Unlock()
	}
}

// beginLocked writes the stream's header once.
func (s *sseStream) beginLocked() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
}

func (s *sseStream) writeLocked(format string, args ...any) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(followWriteTimeout))
	if _, err := fmt.Fprintf(s.w, format, args...); err != nil {
		return err
	}
	return s.rc.Flush()
}

// open writes the header, once the follower is admitted and before the
// log has anything to say.
func (s *sseStream) open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beginLocked()
	return s.writeLocked("")
}

// event writes one event: "id: seq", "event: name", "data: " v as JSON.
func (s *sseStream) event(seq uint64, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beginLocked()
	return s.writeLocked("id: %d\nevent: %s\ndata: %s\n\n", seq, name, data)
}

// end stops the keepalives; nothing is written after it. When the stream
// never opened, a non-nil err is answered by refuse (a JSON error) and a
// nil one opens an empty stream. It reports whether err came after the
// stream had opened (the handler logs it then).
func (s *sseStream) end(err error, refuse func(error)) (late bool) {
	close(s.stop)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() { s.finished = true }()
	if !s.started {
		if err != nil {
			refuse(err)
			return false
		}
		s.beginLocked()
		_ = s.rc.Flush()
		return false
	}
	return err != nil
}
