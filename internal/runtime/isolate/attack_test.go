package isolate_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime/isolate"
)

// TestAttackNoTraceOfPreviousTask: a task that marks everything it can
// reach (library tables, the strings' metatable itself, the globals'
// environment, INPUT, json, a suspended coroutine, setfenv of its own
// chunk) leaves nothing for the next task, of the same code (the reused
// chunk) or another.
func TestAttackNoTraceOfPreviousTask(t *testing.T) {
	p := newPool(t, func(c *isolate.Config) { c.Idle = 1 })
	const probe = `
		local seen = {}
		local function chk(name, v) if v ~= nil then seen[#seen+1] = name end end
		chk("G", rawget(_G, "leak"))
		chk("string", string.leak)
		chk("smeta", getmetatable("").leak)
		chk("sindex", getmetatable("").__index.leak)
		chk("table", table.leak) chk("math", math.leak) chk("coroutine", coroutine.leak)
		chk("json", json.leak)
		chk("fenv", getfenv(1).leak)
		chk("fenv0", getfenv(0).leak)
		chk("gmeta", getmetatable(_G))
		if type(INPUT) == "table" then chk("input", INPUT.leak) end
		chk("pi", math.pi ~= math.pi and 1 or (math.pi < 3.14 and 1 or nil))
		if print == nil then seen[#seen+1] = "print" end
		`
	const mark = `
		rawset(_G, "leak", 1) string.leak = 1 getmetatable("").leak = 1
		getmetatable("").__index.leak = 1 table.leak = 1 math.leak = 1 coroutine.leak = 1
		json.leak = 1 getfenv(1).leak = 1 getfenv(0).leak = 1
		if type(INPUT) == "table" then INPUT.leak = 1 end
		math.pi = 1 print = nil
		leakco = coroutine.create(function() while true do coroutine.yield(1) end end)
		coroutine.resume(leakco)
		setmetatable(_G, {__newindex = function() end, __index = function() return 1 end})
		setfenv(1, {leak = 1})
		`
	same := probe + mark + ` return seen`
	other := probe + ` return seen`
	for i, code := range []string{same, same, other, same, other} {
		res, err := p.Run(context.Background(), job.Task{Type: job.TypeLua,
			Spec:   job.Spec{Code: code, Input: json.RawMessage(`{"a":1}`)},
			Limits: job.Limits{MemoryBytes: 64 << 20}})
		if err != nil || res.Status != job.StatusCompleted {
			t.Fatalf("run %d: %+v %v", i, res, err)
		}
		if string(res.Result) != `{}` && string(res.Result) != `[]` && len(res.Result) != 0 {
			t.Errorf("run %d sees a trace of a previous task: %s", i, res.Result)
		}
	}
}

// TestAttackResultNearFrameLimit: a result of about MaxFrameBytes (the
// child's raw writes must take many short writes and waits) arrives whole,
// or fails as a result; the pool goes on.
func TestAttackResultNearFrameLimit(t *testing.T) {
	p := newPool(t, func(c *isolate.Config) { c.MaxFrameBytes = 4 << 20 })
	for _, n := range []int{1<<20 - 100, 2 << 20, 4<<20 - 200, 4<<20 - 60, 4<<20 - 40, 4 << 20, 5 << 20} {
		code := `local s = "\226\128\168x<\0\255" .. string.rep("x", ` + itoa(n-40) + `) return s`
		res, err := p.Run(context.Background(), job.Task{Type: job.TypeLua, Timeout: 30 * time.Second,
			Spec:   job.Spec{Code: code},
			Limits: job.Limits{MemoryBytes: 256 << 20, OutputBytes: 64 << 20}})
		if err != nil {
			t.Fatalf("%d: %v", n, err)
		}
		if res.Status == job.StatusCompleted {
			var s string
			if err := json.Unmarshal(res.Result, &s); err != nil || len(s) != n-40+9 || !strings.HasPrefix(s, "\u2028x<\x00\ufffd") {
				t.Errorf("%d: result of %d bytes broken: %v %d", n, len(res.Result), err, len(s))
			}
		}
		t.Logf("%d: %s %.80s", n, res.Status, res.Error)
		res, err = p.Run(context.Background(), job.Task{Type: job.TypeLua, Spec: job.Spec{Code: `return 1`}, Limits: job.Limits{MemoryBytes: 64 << 20}})
		if err != nil || string(res.Result) != "1" {
			t.Fatalf("after %d: %+v %v", n, res, err)
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestAttackLoopAfterBlockedWrite: a task whose large result fills the
// pipe (the child waits in the poller with its only processor idle, and
// the runtime's monitor goes to sleep until the next timer then due: the
// task's own deadline, a minute away), and right after it, within the
// alarm's HeapCheckInterval, a loop. The loop must time out under its own
// deadline, not run on until the pool kills its process after the grace.
// A task with a memory bound is covered by the heap check's timer as well
// (the worker always sets one); without one the wake after a write that
// waited (writeWaited) is what holds.
func TestAttackLoopAfterBlockedWrite(t *testing.T) {
	for _, mem := range []int64{64 << 20, 0} {
		p := newPool(t, func(c *isolate.Config) { c.StopGrace = time.Second })
		limits := job.Limits{MemoryBytes: mem, OutputBytes: 8 << 20}
		for i := 0; i < 60; i++ {
			res, err := p.Run(context.Background(), job.Task{Type: job.TypeLua, Timeout: time.Minute,
				Spec: job.Spec{Code: `return string.rep("x", 4000000)`}, Limits: limits})
			if err != nil || res.Status != job.StatusCompleted {
				t.Fatalf("big: %+v %v", res.Status, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			start := time.Now()
			res, err = p.Run(ctx, job.Task{Type: job.TypeLua, Spec: job.Spec{Code: `while true do end`}, Limits: limits})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(res.Error, "killed") {
				t.Errorf("memory bound %d, run %d: the loop ran past its 100ms deadline until killed, %v: %s", mem, i, time.Since(start), res.Error)
				break
			}
		}
	}
}
