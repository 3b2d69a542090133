//go:build !linux

package isolate

import "syscall"

// sysProcAttr is the default elsewhere: a child ends when its stdin does.
func sysProcAttr() *syscall.SysProcAttr { return nil }
