package agent

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// The exec agent's report.
//
// A worker that asks for a report (Job.Report) learns how the job ended
// from the attach stream itself, without waiting for the engine to
// notice the container's exit and without reading /output through the
// engine's archive call, which are most of a short job's time. The agent
// starts the job as its child, waits for it, and then writes
//
//   - on its standard output: ReportMarker, the secret, "\n" — the end of
//     the job's standard output;
//   - on its standard error: the same line, a Report as one line of JSON,
//     and Report.TarBytes bytes of a tar archive of /output, whose names
//     begin with "output/" (the directory itself first), as the engine's
//     archive of the directory would have them.
//
// Each stream is ordered, and the two are not ordered between them:
// the worker takes the report once it has seen both lines. The job never
// sees the secret (it comes on the agent's standard input, and the
// job's is /dev/null; the agent is not dumpable, so a process of the same
// user cannot read its memory or open its descriptors; the job writes to
// pipes of its own; and the agent is the container's init, so no process
// of the job's user holds the container's streams), so it cannot forge a
// report. Where the agent dies anyway there is no report and the worker
// learns the end from the engine, as without one.
const ReportMarker = "\x00zerverless-exec-report-"

// OutputDir is where the job's /output is mounted.
const OutputDir = "/output"

// Report is how the job ended.
type Report struct {
	// Exit is the job's exit status; a job killed by a signal has
	// 128+Signal, as the engine reports it.
	Exit   int `json:"exit"`
	Signal int `json:"signal,omitempty"`
	// Output says whether the archive of /output follows ("inline") or
	// the worker must read it itself ("engine": larger than
	// Job.InlineOutput, or a file could not be read).
	Output   string `json:"output"`
	TarBytes int    `json:"tar_bytes"`
}

// supervise runs prog as the job's process, a child whose standard
// output and error are pipes copied to this process's (relayJob), and
// /dev/null as its input; once it exits and the pipes are drained,
// it writes the report of the job (see above) and returns its status.
func supervise(j Job, prog string, env []string, stdout, stderr io.Writer, outputDir string) int {
	// Not dumpable: a job of the same user cannot attach to the agent or
	// read its memory, and so never learns the report's secret.
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0)
	null, err := os.Open(os.DevNull)
	if err != nil {
		fmt.Fprintf(stderr, "exec: %v\n", err)
		return 127
	}
	// The job writes to pipes of its own, which the agent copies to the
	// container's streams: a process of the job that reopens its
	// standard output or error for reading (/proc/self/fd/1 of a pipe
	// opens its read end) reads only the job's own bytes, never the
	// agent's report, and cannot interleave its writes with it.
	outR, outW, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "exec: %v\n", err)
		return 127
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "exec: %v\n", err)
		return 127
	}
	pid, err := syscall.ForkExec(prog, j.Argv, &syscall.ProcAttr{Env: env, Files: []uintptr{null.Fd(), outW.Fd(), errW.Fd()}})
	null.Close()
	outW.Close()
	errW.Close()
	ended := make(chan struct{})
	copied := make(chan struct{}, 2)
	go relayJob(stdout, outR, ended, copied)
	go relayJob(stderr, errR, ended, copied)
	r := Report{}
	if err != nil {
		fmt.Fprintf(stderr, "exec: %q: %v\n", j.Argv[0], err)
		r.Exit = 127
		close(ended)
		<-copied
		<-copied
	} else {
		stopForward := forwardSignals(pid)
		// As the container's init the agent also reaps the processes the
		// job leaves behind.
		var ws syscall.WaitStatus
		for {
			got, err := syscall.Wait4(-1, &ws, 0, nil)
			if got == pid || (err != nil && !errors.Is(err, syscall.EINTR)) {
				break
			}
		}
		stopForward()
		close(ended)
		<-copied
		<-copied
		switch {
		case ws.Exited():
			r.Exit = ws.ExitStatus()
		case ws.Signaled():
			r.Signal = int(ws.Signal())
			r.Exit = 128 + r.Signal
		default:
			r.Exit = 255
		}
	}
	var archive []byte
	r.Output = "engine"
	if a, ok := outputArchive(outputDir, j.InlineOutput); ok {
		archive, r.Output, r.TarBytes = a, "inline", len(a)
	}
	line := ReportMarker + j.Report + "\n"
	_, _ = io.WriteString(stdout, line)
	head, _ := json.Marshal(r)
	msg := append([]byte(line), head...)
	msg = append(msg, '\n')
	_, _ = stderr.Write(append(msg, archive...))
	return r.Exit
}

// outputArchive is a tar archive of dir as the engine would make it
// (names under "output/", hard links as links, no file followed), or
// false when it would be larger than limit bytes or dir cannot be read
// whole.
func outputArchive(dir string, limit int64) ([]byte, bool) {
	if limit <= 0 {
		return nil, false
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		// Entries without data still take room: past the limit there is
		// no archive.
		if int64(b.Len())+2*tarBlock > limit {
			return errTooLarge
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(filepath.Join("output", rel))
		h := &tar.Header{Name: name, Mode: int64(info.Mode().Perm()), ModTime: info.ModTime(), Format: tar.FormatPAX}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			h.Uid, h.Gid = int(st.Uid), int(st.Gid)
			if info.Mode().IsRegular() && st.Nlink > 1 {
				k := inode{uint64(st.Dev), st.Ino}
				if first, ok := seen[k]; ok {
					h.Typeflag, h.Linkname = tar.TypeLink, first
					return tw.WriteHeader(h)
				}
				seen[k] = name
			}
		}
		switch m := info.Mode(); {
		case m.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
			return tw.WriteHeader(h)
		case m.IsRegular():
			if int64(b.Len())+info.Size()+2*tarBlock > limit {
				return errTooLarge
			}
			f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			h.Typeflag, h.Size = tar.TypeReg, info.Size()
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			// A file that changes meanwhile fails the archive.
			_, err = io.CopyN(tw, f, h.Size)
			return err
		case m&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			h.Typeflag, h.Linkname = tar.TypeSymlink, target
			return tw.WriteHeader(h)
		case m&fs.ModeNamedPipe != 0:
			h.Typeflag = tar.TypeFifo
			return tw.WriteHeader(h)
		default:
			// Sockets and devices: the engine's archive leaves sockets
			// out, and a job cannot make devices.
			return nil
		}
	})
	if err != nil || tw.Close() != nil || int64(b.Len()) > limit {
		return nil, false
	}
	return b.Bytes(), true
}

var errTooLarge = errors.New("larger than the inline limit")

const tarBlock = 512

// relayDrainBytes bounds what relayJob passes on after the job's process
// exited: what its pipe held then, not the writes of processes it left
// behind (which a container of its own would not have outlived).
const relayDrainBytes = 1 << 20

// relayJob copies the job's pipe r to w until the pipe's end or, once ended
// is closed, until it holds nothing more (at most relayDrainBytes), then
// says so on done. Nothing is written to w after that.
func relayJob(w io.Writer, r *os.File, ended <-chan struct{}, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	defer r.Close()
	buf := make([]byte, 64<<10)
	go func() {
		<-ended
		_ = r.SetReadDeadline(time.Now())
	}()
	for {
		n, err := r.Read(buf)
		if n > 0 {
			_, _ = w.Write(buf[:n])
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		break
	}
	// The job's process exited: pass on what its pipe still holds.
	rc, err := r.SyscallConn()
	if err != nil {
		return
	}
	for left := relayDrainBytes; left > 0; {
		var n int
		var rerr error
		if err := rc.Control(func(fd uintptr) { n, rerr = syscall.Read(int(fd), buf[:min(len(buf), left)]) }); err != nil || rerr != nil || n <= 0 {
			return
		}
		_, _ = w.Write(buf[:n])
		left -= n
	}
}

// forwardSignals passes the signals an init passes on (those of the
// engine's stop, and any a process sends the container's init) to the
// job's process, until the returned func is called.
func forwardSignals(pid int) func() {
	c := make(chan os.Signal, 8)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-c:
				_ = syscall.Kill(pid, s.(syscall.Signal))
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(c)
		close(done)
	}
}
