package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
	"github.com/zerverless/zerverless/internal/runtime/isolate"
	"github.com/zerverless/zerverless/internal/runtime/js"
	"github.com/zerverless/zerverless/internal/runtime/lua"
)

// childCommand is the hidden subcommand a worker starts its Lua and
// JavaScript runtime processes with (see internal/runtime/isolate).
const childCommand = "runtime-child"

// childInit is what a runtime process is set up with: the configurations
// of the runtimes it runs.
type childInit struct {
	Lua lua.Config `json:"lua"`
	JS  js.Config  `json:"js"`
}

// childStopGrace is the runtimes' own stop grace inside a child: longer
// than any pool's, so that a guest that does not stop is ended with its
// process by the pool, never left running in the child.
const childStopGrace = time.Hour

// runtimeChild serves one runtime process on stdin, file descriptor 3 (the
// pool's cancels) and stdout, and returns the process's exit status.
func runtimeChild(stdin io.Reader, stdout, stderr io.Writer) int {
	err := isolate.Serve(stdin, os.NewFile(3, "cancels"), stdout, buildChildRuntimes)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, isolate.ErrMemoryExceeded):
		return 3
	default:
		fmt.Fprintln(stderr, "zerverless runtime-child:", err)
		return 1
	}
}

func buildChildRuntimes(init json.RawMessage) (runtime.Set, error) {
	var ci childInit
	if err := json.Unmarshal(init, &ci); err != nil {
		return nil, fmt.Errorf("runtime process set-up: %w", err)
	}
	ci.Lua.StopGrace, ci.JS.StopGrace = childStopGrace, childStopGrace
	// The pool ends a guest that does not stop with its process: the
	// guest runs on the goroutine that serves the task.
	ci.Lua.Inline = true
	l, err := lua.New(ci.Lua)
	if err != nil {
		return nil, err
	}
	j, err := js.New(ci.JS)
	if err != nil {
		return nil, err
	}
	return runtime.Set{job.TypeLua: l, job.TypeJS: j}, nil
}

// childCommandLine is how this binary starts a runtime process.
func childCommandLine() ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program to start runtime processes: %w", err)
	}
	return []string{exe, childCommand}, nil
}
