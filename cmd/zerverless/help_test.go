package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestServeWorkerHelp proves that serve and worker answer --help on stdout
// with status 0, and report a bad flag or a stray argument on stderr with
// status 2, pointing at --help.
func TestServeWorkerHelp(t *testing.T) {
	getenv := func(string) string { return "" }
	for _, cmd := range []string{"serve", "worker"} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{cmd, "--help"}, &out, &errOut, getenv)
		if code != 0 || !strings.HasPrefix(out.String(), "Usage:\n  zerverless "+cmd+" [flags]") ||
			!strings.Contains(out.String(), "-concurrency") || errOut.Len() != 0 {
			t.Fatalf("%s --help: status %d, stdout %q, stderr %q", cmd, code, out.String(), errOut.String())
		}
		for _, args := range [][]string{{cmd, "--no-such-flag"}, {cmd, "stray"}} {
			out.Reset()
			errOut.Reset()
			code := run(context.Background(), args, &out, &errOut, getenv)
			if code != 2 || out.Len() != 0 || !strings.Contains(errOut.String(), "Run 'zerverless "+cmd+" --help' for usage.") {
				t.Fatalf("%v: status %d, stdout %q, stderr %q", args, code, out.String(), errOut.String())
			}
		}
	}
}
