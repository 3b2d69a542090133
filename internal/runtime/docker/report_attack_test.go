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
// NULs replaced, so that it shows in the job's output. The agent's
// marker must never show, and the exit status is the job's.
func TestReportAttackPipeReopen(t *testing.T) {
	d := newTestRuntime(t, agentConfig(t))
	d.poolSync = true
	script := `for i in 1 2 3 4 5 6; do tr '\000' '@' </proc/self/fd/1 >/proc/self/fd/1 & tr '\000' '@' </proc/self/fd/2 >/proc/self/fd/1 & done
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
