package isolate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	goruntime "runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// ErrMemoryExceeded is returned by Serve when a task went past its memory
// bound. The task's out-of-memory result has been sent; the caller must end
// the process at once (the guest may still be running).
var ErrMemoryExceeded = errors.New("isolate: the task went past its memory bound")

// Build returns the runtimes a child offers, from Config.Init of its pool.
type Build func(init json.RawMessage) (runtime.Set, error)

// helloLimit bounds the first frame, read before the child knows the
// pool's frame limit.
const helloLimit = 16 << 20

// Serve is the child end of a pool: cmd calls it in the hidden child mode
// of the zerverless binary, with the process's stdin and stdout. It reads
// the hello frame, builds the runtimes with build, and runs the tasks it is
// sent one at a time, each under its deadline and memory bound, until r
// ends (nil). It returns ErrMemoryExceeded when a task went past its bound
// and another error when the frames break; the caller ends the process when
// Serve returns.
func Serve(r io.Reader, w io.Writer, build Build) error {
	f, err := readFrame(r, helloLimit)
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	if f.Hello == nil {
		return errors.New("the first frame is not hello")
	}
	h := *f.Hello
	set, err := build(h.Init)
	if err != nil {
		_ = writeFrame(w, &frame{Error: err.Error()})
		return fmt.Errorf("build runtimes: %w", err)
	}
	goruntime.GC()
	if err := writeFrame(w, &frame{Ready: true}); err != nil {
		return err
	}
	frames := make(chan *frame)
	readErr := make(chan error, 1)
	go func() {
		defer close(frames)
		for {
			f, err := readFrame(r, h.MaxFrameBytes)
			if err != nil {
				readErr <- err
				return
			}
			frames <- f
		}
	}()
	c := &childServer{h: h, set: set, w: w, frames: frames}
	for {
		f, ok := <-frames
		if !ok {
			if err := <-readErr; !errors.Is(err, io.EOF) {
				return err
			}
			return nil
		}
		if f.Task == nil {
			continue // a cancel that arrived after its task ended
		}
		if err := c.run(f); err != nil {
			return err
		}
	}
}

// childServer runs a child's tasks.
type childServer struct {
	h      hello
	set    runtime.Set
	w      io.Writer
	frames <-chan *frame
}

type outcome struct {
	res job.Result
	err error
}

// run runs one task and writes its result frame. It returns
// ErrMemoryExceeded after the task went past its bound, io.EOF when the
// parent went away, and write errors.
func (c *childServer) run(f *frame) error {
	t := *f.Task
	rt := c.set[t.Type]
	if rt == nil {
		return writeFrame(c.w, &frame{Error: fmt.Sprintf("this runtime process does not run %s jobs", t.Type)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	if !f.Deadline.IsZero() {
		ctx, cancel = context.WithDeadline(context.Background(), f.Deadline)
	}
	defer cancel()

	base := liveHeapBytes()
	bound := t.Limits.MemoryBytes
	if bound > 0 {
		debug.SetMemoryLimit(int64(base) + bound + 8<<20)
		if c.h.AddressSpaceSlackBytes >= 0 {
			limitAddressSpace(2*bound + c.h.AddressSpaceSlackBytes)
		}
	}
	done := make(chan outcome, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- outcome{res: runtime.Failed(fmt.Sprintf("the %s runtime failed: %v", t.Type, p))}
			}
		}()
		res, err := rt.Run(ctx, t)
		done <- outcome{res, err}
	}()
	tick := time.NewTicker(c.h.HeapCheckInterval)
	defer tick.Stop()
	frames := c.frames
	for {
		select {
		case o := <-done:
			cancel()
			if heapBytes() > base+32<<20 {
				debug.FreeOSMemory() // the next task starts from a small heap
			}
			if o.err != nil {
				return writeFrame(c.w, &frame{Error: o.err.Error()})
			}
			return writeFrame(c.w, &frame{Result: &o.res})
		case f, ok := <-frames:
			if !ok {
				return io.EOF
			}
			if f.Cancel {
				cancel()
			}
		case <-tick.C:
			if bound <= 0 || heapBytes() <= base+uint64(bound) {
				continue
			}
			goruntime.GC()
			if used := heapBytes(); used > base+uint64(bound) {
				res := runtime.Failed(fmt.Sprintf("out of memory: the job's heap went past its limit of %d MiB", bound>>20))
				res.OOMKilled = true
				res.PeakMemoryBytes = int64(used - base)
				if err := writeFrame(c.w, &frame{Result: &res, Exit: true}); err != nil {
					return err
				}
				return ErrMemoryExceeded
			}
		}
	}
}

const (
	heapObjectsMetric = "/memory/classes/heap/objects:bytes"
	heapLiveMetric    = "/gc/heap/live:bytes"
)

func readUint64(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// heapBytes is the Go heap in live and not yet swept objects.
func heapBytes() uint64 { return readUint64(heapObjectsMetric) }

// liveHeapBytes is the heap found live by the last collection: what the
// child holds between tasks (its runtimes and compiled-code caches).
func liveHeapBytes() uint64 { return readUint64(heapLiveMetric) }
