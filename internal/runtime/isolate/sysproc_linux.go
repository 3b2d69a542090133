package isolate

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// sysProcAttr makes a child die with the process that started it, and
// keeps it out of the terminal's process group (a Ctrl-C stops the worker,
// which then ends its children).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// blockingPipe is os.Pipe with a read end in blocking mode.
func blockingPipe() (r, w *os.File, err error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	return os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1"), nil
}

// pollable returns a reader and writer of f's pipe that waits in the Go
// runtime's poller: a duplicate of its descriptor in non-blocking mode
// (the mode is the pipe's, shared with f, which is not used after). A
// goroutine that waits for its next frame then leaves its thread and
// processor free, and an idle child sleeps in one epoll_wait rather than in
// a read(2) that the runtime's monitor keeps handing the processor away
// from. It reads and writes with raw system calls (see rawPipe). It
// returns f when the descriptor cannot be duplicated.
func pollable(f *os.File) io.ReadWriter {
	sc, err := f.SyscallConn()
	if err != nil {
		return f
	}
	nfd := -1
	if err := sc.Control(func(fd uintptr) {
		if d, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0); errno == 0 {
			nfd = int(d)
		}
	}); err != nil || nfd < 0 {
		return f
	}
	if err := syscall.SetNonblock(nfd, true); err != nil {
		syscall.Close(nfd)
		return f
	}
	nf := os.NewFile(uintptr(nfd), f.Name())
	rc, err := nf.SyscallConn()
	if err != nil {
		return nf
	}
	return &rawPipe{f: nf, rc: rc}
}

// rawPipe reads and writes a non-blocking pipe with raw system calls,
// waiting in the poller when the pipe is empty (or full). A system call
// made the ordinary way tells the Go runtime that the thread may block,
// and wakes the runtime's monitor thread (sysmon) from its sleep when the
// process was idle: a futex wake-up and a few rounds of the monitor for
// every task. A raw call on a descriptor that never blocks needs neither.
// The monitor is still woken for each task that may need it (see
// monitorAlarm).
type rawPipe struct {
	f  *os.File // keeps the descriptor open
	rc syscall.RawConn
}

func (p *rawPipe) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := p.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			case 0:
				n = int(r)
			default:
				errno = e
			}
			return true
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, os.NewSyscallError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (p *rawPipe) Write(b []byte) (int, error) {
	var n int
	var errno syscall.Errno
	err := p.rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[n])), uintptr(len(b)-n))
			switch e {
			case 0:
				n += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				// The pipe is full: the child may idle while it
				// waits, with no alarm due (see monitorAlarm).
				writeWaited.Store(true)
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, os.NewSyscallError("write", errno)
	}
	return n, nil
}

// wakeMonitor makes a system call the ordinary way, which wakes the Go
// runtime's monitor thread when it sleeps (see monitorAlarm).
func wakeMonitor() { _, _, _ = syscall.Syscall(syscall.SYS_GETPID, 0, 0, 0) }
