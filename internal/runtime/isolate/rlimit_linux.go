package isolate

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// limitAddressSpace sets the process's RLIMIT_AS to its address space now
// plus room bytes, below the hard limit. It is the backstop of the heap
// check: an allocation the check has not seen yet fails, and the Go runtime
// ends the process. Errors leave the limit as it was.
func limitAddressSpace(room int64) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return
	}
	pages, err := strconv.ParseUint(fields[0], 10, 64)
	if err != nil {
		return
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &lim); err != nil {
		return
	}
	lim.Cur = min(pages*uint64(os.Getpagesize())+uint64(room), lim.Max)
	_ = syscall.Setrlimit(syscall.RLIMIT_AS, &lim)
}
