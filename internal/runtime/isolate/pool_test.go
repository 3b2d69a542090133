package isolate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
	"github.com/zerverless/zerverless/internal/runtime/isolate"
	"github.com/zerverless/zerverless/internal/runtime/js"
	"github.com/zerverless/zerverless/internal/runtime/lua"
	"github.com/zerverless/zerverless/internal/runtime/runtimetest"
	"github.com/zerverless/zerverless/internal/testutil"
)

// childArg makes the test binary a pool's child (os.Executable is the test
// binary).
const childArg = "isolate-child"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		if err := isolate.Serve(os.Stdin, os.NewFile(3, "cancels"), os.Stdout, build); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// build is the child's set of runtimes: Lua and JavaScript, with a stop
// grace longer than the pool's and Lua run inline, as cmd/zerverless sets
// them up.
func build(json.RawMessage) (runtime.Set, error) {
	l, err := lua.New(lua.Config{StopGrace: time.Hour, Inline: true})
	if err != nil {
		return nil, err
	}
	j, err := js.New(js.Config{StopGrace: time.Hour})
	if err != nil {
		return nil, err
	}
	return runtime.Set{job.TypeLua: l, job.TypeJS: j}, nil
}

func newPool(t *testing.T, adjust func(*isolate.Config)) *isolate.Pool {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := isolate.DefaultConfig()
	cfg.Command = []string{exe, childArg}
	if adjust != nil {
		adjust(&cfg)
	}
	p, err := isolate.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// typed runs every task of a pool as one job type.
type typed struct {
	p   *isolate.Pool
	typ job.Type
}

func (r typed) Run(ctx context.Context, t job.Task) (job.Result, error) {
	t.Type = r.typ
	return r.p.Run(ctx, t)
}

// The runtimes in a pool pass the conformance suite, memory limit
// included: a child bounds its task's heap.
func TestConformance(t *testing.T) {
	p := newPool(t, nil)
	t.Run("lua", func(t *testing.T) {
		runtimetest.Run(t, typed{p, job.TypeLua}, runtimetest.Programs{
			Success: job.Spec{Code: `
				print("hello from lua")
				return INPUT.x * 2`},
			Error:     job.Spec{Code: `error("boom: something broke")`},
			ErrorText: "boom: something broke",
			Loop:      job.Spec{Code: `while true do end`},
			Flood: job.Spec{Code: `
				local line = string.rep("x", 1023)
				for i = 1, 2048 do print(line) end`},
			MemoryHog: job.Spec{Code: luaHog},
			Invalid:   job.Spec{Code: `this is not lua (`},
			Live:      job.Spec{Code: `print("first") while true do end`},
		})
	})
	t.Run("js", func(t *testing.T) {
		runtimetest.Run(t, typed{p, job.TypeJS}, runtimetest.Programs{
			Success:   job.Spec{Code: `console.log("hello from js"); INPUT.x * 2`},
			Error:     job.Spec{Code: `throw new Error("boom: something broke")`},
			ErrorText: "boom: something broke",
			Loop:      job.Spec{Code: `for (;;) {}`},
			Flood:     job.Spec{Code: `const line = "x".repeat(1023); for (let i = 0; i < 2048; i++) console.log(line)`},
			MemoryHog: job.Spec{Code: jsHog},
			Invalid:   job.Spec{Code: `this is not javascript (`},
			Live:      job.Spec{Code: `console.log("first"); for (;;) {}`},
		})
	})
}

const (
	luaHog = `local t = {} local s = string.rep("x", 1048576) local i = 0 while true do i = i + 1 t[i] = s .. i end`
	jsHog  = `const a = []; for (let i = 0; ; i++) { a.push("x".repeat(1 << 20) + i) }`
)

// TestMemoryBoundIsPerTask: a Lua task that allocates without bound fails
// as out of memory, and a JavaScript task running at the same time in the
// same pool completes.
func TestMemoryBoundIsPerTask(t *testing.T) {
	p := newPool(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	started := make(chan struct{})
	var wg sync.WaitGroup
	var other job.Result
	var otherErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		close(started)
		// Works until the hog has ended, then completes.
		other, otherErr = p.Run(ctx, job.Task{Type: job.TypeJS, Timeout: time.Minute,
			Limits: job.Limits{MemoryBytes: 64 << 20, OutputBytes: 1 << 20},
			Spec:   job.Spec{Code: `let n = 0; for (let i = 0; i < 3e7; i++) { n += i % 7 } n`}})
	}()
	<-started
	hog, err := p.Run(ctx, job.Task{Type: job.TypeLua, Timeout: time.Minute,
		Limits: job.Limits{MemoryBytes: 128 << 20, OutputBytes: 1 << 20}, Spec: job.Spec{Code: luaHog}})
	if err != nil {
		t.Fatalf("hog: %v", err)
	}
	if hog.Status != job.StatusFailed || !hog.OOMKilled || !strings.Contains(hog.Error, "out of memory") {
		t.Fatalf("hog: %s oom=%v %q", hog.Status, hog.OOMKilled, hog.Error)
	}
	t.Logf("hog: %s", hog.Error)
	wg.Wait()
	if otherErr != nil || other.Status != job.StatusCompleted {
		t.Fatalf("the other task: %s %q %v", other.Status, other.Error, otherErr)
	}
}

// TestStartFailureIsAnError: a pool whose child cannot start cannot run the
// task at all, which Runtime reports as an error (try elsewhere).
func TestStartFailureIsAnError(t *testing.T) {
	p := newPool(t, func(c *isolate.Config) { c.Command = []string{"/nonexistent/zerverless", "runtime-child"} })
	_, err := p.Run(context.Background(), job.Task{Type: job.TypeLua, Spec: job.Spec{Code: "return 1"}})
	if err == nil || !strings.Contains(err.Error(), "start the runtime process") {
		t.Fatalf("Run: %v", err)
	}
}

// TestNoStateBetweenTasks: consecutive tasks run in the same child, and
// none sees what the one before it left: its globals, its changes to the
// libraries, the string metatable or the globals' metatable.
func TestNoStateBetweenTasks(t *testing.T) {
	p := newPool(t, func(c *isolate.Config) { c.Idle = 1 })
	code := `
		local seen = {counter or 0, string.upper("a"), ("b"):upper(), math.pi > 3.1, getmetatable(_G) == nil, type(table.insert)}
		counter = (counter or 0) + 1
		string.upper = function() return "changed" end
		getmetatable("").__index = {upper = function() return "changed" end}
		math.pi = 3
		table.insert = nil
		setmetatable(_G, {__index = function() return 1 end})
		return seen`
	for i := range 3 {
		res, err := p.Run(context.Background(), job.Task{Type: job.TypeLua, Spec: job.Spec{Code: code}, Limits: job.Limits{MemoryBytes: 64 << 20}})
		if err != nil || res.Status != job.StatusCompleted || string(res.Result) != `[0,"A","B",true,true,"function"]` {
			t.Fatalf("run %d: %+v %v", i, res, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for name, adjust := range map[string]func(*isolate.Config){
		"no command":         func(c *isolate.Config) { c.Command = nil },
		"negative idle":      func(c *isolate.Config) { c.Idle = -1 },
		"negative grace":     func(c *isolate.Config) { c.StopGrace = -time.Second },
		"tiny heap interval": func(c *isolate.Config) { c.HeapCheckInterval = time.Microsecond },
		"tiny frames":        func(c *isolate.Config) { c.MaxFrameBytes = 10 },
		"tiny GC target":     func(c *isolate.Config) { c.GCPercent = 1 },
		"negative procs":     func(c *isolate.Config) { c.Procs = -1 },
	} {
		cfg := isolate.DefaultConfig()
		cfg.Command = []string{"zerverless", "runtime-child"}
		adjust(&cfg)
		if _, err := isolate.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// BenchmarkRun is the cost of a small Lua task in a pool, against the same
// task in-process. cpu-µs/op is the CPU of this process and its children
// (the pool's) per task.
func BenchmarkRun(b *testing.B) {
	task := job.Task{Type: job.TypeLua, Spec: job.Spec{Code: `return INPUT.x * 2`, Input: json.RawMessage(`{"x":21}`)},
		Limits: job.Limits{MemoryBytes: 256 << 20, OutputBytes: 1 << 20}}
	b.Run("pool", func(b *testing.B) {
		exe, _ := os.Executable()
		cfg := isolate.DefaultConfig()
		cfg.Command = []string{exe, childArg}
		p, err := isolate.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close(context.Background())
		if res, err := p.Run(context.Background(), task); err != nil || res.Status != job.StatusCompleted {
			b.Fatal(res, err) // the child is started before the clock
		}
		cpu := testutil.TreeCPU()
		for b.Loop() {
			if res, err := p.Run(context.Background(), task); err != nil || res.Status != job.StatusCompleted {
				b.Fatal(res, err)
			}
		}
		reportCPU(b, testutil.TreeCPU()-cpu)
	})
	b.Run("in-process", func(b *testing.B) {
		l, _ := lua.New(lua.Config{})
		cpu := testutil.TreeCPU()
		for b.Loop() {
			if res, err := l.Run(context.Background(), task); err != nil || res.Status != job.StatusCompleted {
				b.Fatal(res, err)
			}
		}
		reportCPU(b, testutil.TreeCPU()-cpu)
	})
}

func reportCPU(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
}

// TestStuckGuestIsKilled: a guest stuck in a long native call (a
// backtracking pattern, which the interpreter cannot interrupt) is ended
// with its process after the stop grace, and the pool goes on.
func TestStuckGuestIsKilled(t *testing.T) {
	p := newPool(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := p.Run(ctx, job.Task{Type: job.TypeLua, Limits: job.Limits{MemoryBytes: 64 << 20},
		Spec: job.Spec{Code: `return string.find(string.rep("a", 5000), ".-.-.-.-.-.-.-.-b")`}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != job.StatusTimeout || !strings.Contains(res.Error, "killed") {
		t.Fatalf("got %s %q", res.Status, res.Error)
	}
	t.Logf("returned after %v", time.Since(start))
	res, err = p.Run(context.Background(), job.Task{Type: job.TypeLua, Spec: job.Spec{Code: `return 1`}, Limits: job.Limits{MemoryBytes: 64 << 20}})
	if err != nil || res.Status != job.StatusCompleted {
		t.Fatalf("next task: %+v %v", res, err)
	}
}

// TestChildEnvironmentIsEmpty: the worker's environment (its join token)
// does not reach the runtime processes.
func TestChildEnvironmentIsEmpty(t *testing.T) {
	t.Setenv("ZERVERLESS_JOIN_TOKEN", "zv_secret")
	p := newPool(t, func(c *isolate.Config) { c.Command = []string{"/bin/sh", "-c", "env >&2; exit 1"} })
	_, err := p.Run(context.Background(), job.Task{Type: job.TypeLua, Spec: job.Spec{Code: "return 1"}})
	if err == nil {
		t.Fatal("a child that exits at once ran the task")
	}
	if strings.Contains(err.Error(), "zv_secret") {
		t.Fatalf("the child saw the worker's environment: %v", err)
	}
	if !strings.Contains(err.Error(), "PWD") {
		t.Fatalf("the start error does not carry the child's stderr: %v", err)
	}
}

// TestLoopTimesOutAfterAnyPause: a guest that computes without end times
// out under its own deadline (not killed with its process after the
// grace), whether its task comes right after another one or after the
// child sat idle: the child's runtime preempts it either way.
func TestLoopTimesOutAfterAnyPause(t *testing.T) {
	p := newPool(t, func(c *isolate.Config) { c.StopGrace = 5 * time.Second })
	limits := job.Limits{MemoryBytes: 64 << 20}
	ones := map[job.Type]string{job.TypeLua: `return 1`, job.TypeJS: `1`}
	loops := map[job.Type]string{job.TypeLua: `while true do end`, job.TypeJS: `for (;;) {}`}
	for _, pause := range []time.Duration{0, 50 * time.Millisecond, 0, 200 * time.Millisecond} {
		for _, typ := range []job.Type{job.TypeLua, job.TypeJS} {
			res, err := p.Run(context.Background(), job.Task{Type: typ, Spec: job.Spec{Code: ones[typ]}, Limits: limits})
			if err != nil || res.Status != job.StatusCompleted {
				t.Fatalf("%s: first task: %+v %v", typ, res, err)
			}
			time.Sleep(pause) // the child idles
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			res, err = p.Run(ctx, job.Task{Type: typ, Spec: job.Spec{Code: loops[typ]}, Limits: limits})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != job.StatusTimeout || strings.Contains(res.Error, "killed") {
				t.Fatalf("%s after a pause of %v: got %s %q", typ, pause, res.Status, res.Error)
			}
		}
	}
}
