package isolate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// Config configures a pool. Zero fields take the values of DefaultConfig,
// except Command, which is required.
type Config struct {
	// Command starts one child: a program and its arguments. The program
	// must call Serve with its stdin and stdout (cmd/zerverless does in
	// its hidden runtime-child mode).
	Command []string
	// Init is handed to the child's Build function as it is (the
	// runtimes' configurations).
	Init json.RawMessage
	// Env is the environment of a child (default: empty). The worker's
	// own environment, its join token among it, is not passed on.
	Env []string
	// Idle is the most children kept waiting for a task (default 4); cmd
	// sets it to the slots of the workers that share the pool.
	Idle int
	// StopGrace is how long Run waits, after its context is done, for the
	// child to return the stopped task before it kills the child and
	// returns without it (default 500 ms). A guest stuck in a long native
	// call is stopped this way.
	StopGrace time.Duration
	// StartTimeout bounds the start of a child, up to its ready frame
	// (default 10 s).
	StartTimeout time.Duration
	// HeapCheckInterval is how often a child reads its heap while a task
	// runs (default 10 ms).
	HeapCheckInterval time.Duration
	// AddressSpaceSlackBytes is the room of a child's RLIMIT_AS above its
	// address space at the start of a task plus twice the task's memory
	// bound (default 1 GiB; negative: no RLIMIT_AS).
	AddressSpaceSlackBytes int64
	// MaxFrameBytes is the largest frame either end accepts (default
	// 256 MiB): a task with its code, a result with its output.
	MaxFrameBytes int64
	// GCPercent is a child's garbage collection target (debug.SetGCPercent;
	// default 400). A child's heap between tasks is small, so Go's default
	// of 100 collects every few tasks; the task's memory bound, set as the
	// Go memory limit, keeps the heap bounded whatever the target.
	GCPercent int
	// Procs is a child's GOMAXPROCS (default 1). A child runs one task at
	// a time on one goroutine; more processors only add threads that wake
	// one another for the task's helpers (its heap check, its runtime's
	// next interpreter state), and the machine's cores are the worker's
	// and its other children's.
	Procs int
	// Logger receives children's deaths (default: discard).
	Logger *slog.Logger
}

// DefaultConfig returns the documented defaults; Command is left empty.
func DefaultConfig() Config {
	return Config{
		Idle:                   4,
		StopGrace:              500 * time.Millisecond,
		StartTimeout:           10 * time.Second,
		HeapCheckInterval:      10 * time.Millisecond,
		AddressSpaceSlackBytes: 1 << 30,
		MaxFrameBytes:          256 << 20,
		GCPercent:              400,
		Procs:                  1,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Idle == 0 {
		c.Idle = d.Idle
	}
	if c.StopGrace == 0 {
		c.StopGrace = d.StopGrace
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = d.StartTimeout
	}
	if c.HeapCheckInterval == 0 {
		c.HeapCheckInterval = d.HeapCheckInterval
	}
	if c.AddressSpaceSlackBytes == 0 {
		c.AddressSpaceSlackBytes = d.AddressSpaceSlackBytes
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = d.MaxFrameBytes
	}
	if c.GCPercent == 0 {
		c.GCPercent = d.GCPercent
	}
	if c.Procs == 0 {
		c.Procs = d.Procs
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	switch {
	case len(c.Command) == 0 || c.Command[0] == "":
		return errors.New("isolate: Command is required")
	case c.Idle < 0:
		return fmt.Errorf("isolate: Idle is %d, want at least 0", c.Idle)
	case c.StopGrace < 0:
		return fmt.Errorf("isolate: StopGrace is %v, want more than 0", c.StopGrace)
	case c.StartTimeout < 0:
		return fmt.Errorf("isolate: StartTimeout is %v, want more than 0", c.StartTimeout)
	case c.HeapCheckInterval < time.Millisecond:
		return fmt.Errorf("isolate: HeapCheckInterval is %v, want at least 1ms", c.HeapCheckInterval)
	case c.MaxFrameBytes < 1<<20 || c.MaxFrameBytes > 1<<32-1:
		return fmt.Errorf("isolate: MaxFrameBytes is %d, want 1 MiB to 4 GiB", c.MaxFrameBytes)
	case c.GCPercent < 10:
		return fmt.Errorf("isolate: GCPercent is %d, want at least 10", c.GCPercent)
	case c.Procs < 1:
		return fmt.Errorf("isolate: Procs is %d, want at least 1", c.Procs)
	}
	return nil
}

// Pool runs tasks in child processes, one task per child at a time, so
// that each task's memory is bounded for that task alone: a child watches
// its own heap and ends itself past the task's Limits.MemoryBytes, under an
// RLIMIT_AS as a backstop. Children are started on demand, kept (up to
// Idle) for the next task with their compiled-code caches, and replaced
// when one dies. Pool is safe for concurrent use.
type Pool struct {
	cfg Config

	mu     sync.Mutex
	idle   []*child // guarded by mu
	closed bool     // guarded by mu
}

// New returns a pool; it starts no child until a task needs one. It returns
// an error for an invalid cfg.
func New(cfg Config) (*Pool, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Pool{cfg: cfg}, nil
}

var _ runtime.Runtime = (*Pool)(nil)

// Run runs t in a child. It blocks until the task ends, ctx is done or
// t.Timeout passes; after ctx is done it waits at most StopGrace for the
// child before killing it. A task that fails in its runtime, goes past its
// memory bound (OOMKilled) or kills its child is a result; a child that
// cannot be started, or whose runtime could not run the task, is an error.
func (p *Pool) Run(ctx context.Context, t job.Task) (job.Result, error) {
	start := time.Now()
	// A caller that already bounds ctx by t.Timeout (the worker does)
	// costs no second context and timer.
	if d, ok := ctx.Deadline(); t.Timeout > 0 && (!ok || d.After(start.Add(t.Timeout))) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, start.Add(t.Timeout))
		defer cancel()
	}
	res, err := p.run(ctx, t)
	res.DurationMS = time.Since(start).Milliseconds()
	return res, err
}

func (p *Pool) run(ctx context.Context, t job.Task) (job.Result, error) {
	if st := runtime.Interrupted(ctx); st != "" {
		return runtime.Stopped(st), nil
	}
	c, err := p.get(ctx)
	if err != nil {
		if st := runtime.Interrupted(ctx); st != "" {
			return runtime.Stopped(st), nil
		}
		return job.Result{}, err
	}
	c.seq++
	seq := c.seq
	deadline, _ := ctx.Deadline()
	sink := runtime.SinkFrom(ctx)
	var liveBytes int64
	if b, ok := sink.(runtime.Bounded); ok {
		liveBytes = max(b.Room(), 1)
	}
	if err := c.tasks.write(&frame{Task: &t, Seq: seq, Deadline: deadline, Live: sink != nil, LiveBytes: liveBytes}); err != nil {
		c.kill()
		return p.died(c), nil
	}
	// When ctx is done: a cancel must be said (the child's own deadline
	// passes with ours), and a child that has not answered within the
	// grace is killed, which ends the read below.
	w := &stopWatch{}
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.finished {
			return
		}
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			_ = writeFrame(c.cancels, &frame{Cancel: true, Seq: seq})
		}
		w.grace = time.AfterFunc(p.cfg.StopGrace, func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			if !w.finished {
				w.killed = true
				c.kill()
			}
		})
	})
	f, err := c.readAnswer(p.cfg.MaxFrameBytes, seq, sink)
	stop()
	w.mu.Lock()
	w.finished = true
	if w.grace != nil {
		w.grace.Stop()
	}
	wasKilled := w.killed
	w.mu.Unlock()
	switch {
	case err != nil && wasKilled:
		res := runtime.Stopped(runtime.Interrupted(ctx))
		res.Error += " (the guest did not stop within " + p.cfg.StopGrace.String() + "; its process was killed)"
		return res, nil
	case err != nil:
		c.kill()
		return p.died(c), nil
	case f.Result != nil:
		if f.Exit || wasKilled {
			c.kill()
		} else {
			p.put(c)
		}
		return *f.Result, nil
	case f.Error != "":
		p.put(c)
		return job.Result{}, fmt.Errorf("%s runtime: %s", t.Type, f.Error)
	default:
		c.kill()
		return job.Result{}, fmt.Errorf("%s runtime: the runtime process answered neither a result nor an error", t.Type)
	}
}

// stopWatch is what a task's stop (its ctx done) and its read share.
type stopWatch struct {
	mu       sync.Mutex
	finished bool        // the read returned; guarded by mu
	killed   bool        // the grace passed first; guarded by mu
	grace    *time.Timer // guarded by mu
}

// died is the result of a task whose child ended under it.
func (p *Pool) died(c *child) job.Result {
	<-c.exited
	p.cfg.Logger.Warn("runtime process died during a task", "pid", c.pid, "err", c.waitErr, "stderr", c.stderr.String())
	res := runtime.Failed(fmt.Sprintf("the job's process ended: %v", c.waitErr))
	// The Go runtime's report when an allocation fails under RLIMIT_AS.
	if bytes.Contains(c.stderr.Bytes(), []byte("out of memory")) {
		res.OOMKilled = true
		res.Error = "out of memory: the job's process could not allocate more memory"
	}
	return res
}

// get returns an idle child, or starts one.
func (p *Pool) get(ctx context.Context) (*child, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("the runtime pool is closed")
	}
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		select {
		case <-c.exited:
			continue // died while idle; start another
		default:
		}
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	return p.start(ctx)
}

// put keeps c for the next task, or ends it when enough are idle.
func (p *Pool) put(c *child) {
	p.mu.Lock()
	if !p.closed && len(p.idle) < p.cfg.Idle {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.kill()
	}
}

// Close ends the idle children; a child running a task ends when its task
// does. It returns nil.
func (p *Pool) Close(context.Context) error {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.kill()
	}
	return nil
}

// child is one running child process. It is used by one Run at a time.
type child struct {
	pid     int
	cmd     *exec.Cmd
	stdin   io.WriteCloser // tasks
	tasks   frameWriter    // on stdin
	cancels io.WriteCloser // cancel frames, the child's fd 3
	stdout  *os.File
	results *frameReader // on stdout
	stderr  *tailBuffer
	seq     uint64 // of the last task sent
	once    sync.Once
	// exited is closed when the process has ended; waitErr is then set.
	exited  chan struct{}
	waitErr error
}

// read reads the child's next frame.
func (c *child) read(limit int64) (*frame, error) {
	f, err := c.results.read(limit)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, os.ErrClosed) {
		c.kill() // a child that breaks the framing is not trusted further
	}
	return f, err
}

// start starts a child and waits for its ready frame.
func (p *Pool) start(ctx context.Context) (*child, error) {
	cmd := exec.Command(p.cfg.Command[0], p.cfg.Command[1:]...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.Env = append([]string{}, p.cfg.Env...) // never nil: nil would pass ours on
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start the runtime process: %w", err)
	}
	// Pipes of our own, not StdoutPipe: exec.Cmd.Wait would close its read
	// end, and a child is reaped while its last frame may still be read.
	// The result pipe blocks: Run waits on it in a read(2) that the kernel
	// wakes as the frame arrives, not in the Go scheduler's network
	// poller, which a busy worker polls less often.
	stdoutR, stdoutW, err := blockingPipe()
	if err != nil {
		return nil, fmt.Errorf("start the runtime process: %w", err)
	}
	cancelR, cancelW, err := os.Pipe()
	if err != nil {
		stdoutR.Close()
		stdoutW.Close()
		return nil, fmt.Errorf("start the runtime process: %w", err)
	}
	cmd.Stdout = stdoutW
	cmd.ExtraFiles = []*os.File{cancelR}
	c := &child{cmd: cmd, stdin: stdin, tasks: frameWriter{w: stdin}, cancels: cancelW, stdout: stdoutR, results: newFrameReader(stdoutR),
		stderr: &tailBuffer{max: 8 << 10}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	err = cmd.Start()
	stdoutW.Close()
	cancelR.Close()
	if err != nil {
		stdoutR.Close()
		cancelW.Close()
		return nil, fmt.Errorf("start the runtime process: %w", err)
	}
	c.pid = cmd.Process.Pid
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	err = c.tasks.write(&frame{Hello: &hello{
		Init:                   p.cfg.Init,
		HeapCheckInterval:      p.cfg.HeapCheckInterval,
		AddressSpaceSlackBytes: p.cfg.AddressSpaceSlackBytes,
		MaxFrameBytes:          p.cfg.MaxFrameBytes,
		GCPercent:              p.cfg.GCPercent,
		Procs:                  p.cfg.Procs,
	}})
	if err == nil {
		err = c.awaitReady(ctx, p.cfg.MaxFrameBytes, p.cfg.StartTimeout)
	}
	if err != nil {
		c.kill()
		<-c.exited
		if s := c.stderr.String(); s != "" {
			err = fmt.Errorf("%w: %s", err, s)
		}
		return nil, fmt.Errorf("start the runtime process: %w", err)
	}
	return c, nil
}

// awaitReady waits for the child's ready frame.
func (c *child) awaitReady(ctx context.Context, limit int64, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, c.kill)
	defer stop()
	f, err := c.read(limit)
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("the process was not ready within %v: %w", timeout, ctx.Err())
	case err != nil:
		<-c.exited
		return fmt.Errorf("the process ended before it was ready: %v", c.waitErr)
	case f.Error != "":
		return errors.New(f.Error)
	case !f.Ready:
		return errors.New("the process did not say it was ready")
	}
	return nil
}

// kill ends the child at once; it may be called more than once. A read of
// its stdout in progress then ends.
func (c *child) kill() {
	c.once.Do(func() {
		_ = c.cmd.Process.Kill()
		_ = c.stdin.Close()
		_ = c.cancels.Close()
		go func() {
			<-c.exited
			_ = c.stdout.Close()
		}()
	})
}

// tailBuffer keeps the last max bytes written to it; it is safe for
// concurrent use.
type tailBuffer struct {
	max int
	mu  sync.Mutex
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.b)
}

func (t *tailBuffer) String() string { return string(t.Bytes()) }
