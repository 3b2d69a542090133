package js

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dop251/goja"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// Config holds the JavaScript runtime's limits. Zero fields take the values
// of DefaultConfig.
type Config struct {
	// OutputBytes caps stdout, stderr and the encoded result of a task
	// whose Limits.OutputBytes is zero. Default 1 MiB.
	OutputBytes int
	// MaxCallStackSize is the deepest JavaScript call stack. Default 2000.
	MaxCallStackSize int
	// MaxStringBytes is the longest string String.prototype.repeat,
	// padStart and padEnd build. Default 16 MiB.
	MaxStringBytes int
	// StopGrace is how long Run waits, after ctx is done, for a guest busy
	// inside a long native call to stop before returning without it.
	// Default 500 ms.
	StopGrace time.Duration
	// CachedPrograms is how many compiled programs are kept, by the
	// SHA-256 of their source, least recently used out first (default 256;
	// negative: none). A script run again — a function invoked again —
	// skips compiling.
	CachedPrograms int
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		OutputBytes:      1 << 20,
		MaxCallStackSize: 2000,
		MaxStringBytes:   16 << 20,
		StopGrace:        500 * time.Millisecond,
		CachedPrograms:   256,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.OutputBytes <= 0 {
		c.OutputBytes = d.OutputBytes
	}
	if c.MaxCallStackSize <= 0 {
		c.MaxCallStackSize = d.MaxCallStackSize
	}
	if c.MaxStringBytes <= 0 {
		c.MaxStringBytes = d.MaxStringBytes
	}
	if c.StopGrace <= 0 {
		c.StopGrace = d.StopGrace
	}
	if c.CachedPrograms == 0 {
		c.CachedPrograms = d.CachedPrograms
	}
	return c
}

// validate refuses settings that cannot work: negative sizes and limits
// (CachedPrograms may be negative: no cache).
func (c Config) validate() error {
	switch {
	case c.OutputBytes < 0:
		return fmt.Errorf("js: OutputBytes is %d, want at least 0", c.OutputBytes)
	case c.MaxCallStackSize < 0:
		return fmt.Errorf("js: MaxCallStackSize is %d, want at least 0", c.MaxCallStackSize)
	case c.MaxStringBytes < 0:
		return fmt.Errorf("js: MaxStringBytes is %d, want at least 0", c.MaxStringBytes)
	case c.StopGrace < 0:
		return fmt.Errorf("js: StopGrace is %v, want at least 0", c.StopGrace)
	}
	return nil
}

// JS is the JavaScript runtime. It is safe for concurrent use: each Run
// gets its own goja.Runtime.
type JS struct {
	cfg      Config
	programs *runtime.CodeCache[*goja.Program]
}

var _ runtime.Runtime = (*JS)(nil)

// New returns a JavaScript runtime with cfg; zero fields take their
// defaults. It returns an error for a negative size or limit.
func New(cfg Config) (*JS, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &JS{cfg: cfg, programs: runtime.NewCodeCache[*goja.Program](cfg.CachedPrograms)}, nil
}

// Run runs t's script. It blocks until the script ends, ctx is done or
// t.Timeout passes. An exception is a failed Result, not an error; Run
// returns a non-nil error never.
func (r *JS) Run(ctx context.Context, t job.Task) (job.Result, error) {
	return runtime.Timed(ctx, t, func(ctx context.Context, t job.Task) (job.Result, error) {
		return r.run(ctx, t), nil
	})
}

func (r *JS) run(ctx context.Context, t job.Task) job.Result {
	if st := runtime.Interrupted(ctx); st != "" {
		return runtime.Stopped(st)
	}
	if strings.TrimSpace(t.Spec.Code) == "" {
		return runtime.Failed("no JavaScript code")
	}
	if len(t.Spec.Input) > 0 && !json.Valid(t.Spec.Input) {
		return runtime.Failed("input_data is not valid JSON")
	}
	// A compiled program is not tied to a goja.Runtime: every run of the
	// same source shares it.
	prg, err := r.programs.Get(t.Spec.Code, compileProgram)
	if err != nil {
		return runtime.Failed(err.Error())
	}
	limit := t.Limits.OutputBytes
	if limit <= 0 {
		limit = r.cfg.OutputBytes
	}
	stdout := runtime.Output(ctx, job.LogStdout, limit)
	stderr := runtime.Output(ctx, job.LogStderr, limit)

	done := make(chan job.Result, 1)
	go func() { done <- r.exec(ctx, prg, t.Spec.Input, stdout, stderr, limit) }()
	var res job.Result
	select {
	case res = <-done:
	case <-ctx.Done():
		select {
		case res = <-done:
		case <-time.After(r.cfg.StopGrace):
			res = runtime.Stopped(runtime.Interrupted(ctx))
			res.Error += " (the guest did not stop within " + r.cfg.StopGrace.String() + ")"
		}
	}
	res.Output = stdout.String()
	res.Stderr = stderr.String()
	res.Truncated = res.Truncated || stdout.Truncated() || stderr.Truncated()
	return res
}

// exec runs prg in a fresh runtime and returns the result without Output,
// Stderr and DurationMS.
func (r *JS) exec(ctx context.Context, prg *goja.Program, input json.RawMessage, stdout, stderr *runtime.CappedBuffer, limit int) (res job.Result) {
	defer func() {
		if p := recover(); p != nil {
			res = runtime.Failed(fmt.Sprintf("js: internal error: %v", p))
		}
	}()
	vm := goja.New()
	vm.SetMaxCallStackSize(r.cfg.MaxCallStackSize)

	// Stop the guest when ctx is done, for as long as exec runs.
	stop := context.AfterFunc(ctx, func() { vm.Interrupt(ctx.Err()) })
	defer stop()

	env, err := newEnv(vm, input, stdout, stderr, r.cfg.MaxStringBytes)
	if err != nil {
		return runtime.Failed("js: set up globals: " + err.Error())
	}
	val, err := vm.RunProgram(prg)
	if err != nil {
		return r.fail(ctx, "", err)
	}
	val = env.returned(val)
	if p, ok := val.Export().(*goja.Promise); ok {
		switch p.State() {
		case goja.PromiseStateFulfilled:
			val = p.Result()
		case goja.PromiseStateRejected:
			return runtime.Failed("uncaught (in promise) " + describe(vm, p.Result()))
		default:
			return runtime.Failed("the returned promise never settled")
		}
	}
	b, err := env.encode(val)
	if err != nil {
		return r.fail(ctx, "result: ", err)
	}
	if st := runtime.Interrupted(ctx); st != "" {
		return runtime.Stopped(st)
	}
	res = job.Result{Status: job.StatusCompleted}
	if len(b) > limit {
		res = runtime.Failed(fmt.Sprintf("result is %d bytes of JSON, more than the limit of %d", len(b), limit))
		res.Truncated = true
		return res
	}
	res.Result = b
	return res
}

// fail turns an error from the guest into a result: interrupted when ctx
// stopped it, failed with prefix, the exception and its stack otherwise.
func (r *JS) fail(ctx context.Context, prefix string, err error) job.Result {
	if st := runtime.Interrupted(ctx); st != "" {
		return runtime.Stopped(st)
	}
	var overflow *goja.StackOverflowError
	if errors.As(err, &overflow) {
		return runtime.Failed(prefix + "RangeError: maximum call stack size exceeded (" + r.stackLimit() + ")\n" + strings.TrimSpace(overflow.String()))
	}
	var ex *goja.Exception
	if errors.As(err, &ex) {
		return runtime.Failed(prefix + strings.TrimSpace(ex.String()))
	}
	return runtime.Failed(prefix + err.Error())
}

func (r *JS) stackLimit() string {
	return fmt.Sprintf("%d frames", r.cfg.MaxCallStackSize)
}

func compileProgram(code string) (*goja.Program, error) {
	return goja.Compile("job.js", code, false)
}
