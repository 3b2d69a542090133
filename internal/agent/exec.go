package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// ExecCommand is the name of the program's mode that waits, as the
// entrypoint of a prewarmed container, for the one job it is to become:
// "/.zerverless/agent exec" (see Exec).
const ExecCommand = "exec"

// Taken is what an exec agent writes to its standard error once it has
// read its job, before anything of the job: a container that exits
// without writing it never became its job.
const Taken = "\x00zerverless-exec-taken\n"

// MaxJobBytes bounds the job message an exec agent reads.
const MaxJobBytes = 8 << 20

// DefaultPath is the PATH the engine gives a container whose image sets
// none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Job is what the worker sends a waiting exec agent, as one line of JSON
// on its standard input: the job's program and arguments (its image's
// ENTRYPOINT followed by the job's command or the image's CMD) and its
// whole environment (the image's variables merged with the job's).
//
// With Report set the agent does not replace itself with the job: it
// starts the job as its child (with pipes it copies to its own standard
// output and error, the same working directory and user), waits for it, and reports how it ended
// (see Report) before it exits with the job's status.
type Job struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	// Report is a secret of the worker's, at least 16 characters, that
	// marks the agent's report; "" asks for none.
	Report string `json:"report,omitempty"`
	// InlineOutput bounds the archive of /output the report carries;
	// past it (or when a file cannot be read) the report carries none and
	// says so.
	InlineOutput int64 `json:"inline_output,omitempty"`
}

// Exec reads one Job from stdin and replaces this process with it
// (execve), or, when the job asks for a report, starts it as its child
// and reports its end (supervise): the job runs under the container's
// init, with the container's working directory and user, its standard
// output and error, and /dev/null as its standard input. The job's environment
// replaces this process's entirely; only HOSTNAME and HOME, which the
// engine sets for the container itself, are kept when the job does not
// set them, and PATH is the engine's default when neither sets it. The
// program is looked up in the job's PATH as the engine does. Without a
// report Exec returns only when it could not become the job: 127 when the
// program cannot be found or run, 2 for a malformed message; with one it
// returns the job's exit status (128+signal for a job a signal killed).
func Exec(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "exec: no arguments are taken")
		return 2
	}
	j, err := readJob(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "zerverless: %v\n", err)
		return 2
	}
	// The worker strips this from the stream: it says the job was taken,
	// so what follows is the job's.
	if _, err := io.WriteString(stderr, Taken); err != nil {
		return 2
	}
	env := jobEnv(j.Env, os.Getenv("HOSTNAME"), os.Getenv("HOME"))
	os.Clearenv()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		_ = os.Setenv(k, v)
	}
	prog, err := exec.LookPath(j.Argv[0])
	if err != nil && !errors.Is(err, exec.ErrDot) {
		fmt.Fprintf(stderr, "exec: %q: %v\n", j.Argv[0], unwrapLookPath(err))
		return 127
	}
	if prog == "" {
		prog = j.Argv[0]
	}
	if j.Report != "" {
		return supervise(j, prog, env, stdout, stderr, OutputDir)
	}
	if null, err := os.Open(os.DevNull); err == nil {
		_ = syscall.Dup3(int(null.Fd()), 0, 0)
		null.Close()
	}
	err = syscall.Exec(prog, j.Argv, env)
	fmt.Fprintf(stderr, "exec: %q: %v\n", j.Argv[0], err)
	return 127
}

// readJob reads and checks the job line.
func readJob(r io.Reader) (Job, error) {
	line, err := bufio.NewReader(io.LimitReader(r, MaxJobBytes)).ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		return Job{}, fmt.Errorf("no job was received: %v", err)
	}
	var j Job
	if err := json.Unmarshal(line, &j); err != nil {
		return Job{}, fmt.Errorf("job message: %v", err)
	}
	if len(j.Argv) == 0 || j.Argv[0] == "" {
		return Job{}, errors.New("job message: no program")
	}
	if j.Report != "" && (len(j.Report) < 16 || strings.ContainsAny(j.Report, "\x00\n")) {
		return Job{}, errors.New("job message: a report secret is at least 16 characters on one line")
	}
	for _, kv := range j.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsRune(kv, 0) {
			return Job{}, fmt.Errorf("job message: bad environment entry %q", kv)
		}
	}
	return j, nil
}

// jobEnv is env with PATH (the default), HOSTNAME and HOME added when it
// does not set them, in the engine's order: PATH and HOSTNAME first.
func jobEnv(env []string, hostname, home string) []string {
	has := func(k string) bool {
		for _, kv := range env {
			if strings.HasPrefix(kv, k+"=") {
				return true
			}
		}
		return false
	}
	var out []string
	if !has("PATH") {
		out = append(out, "PATH="+DefaultPath)
	}
	if !has("HOSTNAME") && hostname != "" {
		out = append(out, "HOSTNAME="+hostname)
	}
	out = append(out, env...)
	if !has("HOME") && home != "" {
		out = append(out, "HOME="+home)
	}
	return out
}

func unwrapLookPath(err error) error {
	var e *exec.Error
	if errors.As(err, &e) {
		return e.Err
	}
	return err
}
