//go:build !linux

package isolate

import (
	"io"
	"os"
	"syscall"
)

// sysProcAttr is the default elsewhere: a child ends when its stdin does.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// blockingPipe is os.Pipe elsewhere.
func blockingPipe() (r, w *os.File, err error) { return os.Pipe() }

// pollable returns f elsewhere.
func pollable(f *os.File) io.ReadWriter { return f }

// wakeMonitor does nothing elsewhere: reads and writes are ordinary
// system calls.
func wakeMonitor() {}
