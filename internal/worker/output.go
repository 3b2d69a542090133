package worker

import (
	"context"
	"sync"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/runtime"
)

// liveOutput is the sink of one task: it gathers what the task writes and
// sends it to the orchestrator in "output" messages, at most every
// Config.LiveFlushInterval or when Config.LiveChunkBytes have gathered,
// and at most Config.LiveOutputBytes in all; what passes that bound is
// counted (Dropped) and not sent. WriteOutput never blocks on the network:
// a sender goroutine writes. The result carries the whole output as
// without it.
type liveOutput struct {
	s *session
	// msg is what each message carries but for its text: a task's job
	// and lease, or a service instance's id.
	msg   protocol.Message
	chunk int
	every time.Duration
	// rate, when positive, refills room by rate bytes a second up to
	// rate (a service instance's bound); refilled is when it last did.
	rate     int64
	refilled time.Time

	mu      sync.Mutex
	pending []protocol.Message // by stream, in order; guarded by mu
	size    int                // bytes pending
	room    int64              // bytes that may still be sent
	dropped int64              // bytes dropped since the last message
	closed  bool
	// running says the sender runs: it starts with the first output, so
	// that a task that writes none costs no goroutine.
	running bool
	ctx     context.Context // the sender's
	wake    chan struct{}
	done    chan struct{}
}

var (
	_ runtime.Sink    = (*liveOutput)(nil)
	_ runtime.Bounded = (*liveOutput)(nil)
)

// startLive starts the sender of t's live output; stop it with close.
func (s *session) startLive(ctx context.Context, t *job.Task) *liveOutput {
	cfg := s.w.cfg
	l := &liveOutput{
		s: s, msg: protocol.Message{Type: protocol.TypeOutput, JobID: t.JobID, LeaseID: t.LeaseID},
		chunk: min(cfg.LiveChunkBytes, protocol.MaxOutputTextBytes/3), every: cfg.LiveFlushInterval,
		room: cfg.LiveOutputBytes, ctx: ctx, wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	return l
}

// startInstanceOutput starts the sender of service instance id's live
// output, bounded by Config.ServiceOutputRate; stop it with close.
func (s *session) startInstanceOutput(ctx context.Context, id string) *liveOutput {
	cfg := s.w.cfg
	l := &liveOutput{
		s: s, msg: protocol.Message{Type: protocol.TypeServiceOutput, InstanceID: id},
		chunk: min(cfg.LiveChunkBytes, protocol.MaxOutputTextBytes/3), every: cfg.LiveFlushInterval,
		rate: cfg.ServiceOutputRate, refilled: time.Now(), room: cfg.ServiceOutputRate,
		ctx: ctx, wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	return l
}

// runLocked starts the sender, once, unless l is closed.
func (l *liveOutput) runLocked() {
	if l.running || l.closed {
		return
	}
	l.running = true
	go l.run(l.ctx)
}

// refillLocked adds to room what l's rate gave since it last did.
func (l *liveOutput) refillLocked() {
	if l.rate <= 0 || l.closed {
		return
	}
	now := time.Now()
	if add := int64(now.Sub(l.refilled).Seconds() * float64(l.rate)); add > 0 {
		l.room = min(l.rate, l.room+add)
		l.refilled = now
	}
}

// message returns a message of l for stream.
func (l *liveOutput) message(stream job.LogStream) protocol.Message {
	m := l.msg
	m.Stream = stream
	return m
}

// Room is how many more bytes may be sent.
func (l *liveOutput) Room() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refillLocked()
	return max(l.room, 0)
}

// Drop counts n bytes left out before reaching l.
func (l *liveOutput) Drop(n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropped += n
	l.runLocked()
}

// WriteOutput gathers p to be sent.
func (l *liveOutput) WriteOutput(stream job.LogStream, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runLocked()
	l.refillLocked()
	if l.room <= 0 {
		l.dropped += int64(len(p))
		return
	}
	if int64(len(p)) > l.room {
		l.dropped += int64(len(p)) - l.room
		p = p[:l.room]
	}
	l.room -= int64(len(p))
	for len(p) > 0 {
		n := len(p)
		last := len(l.pending) - 1
		if last < 0 || l.pending[last].Stream != stream || len(l.pending[last].Text) >= l.chunk {
			l.pending = append(l.pending, l.message(stream))
			last++
		}
		n = min(n, l.chunk-len(l.pending[last].Text))
		l.pending[last].Text += string(p[:n])
		l.size += n
		p = p[n:]
	}
	if l.size >= l.chunk {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// run sends what gathered every l.every, or sooner when a chunk is full,
// until close.
func (l *liveOutput) run(ctx context.Context) {
	t := time.NewTicker(l.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.done:
			return
		case <-t.C:
		case <-l.wake:
		}
		l.flush(ctx)
	}
}

func (l *liveOutput) flush(ctx context.Context) {
	l.mu.Lock()
	batch := l.pending
	l.pending, l.size = nil, 0
	if len(batch) == 0 && l.dropped > 0 {
		// Past the bound nothing is sent but the count.
		batch = []protocol.Message{l.message(job.LogStdout)}
	}
	if len(batch) > 0 {
		batch[0].Dropped, l.dropped = l.dropped, 0
	}
	l.mu.Unlock()
	for _, m := range batch {
		l.s.w.outputSent.Add(int64(len(m.Text)))
		l.s.send(ctx, m)
	}
}

// close stops the sender and sends what is left, so that every output
// message of the task precedes its result.
func (l *liveOutput) close(ctx context.Context) {
	close(l.done)
	l.mu.Lock()
	l.room = 0 // a guest that outlives its run sends nothing more
	l.closed = true
	l.mu.Unlock()
	l.flush(ctx)
}

// usage returns the worker's usage now.
func (s *session) usage() job.WorkerUsage {
	s.mu.Lock()
	u := job.WorkerUsage{TasksRunning: len(s.tasks)}
	s.mu.Unlock()
	u.TasksTotal = s.w.tasksRun.Load()
	u.OutputBytesTotal = s.w.outputSent.Load()
	var seen []runtime.UsageReporter
	for _, rt := range s.w.runtimes {
		r, ok := rt.(runtime.UsageReporter)
		if !ok {
			continue
		}
		dup := false
		for _, o := range seen {
			dup = dup || o == r
		}
		if !dup {
			seen = append(seen, r)
			r.ReportUsage(&u)
		}
	}
	return u
}
