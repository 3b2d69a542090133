package agent

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
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

// With a report asked for, the agent waits for its job and writes how it
// ended and an archive of /output, after the secret's line on each stream.
func TestSuperviseReports(t *testing.T) {
	dir := t.TempDir()
	const secret = "0123456789abcdef"
	j := Job{Argv: []string{"/bin/sh", "-c", `echo hi > "$D/a"; ln "$D/a" "$D/b"; mkdir "$D/sub"; ln -s a "$D/sub/l"; exit 3`},
		Report: secret, InlineOutput: 1 << 20}
	var stdout, stderr bytes.Buffer
	if code := supervise(j, "/bin/sh", []string{"D=" + dir}, &stdout, &stderr, dir); code != 3 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	line := ReportMarker + secret + "\n"
	if stdout.String() != line {
		t.Fatalf("stdout %q", stdout.String())
	}
	rest, ok := strings.CutPrefix(stderr.String(), line)
	head, archive, ok2 := strings.Cut(rest, "\n")
	if !ok || !ok2 {
		t.Fatalf("stderr %q", stderr.String())
	}
	var r Report
	if err := json.Unmarshal([]byte(head), &r); err != nil || r.Exit != 3 || r.Signal != 0 || r.Output != "inline" || r.TarBytes != len(archive) {
		t.Fatalf("report %q (%v), archive of %d bytes", head, err, len(archive))
	}
	tr := tar.NewReader(strings.NewReader(archive))
	var got []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		got = append(got, fmt.Sprintf("%s %c %s %d", h.Name, h.Typeflag, h.Linkname, h.Size))
	}
	want := []string{"output/ 5  0", "output/a 0  3", "output/b 1 output/a 0", "output/sub/ 5  0", "output/sub/l 2 a 0"}
	if !slices.Equal(got, want) {
		t.Errorf("archive %q, want %q", got, want)
	}

	// Killed by a signal: 128+signal; a larger /output than asked for is
	// left to the worker.
	j = Job{Argv: []string{"/bin/sh", "-c", `kill -9 $$`}, Report: secret, InlineOutput: 10}
	stderr.Reset()
	if code := supervise(j, "/bin/sh", nil, io.Discard, &stderr, dir); code != 137 {
		t.Fatalf("exit %d", code)
	}
	head, _, _ = strings.Cut(strings.TrimPrefix(stderr.String(), line), "\n")
	if err := json.Unmarshal([]byte(head), &r); err != nil || r.Exit != 137 || r.Signal != 9 || r.Output != "engine" || r.TarBytes != 0 {
		t.Errorf("report %q (%v)", head, err)
	}
}
