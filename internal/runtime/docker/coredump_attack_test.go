package docker

import (
	"strings"
	"testing"

	"github.com/zerverless/zerverless/internal/job"
)

// coreDumpAttempt raises the shell's core limit as far as it can, says
// whether that worked and what the limits are, crashes a child with
// SIGSEGV in /tmp (a relative kernel.core_pattern, such as "core", dumps
// into the working directory) and counts the dumps left there. On a host
// whose core_pattern is a pipe the dump would go to the host's handler
// instead, outside the container's limits.
const coreDumpAttempt = `cd /tmp; ` +
	`if ulimit -c unlimited 2>/dev/null; then echo raised=yes; else echo raised=no; fi; ` +
	`echo soft=$(ulimit -c) hard=$(ulimit -H -c); ` +
	`sh -c 'kill -SEGV $$'; ` +
	`echo cores=$(ls /tmp | grep -c core)`

// wantNoCoreDump fails unless out, what coreDumpAttempt printed, shows a
// core limit of 0 that could not be raised and no dump.
func wantNoCoreDump(t *testing.T, out string) {
	t.Helper()
	for _, want := range []string{"raised=no", "soft=0 hard=0", "cores=0"} {
		if !strings.Contains(out, want) {
			t.Errorf("the guest could dump core (%q missing):\n%s", want, out)
		}
	}
}

// TestJobCannotDumpCore: a job's process cannot raise its core limit
// (the engine's default hard limit is often unlimited) and crash on
// purpose to have a core dump written: to its container's disk, or on a
// host with a piped core_pattern (systemd-coredump, apport) to the host's.
func TestJobCannotDumpCore(t *testing.T) {
	d := newTestRuntime(t, nil)
	res := run(t, d, testTask(newJobID(), testImage, "sh", "-c", coreDumpAttempt))
	if res.Status != job.StatusCompleted {
		t.Fatalf("%s %q %q %q", res.Status, res.Error, res.Output, res.Stderr)
	}
	wantNoCoreDump(t, res.Output)
}

// TestBuildStepCannotDumpCore: a RUN step, as root, cannot either; and a
// process killed by SIGXFSZ at its file size limit (the signal that ends
// a step past RLIMIT_FSIZE, and one that dumps core) leaves no dump. The
// step lowers its own file size limit, so that the signal comes at once.
func TestBuildStepCannotDumpCore(t *testing.T) {
	d := newTestRuntime(t, func(c *Config) { c.Build = true })
	removeBuiltImages(t, d)
	ns := "alice" + randomHex(4)
	res := buildAs(t, d, ns, "zerverless/"+ns+"/core:1", "FROM "+testImage+"\n"+
		"RUN "+coreDumpAttempt+"\n"+
		"RUN cd /tmp; ulimit -c unlimited 2>/dev/null; (ulimit -f 100; dd if=/dev/zero of=/tmp/big bs=1M count=10 2>/dev/null); echo xfsz-exit=$? xfsz-cores=$(ls /tmp | grep -c core); exit 1\n", nil)
	if res.Build == nil {
		t.Fatalf("%s %q", res.Status, res.Error)
	}
	wantNoCoreDump(t, res.Build.Log)
	if !strings.Contains(res.Build.Log, "xfsz-exit=153 xfsz-cores=0") {
		t.Errorf("a step killed by SIGXFSZ left a core dump:\n%s", res.Build.Log)
	}
}
