package isolate

import (
	"io"
	"os"
	"syscall"
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

// pollable returns a reader of f's pipe that waits in the Go runtime's
// poller: a duplicate of its descriptor in non-blocking mode (the mode is
// the pipe's, shared with f, which is not read after). A goroutine that
// waits for its next frame then leaves its thread and processor free, and
// an idle child sleeps in one epoll_wait rather than in a read(2) that the
// runtime's monitor keeps handing the processor away from. It returns f
// when the descriptor cannot be duplicated.
func pollable(f *os.File) io.Reader {
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
	return os.NewFile(uintptr(nfd), f.Name())
}
