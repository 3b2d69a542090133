package isolate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// ErrMemoryExceeded is returned by Serve when a task went past its memory
// bound. The task's out-of-memory result has been sent (the pool then kills
// the child); the caller ends the process.
var ErrMemoryExceeded = errors.New("isolate: the task went past its memory bound")

// Build returns the runtimes a child offers, from Config.Init of its pool.
type Build func(init json.RawMessage) (runtime.Set, error)

// helloLimit bounds the first frame, read before the child knows the
// pool's frame limit.
const helloLimit = 16 << 20

// Serve is the child end of a pool: cmd calls it in the hidden child mode
// of the zerverless binary, with the process's stdin, file descriptor 3
// (cancels) and stdout. It reads the hello frame, builds the runtimes with
// build, and runs the tasks it is sent one at a time, each under its
// deadline and memory bound, until tasks ends (nil). It returns
// ErrMemoryExceeded when a task went past its bound and another error when
// the frames break; the caller ends the process when Serve returns.
func Serve(tasks, cancels io.Reader, w io.Writer, build Build) error {
	if f, ok := tasks.(*os.File); ok {
		tasks = pollable(f)
	}
	if f, ok := cancels.(*os.File); ok {
		cancels = pollable(f)
	}
	if f, ok := w.(*os.File); ok {
		w = pollable(f)
	}
	in := newFrameReader(tasks)
	f, err := in.read(helloLimit)
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	if f.Hello == nil {
		return errors.New("the first frame is not hello")
	}
	c := &childServer{h: *f.Hello, w: frameWriter{w: w}}
	c.guard.c = c
	c.set, err = build(c.h.Init)
	if err != nil {
		_ = c.write(&frame{Error: err.Error()})
		return fmt.Errorf("build runtimes: %w", err)
	}
	if c.h.Procs > 0 {
		goruntime.GOMAXPROCS(c.h.Procs)
	}
	if c.h.GCPercent > 0 {
		debug.SetGCPercent(c.h.GCPercent)
	}
	for _, rt := range c.set {
		prepare(rt)
	}
	goruntime.GC()
	if err := c.write(&frame{Ready: true}); err != nil {
		return err
	}
	go c.readCancels(cancels)
	for {
		f, err := in.read(c.h.MaxFrameBytes)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if f.Task == nil {
			continue
		}
		if err := c.run(f); err != nil {
			return err
		}
	}
}

// childServer runs a child's tasks.
type childServer struct {
	h   hello
	set runtime.Set

	wmu sync.Mutex  // serializes frames written
	w   frameWriter // guarded by wmu
	// exceeded is set once the memory guard has sent a task's result; no
	// frame is written after it.
	exceeded bool // guarded by wmu

	mu     sync.Mutex
	seq    uint64             // of the task running; guarded by mu
	cancel context.CancelFunc // of the task running; guarded by mu

	alarm monitorAlarm // used by run only
	guard heapGuard

	// memLimit is the Go memory limit set last, asBound the task bound
	// RLIMIT_AS was set for last (0: none yet). Used by run only.
	memLimit, asBound int64
}

func (c *childServer) write(f *frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.exceeded {
		return ErrMemoryExceeded
	}
	if f.Exit {
		c.exceeded = true
	}
	return c.w.write(f)
}

// readCancels stops the running task when its cancel frame arrives. It
// returns when r ends.
func (c *childServer) readCancels(r io.Reader) {
	in := newFrameReader(r)
	for {
		f, err := in.read(helloLimit)
		if err != nil {
			return
		}
		c.mu.Lock()
		if f.Cancel && f.Seq == c.seq && c.cancel != nil {
			c.cancel()
		}
		c.mu.Unlock()
	}
}

// run runs one task on the calling goroutine and writes its result frame.
// It returns ErrMemoryExceeded after the task went past its bound, and
// write errors.
func (c *childServer) run(f *frame) error {
	t := *f.Task
	c.alarm.taskStarts()
	defer c.alarm.taskEnded(c.h.HeapCheckInterval)
	rt := c.set[t.Type]
	if rt == nil {
		return c.write(&frame{Error: fmt.Sprintf("this runtime process does not run %s jobs", t.Type)})
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if f.Deadline.IsZero() {
		ctx, cancel = context.WithCancel(context.Background())
	} else {
		ctx, cancel = context.WithDeadline(context.Background(), f.Deadline)
		// The pool's deadline is its start plus t.Timeout at the latest:
		// the runtime's own bound of t.Timeout from now, later, would be a
		// second context and timer for nothing.
		if t.Timeout > 0 && !f.Deadline.After(time.Now().Add(t.Timeout)) {
			t.Timeout = 0
		}
	}
	defer cancel()
	c.mu.Lock()
	c.seq, c.cancel = f.Seq, cancel
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cancel = nil
		c.mu.Unlock()
	}()

	base := liveHeapBytes()
	bound := t.Limits.MemoryBytes
	if bound > 0 {
		c.setLimits(base, bound)
		c.guard.start(base, uint64(bound), cancel)
		defer c.guard.stop()
	}
	var sink *frameSink
	if f.Live {
		sink = newFrameSink(c, f.Seq, f.LiveBytes)
		ctx = runtime.WithSink(ctx, sink)
	}
	res, err := c.runGuest(ctx, rt, t)
	if sink != nil {
		sink.close()
	}
	if heapBytes() > base+32<<20 {
		debug.FreeOSMemory() // the next task starts from a small heap
		c.asBound = 0        // and its address space is read again
	}
	if err != nil {
		return c.write(&frame{Error: err.Error()})
	}
	if err := c.write(&frame{Result: &res}); err != nil {
		return err
	}
	prepare(rt)
	return nil
}

// A monitorAlarm keeps the Go runtime's monitor thread (sysmon) awake for
// the tasks that need it. The child reads and writes its frames with raw
// system calls (rawPipe), which do not wake the monitor; once the child is
// idle, the monitor sleeps until the next timer is due. But the monitor is
// what preempts a guest that computes without end (with one processor, its
// deadline's timer and the heap check run only once it is preempted), so
// it must be awake, or wake within a bound, while a task runs.
//
// The alarm is a timer due HeapCheckInterval after each task ends: a
// monitor that went to sleep after the task wakes by then at the latest. A
// task that starts before it is due needs nothing; one that starts later
// wakes the monitor with an ordinary system call (wakeMonitor). A child
// busy with tasks thus wakes its monitor once a burst, not once a task.
// The alarm bounds only a sleep that began once it was set: a write that
// waited for a full pipe (a large result) let the child idle before, and
// the monitor may have gone to sleep until a timer far off, so the next
// task wakes it whatever the alarm (writeWaited).
type monitorAlarm struct {
	timer *time.Timer
	// until is when the timer was set plus its delay: before it, the
	// timer is still due.
	until time.Time
}

// writeWaited says that a frame's write waited for room in its pipe since
// the last task started.
var writeWaited atomic.Bool

// taskStarts wakes the monitor unless the alarm is still due and no write
// waited since the last task started.
func (a *monitorAlarm) taskStarts() {
	waited := writeWaited.Swap(false)
	if waited || a.timer == nil || !time.Now().Before(a.until) {
		wakeMonitor()
	}
}

// taskEnded sets the alarm d from now.
func (a *monitorAlarm) taskEnded(d time.Duration) {
	now := time.Now()
	if a.timer == nil {
		a.timer = time.AfterFunc(d, func() {})
	} else {
		a.timer.Reset(d)
	}
	a.until = now.Add(d)
}

// A preparer readies itself for its next run (the Lua runtime makes its
// spare interpreter state). Serve calls Prepare before the first task and
// after each result of the runtime, while the pool has its answer and the
// child would wait for its next task.
type preparer interface{ Prepare() }

func prepare(rt runtime.Runtime) {
	if p, ok := rt.(preparer); ok {
		p.Prepare()
	}
}

// runGuest runs t in rt, turning a panic into a failed result.
func (c *childServer) runGuest(ctx context.Context, rt runtime.Runtime, t job.Task) (res job.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = runtime.Failed(fmt.Sprintf("the %s runtime failed: %v", t.Type, p)), nil
		}
	}()
	return rt.Run(ctx, t)
}

// heapGuard reads the heap every HeapCheckInterval while a task runs.
// Past base+bound it collects garbage, and if the heap is still over, it
// sends the task's out-of-memory result (marked Exit: the pool kills the
// child) and stops the task. One timer serves the child's tasks in turn.
type heapGuard struct {
	c *childServer

	mu     sync.Mutex
	timer  *time.Timer        // guarded by mu
	active bool               // a task runs; guarded by mu
	base   uint64             // guarded by mu
	bound  uint64             // guarded by mu
	cancel context.CancelFunc // of the task; guarded by mu
}

// start watches a task's heap, until stop.
func (g *heapGuard) start(base, bound uint64, cancel context.CancelFunc) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active, g.base, g.bound, g.cancel = true, base, bound, cancel
	if g.timer == nil {
		g.timer = time.AfterFunc(g.c.h.HeapCheckInterval, g.check)
	} else {
		g.timer.Reset(g.c.h.HeapCheckInterval)
	}
}

func (g *heapGuard) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active, g.cancel = false, nil
	g.timer.Stop()
}

// check reads the heap of the task running, if one is: a check of a task
// that has stopped, late, finds none, or the next task's (which it checks
// as well).
func (g *heapGuard) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.active {
		return
	}
	if heapBytes() > g.base+g.bound {
		goruntime.GC()
		if used := heapBytes(); used > g.base+g.bound {
			res := runtime.Failed(fmt.Sprintf("out of memory: the job's heap went past its limit of %d MiB", g.bound>>20))
			res.OOMKilled = true
			res.PeakMemoryBytes = int64(used - g.base)
			_ = g.c.write(&frame{Result: &res, Exit: true})
			g.cancel()
			return
		}
	}
	g.timer.Reset(g.c.h.HeapCheckInterval)
}

// setLimits sets the Go memory limit and RLIMIT_AS for a task bounded to
// bound bytes above a heap of base bytes. Both stay as they are when they
// would barely change: most tasks of a child have the same bound.
func (c *childServer) setLimits(base uint64, bound int64) {
	if lim := int64(base) + bound + 8<<20; lim > c.memLimit+4<<20 || lim < c.memLimit-4<<20 {
		debug.SetMemoryLimit(lim)
		c.memLimit = lim
	}
	if c.h.AddressSpaceSlackBytes >= 0 && bound != c.asBound {
		limitAddressSpace(2*bound + c.h.AddressSpaceSlackBytes)
		c.asBound = bound
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
