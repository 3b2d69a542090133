package wasm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime/runtimetest"
	"github.com/zerverless/zerverless/internal/runtime/wasm"
)

// guest is the module built from testdata/guest in TestMain.
var guest []byte

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zerverless-wasm-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	guest, err = buildGuest(dir)
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "build guest module:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildGuest compiles testdata/guest for wasip1 in dir, as a module of its
// own so that the build does not depend on this repository's go.mod.
func buildGuest(dir string) ([]byte, error) {
	src, err := os.ReadFile(filepath.Join("testdata", "guest", "main.go"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module guest\n\ngo 1.24\n"), 0o644); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "guest.wasm")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off", "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%v: %s", err, b)
	}
	return os.ReadFile(out)
}

func spec(args ...string) job.Spec { return job.Spec{Wasm: guest, Args: args} }

// newWasm returns a runtime closed at the end of the test.
func newWasm(t *testing.T, cfg wasm.Config) *wasm.Wasm {
	t.Helper()
	rt, err := wasm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

// shared is one runtime for the tests that need no special config, so that
// the guest is compiled once.
var shared = sync.OnceValue(func() *wasm.Wasm {
	rt, err := wasm.New(wasm.DefaultConfig())
	if err != nil {
		panic(err)
	}
	return rt
})

func run(t *testing.T, s job.Spec) job.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := shared().Run(ctx, runtimetest.Task(s))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func TestConformance(t *testing.T) {
	runtimetest.Run(t, shared(), runtimetest.Programs{
		Success:   spec("success"),
		Error:     spec("error"),
		ErrorText: "boom: something broke",
		Loop:      spec("loop"),
		Flood:     spec("flood"),
		MemoryHog: spec("hog"),
		Invalid:   job.Spec{Wasm: []byte("\x00asm but not really")},
		Live:      spec("live"),
	})
}

func TestExitCode(t *testing.T) {
	res := run(t, spec("error"))
	if res.Status != job.StatusFailed || res.ExitCode != 3 {
		t.Errorf("Status = %s, ExitCode = %d; want failed, 3", res.Status, res.ExitCode)
	}
	res = run(t, spec("exit0"))
	if res.Status != job.StatusCompleted || res.ExitCode != 0 || res.Output != "bye\n" {
		t.Errorf("exit 0: Status = %s, ExitCode = %d, Output = %q", res.Status, res.ExitCode, res.Output)
	}
	res = run(t, spec("panic"))
	if res.Status != job.StatusFailed || res.ExitCode == 0 || !strings.Contains(res.Stderr, "guest panic") {
		t.Errorf("panic: Status = %s, ExitCode = %d, Stderr = %q", res.Status, res.ExitCode, res.Stderr)
	}
}

func TestArgs(t *testing.T) {
	res := run(t, spec("args", "--flag", "two words"))
	var args []string
	if err := json.Unmarshal(res.Result, &args); err != nil {
		t.Fatalf("Result %q: %v (%s)", res.Result, err, res.Error)
	}
	if want := []string{"module.wasm", "args", "--flag", "two words"}; !slices.Equal(args, want) {
		t.Errorf("args = %q, want %q", args, want)
	}
}

func TestEnvironmentHoldsOnlyInput(t *testing.T) {
	t.Setenv("ZERVERLESS_SECRET", "host secret")
	res := run(t, spec("environ"))
	var env []string
	if err := json.Unmarshal(res.Result, &env); err != nil {
		t.Fatalf("Result %q: %v (%s)", res.Result, err, res.Error)
	}
	if want := []string{`INPUT_DATA={"x":21}`}; !slices.Equal(env, want) {
		t.Errorf("environ = %q, want %q", env, want)
	}
}

func TestNoHostFiles(t *testing.T) {
	res := run(t, spec("files"))
	if res.Status != job.StatusCompleted {
		t.Fatalf("Status = %s (%s, %s)", res.Status, res.Error, res.Stderr)
	}
	if string(res.Result) != "null" {
		t.Errorf("the guest reached host files: %s", res.Result)
	}
}

func TestResultErrors(t *testing.T) {
	res := run(t, spec("bad-result"))
	if res.Status != job.StatusFailed || !strings.Contains(res.Error, "not valid JSON") {
		t.Errorf("bad result: Status = %s, Error = %q", res.Status, res.Error)
	}
	tk := runtimetest.Task(spec("big-result"))
	tk.Limits.OutputBytes = 100
	res, err := shared().Run(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != job.StatusFailed || !res.Truncated || !strings.Contains(res.Error, "limit") {
		t.Errorf("big result: Status = %s, Truncated = %v, Error = %q", res.Status, res.Truncated, res.Error)
	}
}

func TestMemoryLimitReported(t *testing.T) {
	tk := runtimetest.Task(spec("hog"))
	tk.Limits.MemoryBytes = 32 << 20
	res, err := shared().Run(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != job.StatusFailed || !res.OOMKilled {
		t.Errorf("Status = %s, OOMKilled = %v (%s)", res.Status, res.OOMKilled, res.Error)
	}
	if res.PeakMemoryBytes <= 0 || res.PeakMemoryBytes > 32<<20 {
		t.Errorf("PeakMemoryBytes = %d, want within (0, 32 MiB]", res.PeakMemoryBytes)
	}
}

func TestModuleCacheIsBounded(t *testing.T) {
	rt := newWasm(t, wasm.Config{CachedModules: 1})
	// Two distinct modules: the guest, and the guest with a custom section
	// appended (same code, different bytes).
	other := append(slices.Clip(guest), 0x00, 0x06, 0x04, 'n', 'o', 'p', 'e', 0x00)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := spec("success")
			if i%2 == 1 {
				s.Wasm = other
			}
			res, err := rt.Run(context.Background(), runtimetest.Task(s))
			runtimetest.CheckSuccess(t, res, err)
		}()
	}
	wg.Wait()
	if n := wasm.CachedModules(rt); n > 1 {
		t.Errorf("%d modules cached, want at most 1", n)
	}
}

func TestNoStart(t *testing.T) {
	// A minimal valid module with no exports.
	res := run(t, job.Spec{Wasm: []byte("\x00asm\x01\x00\x00\x00")})
	if res.Status != job.StatusFailed || !strings.Contains(res.Error, "_start") {
		t.Errorf("Status = %s, Error = %q", res.Status, res.Error)
	}
}
