// Package cli implements the client commands of the zerverless binary:
// run, jobs, job, cancel, deploy, deployments and undeploy. They speak the HTTP API through
// internal/client; cmd/zerverless routes to Run.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
)

// DefaultServer is the orchestrator the commands talk to when neither
// --server nor ZERVERLESS_SERVER names one.
const DefaultServer = "http://localhost:8000"

// ServerEnv is the environment variable that names the orchestrator.
const ServerEnv = "ZERVERLESS_SERVER"

// TokenEnv is the environment variable that holds the API token.
const TokenEnv = "ZERVERLESS_TOKEN"

// DataEnv names the data directory of a local orchestrator, whose
// admin.token the commands use when no token is given.
const DataEnv = "ZERVERLESS_DATA"

// DefaultDataDir is the data directory of `zerverless serve` by default.
const DefaultDataDir = "zerverless-data"

// AdminTokenFile is the file in the data directory where `serve` keeps
// the admin token.
const AdminTokenFile = "admin.token"

// Exit statuses of the commands, besides a job's own exit code.
const (
	ExitOK    = 0
	ExitFail  = 1 // a job failed, or the API refused a request
	ExitUsage = 2 // bad flags or arguments
	// ExitDockerError is what `run --image` returns when Zerverless itself
	// fails (the API refused the job, or the server is unreachable), as
	// `docker run` does, so that it is not confused with the container's
	// own exit code.
	ExitDockerError = 125
	// ExitInterrupted is returned when the wait for a job is interrupted;
	// the job keeps running.
	ExitInterrupted = 130
)

// IsCommand reports whether name is a command that Run implements.
func IsCommand(name string) bool {
	switch name {
	case "run", "build", "jobs", "job", "logs", "cancel", "deploy", "deployments", "undeploy", "token":
		return true
	}
	return false
}

// WriteSummary writes one line per client command, for the binary's help.
func WriteSummary(w io.Writer) {
	fmt.Fprint(w, `  run       submit a job, wait for it and print its output
  build     build a directory into an image on a worker, and run it
  jobs      list jobs
  job       show one job as JSON
  logs      print a job's or a docker service's output, or follow it with -f
  cancel    cancel jobs
  deploy    deploy a function
  deployments  list functions
  undeploy  remove a function
  token     create, list and revoke API and join tokens
`)
}

// Run runs the client command args[0] with the rest of args, writing to
// stdout and stderr, and returns the process exit status. getenv reads the
// environment (ZERVERLESS_SERVER). It blocks until the command is done or
// ctx is canceled.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if len(args) == 0 {
		fmt.Fprintln(stderr, "zerverless: no command; one of run, build, jobs, job, logs, cancel, deploy, deployments, undeploy, token")
		return ExitUsage
	}
	c := &command{name: args[0], stdout: stdout, stderr: stderr, getenv: getenv}
	switch args[0] {
	case "run":
		return c.run(ctx, args[1:])
	case "build":
		return c.build(ctx, args[1:])
	case "jobs":
		return c.jobs(ctx, args[1:])
	case "job":
		return c.job(ctx, args[1:])
	case "logs":
		return c.logs(ctx, args[1:])
	case "cancel":
		return c.cancel(ctx, args[1:])
	case "deploy":
		return c.deploy(ctx, args[1:])
	case "deployments":
		return c.deployments(ctx, args[1:])
	case "undeploy":
		return c.undeploy(ctx, args[1:])
	case "token":
		return c.tokenCmd(ctx, args[1:])
	}
	fmt.Fprintf(stderr, "zerverless: unknown command %q; one of run, build, jobs, job, logs, cancel, deploy, deployments, undeploy, token\n", args[0])
	return ExitUsage
}

// command is one invocation of a client command.
type command struct {
	name           string
	stdout, stderr io.Writer
	getenv         func(string) string
	server         string
	token          string
	dataDir        string
	// noToken says why tokenFor found no admin.token ("" when it found
	// a token).
	noToken string
}

// flags returns a flag set for the command with the common --server,
// --token and --data flags.
func (c *command) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("zerverless "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&c.server, "server", "", "")
	fs.StringVar(&c.token, "token", "", "")
	fs.StringVar(&c.dataDir, "data", "", "")
	return fs
}

// parse parses args into fs. With interspersed set, flags may follow
// positional arguments (until "--"); otherwise parsing stops at the first
// positional argument or "--". It returns the positional arguments and
// ok; when ok is false the command must stop with status (after --help,
// or a usage error).
func (c *command) parse(fs *flag.FlagSet, args []string, usage string, interspersed bool) (pos []string, status int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(c.stdout, usage)
				return nil, ExitOK, false
			}
			return nil, c.usageError("%v", err), false
		}
		rest := fs.Args()
		consumed := args[:len(args)-len(rest)]
		if !interspersed || len(rest) == 0 || len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(pos, rest...), 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (c *command) usageError(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "zerverless %s: %s\nRun 'zerverless %s --help' for usage.\n", c.name, fmt.Sprintf(format, args...), c.name)
	return ExitUsage
}

// fail prints an error of the command and returns status. When the API
// answered 401 and the command found no token to send, it says where it
// looked.
func (c *command) fail(status int, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "zerverless %s: %s\n", c.name, fmt.Sprintf(format, args...))
	if c.noToken != "" {
		for _, a := range args {
			var e *client.Error
			if err, ok := a.(error); ok && errors.As(err, &e) && e.StatusCode == http.StatusUnauthorized {
				fmt.Fprintf(c.stderr, "zerverless %s: no token was sent: neither --token nor %s is set, and %s; pass one, or point --data or %s at the orchestrator's data directory\n",
					c.name, TokenEnv, c.noToken, DataEnv)
				break
			}
		}
	}
	return status
}

// await waits for the job with id to end, as client.Await does; a job
// still pending after a short first wait has its reason printed on stderr,
// so that a job no connected worker can take does not wait in silence.
func (c *command) await(ctx context.Context, cl *client.Client, id string) (client.View, error) {
	v, err := cl.Job(ctx, id, pendingNotice)
	if err != nil {
		return v, err
	}
	return c.awaitAfterNotice(ctx, cl, v)
}

// awaitAfterNotice waits for job v to end, v being its state after a wait
// of pendingNotice; a job still pending then has its reason printed.
func (c *command) awaitAfterNotice(ctx context.Context, cl *client.Client, v client.View) (client.View, error) {
	if v.Status.Terminal() {
		return v, nil
	}
	if v.Status == job.StatusPending && v.Reason != "" {
		fmt.Fprintf(c.stderr, "zerverless %s: job %s is pending: %s; still waiting (Ctrl-C stops waiting, the job stays queued)\n", c.name, v.ID, v.Reason)
	}
	return cl.Await(ctx, v.ID, 0)
}

// pendingNotice is how long await waits before it says why a job is
// pending.
const pendingNotice = 3 * time.Second

// describe makes err readable: a transport error loses the method and URL
// that the message around it names already.
func describe(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// mayBeAccepted is what a failed submission adds to its message: when no
// answer came (the connection failed), the server may have accepted the
// job before it did, and submitting again could run it twice.
func mayBeAccepted(err error) string {
	var apiErr *client.Error
	if errors.As(err, &apiErr) {
		return "" // answered: refused
	}
	return "; no answer came, so the job may have been accepted: check `zerverless jobs` before submitting it again"
}

// client returns an API client for --server, ZERVERLESS_SERVER or the
// default, in that order, that sends the token of tokenFor.
func (c *command) client() *client.Client {
	server := c.server
	if server == "" {
		server = c.getenv(ServerEnv)
	}
	if server == "" {
		server = DefaultServer
	}
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	return client.New(server, nil).WithToken(c.tokenFor())
}

// tokenFor returns the API token: --token, ZERVERLESS_TOKEN, or the
// admin.token that `serve` wrote in the data directory (--data,
// ZERVERLESS_DATA, or ./zerverless-data), so that the commands work as
// they are on the orchestrator's machine. It is "" when there is none.
func (c *command) tokenFor() string {
	if c.token != "" {
		return c.token
	}
	if t := strings.TrimSpace(c.getenv(TokenEnv)); t != "" {
		return t
	}
	dir := c.dataDir
	if dir == "" {
		dir = c.getenv(DataEnv)
	}
	if dir == "" {
		dir = DefaultDataDir
	}
	path := filepath.Join(dir, AdminTokenFile)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			c.noToken = "there is no " + path
		} else {
			c.noToken = describePathErr(err)
		}
		return ""
	}
	return strings.TrimSpace(string(b))
}

// describePathErr says what went wrong with a file, without repeating the
// operation.
func describePathErr(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}
