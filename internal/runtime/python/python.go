package python

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

//go:embed bootstrap.py
var bootstrapSource string

// waitDelay bounds how long Run waits for the sandbox's pipes to close
// after the sandbox was killed.
const waitDelay = 2 * time.Second

// Python runs Python 3 jobs with the host's CPython inside bubblewrap.
// It is safe for concurrent use: every Run has its own sandbox.
type Python struct {
	cfg Config
}

var (
	_ runtime.Runtime = (*Python)(nil)
	_ runtime.Checker = (*Python)(nil)
)

// New returns a Python runtime. Zero fields of cfg take their defaults.
// New does not fail: a missing python3 or bwrap, or a sandbox that cannot
// start, is reported by Check and by Run's error.
func New(cfg Config) *Python {
	return &Python{cfg: cfg.withDefaults()}
}

// paths returns the bwrap and python3 binaries to use.
func (p *Python) paths() (bwrap, python string, err error) {
	bwrap = p.cfg.Bwrap
	if bwrap == "" {
		if bwrap, err = findBwrap(); err != nil {
			return "", "", err
		}
	}
	python = p.cfg.Python
	if python == "" {
		if python, err = FindPython(p.cfg.SystemDirs); err != nil {
			return "", "", err
		}
	} else if err := checkUnder(python, p.cfg.SystemDirs); err != nil {
		return "", "", fmt.Errorf("python interpreter: %w", err)
	}
	return bwrap, python, nil
}

// limits resolves the limits of one task that has until deadline (zero:
// no deadline) to run.
func (p *Python) limits(t job.Task, deadline time.Time) limits {
	lim := limits{
		memoryBytes: p.cfg.MemoryBytes,
		outputBytes: p.cfg.OutputBytes,
		cpuSeconds:  p.cfg.CPUSeconds,
	}
	switch {
	case t.Limits.MemoryBytes > 0:
		lim.memoryBytes = t.Limits.MemoryBytes
	case t.Spec.MemoryMB > 0:
		lim.memoryBytes = int64(t.Spec.MemoryMB) << 20
	}
	if t.Limits.OutputBytes > 0 {
		lim.outputBytes = t.Limits.OutputBytes
	}
	if !deadline.IsZero() {
		if s := int(math.Ceil(time.Until(deadline).Seconds())) + 1; s > lim.cpuSeconds {
			lim.cpuSeconds = s
		}
	}
	return lim
}

// request is what the bootstrap reads on fd 3.
type request struct {
	Code  string          `json:"code"`
	Input json.RawMessage `json:"input"`
}

// reply is the bootstrap's last line on fd 4.
type reply struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
	Type   string          `json:"type"`
}

// Run runs t.Spec.Code in a fresh sandbox and blocks until it ends. The
// script sees t.Spec.Input as INPUT; its top-level variable result comes
// back as Result.Result. When ctx's deadline passes (or t.Timeout, if
// shorter) every process of the sandbox is killed and Run returns Status
// timeout; when ctx is canceled, Status canceled. Run returns an error
// only when the sandbox could not start python at all.
func (p *Python) Run(ctx context.Context, t job.Task) (job.Result, error) {
	start := time.Now()
	if t.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.Timeout)
		defer cancel()
	}
	if s := runtime.Interrupted(ctx); s != "" {
		return job.Result{Status: s, Error: "stopped before it started: " + string(s), ExitCode: -1}, nil
	}
	if strings.TrimSpace(t.Spec.Code) == "" {
		return job.Result{Status: job.StatusFailed, Error: "code is empty", ExitCode: -1}, nil
	}
	bwrap, python, err := p.paths()
	if err != nil {
		return job.Result{}, fmt.Errorf("python runtime unavailable: %w", err)
	}
	deadline, _ := ctx.Deadline()
	lim := p.limits(t, deadline)
	input := t.Spec.Input
	if len(bytes.TrimSpace(input)) == 0 {
		input = json.RawMessage("null")
	}
	req, err := json.Marshal(request{Code: t.Spec.Code, Input: input})
	if err != nil {
		return job.Result{Status: job.StatusFailed, Error: fmt.Sprintf("input_data is not valid JSON: %v", err), ExitCode: -1}, nil
	}

	res, rep, err := p.runSandbox(ctx, bwrap, p.bwrapArgs(python, lim), req, lim)
	if err != nil {
		return job.Result{}, err
	}
	res.DurationMS = time.Since(start).Milliseconds()
	if s := runtime.Interrupted(ctx); s != "" {
		res.Status = s
		if s == job.StatusTimeout {
			res.Error = "timed out"
			if t.Timeout > 0 {
				res.Error = fmt.Sprintf("timed out after %s", t.Timeout)
			}
		} else {
			res.Error = "canceled"
		}
		return res, nil
	}
	if !rep.ready {
		// Python never started: bwrap could not build the sandbox.
		return job.Result{}, fmt.Errorf("sandbox did not start python (exit status %d): %s", res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	return p.finish(res, rep, lim), nil
}

// runSandbox runs bwrap with args, feeds it req on fd 3 and reads its
// reply on fd 4, and blocks until bwrap has exited and its output is
// read. ctx's end kills bwrap's process group. The Result it returns has
// the output, exit code and resource use; its status is left to the
// caller. An error means bwrap could not be started.
func (p *Python) runSandbox(ctx context.Context, bwrap string, args []string, req []byte, lim limits) (job.Result, replyRead, error) {
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return job.Result{}, replyRead{}, fmt.Errorf("request pipe: %w", err)
	}
	defer reqR.Close()
	defer reqW.Close()
	repR, repW, err := os.Pipe()
	if err != nil {
		return job.Result{}, replyRead{}, fmt.Errorf("reply pipe: %w", err)
	}
	defer repR.Close()
	defer repW.Close()

	stdout := runtime.Output(ctx, job.LogStdout, lim.outputBytes)
	stderr := runtime.Output(ctx, job.LogStderr, lim.outputBytes)
	cmd := exec.CommandContext(ctx, bwrap, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.ExtraFiles = []*os.File{reqR, repW} // fds 3 and 4
	cmd.SysProcAttr = p.sysProcAttr()
	cmd.Cancel = func() error {
		// bwrap is the leader of its own process group; killing it kills
		// the sandbox's pid 1 (--die-with-parent), and with it every
		// process of the sandbox's pid namespace.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		return job.Result{}, replyRead{}, fmt.Errorf("start bwrap: %w", err)
	}
	reqR.Close()
	repW.Close()

	go func() {
		reqW.Write(req) // an error means the sandbox is already gone
		reqW.Close()
	}()
	replyc := make(chan replyRead, 1)
	go func() { replyc <- readReply(repR, lim.outputBytes) }()

	cmd.Wait() // the exit status is read from ProcessState below
	repR.SetReadDeadline(time.Now().Add(waitDelay))
	rep := <-replyc

	res := job.Result{
		Output:    stdout.String(),
		Stderr:    stderr.String(),
		Truncated: stdout.Truncated() || stderr.Truncated(),
		ExitCode:  -1,
	}
	if st := cmd.ProcessState; st != nil {
		res.ExitCode = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.ExitCode = 128 + int(ws.Signal()) // bwrap itself was killed
		}
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			res.CPUTimeMS = (time.Duration(ru.Utime.Nano()) + time.Duration(ru.Stime.Nano())).Milliseconds()
			res.PeakMemoryBytes = ru.Maxrss * 1024
		}
	}
	return res, rep, nil
}

// finish sets the status, error and result of a run that ended by itself.
func (p *Python) finish(res job.Result, rep replyRead, lim limits) job.Result {
	res.Status = job.StatusFailed
	switch {
	case rep.tooBig:
		res.Truncated = true
		res.Error = fmt.Sprintf("result is over the limit of %d bytes", lim.outputBytes)
	case rep.reply == nil && res.ExitCode == 0:
		res.Status = job.StatusCompleted
	case rep.reply == nil:
		res.Error = describeExit(res.ExitCode, lim)
	case !rep.reply.OK:
		res.Error = rep.reply.Error
		if rep.reply.Type == "MemoryError" {
			res.OOMKilled = true
			res.Error = fmt.Sprintf("%s\nmemory limit of %d MiB exceeded", res.Error, lim.memoryBytes>>20)
		}
	case res.ExitCode != 0:
		res.Error = describeExit(res.ExitCode, lim)
	default:
		res.Status = job.StatusCompleted
		if len(rep.reply.Result) > 0 {
			res.Result = rep.reply.Result
		}
	}
	return res
}

// describeExit explains an exit status that came with no reply.
func describeExit(code int, lim limits) string {
	if code <= 128 {
		return fmt.Sprintf("python exited with status %d", code)
	}
	sig := syscall.Signal(code - 128)
	msg := fmt.Sprintf("python was killed by signal %d (%v)", int(sig), sig)
	switch sig {
	case syscall.SIGXCPU, syscall.SIGKILL:
		msg += fmt.Sprintf("; the CPU time limit is %d s per process", lim.cpuSeconds)
	case syscall.SIGSEGV, syscall.SIGABRT, syscall.SIGBUS:
		msg += fmt.Sprintf("; the memory limit is %d MiB", lim.memoryBytes>>20)
	}
	return msg
}

// sysProcAttr puts bwrap in its own process group, drops to the
// configured user, and kills bwrap if the worker dies.
func (p *Python) sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if p.cfg.UID >= 0 || p.cfg.GID >= 0 {
		uid, gid := p.cfg.UID, p.cfg.GID
		if uid < 0 {
			uid = os.Getuid()
		}
		if gid < 0 {
			gid = os.Getgid()
		}
		a.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	return a
}

// replyRead is what came on the reply channel.
type replyRead struct {
	ready  bool   // the bootstrap started
	reply  *reply // its final line, nil when none came
	tooBig bool   // the final line was over the limit
}

// readReply reads the bootstrap's reply channel to EOF (or a deadline),
// keeping at most limit bytes of the final line.
func readReply(r io.Reader, limit int) replyRead {
	var out replyRead
	br := bufio.NewReader(r)
	first, err := br.ReadString('\n')
	if first != "ready\n" {
		return out
	}
	out.ready = true
	if err != nil {
		return out
	}
	data, _ := io.ReadAll(io.LimitReader(br, int64(limit)+1))
	if len(data) > limit {
		out.tooBig = true
		io.Copy(io.Discard, br)
		return out
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return out
	}
	var rep reply
	if err := json.Unmarshal(data, &rep); err != nil {
		rep = reply{Error: "the script damaged the result channel (fd 4)"}
	}
	out.reply = &rep
	return out
}

// Check runs a trivial program in the sandbox and reports whether python3
// and the sandbox work: nil when they do, else an error saying why not.
// It blocks for at most 20 s or until ctx is done.
func (p *Python) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	res, err := p.Run(ctx, job.Task{
		Type: job.TypePython,
		Spec: job.Spec{
			Code:  checkProgram,
			Input: json.RawMessage(`{"n": 2}`),
		},
	})
	if err != nil {
		return fmt.Errorf("python sandbox: %w%s", err, userNSHint(err))
	}
	if res.Status != job.StatusCompleted {
		return fmt.Errorf("python sandbox self-test %s: %s %s", res.Status, res.Error, strings.TrimSpace(res.Stderr))
	}
	var got struct {
		Sum        int      `json:"sum"`
		Interfaces []string `json:"interfaces"`
	}
	if err := json.Unmarshal(res.Result, &got); err != nil {
		return fmt.Errorf("python sandbox self-test: bad result %q: %v", res.Result, err)
	}
	switch {
	case got.Sum != 4:
		return fmt.Errorf("python sandbox self-test: got %d, want 4", got.Sum)
	case len(got.Interfaces) != 1 || got.Interfaces[0] != "lo":
		return fmt.Errorf("python sandbox self-test: network interfaces %v visible, want only lo", got.Interfaces)
	}
	return nil
}

// checkProgram is Check's program: it computes, and reports what the
// sandbox lets it see of the network.
const checkProgram = `
import socket
result = {"sum": INPUT["n"] + 2, "interfaces": [n for _, n in socket.if_nameindex()]}
`

// userNSHint adds a likely cause to a sandbox that would not start.
func userNSHint(err error) string {
	s := err.Error()
	if strings.Contains(s, "namespace") || strings.Contains(s, "uid map") || strings.Contains(s, "Operation not permitted") {
		return " (user namespaces may be disabled: see sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone, or AppArmor's kernel.apparmor_restrict_unprivileged_userns)"
	}
	return ""
}
