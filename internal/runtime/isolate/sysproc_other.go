//go:build !linux

package isolate

import (
	"os"
	"syscall"
)

// sysProcAttr is the default elsewhere: a child ends when its stdin does.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// blockingPipe is os.Pipe elsewhere.
func blockingPipe() (r, w *os.File, err error) { return os.Pipe() }
