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
	if len(os.Args) < 2 || os.Args[1] != agent.Command {
		fmt.Fprintf(os.Stderr, "usage: %s %s [flags]\n", os.Args[0], agent.Command)
		os.Exit(2)
	}
	os.Exit(agent.Main(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
}
