package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
)

const runUsage = `Usage:
  zerverless run [flags] --type lua|js|python --code CODE
  zerverless run [flags] -f FILE
  zerverless run [flags] --wasm-file MODULE.wasm [-- ARGS...]
  zerverless run [flags] --image IMAGE [--env K=V]... [-- CMD ARGS...]

Submits a job, waits for it to end and prints what it wrote: its stdout to
stdout, its stderr to stderr, and a returned value on a line of its own.
The exit status is 0 when the job completed, the job's exit code when it
reports one, and 1 when it failed, timed out or was canceled. With --image,
errors of Zerverless itself exit 125, as with docker run.

Flags:
  --server URL        orchestrator (default $ZERVERLESS_SERVER, or http://localhost:8000)
  --token TOKEN       API token (default $ZERVERLESS_TOKEN, or DIR/admin.token)
  --data DIR          data dir of a local orchestrator (default $ZERVERLESS_DATA, or ./zerverless-data)
  --type TYPE         job type: lua, js, python, wasm or docker; inferred from
                      --image, --wasm-file or the extension of -f when absent
  --code CODE         source code of a lua, js or python job
  -f, --file FILE     read the code (or, for .wasm, the module) from FILE
  --wasm-file FILE    WebAssembly module of a wasm job
  --args "A B"        arguments of a wasm module (split on spaces); arguments
                      after -- are appended
  --input JSON        input_data given to the job (any JSON value)
  --input-file FILE   read input_data from FILE
  --timeout DURATION  run timeout (30s, 2m, or seconds such as 10)
  --namespace NS      namespace of the job (default "default")
  --max-attempts N    runs allowed if workers are lost (default set by the server)
  --replicas N        run on N distinct workers; the answer is accepted when
                      --quorum of them agree (default a majority)
  --quorum N          how many replicas must agree
  --memory-mb N       memory limit in MiB
  --image IMAGE       run a docker job of IMAGE; the command follows --
  --env K=V           environment variable of the container (repeatable)
  --cpus N            CPUs of the container (fractions allowed)
  --pids N            process limit of the container
  -d, --detach        print the job id and do not wait
  --json              print the finished job as JSON instead of its output
`

// runFlags are the flags of `zerverless run`.
type runFlags struct {
	typ, code, file, wasmFile, args string
	input, inputFile, timeout, ns   string
	maxAttempts, memoryMB           int
	replicas, quorum                int
	image                           string
	env                             envFlag
	cpus                            float64
	pids                            int64
	detach, json                    bool
}

func (c *command) run(ctx context.Context, args []string) int {
	var f runFlags
	fs := c.flags()
	fs.StringVar(&f.typ, "type", "", "")
	fs.StringVar(&f.code, "code", "", "")
	fs.StringVar(&f.file, "f", "", "")
	fs.StringVar(&f.file, "file", "", "")
	fs.StringVar(&f.wasmFile, "wasm-file", "", "")
	fs.StringVar(&f.args, "args", "", "")
	fs.StringVar(&f.input, "input", "", "")
	fs.StringVar(&f.inputFile, "input-file", "", "")
	fs.StringVar(&f.timeout, "timeout", "", "")
	fs.StringVar(&f.ns, "namespace", "", "")
	fs.IntVar(&f.maxAttempts, "max-attempts", 0, "")
	fs.IntVar(&f.memoryMB, "memory-mb", 0, "")
	fs.IntVar(&f.replicas, "replicas", 0, "")
	fs.IntVar(&f.quorum, "quorum", 0, "")
	fs.StringVar(&f.image, "image", "", "")
	fs.Var(&f.env, "env", "")
	fs.Float64Var(&f.cpus, "cpus", 0, "")
	fs.Int64Var(&f.pids, "pids", 0, "")
	fs.BoolVar(&f.detach, "d", false, "")
	fs.BoolVar(&f.detach, "detach", false, "")
	fs.BoolVar(&f.json, "json", false, "")
	rest, status, ok := c.parse(fs, args, runUsage, false)
	if !ok {
		return status
	}
	req, err := f.request(rest)
	if err != nil {
		return c.usageError("%v", err)
	}
	errStatus := ExitFail
	if req.Type == job.TypeDocker {
		errStatus = ExitDockerError
	}

	cl := c.client()
	var v client.View
	if f.json && !f.detach {
		// Nothing to follow: the submission waits for the job a while in
		// its own request.
		v, err = cl.Run(ctx, req, pendingNotice)
	} else {
		v, err = cl.Submit(ctx, req)
	}
	if err != nil {
		if ctx.Err() != nil {
			return c.fail(ExitInterrupted, "stopped before the submission was answered; the job goes on if it was accepted (zerverless jobs lists it)")
		}
		return c.fail(errStatus, "submit to %s: %v%s", cl.BaseURL(), describe(err), mayBeAccepted(err))
	}
	if f.detach {
		fmt.Fprintln(c.stdout, v.ID)
		return ExitOK
	}
	id := v.ID
	var live *logPrinter
	if f.json {
		v, err = c.awaitAfterNotice(ctx, cl, v)
	} else {
		v, live, err = c.followOutput(ctx, cl, id)
	}
	if err != nil {
		if ctx.Err() != nil {
			return c.fail(ExitInterrupted, "stopped waiting; job %s goes on (zerverless cancel %s stops it)", id, id)
		}
		return c.fail(errStatus, "wait for job %s at %s: %v", id, cl.BaseURL(), describe(err))
	}
	switch {
	case f.json:
		c.printJSON(v)
	case live != nil:
		live.printRest(v)
	default:
		c.printOutput(v)
	}
	return c.jobStatus(v)
}

// request builds the job request from the flags and the arguments after
// them (a container's command, or a wasm module's arguments).
func (f *runFlags) request(rest []string) (job.Request, error) {
	r := job.Request{
		Type:        job.Type(f.typ),
		Code:        f.code,
		Namespace:   f.ns,
		MaxAttempts: f.maxAttempts,
		Replicas:    f.replicas,
		Quorum:      f.quorum,
	}
	if r.Type == "" {
		r.Type = f.inferType()
	}
	if r.Type == "" {
		return r, errors.New("say what to run: --type with --code, -f FILE, --wasm-file or --image")
	}
	if f.image != "" && r.Type != job.TypeDocker {
		return r, fmt.Errorf("--image runs a docker job, not %s", r.Type)
	}
	if f.file != "" {
		if f.code != "" {
			return r, errors.New("give --code or -f, not both")
		}
		data, err := os.ReadFile(f.file)
		if err != nil {
			return r, err
		}
		if r.Type == job.TypeWasm && f.wasmFile == "" {
			r.Wasm = data
		} else {
			r.Code = string(data)
		}
	}
	if f.wasmFile != "" {
		data, err := os.ReadFile(f.wasmFile)
		if err != nil {
			return r, err
		}
		r.Wasm = data
	}
	if f.input != "" && f.inputFile != "" {
		return r, errors.New("give --input or --input-file, not both")
	}
	input := []byte(f.input)
	if f.inputFile != "" {
		data, err := os.ReadFile(f.inputFile)
		if err != nil {
			return r, err
		}
		input = data
	}
	if len(input) > 0 {
		if !json.Valid(input) {
			return r, errors.New("--input is not valid JSON (quote strings: --input '\"text\"')")
		}
		r.Input = json.RawMessage(input)
	}
	if f.timeout != "" {
		secs, err := parseSeconds(f.timeout)
		if err != nil {
			return r, fmt.Errorf("--timeout: %v", err)
		}
		r.TimeoutSeconds = &secs
	}
	switch r.Type {
	case job.TypeDocker:
		if f.image == "" {
			return r, errors.New("a docker job needs --image")
		}
		r.DockerImage = f.image
		r.DockerCommand = rest
		r.DockerEnv = f.env.m
		if f.memoryMB != 0 || f.cpus != 0 || f.pids != 0 {
			r.Resources = &job.Resources{MemoryMB: f.memoryMB, CPUs: f.cpus, Pids: f.pids}
		}
	case job.TypeWasm:
		r.Args = append(strings.Fields(f.args), rest...)
		r.MemoryMB = f.memoryMB
	default:
		if len(rest) > 0 {
			return r, fmt.Errorf("unexpected arguments %q (only wasm and docker jobs take arguments)", rest)
		}
		r.MemoryMB = f.memoryMB
	}
	if r.Type != job.TypeDocker && (len(f.env.m) > 0 || f.cpus != 0 || f.pids != 0) {
		return r, errors.New("--env, --cpus and --pids are for docker jobs (--image)")
	}
	if r.Type != job.TypeWasm && f.args != "" {
		return r, errors.New("--args is for wasm jobs")
	}
	return r, nil
}

// inferType guesses the job type from the flags that only one type uses.
func (f *runFlags) inferType() job.Type {
	switch {
	case f.image != "":
		return job.TypeDocker
	case f.wasmFile != "":
		return job.TypeWasm
	}
	switch filepath.Ext(f.file) {
	case ".lua":
		return job.TypeLua
	case ".js", ".mjs":
		return job.TypeJS
	case ".py":
		return job.TypePython
	case ".wasm":
		return job.TypeWasm
	}
	return ""
}

// parseSeconds reads a duration ("30s", "2m") or a number of seconds.
func parseSeconds(s string) (float64, error) {
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		return secs, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 30s or a number of seconds", s)
	}
	return d.Seconds(), nil
}

// printOutput writes what the job wrote: stdout, stderr, then its returned
// value on a line of its own, and why it failed.
func (c *command) printOutput(v client.View) {
	if r := v.ResultView; r != nil {
		fmt.Fprint(c.stdout, r.Output)
		fmt.Fprint(c.stderr, r.Stderr)
		if len(r.Result) > 0 && string(r.Result) != "null" {
			if r.Output != "" && !strings.HasSuffix(r.Output, "\n") {
				fmt.Fprintln(c.stdout)
			}
			fmt.Fprintf(c.stdout, "%s\n", r.Result)
		}
		if r.Truncated {
			fmt.Fprintf(c.stderr, "zerverless: job %s: output was cut at the worker's limit\n", v.ID)
		}
		if r.OOMKilled {
			fmt.Fprintf(c.stderr, "zerverless: job %s: killed for running out of memory\n", v.ID)
		}
	}
	if v.Status == job.StatusCompleted {
		return
	}
	why := v.Reason
	if v.ResultView != nil && v.Error != "" {
		why = v.Error
	}
	if why != "" {
		fmt.Fprintf(c.stderr, "zerverless: job %s %s: %s\n", v.ID, v.Status, why)
	} else {
		fmt.Fprintf(c.stderr, "zerverless: job %s %s\n", v.ID, v.Status)
	}
}

// jobStatus is the exit status for a finished job: 0 when it completed,
// its exit code when it reports one (1 to 255), 1 otherwise.
func (c *command) jobStatus(v client.View) int {
	code := 0
	if v.ResultView != nil {
		code = v.ExitCode
	}
	switch {
	case v.Status == job.StatusCompleted && code == 0:
		return ExitOK
	case code > 0 && code <= 255:
		return code
	}
	return ExitFail
}

// envFlag collects repeated --env K=V flags.
type envFlag struct{ m map[string]string }

func (e *envFlag) String() string { return "" }

func (e *envFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not K=V", s)
	}
	if e.m == nil {
		e.m = map[string]string{}
	}
	e.m[k] = v
	return nil
}

var _ flag.Value = (*envFlag)(nil)
