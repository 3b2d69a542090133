package runtime

import (
	"context"

	"github.com/zerverless/zerverless/internal/job"
)

// Sink receives a task's output while it runs, for live logs. Write is
// called with what the guest wrote to stream (job.LogStdout or
// job.LogStderr), in order per stream; it must not block for long nor keep
// p. A sink bounds what it keeps and sends itself; the result's output is
// captured apart, exactly as without a sink.
type Sink interface {
	WriteOutput(stream job.LogStream, p []byte)
}

// Bounded is implemented by sinks that keep at most some bytes more: a
// runtime that hands output over from another process sends no more than
// Room, and reports what it left out with Drop.
type Bounded interface {
	Room() int64
	Drop(n int64)
}

type sinkKey struct{}

// WithSink returns ctx carrying s: the runtimes that run a task under it
// hand s its output as it is written (Output does).
func WithSink(ctx context.Context, s Sink) context.Context {
	return context.WithValue(ctx, sinkKey{}, s)
}

// SinkFrom returns the sink ctx carries, or nil.
func SinkFrom(ctx context.Context) Sink {
	s, _ := ctx.Value(sinkKey{}).(Sink)
	return s
}

// Output returns the buffer that captures stream of a task run under ctx,
// up to limit bytes: what it keeps is also handed to ctx's sink as it is
// written. Every runtime captures stdout and stderr this way, so that one
// seam gives every runtime live output.
func Output(ctx context.Context, stream job.LogStream, limit int) *CappedBuffer {
	return &CappedBuffer{Limit: limit, sink: SinkFrom(ctx), stream: stream}
}
