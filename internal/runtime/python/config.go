package python

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Config is how the Python runtime runs its sandbox. DefaultConfig gives
// the documented defaults; a zero field in a Config passed to New takes the
// default too.
type Config struct {
	// Python is the interpreter run inside the sandbox. It must lie, after
	// symlinks are resolved, under one of SystemDirs, because nothing else
	// of the host is visible there. Empty means discover it with
	// FindPython: /usr/bin/python3, then /usr/local/bin/python3, then
	// python3 on PATH if it lies under SystemDirs (so a pyenv shim under
	// /root is skipped).
	Python string
	// Bwrap is the bubblewrap binary. Empty means /usr/bin/bwrap, else
	// bwrap on PATH.
	Bwrap string
	// SystemDirs are the host directories bound read-only into the
	// sandbox, each at the same path, where they exist. A directory that
	// is a symlink on the host (/lib -> usr/lib on a merged-/usr system)
	// becomes the same symlink. Default: /usr /bin /sbin /lib /lib32
	// /lib64 /libx32. Nothing else of the host is visible: no /etc, /home,
	// /root, /var or working directory.
	SystemDirs []string

	// MemoryBytes is the address-space limit (RLIMIT_AS) of every process
	// in the sandbox, used when the task states none. Default 256 MiB.
	MemoryBytes int64
	// TmpBytes is the size of the private tmpfs at /tmp, the only
	// writable directory besides /dev/shm. Default 64 MiB.
	TmpBytes int64
	// ShmBytes is the size of the private tmpfs at /dev/shm, which
	// multiprocessing needs for its locks. Default 16 MiB.
	ShmBytes int64
	// FileBytes is the largest file a process may write (RLIMIT_FSIZE).
	// Default 64 MiB.
	FileBytes int64
	// Procs caps processes and threads in one sandbox (RLIMIT_NPROC,
	// counted per user namespace, so per job). Default 64.
	Procs int
	// CPUSeconds caps each process's CPU time (RLIMIT_CPU): SIGXCPU at the
	// limit, SIGKILL a second later. A task with a longer time left to its
	// deadline gets that time plus one second instead, so the limit never
	// cuts a single-threaded job short of its timeout. Default 60.
	CPUSeconds int
	// OpenFiles caps open file descriptors per process (RLIMIT_NOFILE).
	// Default 256.
	OpenFiles int
	// OutputBytes caps stdout, stderr and the JSON result, each, when the
	// task states no output limit. Default 1 MiB.
	OutputBytes int

	// UID and GID are the host user and group the sandbox runs as; -1
	// keeps the worker's own. The default is 65534 (nobody) when the worker
	// runs as root, else -1. Root itself (0) is not offered: the kernel
	// never applies RLIMIT_NPROC to a process whose real user is root, so a
	// fork bomb would go unchecked.
	UID, GID int
}

// Documented defaults.
const (
	DefaultMemoryBytes = 256 << 20
	DefaultTmpBytes    = 64 << 20
	DefaultShmBytes    = 16 << 20
	DefaultFileBytes   = 64 << 20
	DefaultProcs       = 64
	DefaultCPUSeconds  = 60
	DefaultOpenFiles   = 256
	DefaultOutputBytes = 1 << 20
	// NobodyID is the user and group a root worker runs sandboxes as.
	NobodyID = 65534
)

// defaultSystemDirs are bound read-only into the sandbox by default.
var defaultSystemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// DefaultConfig returns the documented defaults. It does not look for
// python3 or bwrap; New and Check do.
func DefaultConfig() Config {
	c := Config{
		SystemDirs:  append([]string(nil), defaultSystemDirs...),
		MemoryBytes: DefaultMemoryBytes,
		TmpBytes:    DefaultTmpBytes,
		ShmBytes:    DefaultShmBytes,
		FileBytes:   DefaultFileBytes,
		Procs:       DefaultProcs,
		CPUSeconds:  DefaultCPUSeconds,
		OpenFiles:   DefaultOpenFiles,
		OutputBytes: DefaultOutputBytes,
		UID:         -1,
		GID:         -1,
	}
	if os.Geteuid() == 0 {
		c.UID, c.GID = NobodyID, NobodyID
	}
	return c
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if len(c.SystemDirs) == 0 {
		c.SystemDirs = d.SystemDirs
	}
	setDefault(&c.MemoryBytes, d.MemoryBytes)
	setDefault(&c.TmpBytes, d.TmpBytes)
	setDefault(&c.ShmBytes, d.ShmBytes)
	setDefault(&c.FileBytes, d.FileBytes)
	setDefault(&c.Procs, d.Procs)
	setDefault(&c.CPUSeconds, d.CPUSeconds)
	setDefault(&c.OpenFiles, d.OpenFiles)
	setDefault(&c.OutputBytes, d.OutputBytes)
	if c.UID == 0 {
		c.UID = d.UID
	}
	if c.GID == 0 {
		c.GID = d.GID
	}
	return c
}

func setDefault[T int | int64](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// FindPython returns the first python3 that exists under dirs, trying
// /usr/bin/python3, /usr/local/bin/python3, then python3 on PATH.
func FindPython(dirs []string) (string, error) {
	candidates := []string{"/usr/bin/python3", "/usr/local/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		if err := checkUnder(c, dirs); err == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("no python3 found under %s (install Debian package python3)", strings.Join(dirs, " "))
}

// findBwrap returns /usr/bin/bwrap, else bwrap on PATH.
func findBwrap() (string, error) {
	if fi, err := os.Stat("/usr/bin/bwrap"); err == nil && !fi.IsDir() {
		return "/usr/bin/bwrap", nil
	}
	p, err := exec.LookPath("bwrap")
	if err != nil {
		return "", errors.New("bwrap not found (install Debian package bubblewrap)")
	}
	return p, nil
}

// checkUnder reports whether path is an executable file that, with
// symlinks resolved, lies under one of dirs (also resolved), so that the
// sandbox sees it.
func checkUnder(path string, dirs []string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	for _, d := range dirs {
		rd, err := filepath.EvalSymlinks(d)
		if err != nil {
			continue
		}
		if real == rd || strings.HasPrefix(real, strings.TrimSuffix(rd, "/")+"/") {
			return nil
		}
	}
	return fmt.Errorf("%s (%s) is outside the directories the sandbox sees (%s)", path, real, strings.Join(dirs, " "))
}
