package docker

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/zerverless/zerverless/internal/agent"
)

// The agent's report is taken out of the streams whatever their chunks;
// a job's bytes that look like a report without the secret pass as the
// job's, and a report is whole only once both streams reached it.
func TestReportReader(t *testing.T) {
	const secret = "0123456789abcdef0123"
	line := agent.ReportMarker + secret + "\n"
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	_ = tw.WriteHeader(&tar.Header{Name: "output/", Typeflag: tar.TypeDir, Mode: 0o755})
	_ = tw.WriteHeader(&tar.Header{Name: "output/a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	_, _ = tw.Write([]byte("hi"))
	_ = tw.Close()
	head, _ := json.Marshal(agent.Report{Exit: 3, Output: "inline", TarBytes: archive.Len()})
	fake := agent.ReportMarker + "not-the-secret-at-all\n{}\n"
	jobOut, jobErr := "out "+fake+"\x00zer", "err "+fake
	stdoutStream := jobOut + line + "after"
	stderrStream := jobErr + line + string(head) + "\n" + archive.String()

	for _, size := range []int{1, 3, 7, 64, 1 << 20} {
		var out, errb strings.Builder
		r := newReportReader(&out, &errb, secret)
		chunks := func(s string) []string {
			var c []string
			for len(s) > size {
				c, s = append(c, s[:size]), s[size:]
			}
			return append(c, s)
		}
		oc, ec := chunks(stdoutStream), chunks(stderrStream)
		for i := 0; i < max(len(oc), len(ec)); i++ {
			if i < len(ec) {
				_, _ = r.stderr.Write([]byte(ec[i]))
			}
			if i < len(oc) {
				_, _ = r.stdout.Write([]byte(oc[i]))
			}
		}
		select {
		case <-r.done:
		default:
			t.Fatalf("chunks of %d: no report", size)
		}
		if out.String() != jobOut || errb.String() != jobErr {
			t.Errorf("chunks of %d: job's streams %q %q", size, out.String(), errb.String())
		}
		if r.report.Exit != 3 || !bytes.Equal(r.archive, archive.Bytes()) {
			t.Errorf("chunks of %d: report %+v, archive of %d bytes", size, r.report, len(r.archive))
		}
		d := &Docker{cfg: DefaultConfig()}
		files, truncated, u, skipped := d.parseOutput(bytes.NewReader(r.archive))
		if string(files["a"]) != "hi" || truncated || skipped != 0 || u.entries != 2 {
			t.Errorf("chunks of %d: files %q %v %+v %d", size, files, truncated, u, skipped)
		}
	}

	// Without the report's end on stdout, or with a report cut short or
	// malformed, there is none; what a stream held back passes at its end.
	for name, c := range map[string]struct{ out, err string }{
		"no stdout line": {"job \x00zerverless", stderrStream},
		"cut short":      {stdoutStream, jobErr + line + string(head) + "\n" + archive.String()[:100]},
		"malformed":      {stdoutStream, jobErr + line + "{\n"},
		"too large":      {stdoutStream, jobErr + line + `{"exit":0,"output":"inline","tar_bytes":99999999}` + "\n"},
	} {
		var out, errb strings.Builder
		r := newReportReader(&out, &errb, secret)
		_, _ = r.stdout.Write([]byte(c.out))
		_, _ = r.stderr.Write([]byte(c.err))
		r.flush()
		select {
		case <-r.done:
			t.Errorf("%s: a report", name)
		default:
		}
		if name == "no stdout line" && out.String() != c.out {
			t.Errorf("%s: stdout %q", name, out.String())
		}
	}
}
