package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestTestCommandIsCIs checks that the README's test command is the one
// .ci/run runs, and that it would install every package the tests need
// on a machine that has none of them.
func TestTestCommandIsCIs(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "\n    ./scripts/test\n") {
		t.Error("README.md does not give ./scripts/test as the test command")
	}
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, line := range strings.Split(string(ci), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			cmds = append(cmds, line)
		}
	}
	if want := []string{`exec "$(dirname "$0")/../scripts/test"`}; !slices.Equal(cmds, want) {
		t.Errorf(".ci/run runs %q, want exactly %q", cmds, want)
	}

	// A PATH with bash and the basic tools but none of the test
	// dependencies: the script must name every package.
	bin := t.TempDir()
	for _, tool := range []string{"bash", "env", "dirname", "id", "cat", "ls"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(filepath.Join(bin, "bash"), filepath.Join(root, "scripts", "test"), "--missing")
	cmd.Env = []string{"PATH=" + bin}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/test --missing: %v\n%s", err, out)
	}
	got := strings.Fields(string(out))
	for _, pkg := range []string{"busybox-static", "bubblewrap", "python3", "chromium", "rustc", "libstd-rust-dev-wasm32", "lld"} {
		if !slices.Contains(got, pkg) {
			t.Errorf("scripts/test --missing on a bare PATH does not name %s: %q", pkg, got)
		}
	}
}
