package runtimetest

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// Recorder is a runtime.Sink that keeps what it is handed, per stream.
// Wait returns a channel closed once stdout has held want.
type Recorder struct {
	mu      sync.Mutex
	out     map[job.LogStream]*strings.Builder
	waiters []recorderWait
}

type recorderWait struct {
	want string
	ch   chan struct{}
}

var _ runtime.Sink = (*Recorder)(nil)

// WriteOutput records p.
func (r *Recorder) WriteOutput(stream job.LogStream, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.out == nil {
		r.out = make(map[job.LogStream]*strings.Builder)
	}
	b := r.out[stream]
	if b == nil {
		b = &strings.Builder{}
		r.out[stream] = b
	}
	b.Write(p)
	r.wakeLocked()
}

func (r *Recorder) wakeLocked() {
	kept := r.waiters[:0]
	for _, w := range r.waiters {
		if b := r.out[job.LogStdout]; b != nil && strings.Contains(b.String(), w.want) {
			close(w.ch)
			continue
		}
		kept = append(kept, w)
	}
	r.waiters = kept
}

// Text returns what stream received.
func (r *Recorder) Text(stream job.LogStream) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.out[stream]; b != nil {
		return b.String()
	}
	return ""
}

// Wait returns a channel closed once stdout has received want.
func (r *Recorder) Wait(want string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan struct{})
	r.waiters = append(r.waiters, recorderWait{want: want, ch: ch})
	r.wakeLocked()
	return ch
}

// testLive checks the live-output seam: the sink of the task's context
// receives the output the result holds, and receives it while the guest
// still runs — the Live program is canceled only once its first line has
// reached the sink, so a runtime that hands output over only at the end
// never sees the cancel and fails.
func testLive(t *testing.T, rt runtime.Runtime, p Programs) {
	rec := &Recorder{}
	ctx, cancel := context.WithTimeout(runtime.WithSink(context.Background(), rec), runLimit)
	defer cancel()
	tk := Task(p.Success)
	tk.Timeout = runLimit
	res, err := runCtx(t, ctx, rt, tk, runLimit+grace)
	CheckSuccess(t, res, err)
	if got := rec.Text(job.LogStdout); got != res.Output {
		t.Errorf("the sink received stdout %q, the result holds %q", got, res.Output)
	}

	if p.Live.Code == "" && p.Live.Wasm == nil && p.Live.Docker == nil {
		t.Log("no Live program: the ordering case is skipped")
		return
	}
	rec = &Recorder{}
	ctx, cancel = context.WithTimeout(runtime.WithSink(context.Background(), rec), runLimit)
	defer cancel()
	first := rec.Wait("first")
	go func() {
		select {
		case <-first:
			cancel()
		case <-ctx.Done():
		}
	}()
	tk = Task(p.Live)
	tk.Timeout = runLimit
	res, err = runCtx(t, ctx, rt, tk, runLimit+grace)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Status != job.StatusCanceled {
		t.Fatalf("Status = %s (error %q), want canceled: the first line never reached the sink while the guest ran (sink holds %q)", res.Status, res.Error, rec.Text(job.LogStdout))
	}
	if !strings.Contains(res.Output, "first") {
		t.Errorf("Output = %q, want it to hold the line the sink received (result %+v)", res.Output, res)
	}
}
