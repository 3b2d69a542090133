package main

import (
	"fmt"
	"syscall"
)

// raiseOpenFiles raises the process's soft open-file limit to its hard
// limit and returns the limit in force, which bounds the connections serve
// takes (netlimit.Config.Descriptors).
func raiseOpenFiles() (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open-file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			lim = want
		}
	}
	// An unlimited hard limit still has the kernel's own (fs.nr_open).
	return int(min(lim.Cur, 1<<24)), nil
}
