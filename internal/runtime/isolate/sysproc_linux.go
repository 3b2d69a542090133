package isolate

import "syscall"

// sysProcAttr makes a child die with the process that started it, and
// keeps it out of the terminal's process group (a Ctrl-C stops the worker,
// which then ends its children).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
