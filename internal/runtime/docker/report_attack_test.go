package docker

import (
	"strings"
	"testing"

	"github.com/zerverless/zerverless/internal/job"
)

// A warm job's background processes reopen the job's standard output
// and error (/proc/self/fd/1 and 2 of a pipe open its read end) and race
// the engine for what the agent writes there, to learn the report's
// secret: what they steal they write back on standard output with the
// NULs replaced, so that it shows in the job's output. The container's
// init (pid 1, of the job's user) holds the container's own streams. The agent's
// marker must never show, and the exit status is the job's.
func TestReportAttackPipeReopen(t *testing.T) {
	d := newTestRuntime(t, agentConfig(t))
	d.poolSync = true
	script := `for i in 1 2 3 4 5 6; do for f in /proc/self/fd/1 /proc/self/fd/2 /proc/1/fd/1 /proc/1/fd/2 /proc/$PPID/fd/1; do tr '\000' '@' <$f >/proc/self/fd/1 2>/dev/null & done; done
sleep 0.2; echo out; exit 3`
	for i := 0; i < 4; i++ {
		res := run(t, d, testTask(newJobID(), testImage, "sh", "-c", script))
		wantStatus(t, res, job.StatusFailed)
		if res.ExitCode != 3 {
			t.Errorf("exit %d, want 3", res.ExitCode)
		}
		if strings.Contains(res.Output, "zerverless-exec-report-") || strings.Contains(res.Stderr, "zerverless-exec-report-") {
			t.Fatalf("the job read the agent's report: stdout %q stderr %q", res.Output, res.Stderr)
		}
	}
}

// The same scripts give the same result warm (the agent's report) and
// cold (the engine): exit codes, signals, both streams to the byte
// (with processes the job left writing), and /output with links, FIFOs,
// many files and names that try to leave it.
func TestReportAttackWarmEqualsCold(t *testing.T) {
	cold := newTestRuntime(t, agentConfig(t))
	cold.skipPools = true
	warm := newTestRuntime(t, agentConfig(t))
	warm.poolSync = true
	for _, c := range []struct{ name, script string }{
		{"exit", `printf 'no newline'; printf 'err' >&2; exit 7`},
		{"signal", `echo a; kill -TERM $$`},
		{"signal to init", `echo a; kill -TERM 1; sleep 2; echo not`},
		{"trapped signal to init", `trap 'echo trapped; exit 9' USR1; kill -USR1 1; sleep 1; exit 1`},
		{"writers left behind", `yes y | head -c 100000; (while :; do echo bg; done) & (while :; do echo bge >&2; done) & echo done > /output/f; printf last; exit 5`},
		{"links", `echo data > /output/a; ln /output/a /output/hard; ln -s /etc/passwd /output/abs; ln -s ../../etc/passwd /output/rel; mkfifo /output/fifo; mkdir -p /output/d/e; echo x > /output/d/e/f; exit 0`},
		{"many files", `cd /output && i=0; while [ $i -lt 3000 ]; do : > f$i; i=$((i+1)); done; echo ok`},
		{"many directories", `cd /output && i=0; while [ $i -lt 3000 ]; do mkdir d$i; i=$((i+1)); done; echo x > f; echo ok`},
		{"partial markers", `i=0; while [ $i -lt 500 ]; do printf '\000zerverless-exec-report-'; printf '\000zerverless-exec-report-0123456789abcdef' >&2; i=$((i+1)); done; printf '\000zerverless-exec-rep'; exit 2`},
		{"long name", `n=$(printf '%0200d' 0); mkdir -p /output/$n/$n; echo x > /output/$n/$n/$n; echo ok`},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := run(t, cold, testTask(newJobID(), testImage, "sh", "-c", c.script))
			rw := run(t, warm, testTask(newJobID(), testImage, "sh", "-c", c.script))
			if rc.WarmStart || !rw.WarmStart {
				t.Fatalf("warm starts %v %v", rc.WarmStart, rw.WarmStart)
			}
			if rc.Status != rw.Status || rc.ExitCode != rw.ExitCode || rc.OOMKilled != rw.OOMKilled {
				t.Errorf("cold %s %d oom %v, warm %s %d oom %v", rc.Status, rc.ExitCode, rc.OOMKilled, rw.Status, rw.ExitCode, rw.OOMKilled)
			}
			if c.name != "writers left behind" {
				if rc.Output != rw.Output || rc.Stderr != rw.Stderr {
					t.Errorf("streams: cold %q %q, warm %q %q", trunc(rc.Output), trunc(rc.Stderr), trunc(rw.Output), trunc(rw.Stderr))
				}
			} else if !strings.HasPrefix(rw.Output, strings.Repeat("y\n", 50000)) || !strings.Contains(rw.Output, "last") {
				t.Errorf("warm stdout lost the job's bytes: %q", trunc(rw.Output))
			}
			if len(rc.Files) != len(rw.Files) {
				t.Errorf("files: cold %d, warm %d", len(rc.Files), len(rw.Files))
			}
			for k, v := range rc.Files {
				if w, ok := rw.Files[k]; !ok || string(w) != string(v) {
					t.Errorf("file %q: cold %q, warm %q (%v)", k, trunc(string(v)), trunc(string(w)), ok)
				}
			}
		})
	}
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:150] + "..." + s[len(s)-150:]
	}
	return s
}

// A warm job takes every process its pids limit allows (the agent's
// threads count against it) and then exits with its own status while
// they still live: the result is the job's status, as cold.
func TestReportAttackPidsExhausted(t *testing.T) {
	cold := newTestRuntime(t, agentConfig(t))
	cold.skipPools = true
	warm := newTestRuntime(t, agentConfig(t))
	warm.poolSync = true
	// The subshell forks until its fork fails (and it exits); the pids
	// it left are all but one of the limit.
	script := `(while :; do sleep 1000 & done) 2>/dev/null; echo full; exit 3`
	for _, d := range []*Docker{cold, warm} {
		res := run(t, d, testTask(newJobID(), testImage, "sh", "-c", script))
		if res.WarmStart != d.poolSync || res.ExitCode != 3 || res.Output != "full\n" {
			t.Errorf("warm %v exit %d stdout %q, want 3 %q", res.WarmStart, res.ExitCode, res.Output, "full\n")
		}
	}
}

// No process of a warm job can open the container's own streams, which
// carry the agent's report: the container's init is the agent (not
// dumpable), and the job can neither kill nor stop it.
func TestReportAttackContainerStreams(t *testing.T) {
	d := newTestRuntime(t, agentConfig(t))
	d.poolSync = true
	script := `for p in 1 $PPID; do for f in 0 1 2; do (exec 3</proc/$p/fd/$f) 2>/dev/null && echo "read $p $f"; (exec 3>/proc/$p/fd/$f) 2>/dev/null && echo "write $p $f"; done; done
for f in environ maps mem stack syscall fd/0 task/*/environ task/*/mem task/*/fd/0 task/*/fd/1; do head -c 1 /proc/1/$f >/dev/null 2>&1 && echo "read $f"; done
grep -q 0123 /proc/1/cmdline && echo "cmdline"
kill -9 1; kill -STOP 1; echo end; exit 6`
	res := run(t, d, testTask(newJobID(), testImage, "sh", "-c", script))
	wantStatus(t, res, job.StatusFailed)
	if !res.WarmStart || res.ExitCode != 6 || res.Output != "end\n" {
		t.Fatalf("warm %v exit %d stdout %q stderr %q, want 6 %q", res.WarmStart, res.ExitCode, res.Output, res.Stderr, "end\n")
	}
}
