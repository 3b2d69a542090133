package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
	"github.com/zerverless/zerverless/internal/runtime/docker"
	"github.com/zerverless/zerverless/internal/runtime/isolate"
	"github.com/zerverless/zerverless/internal/runtime/js"
	"github.com/zerverless/zerverless/internal/runtime/lua"
	"github.com/zerverless/zerverless/internal/runtime/python"
	"github.com/zerverless/zerverless/internal/runtime/wasm"
	"github.com/zerverless/zerverless/internal/worker"
)

// RuntimeOptions say which runtimes a worker offers and how they are set up.
type RuntimeOptions struct {
	// Only, when not empty, restricts the runtimes offered to these.
	Only []job.Type
	// Docker enables container jobs (off by default: the worker's owner
	// opts in).
	Docker bool
	Lua    lua.Config
	JS     js.Config
	// Isolate runs the Lua and JavaScript runtimes in child processes,
	// one task per process at a time, each bounded in memory on its own.
	// Its Command defaults to this program's runtime-child mode.
	Isolate isolate.Config
	// Slots is how many tasks the workers sharing these runtimes run at
	// once (default 4): as many runtime processes are kept waiting.
	Slots  int
	Wasm   wasm.Config
	Python python.Config
	// DockerConfig is the container policy of the worker's owner.
	DockerConfig docker.Config
	// DockerRelaySocketsAuto gives the docker runtime a RelaySocketDir of
	// its own under the temporary directory when its engine is local.
	DockerRelaySocketsAuto bool
	// DockerIDDir, when set, is the data directory whose worker id
	// (docker.ClaimWorkerID) replaces DockerConfig.WorkerID; DockerIDPrefix
	// starts a new id ("serve-", "worker-").
	DockerIDDir    string
	DockerIDPrefix string
}

// DefaultRuntimeOptions returns every sandboxed runtime with its defaults
// and Docker off.
func DefaultRuntimeOptions() RuntimeOptions {
	return RuntimeOptions{
		Lua:     lua.DefaultConfig(),
		JS:      js.DefaultConfig(),
		Isolate: isolate.DefaultConfig(),
		Wasm:    wasm.DefaultConfig(),
		Python:  python.DefaultConfig(),

		DockerConfig: docker.DefaultConfig(),
	}
}

// Runtimes is a built set of runtimes and whatever must be closed with it.
type Runtimes struct {
	Set runtime.Set
	// Docker is what the worker advertises for containers, when the
	// docker runtime was built.
	Docker *job.DockerCapabilities
	closes []func(context.Context) error
}

// Close releases what the runtimes hold (compiled modules, engine
// connections).
func (r *Runtimes) Close(ctx context.Context) error {
	var first error
	for _, c := range r.closes {
		if err := c(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (o RuntimeOptions) wants(t job.Type) bool {
	if t == job.TypeDocker && !o.Docker {
		return false
	}
	return len(o.Only) == 0 || slices.Contains(o.Only, t)
}

// BuildRuntimes builds the runtimes o asks for. Runtimes that depend on
// something outside the process (python3, a Docker Engine) are built even
// when it is missing: the worker checks them and does not advertise them
// until they work.
func BuildRuntimes(ctx context.Context, o RuntimeOptions, log *slog.Logger) (*Runtimes, error) {
	set := runtime.Set{}
	rts := &Runtimes{Set: set}
	if o.wants(job.TypeLua) || o.wants(job.TypeJS) {
		if err := buildIsolated(rts, o, log); err != nil {
			return nil, err
		}
	}
	if o.wants(job.TypeWasm) {
		w, err := wasm.New(o.Wasm)
		if err != nil {
			return nil, err
		}
		set[job.TypeWasm] = w
		rts.closes = append(rts.closes, w.Close)
	}
	if o.wants(job.TypePython) {
		set[job.TypePython] = python.New(o.Python)
	}
	if o.wants(job.TypeDocker) {
		if err := buildDocker(rts, o, log); err != nil {
			return nil, err
		}
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("no runtime selected")
	}
	return rts, nil
}

// buildIsolated adds the Lua and JavaScript runtimes, run in a pool of
// child processes.
func buildIsolated(rts *Runtimes, o RuntimeOptions, log *slog.Logger) error {
	// Refuse bad settings here, not in every child.
	if _, err := lua.New(o.Lua); err != nil {
		return err
	}
	if _, err := js.New(o.JS); err != nil {
		return err
	}
	cfg := o.Isolate
	if len(cfg.Command) == 0 {
		cmd, err := childCommandLine()
		if err != nil {
			return err
		}
		cfg.Command = cmd
	}
	init, err := json.Marshal(childInit{Lua: o.Lua, JS: o.JS})
	if err != nil {
		return fmt.Errorf("runtime process set-up: %w", err)
	}
	cfg.Init = init
	if o.Slots > 0 {
		cfg.Idle = o.Slots
	}
	cfg.StopGrace = max(o.Lua.StopGrace, o.JS.StopGrace, cfg.StopGrace)
	if cfg.Logger == nil && log != nil {
		cfg.Logger = log.With("runtime", "isolate")
	}
	pool, err := isolate.New(cfg)
	if err != nil {
		return err
	}
	if o.wants(job.TypeLua) {
		rts.Set[job.TypeLua] = pool
	}
	if o.wants(job.TypeJS) {
		rts.Set[job.TypeJS] = pool
	}
	rts.closes = append(rts.closes, pool.Close)
	return nil
}

// parseTypes parses a comma-separated list of runtime names.
func parseTypes(s string) ([]job.Type, error) {
	var out []job.Type
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		t := job.Type(f)
		if !t.Known() {
			return nil, fmt.Errorf("unknown runtime %q (known: lua, js, wasm, python, docker)", f)
		}
		out = append(out, t)
	}
	return out, nil
}

// The docker runtime runs the worker's service instances.
var _ worker.ServiceRuntime = (*docker.Docker)(nil)

// buildDocker adds the docker runtime and starts its upkeep: the runtime
// itself sweeps, loads its built images and pre-pulls whenever its engine
// answers (now or later), and reaps expired containers. Until then the
// worker does not advertise docker.
func buildDocker(rts *Runtimes, o RuntimeOptions, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := o.DockerConfig
	if o.DockerIDDir != "" {
		claim, err := docker.ClaimWorkerID(o.DockerIDDir, o.DockerIDPrefix)
		if err != nil {
			return err
		}
		cfg.WorkerID = claim.ID
		rts.closes = append(rts.closes, func(context.Context) error { return claim.Release() })
		log.Info("docker worker id", "worker_id", claim.ID, "kept_in", claim.Path)
	}
	if cfg.Logger == nil {
		cfg.Logger = log.With("runtime", "docker")
	}
	engine, err := docker.NewClient()
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	if o.DockerRelaySocketsAuto && cfg.RelaySocketDir == "" && strings.HasPrefix(engine.DaemonHost(), "unix://") {
		cfg.RelaySocketDir = filepath.Join(os.TempDir(), "zerverless-relays-"+cfg.WorkerID)
	}
	d, err := docker.New(cfg, engine)
	if err != nil {
		engine.Close()
		return err
	}
	rts.Set[job.TypeDocker] = d
	caps := d.Capabilities()
	rts.Docker = &caps
	// Closed in reverse: the runtime first, then its engine connection.
	rts.closes = append([]func(context.Context) error{d.Close, func(context.Context) error { return engine.Close() }}, rts.closes...)
	d.Start()
	return nil
}
