package isolate

import (
	"sync"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// outputFrame is output a task wrote, sent by the child while the task
// runs when the task frame asked for it (Live).
type outputFrame struct {
	Stream job.LogStream `json:"stream"`
	Data   []byte        `json:"data"`
	// Dropped counts output left out past the task frame's LiveBytes.
	Dropped int64 `json:"dropped,omitempty"`
}

// Output a child holds before it sends it: at most outputFlushBytes, for
// at most outputFlushInterval.
const (
	outputFlushBytes    = 16 << 10
	outputFlushInterval = 50 * time.Millisecond
)

// frameSink is the child's sink for one task: it gathers output and sends
// it in output frames, so that a guest printing many short lines costs a
// frame every outputFlushInterval, not a frame a line.
type frameSink struct {
	c   *childServer
	seq uint64

	mu      sync.Mutex
	room    int64 // bytes that may still be sent; <0: no bound
	dropped int64
	stream  job.LogStream
	buf     []byte
	timer   *time.Timer
	closed  bool
}

func newFrameSink(c *childServer, seq uint64, room int64) *frameSink {
	if room <= 0 {
		room = -1
	}
	return &frameSink{c: c, seq: seq, room: room}
}

var _ runtime.Sink = (*frameSink)(nil)

// WriteOutput gathers p; a change of stream or a full buffer sends what
// was gathered first.
func (s *frameSink) WriteOutput(stream job.LogStream, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.room >= 0 {
		if int64(len(p)) > s.room {
			s.dropped += int64(len(p)) - s.room
			p = p[:s.room]
		}
		s.room -= int64(len(p))
		if len(p) == 0 {
			return
		}
	}
	if stream != s.stream && len(s.buf) > 0 {
		s.flushLocked()
	}
	s.stream = stream
	s.buf = append(s.buf, p...)
	if len(s.buf) >= outputFlushBytes {
		s.flushLocked()
		return
	}
	if s.timer == nil {
		s.timer = time.AfterFunc(outputFlushInterval, s.flush)
	}
}

func (s *frameSink) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.flushLocked()
	}
}

func (s *frameSink) flushLocked() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if len(s.buf) == 0 {
		return
	}
	_ = s.c.write(&frame{Seq: s.seq, Output: &outputFrame{Stream: s.stream, Data: s.buf}})
	s.buf = nil
}

// close sends what is left; output written after it is dropped (a guest
// that did not stop within its grace).
func (s *frameSink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked()
	if s.dropped > 0 {
		_ = s.c.write(&frame{Seq: s.seq, Output: &outputFrame{Stream: job.LogStdout, Dropped: s.dropped}})
	}
	s.closed = true
}

// readAnswer reads the child's frames until one that answers task seq,
// handing the output frames of seq to sink (which may be nil).
func (c *child) readAnswer(limit int64, seq uint64, sink runtime.Sink) (*frame, error) {
	for {
		f, err := c.read(limit)
		if err != nil || f.Output == nil {
			return f, err
		}
		if sink == nil || f.Seq != seq {
			continue
		}
		if f.Output.Stream.Known() && f.Output.Stream != job.LogStatus && len(f.Output.Data) > 0 {
			sink.WriteOutput(f.Output.Stream, f.Output.Data)
		}
		if b, ok := sink.(runtime.Bounded); ok && f.Output.Dropped > 0 {
			b.Drop(f.Output.Dropped)
		}
	}
}
