// Package runtimetest is the conformance suite every Zerverless runtime
// passes. A runtime's tests call Run with a Programs value that holds, for
// each case, a job.Spec written in that runtime's language; the suite owns
// the assertions, so every runtime is held to the same contract:
//
//   - success: input reaches the guest, stdout is captured, a value is
//     returned;
//   - a guest error ends as Status failed with a message;
//   - an endless loop ends as Status timeout within the deadline plus one
//     second, and the runtime still works afterwards;
//   - a canceled context ends the run as Status canceled;
//   - an output flood is cut exactly at Task.Limits.OutputBytes with
//     Truncated set, and the run returns promptly;
//   - a memory hog fails cleanly, where the runtime can bound memory;
//   - invalid code or input yields a failed result or an error, never a
//     panic;
//   - output reaches the sink of the task's context (runtime.WithSink)
//     while the guest runs, and is the output the result holds.
package runtimetest

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// Programs are the guest programs the suite runs, in one runtime's
// language. Each describes its behaviour; the suite sets Input, limits and
// deadlines itself.
type Programs struct {
	// Success reads the JSON input {"x": 21}, writes a line containing
	// "hello" to stdout and returns x*2 (42) as its result.
	Success job.Spec
	// Error fails with a message that contains ErrorText (raises an error,
	// throws, or exits non-zero after writing ErrorText to stderr).
	Error     job.Spec
	ErrorText string
	// Loop never ends on its own.
	Loop job.Spec
	// Flood writes at least 1 MiB to stdout, then ends.
	Flood job.Spec
	// MemoryHog allocates memory without bound. Leave it zero for a
	// runtime that cannot bound a guest's memory; the suite then logs that
	// the case is skipped.
	MemoryHog job.Spec
	// Invalid is code or a module that the runtime cannot load.
	Invalid job.Spec
	// Live writes a line containing "first" to stdout, then does not end
	// on its own (it sleeps or loops). Leave it zero for a runtime that
	// cannot hand output over while it runs; the suite then logs that the
	// case is skipped.
	Live job.Spec
}

// Timing bounds of the suite. They are generous for a loaded machine; the
// promise under test is "returns promptly", not a benchmark.
const (
	loopTimeout = 300 * time.Millisecond
	// grace is how long after its deadline a stopped guest may take to
	// return: far below runLimit and the loop's forever, so that a
	// deadline that did not act fails, and far above what a loaded
	// machine takes to stop a guest.
	grace = 10 * time.Second
	// floodLimit is deliberately not a round number, to check that the
	// cap is exact.
	floodLimit = 1000
	// hogMemory is the memory limit of the memory hog case.
	hogMemory = 64 << 20
	// runLimit bounds every other case, so that a broken runtime fails
	// the suite instead of hanging it.
	runLimit = 30 * time.Second
)

// Run runs the conformance suite against rt as subtests of t.
func Run(t *testing.T, rt runtime.Runtime, p Programs) {
	t.Run("Success", func(t *testing.T) { testSuccess(t, rt, p) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, rt, p) })
	t.Run("Error", func(t *testing.T) { testError(t, rt, p) })
	t.Run("Timeout", func(t *testing.T) { testTimeout(t, rt, p) })
	t.Run("CanceledDuringRun", func(t *testing.T) { testCancelDuring(t, rt, p) })
	t.Run("CanceledBeforeRun", func(t *testing.T) { testCancelBefore(t, rt, p) })
	t.Run("OutputLimit", func(t *testing.T) { testOutputLimit(t, rt, p) })
	t.Run("MemoryLimit", func(t *testing.T) { testMemoryLimit(t, rt, p) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, rt, p) })
	t.Run("LiveOutput", func(t *testing.T) { testLive(t, rt, p) })
}

// Task returns a task for spec with input {"x":21} and a 1 MiB output cap.
func Task(spec job.Spec) job.Task {
	if spec.Input == nil {
		spec.Input = json.RawMessage(`{"x":21}`)
	}
	return job.Task{
		JobID:   "conformance",
		Attempt: 1,
		Spec:    spec,
		Limits:  job.Limits{OutputBytes: 1 << 20},
	}
}

// runTask runs t under a deadline of d (also set as the task's Timeout),
// failing the test if Run panics or takes longer than the deadline plus
// grace.
func runTask(t *testing.T, rt runtime.Runtime, tk job.Task, d time.Duration) (job.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tk.Timeout = d
	return runCtx(t, ctx, rt, tk, d+grace)
}

// runCtx runs tk under ctx and fails the test if Run takes longer than
// within, or panics.
func runCtx(t *testing.T, ctx context.Context, rt runtime.Runtime, tk job.Task, within time.Duration) (res job.Result, err error) {
	t.Helper()
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Run panicked: %v", r)
		}
		if el := time.Since(start); el > within {
			t.Errorf("Run returned after %v, want within %v", el, within)
		}
		if err == nil {
			checkResultShape(t, res)
		}
	}()
	return rt.Run(ctx, tk)
}

// checkResultShape checks what every result carries.
func checkResultShape(t *testing.T, res job.Result) {
	t.Helper()
	if !res.Status.Terminal() {
		t.Errorf("Status = %q, want a terminal status", res.Status)
	}
	if res.DurationMS < 0 {
		t.Errorf("DurationMS = %d, want >= 0", res.DurationMS)
	}
	if res.Status != job.StatusCompleted && res.Error == "" {
		t.Errorf("Status %s without an Error", res.Status)
	}
	if len(res.Result) > 0 && !json.Valid(res.Result) {
		t.Errorf("Result is not valid JSON: %q", res.Result)
	}
}

// CheckSuccess asserts that res is the result of Programs.Success.
func CheckSuccess(t *testing.T, res job.Result, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Status != job.StatusCompleted {
		t.Fatalf("Status = %s (error %q, stderr %q), want completed", res.Status, res.Error, res.Stderr)
	}
	if !strings.Contains(res.Output, "hello") {
		t.Errorf("Output = %q, want it to contain %q", res.Output, "hello")
	}
	if res.Truncated {
		t.Errorf("Truncated set on a small output")
	}
	var v any
	if err := json.Unmarshal(res.Result, &v); err != nil {
		t.Fatalf("Result %q: %v", res.Result, err)
	}
	if v != float64(42) {
		t.Errorf("Result = %s, want 42", res.Result)
	}
}

func testSuccess(t *testing.T, rt runtime.Runtime, p Programs) {
	res, err := runTask(t, rt, Task(p.Success), runLimit)
	CheckSuccess(t, res, err)
}

func testConcurrent(t *testing.T, rt runtime.Runtime, p Programs) {
	const n = 4
	var wg sync.WaitGroup
	type out struct {
		res job.Result
		err error
	}
	outs := make([]out, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), runLimit)
			defer cancel()
			outs[i].res, outs[i].err = rt.Run(ctx, Task(p.Success))
		}()
	}
	wg.Wait()
	for _, o := range outs {
		CheckSuccess(t, o.res, o.err)
	}
}

func testError(t *testing.T, rt runtime.Runtime, p Programs) {
	res, err := runTask(t, rt, Task(p.Error), runLimit)
	if err != nil {
		t.Fatalf("Run: %v (a guest error must be a result, not an error)", err)
	}
	if res.Status != job.StatusFailed {
		t.Fatalf("Status = %s, want failed", res.Status)
	}
	if res.Error == "" {
		t.Errorf("Error is empty")
	}
	if !strings.Contains(res.Error+"\n"+res.Stderr, p.ErrorText) {
		t.Errorf("neither Error %q nor Stderr %q contains %q", res.Error, res.Stderr, p.ErrorText)
	}
}

func testTimeout(t *testing.T, rt runtime.Runtime, p Programs) {
	res, err := runTask(t, rt, Task(p.Loop), loopTimeout)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Status != job.StatusTimeout {
		t.Errorf("Status = %s (error %q), want timeout", res.Status, res.Error)
	}
	if res.DurationMS < loopTimeout.Milliseconds()/2 {
		t.Errorf("DurationMS = %d for a run stopped at %v", res.DurationMS, loopTimeout)
	}
	// The runtime must still work after a guest was stopped.
	res, err = runTask(t, rt, Task(p.Success), runLimit)
	CheckSuccess(t, res, err)
}

func testCancelDuring(t *testing.T, rt runtime.Runtime, p Programs) {
	ctx, cancel := context.WithTimeout(context.Background(), runLimit)
	defer cancel()
	// Cancel once the guest has had time to start; the assertion is on
	// the status, not on the timing.
	stop := time.AfterFunc(loopTimeout, cancel)
	defer stop.Stop()
	res, err := runCtx(t, ctx, rt, Task(p.Loop), loopTimeout+grace)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Status != job.StatusCanceled {
		t.Errorf("Status = %s (error %q), want canceled", res.Status, res.Error)
	}
	res, err = runTask(t, rt, Task(p.Success), runLimit)
	CheckSuccess(t, res, err)
}

func testCancelBefore(t *testing.T, rt runtime.Runtime, p Programs) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := runCtx(t, ctx, rt, Task(p.Success), grace)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Status != job.StatusCanceled {
		t.Errorf("Status = %s, want canceled", res.Status)
	}
}

func testOutputLimit(t *testing.T, rt runtime.Runtime, p Programs) {
	tk := Task(p.Flood)
	tk.Limits.OutputBytes = floodLimit
	res, err := runTask(t, rt, tk, runLimit)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(res.Output) != floodLimit {
		t.Errorf("len(Output) = %d, want exactly %d", len(res.Output), floodLimit)
	}
	if !res.Truncated {
		t.Errorf("Truncated = false after a flood")
	}
	if res.Status == job.StatusTimeout || res.Status == job.StatusCanceled {
		t.Errorf("Status = %s: a flood must not hang the run", res.Status)
	}
}

func testMemoryLimit(t *testing.T, rt runtime.Runtime, p Programs) {
	if p.MemoryHog.Code == "" && p.MemoryHog.Wasm == nil && p.MemoryHog.Docker == nil {
		t.Log("this runtime cannot bound a guest's memory: memory limit case skipped")
		return
	}
	tk := Task(p.MemoryHog)
	tk.Limits.MemoryBytes = hogMemory
	res, err := runTask(t, rt, tk, runLimit)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Status != job.StatusFailed {
		t.Errorf("Status = %s (error %q), want failed", res.Status, res.Error)
	}
	// Nothing may be left behind: the runtime still works.
	res, err = runTask(t, rt, Task(p.Success), runLimit)
	CheckSuccess(t, res, err)
}

func testBadInput(t *testing.T, rt runtime.Runtime, p Programs) {
	cases := map[string]job.Task{
		"invalid program": Task(p.Invalid),
		"empty spec":      Task(job.Spec{}),
	}
	bad := p.Success
	bad.Input = json.RawMessage(`{"x":`)
	cases["malformed input"] = Task(bad)
	for name, tk := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := runTask(t, rt, tk, runLimit)
			if err != nil {
				t.Logf("Run returned an error: %v", err)
				return
			}
			if res.Status != job.StatusFailed {
				t.Errorf("Status = %s, want failed", res.Status)
			}
		})
	}
}
