package isolate

import (
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
