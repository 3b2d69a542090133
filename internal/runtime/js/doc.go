// Package js runs JavaScript (ECMAScript 5.1 and most of 2015+) jobs with
// github.com/dop251/goja.
//
// # Contract
//
// A job's Spec.Code is one script. Before it runs:
//
//   - the global INPUT holds Spec.Input parsed as JSON (undefined when the
//     job has no input);
//   - console.log, console.info and console.debug write a line to stdout,
//     console.warn and console.error a line to stderr. Arguments are joined
//     by spaces as browsers do: strings as they are, objects and arrays as
//     JSON, errors as "Name: message", other values as String(value);
//   - module.exports (and its alias exports) starts as an empty object.
//
// The job's returned value, Result.Result, is module.exports when the
// script replaced it or gave it a property, and otherwise the value of the
// script's last expression statement. It is encoded with JSON.stringify as
// it was before the script ran; a value that has no JSON form (undefined, a
// function) leaves Result.Result empty, and one that cannot be encoded (a
// cycle, a BigInt) fails the job. When that value is a Promise, its
// settled value is returned instead: a rejected promise fails the job, and
// one still pending when the script's jobs have drained fails it too (there
// are no timers or I/O that could settle it later). The encoded result is
// bounded by the task's output limit.
//
// An uncaught exception ends the job with Status failed, and the exception
// with its stack in Error; a syntax error likewise. ExitCode is 0 when the
// job completes, 1 when it fails and -1 when it was stopped.
//
// # Sandbox
//
// goja offers only the ECMAScript standard library: there is no require,
// process, fs, fetch, XMLHttpRequest, setTimeout or any other host object,
// and this runtime adds none besides INPUT, console and module. Each run
// gets a fresh goja.Runtime, so nothing a job defines survives it.
//
// # Limits
//
// The call stack is bounded by Config.MaxCallStackSize frames (a
// RangeError beyond). stdout and stderr are each cut at
// Task.Limits.OutputBytes, with Result.Truncated set. The deadline is ctx's
// deadline (and Task.Timeout when set): when ctx is done the runtime is
// interrupted with goja's Runtime.Interrupt, which stops a JavaScript loop
// promptly. A long call inside Go (a huge sort, a pathological regular
// expression) cannot be interrupted: Run then returns Config.StopGrace
// after the deadline and leaves the call to finish in the background.
//
// Compiled programs are kept by the SHA-256 of their source, up to
// Config.CachedPrograms, least recently used out first: a script run again
// (a function invoked again) is not compiled again. A compiled program is
// not tied to a goja.Runtime; every run still gets a fresh one.
//
// Heap memory is not bounded by this package: goja allocates on the Go
// heap and offers no accounting, so Task.Limits.MemoryBytes is not
// enforced here. Workers run this runtime in a process of its own per task
// (internal/runtime/isolate), which bounds the task's memory alone.
// String.prototype repeat, padStart and padEnd refuse results longer than
// Config.MaxStringBytes, so that a single call cannot make a huge string.
package js
