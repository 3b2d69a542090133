// Package wasm runs WebAssembly jobs with github.com/tetratelabs/wazero.
//
// # Contract
//
// A job's Spec.Wasm is a WASI preview 1 command module: the runtime
// instantiates it and runs its exported _start function.
//
//   - argv is "module.wasm" followed by Spec.Args;
//   - Spec.Input (JSON) is the module's stdin, and also the environment
//     variable INPUT_DATA; the environment holds nothing else, so no host
//     variable reaches the guest;
//   - stdout and stderr are captured, each cut at Task.Limits.OutputBytes
//     (Result.Truncated is then set);
//   - the clocks are real, sleeping works (and ends when the run does), and
//     random bytes come from crypto/rand;
//   - there are no preopened directories and no sockets: the module cannot
//     read or write any host file.
//
// The exit code of proc_exit is Result.ExitCode: 0 (or returning from
// _start) completes the job, anything else fails it. A trap (unreachable,
// an out-of-bounds access, a host-call failure) fails the job with the
// trap in Error and ExitCode 1. A stopped run has ExitCode -1.
//
// # Returned value
//
// WASI has no notion of a returned value, so Zerverless defines one: a
// module may import
//
//	(import "zerverless" "set_result" (func (param i32 i32)))
//
// and call it with the address and length of a JSON document in its
// memory; the last call sets Result.Result. Invalid JSON, or a document
// longer than the output limit, fails the job. A module that never calls it
// has no Result.Result and reports through stdout. From Go:
//
//	//go:wasmimport zerverless set_result
//	func setResult(ptr unsafe.Pointer, n uint32)
//
// # Limits
//
// The deadline is ctx's deadline (and Task.Timeout when set). The engine is
// built WithCloseOnContextDone(true), so even a loop without calls stops
// when ctx is done, and the run ends as timeout or canceled.
//
// Memory is bounded twice. Config.MaxMemoryBytes is the engine's page limit
// (WithMemoryLimitPages), the most any module may declare or grow to. The
// limit of one run, Task.Limits.MemoryBytes (Config.MemoryBytes when zero),
// is enforced by allocating the run's linear memories through wazero's
// experimental MemoryAllocator: a memory.grow beyond it returns -1, which
// the guest sees as out of memory. The page limit is a property of a
// compiled module, so a per-task page limit would mean one engine and one
// compiled copy of every module per distinct limit; the allocator gives
// every task its own limit from a single engine and cache. A run that fails
// after a refused grow has Result.OOMKilled set; Result.PeakMemoryBytes is
// the most linear memory the run held.
//
// # Compiled modules
//
// Modules are compiled once and kept by the SHA-256 of their bytes, up to
// Config.CachedModules, least recently used out first; concurrent runs of
// one module share the compiled code, and compiled code also goes to a
// wazero CompilationCache (on disk when Config.CacheDir is set). Runs
// instantiate anonymous module instances, so any number of runs of the
// same module proceed concurrently.
package wasm
