// Package lua runs Lua 5.1 jobs with github.com/yuin/gopher-lua.
//
// # Contract
//
// A job's Spec.Code is one Lua chunk. Before it runs:
//
//   - the global INPUT holds Spec.Input decoded from JSON (objects and
//     arrays become tables, null becomes nil; absent input is nil);
//   - print writes to the job's stdout, like Lua's print (arguments passed
//     through tostring, separated by tabs, ended by a newline);
//   - the table json offers json.encode(value) → string and
//     json.decode(string) → value; both raise a Lua error on failure.
//
// The first value the chunk returns becomes Result.Result, encoded as JSON:
// a table whose keys are exactly 1..n is an array, any other table an
// object (the empty table is {}); numbers, strings and booleans map to
// their JSON kind; nil (or no return) leaves Result.Result empty. A value
// JSON cannot hold (a function, NaN, a cyclic table) fails the job. The
// encoded result is bounded by the task's output limit.
//
// A Lua error (error(...), a runtime error, a syntax error) ends the job
// with Status failed and the message, with its Lua traceback, in Error.
// ExitCode is 0 when the job completes, 1 when it fails and -1 when it was
// stopped (timeout or canceled). Lua has no stderr: Result.Stderr is empty.
//
// # Sandbox
//
// Only these libraries are opened: base, string, table, math and
// coroutine. From base, dofile, loadfile, require, module and _printregs are
// removed; load and loadstring remain, and compile Lua source only
// (gopher-lua has no bytecode loader) into the same sandbox. string.dump is
// removed and string.rep refuses results longer than Config.MaxStringBytes.
// os, io, debug, package and channel are never opened, so a job cannot run
// commands, touch files or load modules.
//
// # Limits
//
// The call stack is bounded by Config.CallStackSize frames and the value
// stack by Config.RegistryMaxSize slots; exceeding either is a Lua error.
// stdout is cut at Task.Limits.OutputBytes (Result.Truncated is then set).
// The deadline is ctx's deadline (and Task.Timeout when set): gopher-lua
// checks the context between instructions, so a Lua loop stops promptly. A
// library call that runs long inside Go (a pathological string pattern)
// cannot be interrupted: Run then returns StopGrace after the deadline with
// Status timeout and leaves that call to finish in the background. With
// Config.Inline the guest runs on Run's goroutine and Run waits for it:
// the process that runs it is then what ends a call that does not stop
// (internal/runtime/isolate kills its runtime process after its grace).
//
// Each run gets a fresh state; Config.SpareStates fresh states are made
// ahead, in the background, so that opening the libraries is not on a
// run's path. A state's libraries are built from their layout, read once
// from a state opened the ordinary way: new tables, new function objects
// and a new string metatable for every state, only Go code and immutable
// values in common.
//
// Compiled chunks are kept by the SHA-256 of their source, up to
// Config.CachedChunks, least recently used out first: a chunk run again (a
// function invoked again) is not parsed or compiled again. A compiled
// chunk holds no state; every run still gets a fresh interpreter state.
//
// Heap memory is not bounded by this package: gopher-lua allocates on the Go
// heap and offers no accounting, so Task.Limits.MemoryBytes is not
// enforced here. Workers run this runtime in a process of its own per task
// (internal/runtime/isolate), which bounds the task's memory alone.
package lua
