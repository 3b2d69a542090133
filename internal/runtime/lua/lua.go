package lua

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	glua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// Config holds the Lua runtime's limits. Zero fields take the values of
// DefaultConfig.
type Config struct {
	// OutputBytes caps stdout and the encoded result of a task whose
	// Limits.OutputBytes is zero. Default 1 MiB.
	OutputBytes int
	// CallStackSize is the most nested Lua calls. Default 200.
	CallStackSize int
	// RegistrySize is the initial size of the value stack, in slots
	// (at least 128). Default 256: a small task fits, and every task's
	// state is new, so a larger start is memory each task clears; the
	// stack grows by RegistryGrowStep up to RegistryMaxSize.
	RegistrySize int
	// RegistryGrowStep is how many slots the value stack grows by at a
	// time. Default 4096.
	RegistryGrowStep int
	// RegistryMaxSize is the most the value stack may grow to, in slots.
	// Default 64 Ki slots (1 MiB).
	RegistryMaxSize int
	// MaxStringBytes is the longest string string.rep builds. Default
	// 16 MiB.
	MaxStringBytes int
	// StopGrace is how long Run waits, after ctx is done, for a guest busy
	// inside a library call to stop before returning without it.
	// Default 500 ms.
	StopGrace time.Duration
	// Inline runs the guest on the goroutine that called Run, which then
	// returns only once the guest has stopped: StopGrace does not apply.
	// Spare states are then made only by Prepare, which the owner calls
	// between runs. For a process that is ended when its guest does not
	// stop in time and runs one task at a time (a runtime process of
	// internal/runtime/isolate), where a goroutine per run and per spare
	// state, and the growth of their stacks, is a cost for nothing.
	Inline bool
	// CachedChunks is how many compiled chunks are kept, by the SHA-256 of
	// their source, least recently used out first (default 256; negative:
	// none). A chunk run again — a function invoked again — skips parsing
	// and compiling.
	CachedChunks int
	// SpareStates is how many fresh interpreter states, libraries opened,
	// are kept ready (default 1; negative: none). A run takes one instead
	// of opening the libraries while its caller waits, and a new one is
	// made in the background after it. A spare state has never run code:
	// every run still gets a fresh state.
	SpareStates int
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		OutputBytes:      1 << 20,
		CallStackSize:    200,
		RegistrySize:     256,
		RegistryGrowStep: 4096,
		RegistryMaxSize:  64 << 10,
		MaxStringBytes:   16 << 20,
		StopGrace:        500 * time.Millisecond,
		CachedChunks:     256,
		SpareStates:      1,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.OutputBytes <= 0 {
		c.OutputBytes = d.OutputBytes
	}
	if c.CallStackSize <= 0 {
		c.CallStackSize = d.CallStackSize
	}
	if c.RegistrySize <= 0 {
		c.RegistrySize = d.RegistrySize
	}
	c.RegistrySize = max(c.RegistrySize, 128) // gopher-lua's least
	if c.RegistryGrowStep <= 0 {
		c.RegistryGrowStep = d.RegistryGrowStep
	}
	if c.RegistryMaxSize < c.RegistrySize {
		c.RegistryMaxSize = max(d.RegistryMaxSize, c.RegistrySize)
	}
	if c.MaxStringBytes <= 0 {
		c.MaxStringBytes = d.MaxStringBytes
	}
	if c.StopGrace <= 0 {
		c.StopGrace = d.StopGrace
	}
	if c.CachedChunks == 0 {
		c.CachedChunks = d.CachedChunks
	}
	if c.SpareStates == 0 {
		c.SpareStates = d.SpareStates
	}
	return c
}

// validate refuses settings that cannot work: negative sizes and limits
// (CachedChunks may be negative: no cache).
func (c Config) validate() error {
	switch {
	case c.OutputBytes < 0:
		return fmt.Errorf("lua: OutputBytes is %d, want at least 0", c.OutputBytes)
	case c.CallStackSize < 0:
		return fmt.Errorf("lua: CallStackSize is %d, want at least 0", c.CallStackSize)
	case c.RegistrySize < 0 || c.RegistryGrowStep < 0 || c.RegistryMaxSize < 0:
		return fmt.Errorf("lua: RegistrySize, RegistryGrowStep and RegistryMaxSize must be at least 0")
	case c.MaxStringBytes < 0:
		return fmt.Errorf("lua: MaxStringBytes is %d, want at least 0", c.MaxStringBytes)
	case c.StopGrace < 0:
		return fmt.Errorf("lua: StopGrace is %v, want at least 0", c.StopGrace)
	}
	return nil
}

// Lua is the Lua runtime. It is safe for concurrent use: each Run gets its
// own interpreter state.
type Lua struct {
	cfg    Config
	protos *runtime.CodeCache[*glua.FunctionProto]
	// last is the chunk run last, with its code: a run of the same code
	// (compared as a string) takes it without hashing the code for
	// protos.
	last atomic.Pointer[compiledChunk]
	// spare holds fresh states ready to run (Config.SpareStates).
	spare chan *state
	// refilling is set while a spare state is being made.
	refilling atomic.Bool
	// rep is string.rep, capped at Config.MaxStringBytes.
	rep glua.LGFunction
}

// state is a fresh interpreter state with the sandbox's libraries open;
// out is where its print writes, set for the run that takes it.
type state struct {
	L   *glua.LState
	out *redirect
}

// compiledChunk is a chunk's code and its compiled form.
type compiledChunk struct {
	code  string
	proto *glua.FunctionProto
}

// redirect is an io.Writer whose destination is set once the state that
// holds it is taken by a run.
type redirect struct{ w io.Writer }

func (r *redirect) Write(p []byte) (int, error) { return r.w.Write(p) }

var _ runtime.Runtime = (*Lua)(nil)

// New returns a Lua runtime with cfg; zero fields take their defaults. It
// returns an error for a negative size or limit.
func New(cfg Config) (*Lua, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Lua{cfg: cfg, protos: runtime.NewCodeCache[*glua.FunctionProto](cfg.CachedChunks), spare: make(chan *state, max(0, cfg.SpareStates)),
		rep: cappedRep(cfg.MaxStringBytes)}, nil
}

// Run runs t's Lua chunk. It blocks until the chunk ends, ctx is done or
// t.Timeout passes. A Lua error is a failed Result, not an error; Run
// returns a non-nil error never.
func (r *Lua) Run(ctx context.Context, t job.Task) (job.Result, error) {
	return runtime.Timed(ctx, t, func(ctx context.Context, t job.Task) (job.Result, error) {
		return r.run(ctx, t), nil
	})
}

func (r *Lua) run(ctx context.Context, t job.Task) job.Result {
	if st := runtime.Interrupted(ctx); st != "" {
		return runtime.Stopped(st)
	}
	if strings.TrimSpace(t.Spec.Code) == "" {
		return runtime.Failed("no Lua code")
	}
	if len(t.Spec.Input) > 0 && !json.Valid(t.Spec.Input) {
		return runtime.Failed("input_data is not valid JSON: " + jsonError(t.Spec.Input).Error())
	}
	limit := t.Limits.OutputBytes
	if limit <= 0 {
		limit = r.cfg.OutputBytes
	}
	stdout := runtime.Output(ctx, job.LogStdout, limit)

	var res job.Result
	if r.cfg.Inline {
		res = r.exec(ctx, t.Spec.Code, t.Spec.Input, stdout, limit)
	} else {
		res = r.execAside(ctx, t.Spec.Code, t.Spec.Input, stdout, limit)
	}
	res.Output = stdout.String()
	res.Truncated = res.Truncated || stdout.Truncated()
	return res
}

// execAside is exec on a goroutine of its own, left to finish in the
// background when it has not stopped StopGrace after ctx is done.
func (r *Lua) execAside(ctx context.Context, code string, input json.RawMessage, stdout *runtime.CappedBuffer, limit int) job.Result {
	done := make(chan job.Result, 1)
	go func() { done <- r.exec(ctx, code, input, stdout, limit) }()
	select {
	case res := <-done:
		return res
	case <-ctx.Done():
		select {
		case res := <-done:
			return res
		case <-time.After(r.cfg.StopGrace):
			res := runtime.Stopped(runtime.Interrupted(ctx))
			res.Error += " (the guest did not stop within " + r.cfg.StopGrace.String() + ")"
			return res
		}
	}
}

// exec runs code in a fresh sandboxed state, with input (valid JSON, or
// none) as INPUT, and returns the result without Output and DurationMS.
func (r *Lua) exec(ctx context.Context, code string, input json.RawMessage, stdout *runtime.CappedBuffer, limit int) (res job.Result) {
	defer func() {
		if p := recover(); p != nil {
			res = runtime.Failed(fmt.Sprintf("lua: internal error: %v", p))
		}
	}()
	st, err := r.takeState()
	if err != nil {
		return runtime.Failed("lua: open libraries: " + err.Error())
	}
	defer st.L.Close()
	st.out.w = stdout
	L := st.L
	if len(input) > 0 {
		v, err := decodeValidJSON(L, input)
		if err != nil {
			return runtime.Failed("input_data is not valid JSON: " + err.Error())
		}
		L.SetGlobal("INPUT", v)
	}
	L.SetContext(ctx)

	// A compiled chunk holds no state of the run: it is shared by every
	// state that runs the same source.
	proto, err := r.chunk(code)
	if err != nil {
		// Load reports the error as it always has.
		if _, err := L.Load(strings.NewReader(code), "=job"); err != nil {
			return runtime.Failed(err.Error())
		}
		return runtime.Failed(err.Error())
	}
	L.Push(L.NewFunctionFromProto(proto))
	if err := L.PCall(0, 1, nil); err != nil {
		if st := runtime.Interrupted(ctx); st != "" {
			return runtime.Stopped(st)
		}
		return runtime.Failed(errorMessage(err))
	}
	if st := runtime.Interrupted(ctx); st != "" {
		return runtime.Stopped(st)
	}
	ret := L.Get(-1)
	res = job.Result{Status: job.StatusCompleted}
	if ret == glua.LNil {
		return res
	}
	b, err := encodeJSON(ret)
	if err != nil {
		return runtime.Failed("result: " + err.Error())
	}
	if len(b) > limit {
		res = runtime.Failed(fmt.Sprintf("result is %d bytes of JSON, more than the limit of %d", len(b), limit))
		res.Truncated = true
		return res
	}
	res.Result = b
	return res
}

// takeState returns a spare state, or makes one; either way it starts
// making the next spare in the background.
func (r *Lua) takeState() (*state, error) {
	var st *state
	select {
	case st = <-r.spare:
	default:
	}
	if !r.cfg.Inline && cap(r.spare) > 0 && r.refilling.CompareAndSwap(false, true) {
		go r.refill()
	}
	if st != nil {
		return st, nil
	}
	return r.newState()
}

// Prepare makes spare states, on the calling goroutine, until there are
// Config.SpareStates. With Config.Inline it is how spare states are made:
// isolate's Serve calls it before its first task and after each result.
func (r *Lua) Prepare() {
	if r.refilling.CompareAndSwap(false, true) {
		r.refill()
	}
}

// refill makes spare states until there are Config.SpareStates; the
// caller has set refilling.
func (r *Lua) refill() {
	defer r.refilling.Store(false)
	for len(r.spare) < cap(r.spare) {
		st, err := r.newState()
		if err != nil {
			return
		}
		select {
		case r.spare <- st:
		default:
			st.L.Close()
			return
		}
	}
}

// newState makes a fresh state with the sandbox's libraries open.
func (r *Lua) newState() (*state, error) {
	L := glua.NewState(glua.Options{
		SkipOpenLibs:        true,
		CallStackSize:       r.cfg.CallStackSize,
		RegistrySize:        r.cfg.RegistrySize,
		RegistryGrowStep:    r.cfg.RegistryGrowStep,
		RegistryMaxSize:     r.cfg.RegistryMaxSize,
		MinimizeStackMemory: true,
	})
	plan, err := sandboxPlan()
	if err != nil {
		L.Close()
		return nil, err
	}
	out := &redirect{w: io.Discard}
	plan.open(L, out, r.rep)
	return &state{L: L, out: out}, nil
}

// chunk returns code compiled: the last chunk when its code is code, else
// the cache's (which compiles it on a miss).
func (r *Lua) chunk(code string) (*glua.FunctionProto, error) {
	if c := r.last.Load(); c != nil && c.code == code {
		return c.proto, nil
	}
	if r.protos == nil {
		return compileChunk(code)
	}
	proto, err := r.protos.Get(code, compileChunk)
	if err == nil {
		r.last.Store(&compiledChunk{code: code, proto: proto})
	}
	return proto, err
}

// errorMessage returns a Lua error's message with its traceback.
func errorMessage(err error) string {
	var apiErr *glua.ApiError
	if errors.As(err, &apiErr) && apiErr.Object != nil {
		msg := apiErr.Object.String()
		if apiErr.StackTrace != "" {
			msg += "\n" + apiErr.StackTrace
		}
		return msg
	}
	return err.Error()
}

// compileChunk parses and compiles a job's chunk, named "job" in errors and
// tracebacks.
func compileChunk(code string) (*glua.FunctionProto, error) {
	chunk, err := parse.Parse(strings.NewReader(code), "=job")
	if err != nil {
		return nil, err
	}
	return glua.Compile(chunk, "=job")
}
