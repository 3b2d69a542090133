package dockertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

var agentOnce struct {
	sync.Once
	path string
	err  error
}

// AgentBinary returns the path of a static build of the agent alone
// (internal/agent/zagent, CGO_ENABLED=0), built once per test process
// into a temporary directory with the go command.
func AgentBinary() (string, error) {
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "zerverless-agent-")
		if err != nil {
			agentOnce.err = err
			return
		}
		out := filepath.Join(dir, "zagent")
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, "github.com/zerverless/zerverless/internal/agent/zagent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			agentOnce.err = fmt.Errorf("build the agent: %v\n%s", err, b)
			return
		}
		agentOnce.path = out
	})
	return agentOnce.path, agentOnce.err
}
