package python_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime/python"
	"github.com/zerverless/zerverless/internal/runtime/runtimetest"
)

// newRuntime returns a runtime with the default config, skipping the test
// when the sandbox cannot run on this machine (Check says why).
func newRuntime(t *testing.T) *python.Python {
	t.Helper()
	rt := python.New(python.DefaultConfig())
	if err := rt.Check(context.Background()); err != nil {
		t.Skipf("python sandbox unavailable: %v", err)
	}
	return rt
}

func TestConformance(t *testing.T) {
	runtimetest.Run(t, newRuntime(t), runtimetest.Programs{
		Success: job.Spec{Code: `
print("hello from python")
result = INPUT["x"] * 2
`},
		Error: job.Spec{Code: `
def f():
    raise ValueError("boom: something broke")
f()
`},
		ErrorText: "boom: something broke",
		Loop:      job.Spec{Code: "while True:\n    pass\n"},
		Flood: job.Spec{Code: `
line = "x" * 1023
for _ in range(2048):
    print(line)
`},
		MemoryHog: job.Spec{Code: `
chunks = []
while True:
    chunks.append(bytearray(1 << 20))
`},
		Invalid: job.Spec{Code: "this is not python ("},
		Live:    job.Spec{Code: "print(\"first\")\nwhile True:\n    pass\n"},
	})
}

// run runs code with input under a deadline of d.
func run(t *testing.T, rt *python.Python, code, input string, d time.Duration) job.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	spec := job.Spec{Code: code}
	if input != "" {
		spec.Input = json.RawMessage(input)
	}
	res, err := rt.Run(ctx, job.Task{Type: job.TypePython, Spec: spec, Timeout: d})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func TestResultContract(t *testing.T) {
	rt := newRuntime(t)
	cases := []struct {
		name, code, input string
		status            job.Status
		result            string // "" means no result
		errorHas          string
		exit              int
	}{
		{name: "dict result", code: `result = {"n": INPUT["n"] + 1, "l": [1, "a", None, True]}`,
			input: `{"n": 1}`, status: job.StatusCompleted, result: `{"n":2,"l":[1,"a",null,true]}`},
		{name: "no input", code: `result = INPUT`, status: job.StatusCompleted, result: `null`},
		{name: "no result", code: `x = 1`, status: job.StatusCompleted},
		{name: "result in function scope only", code: "def main():\n    result = 1\nmain()", status: job.StatusCompleted},
		{name: "unicode", code: `result = "héllo ✓"`, status: job.StatusCompleted, result: `"héllo ✓"`},
		{name: "sys.exit(0) keeps result", code: "import sys\nresult = 5\nsys.exit(0)", status: job.StatusCompleted, result: `5`},
		{name: "sys.exit(3)", code: "import sys\nsys.exit(3)", status: job.StatusFailed, errorHas: "SystemExit: 3", exit: 3},
		{name: "sys.exit(message)", code: "import sys\nsys.exit('bad things')", status: job.StatusFailed, errorHas: "bad things", exit: 1},
		{name: "os._exit(7)", code: "import os\nos._exit(7)", status: job.StatusFailed, errorHas: "status 7", exit: 7},
		{name: "not serializable", code: `result = {1, 2}`, status: job.StatusFailed, errorHas: "not JSON-serializable", exit: 1},
		{name: "NaN", code: `result = float("nan")`, status: job.StatusFailed, errorHas: "not JSON-serializable", exit: 1},
		{name: "syntax error", code: "x = (", status: job.StatusFailed, errorHas: "SyntaxError", exit: 1},
		{name: "traceback", code: "def inner():\n    1/0\ninner()", status: job.StatusFailed,
			errorHas: "File \"main.py\", line 2, in inner\n    1/0", exit: 1},
		{name: "stderr alone does not fail", code: "import sys\nprint('warn', file=sys.stderr)\nresult = 1",
			status: job.StatusCompleted, result: `1`},
		{name: "stdlib", code: "import sqlite3, json, re, hashlib, decimal, fractions, statistics, zlib, datetime, multiprocessing\n" +
			"db = sqlite3.connect(':memory:')\nresult = [db.execute('select 1+1').fetchone()[0], hashlib.sha256(b'').hexdigest()[:8], str(statistics.mean([1, 2]))]",
			status: job.StatusCompleted, result: `[2,"e3b0c442","1.5"]`},
		{name: "subprocess and tmp", code: "import subprocess\nopen('/tmp/f', 'w').write('hi')\n" +
			"result = subprocess.run(['cat', 'f'], capture_output=True, text=True, check=True).stdout",
			status: job.StatusCompleted, result: `"hi"`},
		{name: "multiprocessing pool", code: "from multiprocessing import Pool\nwith Pool(2) as p:\n    result = p.map(abs, [-1, -2])",
			status: job.StatusCompleted, result: `[1,2]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := run(t, rt, c.code, c.input, 20*time.Second)
			if res.Status != c.status {
				t.Fatalf("Status = %s (error %q, stderr %q), want %s", res.Status, res.Error, res.Stderr, c.status)
			}
			if got := string(res.Result); got != c.result {
				t.Errorf("Result = %q, want %q", got, c.result)
			}
			if !strings.Contains(res.Error, c.errorHas) {
				t.Errorf("Error = %q, want it to contain %q", res.Error, c.errorHas)
			}
			if res.ExitCode != c.exit {
				t.Errorf("ExitCode = %d, want %d", res.ExitCode, c.exit)
			}
		})
	}
}

func TestOutput(t *testing.T) {
	rt := newRuntime(t)
	res := run(t, rt, "import sys\nprint('out')\nprint('err', file=sys.stderr)\nresult = 1", "", 20*time.Second)
	if res.Output != "out\n" || res.Stderr != "err\n" {
		t.Errorf("Output %q Stderr %q, want %q and %q", res.Output, res.Stderr, "out\n", "err\n")
	}
	if res.Truncated {
		t.Errorf("Truncated set")
	}
	// The traceback of an exception is on stderr too.
	res = run(t, rt, "raise KeyError('k')", "", 20*time.Second)
	if !strings.Contains(res.Stderr, "KeyError: 'k'") || !strings.Contains(res.Error, "Traceback") {
		t.Errorf("Error %q Stderr %q, want the traceback in both", res.Error, res.Stderr)
	}
	if strings.Contains(res.Error, "bootstrap") || strings.Contains(res.Error, "<string>") {
		t.Errorf("Error %q shows the bootstrap's frames", res.Error)
	}
}

func TestResultTooBig(t *testing.T) {
	rt := newRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := rt.Run(ctx, job.Task{
		Spec:   job.Spec{Code: `result = "x" * 5000`},
		Limits: job.Limits{OutputBytes: 1000},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != job.StatusFailed || !res.Truncated || len(res.Result) != 0 {
		t.Errorf("Status %s Truncated %v Result %d bytes, want failed, truncated, none", res.Status, res.Truncated, len(res.Result))
	}
}

func TestMemoryHogFailsCleanly(t *testing.T) {
	rt := newRuntime(t)
	res := run(t, rt, "x = bytearray(1 << 30)", "", 20*time.Second)
	if res.Status != job.StatusFailed || !res.OOMKilled {
		t.Fatalf("Status %s OOMKilled %v (error %q), want failed and OOMKilled", res.Status, res.OOMKilled, res.Error)
	}
	if !strings.Contains(res.Error, "MemoryError") || !strings.Contains(res.Error, "256 MiB") {
		t.Errorf("Error = %q, want MemoryError and the limit", res.Error)
	}
	// Memory from the task's spec is used.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := rt.Run(ctx, job.Task{Spec: job.Spec{Code: "x = bytearray(400 << 20)\nresult = len(x)", MemoryMB: 600}})
	if err != nil || res.Status != job.StatusCompleted {
		t.Errorf("600 MB job allocating 400 MiB: %v %s %q", err, res.Status, res.Error)
	}
}

func TestCheckReportsMissingPython(t *testing.T) {
	cfg := python.DefaultConfig()
	cfg.Python = "/nonexistent/python3"
	err := python.New(cfg).Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/python3") {
		t.Errorf("Check = %v, want an error naming the interpreter", err)
	}
	cfg = python.DefaultConfig()
	cfg.Bwrap = "/nonexistent/bwrap"
	if err := python.New(cfg).Check(context.Background()); err == nil {
		t.Errorf("Check with no bwrap = nil, want an error")
	}
}

func TestFindPythonSkipsOutsideSystemDirs(t *testing.T) {
	p, err := python.FindPython(python.DefaultConfig().SystemDirs)
	if err != nil {
		t.Skipf("no python3: %v", err)
	}
	if !strings.HasPrefix(p, "/usr/") && !strings.HasPrefix(p, "/bin/") {
		t.Errorf("FindPython = %s, want a system interpreter", p)
	}
}

func TestInputTooBigForMemory(t *testing.T) {
	rt := newRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	big := `"` + strings.Repeat("x", 12<<20) + `"`
	res, err := rt.Run(ctx, job.Task{
		Spec:   job.Spec{Code: "result = len(INPUT)", Input: json.RawMessage(`[` + big + `,` + big + `]`)},
		Limits: job.Limits{MemoryBytes: 48 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != job.StatusFailed || !res.OOMKilled || !strings.Contains(res.Error, "input_data") {
		t.Errorf("Status %s OOMKilled %v Error %q, want failed for memory, naming input_data", res.Status, res.OOMKilled, res.Error)
	}
	// The same input fits the default limit.
	res, err = rt.Run(ctx, job.Task{Spec: job.Spec{Code: "result = len(INPUT[0])", Input: json.RawMessage(`[` + big + `]`)}})
	if err != nil || res.Status != job.StatusCompleted || string(res.Result) != "12582912" {
		t.Errorf("12 MiB input: %v %s %q %s", err, res.Status, res.Error, res.Result)
	}
}

func TestResourceUseReported(t *testing.T) {
	rt := newRuntime(t)
	res := run(t, rt, "x = bytearray(100 << 20)\nn = 0\nfor i in range(2_000_000):\n    n += i", "", 20*time.Second)
	if res.Status != job.StatusCompleted {
		t.Fatalf("Status %s %q", res.Status, res.Error)
	}
	if res.PeakMemoryBytes < 100<<20 || res.CPUTimeMS <= 0 || res.ExitCode != 0 {
		t.Errorf("PeakMemoryBytes %d CPUTimeMS %d ExitCode %d, want >= 100 MiB, > 0, 0", res.PeakMemoryBytes, res.CPUTimeMS, res.ExitCode)
	}
}

func TestCheckExplainsSandboxFailure(t *testing.T) {
	// A stand-in for a bwrap that cannot create namespaces, world-readable
	// so that a root worker's sandbox user can run it too.
	dir := t.TempDir()
	// Open up the test's own directories, never os.TempDir itself.
	tmp := filepath.Clean(os.TempDir())
	for d := dir; strings.HasPrefix(d, tmp+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fake := filepath.Join(dir, "bwrap")
	script := "#!/bin/sh\necho 'bwrap: No permissions to create new namespace, likely because the kernel does not allow non-privileged user namespaces.' >&2\nexit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := python.DefaultConfig()
	cfg.Bwrap = fake
	err := python.New(cfg).Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "No permissions to create new namespace") || !strings.Contains(err.Error(), "user.max_user_namespaces") {
		t.Errorf("Check = %v, want bwrap's reason and a hint", err)
	}
	// Run reports it as an error: the job could not run here.
	_, err = python.New(cfg).Run(context.Background(), job.Task{Spec: job.Spec{Code: "result = 1"}})
	if err == nil {
		t.Errorf("Run with a failing sandbox: nil error")
	}
}

func TestCPULimit(t *testing.T) {
	newRuntime(t)
	cfg := python.DefaultConfig()
	cfg.CPUSeconds = 1
	// No deadline, so the CPU limit is the configured one; the cancel is
	// a backstop.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(15*time.Second, cancel)
	res, err := python.New(cfg).Run(ctx, job.Task{Spec: job.Spec{Code: "while True:\n    pass\n"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != job.StatusFailed || !strings.Contains(res.Error, "CPU time limit is 1 s") {
		t.Errorf("Status %s ExitCode %d Error %q, want failed on the CPU limit", res.Status, res.ExitCode, res.Error)
	}
}
