package runtime

import (
	"sync"

	"github.com/zerverless/zerverless/internal/job"
)

// CappedBuffer keeps the first Limit bytes written to it and counts the
// rest. It is safe for concurrent use. Writes never fail, so a guest that
// floods its output is not stopped by an error: the caller decides.
type CappedBuffer struct {
	Limit int

	// sink, when set, is handed what is kept as it is written (Output).
	sink   Sink
	stream job.LogStream

	mu        sync.Mutex
	buf       []byte
	truncated bool
}

// Write keeps what fits under Limit and drops the rest.
func (b *CappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.Limit - len(b.buf)
	if room < len(p) {
		b.truncated = true
		if room > 0 {
			b.buf = append(b.buf, p[:room]...)
			b.emit(p[:room])
		}
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	b.emit(p)
	return len(p), nil
}

// String returns what was kept.
func (b *CappedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// Truncated reports whether anything was dropped.
func (b *CappedBuffer) Truncated() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.truncated
}

// emit hands p to the sink; b.mu is held, so the sink sees writes in order.
func (b *CappedBuffer) emit(p []byte) {
	if b.sink != nil && len(p) > 0 {
		b.sink.WriteOutput(b.stream, p)
	}
}
