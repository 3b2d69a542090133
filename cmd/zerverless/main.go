// Command zerverless is the whole platform in one binary: the orchestrator
// (serve), a native worker (worker), and the client commands that speak the
// HTTP API (run, jobs, job, cancel).
package main

import (
	"context"
	"fmt"
	"github.com/zerverless/zerverless/internal/agent"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/zerverless/zerverless/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

const usage = `zerverless — a volunteer-powered compute platform

Usage:
  zerverless serve   [flags]    run the orchestrator with embedded workers
  zerverless worker  [flags]    run a native worker that dials an orchestrator
  zerverless run     [flags]    submit a job, wait, print its output
  zerverless build   [flags] DIR [-- CMD...]   build DIR into an image on a worker, run it
  zerverless jobs    [flags]    list jobs
  zerverless job     ID         show one job
  zerverless logs    [-f] ID    print a job's output, or follow it as it is written
  zerverless cancel  ID         cancel a job
  zerverless deploy  NS/PATH -f FILE   deploy a function
  zerverless deployments        list functions
  zerverless undeploy NS/PATH   remove a function
  zerverless token   create|list|revoke   manage API and join tokens (admin)
  zerverless version            print the version

Run "zerverless COMMAND --help" for a command's flags.
`

// run dispatches a command and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serveCommand(ctx, args[1:], stdout, stderr, getenv)
	case "worker":
		return workerCommand(ctx, args[1:], stdout, stderr, getenv)
	case "run", "build", "jobs", "job", "logs", "cancel", "deploy", "deployments", "undeploy", "token":
		return cli.Run(ctx, args, stdout, stderr, getenv)
	case childCommand:
		return runtimeChild(os.Stdin, os.Stdout, stderr)
	case agent.Command:
		return agent.Main(args[1:], os.Stdin, os.Stdout, stderr)
	case agent.ExecCommand:
		return agent.Exec(args[1:], os.Stdin, os.Stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "zerverless", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "zerverless: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
