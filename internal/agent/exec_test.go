package agent

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestJobEnv(t *testing.T) {
	got := jobEnv([]string{"A=1", "PATH=/bin"}, "h1", "/home/x")
	if want := []string{"HOSTNAME=h1", "A=1", "PATH=/bin", "HOME=/home/x"}; !slices.Equal(got, want) {
		t.Errorf("jobEnv = %q, want %q", got, want)
	}
	got = jobEnv([]string{"HOME=/mine", "HOSTNAME=set"}, "h1", "/home/x")
	if want := []string{"PATH=" + DefaultPath, "HOME=/mine", "HOSTNAME=set"}; !slices.Equal(got, want) {
		t.Errorf("jobEnv = %q, want %q", got, want)
	}
}

// A malformed or missing job never runs anything: Exec returns 2 before
// it says it took a job.
func TestExecRefusesBadJobs(t *testing.T) {
	for _, in := range []string{"", "{}\n", `{"argv":[""]}` + "\n", `{"argv":["x"],"env":["NOEQUALS"]}` + "\n", `{"argv":["x"],"env":["A=b` + "\x00" + `"]}` + "\n", "not json\n"} {
		var stderr bytes.Buffer
		if code := Exec(nil, strings.NewReader(in), io.Discard, &stderr); code != 2 || strings.Contains(stderr.String(), Taken) {
			t.Errorf("Exec(%q) = %d, stderr %q", in, code, stderr.String())
		}
	}
	var stderr bytes.Buffer
	if code := Exec(nil, strings.NewReader(`{"argv":["/no/such/program"]}`+"\n"), io.Discard, &stderr); code != 127 || !strings.HasPrefix(stderr.String(), Taken) {
		t.Errorf("a missing program: %d, stderr %q", code, stderr.String())
	}
}
