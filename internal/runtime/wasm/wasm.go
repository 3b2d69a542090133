package wasm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// pageSize is the size of a Wasm memory page.
const pageSize = 64 << 10

// maxPages is the most pages a 32-bit Wasm memory has (4 GiB).
const maxPages = 65536

// Config holds the Wasm runtime's limits. Zero fields take the values of
// DefaultConfig.
type Config struct {
	// OutputBytes caps stdout, stderr and the result of a task whose
	// Limits.OutputBytes is zero. Default 1 MiB.
	OutputBytes int
	// MemoryBytes is the memory a run may use when its task's
	// Limits.MemoryBytes is zero. Default 256 MiB.
	MemoryBytes int64
	// MaxMemoryBytes is the most memory any run may use, whatever its task
	// asks for; it is the engine's page limit (WithMemoryLimitPages).
	// Default 4 GiB, the most a 32-bit Wasm memory can address.
	MaxMemoryBytes int64
	// CachedModules is how many compiled modules are kept, least recently
	// used first out. Default 32.
	CachedModules int
	// CacheDir, when set, keeps compiled code on disk there, so that a
	// restarted worker does not compile the same modules again. Default
	// empty: compiled code is kept in memory only.
	CacheDir string
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		OutputBytes:    1 << 20,
		MemoryBytes:    256 << 20,
		MaxMemoryBytes: maxPages * pageSize,
		CachedModules:  32,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.OutputBytes <= 0 {
		c.OutputBytes = d.OutputBytes
	}
	if c.MaxMemoryBytes <= 0 || c.MaxMemoryBytes > d.MaxMemoryBytes {
		c.MaxMemoryBytes = d.MaxMemoryBytes
	}
	if c.MemoryBytes <= 0 {
		c.MemoryBytes = d.MemoryBytes
	}
	c.MemoryBytes = min(c.MemoryBytes, c.MaxMemoryBytes)
	if c.CachedModules <= 0 {
		c.CachedModules = d.CachedModules
	}
	return c
}

// Wasm is the WebAssembly runtime: one wazero engine with WASI preview 1,
// shared by all runs. It is safe for concurrent use. Close releases it.
type Wasm struct {
	cfg     Config
	engine  wazero.Runtime
	ccache  wazero.CompilationCache
	modules *moduleCache
}

var _ runtime.Runtime = (*Wasm)(nil)

// New returns a Wasm runtime with cfg; zero fields take their defaults. It
// fails when the compilation cache directory cannot be used.
func New(cfg Config) (*Wasm, error) {
	cfg = cfg.withDefaults()
	ctx := context.Background()
	var ccache wazero.CompilationCache
	if cfg.CacheDir != "" {
		var err error
		if ccache, err = wazero.NewCompilationCacheWithDir(cfg.CacheDir); err != nil {
			return nil, fmt.Errorf("wasm: compilation cache: %w", err)
		}
	} else {
		ccache = wazero.NewCompilationCache()
	}
	engine := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(uint32((cfg.MaxMemoryBytes+pageSize-1)/pageSize)).
		WithCompilationCache(ccache))
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, engine); err != nil {
		_ = engine.Close(ctx)
		return nil, fmt.Errorf("wasm: instantiate WASI: %w", err)
	}
	if err := instantiateHost(ctx, engine); err != nil {
		_ = engine.Close(ctx)
		return nil, fmt.Errorf("wasm: instantiate host module: %w", err)
	}
	return &Wasm{cfg: cfg, engine: engine, ccache: ccache, modules: newModuleCache(cfg.CachedModules)}, nil
}

// Close releases the engine and every compiled module. Runs still in
// progress are stopped. Close does not block on them.
func (r *Wasm) Close(ctx context.Context) error {
	r.modules.closeAll(ctx)
	err := r.engine.Close(ctx)
	if cerr := r.ccache.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// Run instantiates t's module and runs its _start function. It blocks
// until the module exits, ctx is done or t.Timeout passes. A module that
// traps, exits non-zero or fails to compile is a failed Result; Run
// returns an error only when the runtime itself is closed.
func (r *Wasm) Run(ctx context.Context, t job.Task) (job.Result, error) {
	return runtime.Timed(ctx, t, r.run)
}

func (r *Wasm) run(ctx context.Context, t job.Task) (res job.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = runtime.Failed(fmt.Sprintf("wasm: internal error: %v", p)), nil
		}
	}()
	if st := runtime.Interrupted(ctx); st != "" {
		return runtime.Stopped(st), nil
	}
	if len(t.Spec.Wasm) == 0 {
		return runtime.Failed("no Wasm module"), nil
	}
	input := []byte(t.Spec.Input)
	if len(input) > 0 && !json.Valid(input) {
		return runtime.Failed("input_data is not valid JSON"), nil
	}
	limit := t.Limits.OutputBytes
	if limit <= 0 {
		limit = r.cfg.OutputBytes
	}
	memLimit := t.Limits.MemoryBytes
	if memLimit <= 0 {
		memLimit = r.cfg.MemoryBytes
	}
	memLimit = min(memLimit, r.cfg.MaxMemoryBytes)

	entry, err := r.modules.acquire(ctx, t.Spec.Wasm, func(bin []byte) (wazero.CompiledModule, error) {
		return r.engine.CompileModule(context.Background(), bin)
	})
	if err != nil {
		if st := runtime.Interrupted(ctx); st != "" {
			return runtime.Stopped(st), nil
		}
		return runtime.Failed("invalid Wasm module: " + err.Error()), nil
	}
	defer r.modules.release(entry)
	if _, ok := entry.mod.ExportedFunctions()["_start"]; !ok {
		return runtime.Failed("the module does not export _start (a WASI command is expected)"), nil
	}

	stdout := runtime.Output(ctx, job.LogStdout, limit)
	stderr := runtime.Output(ctx, job.LogStderr, limit)
	sink := &resultSink{limit: limit}
	budget := &memoryBudget{limit: uint64(memLimit)}
	args := append([]string{"module.wasm"}, t.Spec.Args...)
	mcfg := wazero.NewModuleConfig().
		WithName(""). // anonymous: runs of one module do not collide
		WithArgs(args...).
		WithStdin(bytes.NewReader(input)).
		WithStdout(stdout).
		WithStderr(stderr).
		WithRandSource(rand.Reader).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(func(ns int64) {
			// Sleep, but no longer than the run lasts.
			timer := time.NewTimer(time.Duration(ns))
			defer timer.Stop()
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		})
	if len(input) > 0 {
		mcfg = mcfg.WithEnv("INPUT_DATA", string(input))
	}

	runCtx := context.WithValue(ctx, sinkKey{}, sink)
	runCtx = experimental.WithMemoryAllocator(runCtx, budget)
	mod, runErr := r.engine.InstantiateModule(runCtx, entry.mod, mcfg)
	if mod != nil {
		_ = mod.Close(context.Background())
	}

	res = outcome(ctx, runErr)
	peak, refused := budget.stats()
	res.PeakMemoryBytes = int64(peak)
	if refused && res.Status == job.StatusFailed {
		res.OOMKilled = true
		res.Error += fmt.Sprintf(" (memory limit of %d bytes reached)", memLimit)
	}
	if res.Status == job.StatusCompleted {
		value, err := sink.get()
		if err != nil {
			res = runtime.Failed("result: " + err.Error())
			res.Truncated = true
		}
		res.Result = value
	}
	res.Output = stdout.String()
	res.Stderr = stderr.String()
	res.Truncated = res.Truncated || stdout.Truncated() || stderr.Truncated()
	return res, nil
}

// outcome turns the error of running _start into a result.
func outcome(ctx context.Context, err error) job.Result {
	if st := runtime.Interrupted(ctx); st != "" {
		return runtime.Stopped(st)
	}
	if err == nil {
		return job.Result{Status: job.StatusCompleted}
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		code := int(exit.ExitCode())
		if code == 0 {
			return job.Result{Status: job.StatusCompleted}
		}
		res := runtime.Failed(fmt.Sprintf("module exited with code %d", code))
		res.ExitCode = code
		return res
	}
	return runtime.Failed(err.Error())
}
