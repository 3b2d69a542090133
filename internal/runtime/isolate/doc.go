// Package isolate runs runtimes in child processes, one task per process
// at a time, so that each task's memory is bounded for that task alone.
//
// The Lua and JavaScript interpreters allocate on the Go heap and cannot
// account for one guest's memory; inside the worker's process one guest's
// memory cannot be told from another's, the worker's or the orchestrator's.
// A Pool keeps long-lived children (the zerverless binary re-executed in
// its hidden runtime-child mode, which calls Serve), started on demand,
// kept up to Config.Idle for the next task with their compiled-code caches,
// and replaced when one dies.
//
// # Frames
//
// Parent and child speak length-prefixed binary frames (see frame): a
// hello and then tasks on the child's stdin, cancels on its file
// descriptor 3, ready and results on its stdout. stderr is kept (its last
// 8 KiB) for the report of a child that dies. A child runs with
// Config.Procs processors (default 1) and waits for its frames in the Go
// runtime's poller; it reads and writes them with raw system calls, which
// do not wake the runtime's monitor thread for every frame (the monitor,
// which preempts a guest that computes on, is woken for a task that comes
// after the child idled: see monitorAlarm). A runtime that readies itself between runs (Lua makes
// its next interpreter state) does so before the first task and after each
// result, on the goroutine that serves the tasks.
//
// # Bounds
//
// A task's bound is its Limits.MemoryBytes. While it runs, the child reads
// its heap every Config.HeapCheckInterval; past the heap it held before the
// task plus the bound it collects garbage and, still over, sends the
// task's result (failed, OOMKilled) and is killed by the pool. The Go
// memory limit is set at that sum, and RLIMIT_AS at the child's address
// space plus twice the bound plus Config.AddressSpaceSlackBytes as a
// backstop: an allocation past it ends the child, and the task's result is
// OOMKilled as well.
//
// # Time
//
// The child runs the task under the parent's deadline (one machine, one
// clock). When the parent's context is canceled it sends a cancel; when
// the child has not answered Config.StopGrace after the context is done,
// the child is killed and Run returns the stopped result: a guest stuck in
// a long native call does not outlive its deadline.
//
// # Errors
//
// A task that ran — completed, failed, timed out, canceled, out of memory,
// or killed its process — is a result. A child that cannot start, or whose
// runtimes do not run the task's type, is an error: the task could not be
// run here and should be tried elsewhere (runtime.Runtime's contract).
package isolate
