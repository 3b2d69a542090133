// Command zagent is the agent alone (see package agent), for machines
// whose zerverless binary is not static: built with CGO_ENABLED=0 it can
// be given to a docker worker as its --docker-agent.
package main

import (
	"fmt"
	"os"

	"github.com/zerverless/zerverless/internal/agent"
)

func main() {
	switch {
	case len(os.Args) >= 2 && os.Args[1] == agent.Command:
		os.Exit(agent.Main(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	case len(os.Args) >= 2 && os.Args[1] == agent.ExecCommand:
		os.Exit(agent.Exec(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	fmt.Fprintf(os.Stderr, "usage: %s %s [flags] | %s\n", os.Args[0], agent.Command, agent.ExecCommand)
	os.Exit(2)
}
