package testutil

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// TreeCPU is the CPU time (user and system) used so far by this process
// and by its living child processes (the runtime processes of embedded
// workers and pools), as /proc counts it (children to the clock tick).
// Benchmarks report it per operation: steadier than wall time on a shared
// machine.
func TreeCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	total := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command's closing parenthesis: state (3),
		// ppid (4) … utime (14), stime (15).
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid != self {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * (time.Second / 100) // USER_HZ
	}
	return total
}
