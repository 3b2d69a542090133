package python

import (
	"encoding/json"
	"os"
	"strconv"
)

// limits are what one run is allowed, resolved from the task and Config.
type limits struct {
	memoryBytes int64
	outputBytes int
	cpuSeconds  int
}

// sandboxEnv is the whole environment of the sandboxed process.
var sandboxEnv = [][2]string{
	{"PATH", "/usr/local/bin:/usr/bin:/bin"},
	{"HOME", "/tmp"},
	{"TMPDIR", "/tmp"},
	{"LANG", "C.UTF-8"},
	{"USER", "nobody"},
}

// bwrapArgs returns the arguments of bwrap that run python with the
// bootstrap inside the sandbox. See docs in doc.go for why each flag.
func (p *Python) bwrapArgs(python string, lim limits) []string {
	a := []string{
		// Namespaces: a new user namespace (no capabilities on the host),
		// pid (sees only its own processes; killing pid 1 kills all),
		// net (only a loopback that is down: no network at all), ipc,
		// uts, and cgroup where the kernel allows it.
		"--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
		"--unshare-uts", "--unshare-cgroup-try",
		// No nested user namespaces: nothing inside can regain
		// capabilities to mount or unshare further.
		"--disable-userns",
		"--cap-drop", "ALL",
		// The sandbox dies with the worker, and runs in its own session
		// (no terminal to push input into).
		"--die-with-parent", "--new-session",
		"--hostname", "zerverless",
		"--clearenv",
	}
	for _, kv := range sandboxEnv {
		a = append(a, "--setenv", kv[0], kv[1])
	}
	for _, d := range p.cfg.SystemDirs {
		fi, err := os.Lstat(d)
		switch {
		case err != nil:
			continue
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(d)
			if err != nil {
				continue
			}
			a = append(a, "--symlink", target, d)
		case fi.IsDir():
			a = append(a, "--ro-bind", d, d)
		}
	}
	a = append(a,
		"--proc", "/proc",
		"--dev", "/dev",
		"--size", strconv.FormatInt(p.cfg.TmpBytes, 10), "--tmpfs", "/tmp",
		"--size", strconv.FormatInt(p.cfg.ShmBytes, 10), "--tmpfs", "/dev/shm",
		// Everything but /tmp and /dev/shm is read-only, including the
		// sandbox's own root and /dev.
		"--remount-ro", "/dev",
		"--remount-ro", "/",
		"--chdir", "/tmp",
		"--",
		python, "-I", "-c", bootstrapSource, p.rlimitsJSON(lim),
	)
	return a
}

// rlimitsJSON is the bootstrap's first argument: the rlimits it sets
// before it reads the user's code.
func (p *Python) rlimitsJSON(lim limits) string {
	pair := func(v int64) [2]int64 { return [2]int64{v, v} }
	m := map[string][2]int64{
		"RLIMIT_AS":     pair(lim.memoryBytes),
		"RLIMIT_CPU":    {int64(lim.cpuSeconds), int64(lim.cpuSeconds) + 1},
		"RLIMIT_NPROC":  pair(int64(p.cfg.Procs)),
		"RLIMIT_FSIZE":  pair(p.cfg.FileBytes),
		"RLIMIT_NOFILE": pair(int64(p.cfg.OpenFiles)),
		"RLIMIT_CORE":   pair(0),
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // a map of int pairs always encodes
	}
	return string(b)
}
