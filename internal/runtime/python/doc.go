// Package python runs job_type "python": the host's CPython 3 inside a
// bubblewrap (bwrap) sandbox, one fresh sandbox per task.
//
// # The script's contract
//
// The job's code runs as the module __main__ (file name main.py in
// tracebacks), with the whole standard library available.
//
//   - INPUT holds input_data decoded from JSON (None when absent).
//   - stdout and stderr are captured, each up to the output limit; beyond it
//     output is dropped and Result.Truncated is set. stdout is line
//     buffered, so what was printed before a timeout is kept. Writing to
//     stderr alone does not fail a job.
//   - The returned value is the top-level variable result: if the script
//     ends with a global named result, its value comes back as JSON in
//     Result.Result (no global named result: no Result.Result). A value that
//     json.dumps cannot encode (a set, NaN, an object) fails the job, and so
//     does a result over the output limit.
//   - An uncaught exception fails the job: Result.Error holds the traceback
//     (which is also printed to stderr), and ExitCode is 1. A MemoryError
//     also sets Result.OOMKilled. sys.exit(0) or sys.exit() ends the job
//     successfully; sys.exit(n) with n != 0, or sys.exit("message"), fails
//     it with that exit code. A process killed by a signal (the CPU limit,
//     a crash) fails with ExitCode 128+signal.
//
// The bootstrap (bootstrap.py, run with python3 -I -c) reads the code and
// input from fd 3 and reports on fd 4, a pipe the runtime reads, so the
// result is never mixed into stdout. It closes fd 3 and marks fd 4
// close-on-exec before the script runs; a script that writes to fd 4
// only spoils its own result.
//
// # The sandbox
//
// bwrap runs with:
//
//   - --unshare-user, --unshare-pid, --unshare-net, --unshare-ipc,
//     --unshare-uts, --unshare-cgroup-try, --disable-userns and
//     --cap-drop ALL: no capabilities, no view of host processes, no
//     network (the new network namespace has only its own loopback, so
//     127.0.0.1 reaches nothing of the worker, and abstract Unix sockets
//     are the namespace's own too), no nested namespaces.
//   - Read-only binds of the system directories only (Config.SystemDirs:
//     /usr, /bin, /lib, /lib64, ... ; a merged-/usr symlink stays a
//     symlink). No /etc (so no /etc/shadow or /etc/passwd), no /home,
//     /root, /var (no Docker socket), no worker files or working directory.
//   - --proc /proc (the sandbox's own pid namespace), --dev /dev (null,
//     zero, random, urandom, tty, pts), then --remount-ro /dev and
//     --remount-ro / so nothing is writable but two private tmpfs: /tmp
//     (Config.TmpBytes, default 64 MiB; the working directory) and
//     /dev/shm (Config.ShmBytes, default 16 MiB, which multiprocessing
//     needs for its locks).
//   - --clearenv with PATH, HOME=/tmp, TMPDIR=/tmp, LANG=C.UTF-8, USER;
//     --hostname zerverless; --new-session (no controlling terminal);
//     --die-with-parent.
//
// # Limits
//
// The bootstrap sets rlimits with Python's resource module, soft and hard,
// before it reads the user's code, so they bind the script and every
// process it starts: RLIMIT_AS (memory, Config.MemoryBytes or the task's
// limit, default 256 MiB), RLIMIT_CPU (Config.CPUSeconds, default 60, or
// the time left to the deadline plus a second if longer), RLIMIT_NPROC (Config.Procs, default
// 64), RLIMIT_FSIZE (Config.FileBytes, default 64 MiB), RLIMIT_NOFILE
// (Config.OpenFiles, default 256) and RLIMIT_CORE 0. Setting them there
// needs no helper binary (prlimit, a re-exec of the worker) and nothing of
// the worker inside the sandbox; a hard limit, once lowered, cannot be
// raised by the script.
//
// RLIMIT_NPROC counts the processes of a real user id, and the kernel
// never enforces it for real root. Since Linux 5.14 the count is kept per
// user namespace, so inside the sandbox it counts only the job's own
// processes. A root worker therefore starts bwrap as 65534 (nobody;
// Config.UID and GID), which needs unprivileged user namespaces; a worker
// that is not root keeps its own user.
//
// # Timeout and cancel
//
// bwrap is the leader of its own process group. When the context is done,
// Run kills that group; the sandbox's pid 1 has bwrap's --die-with-parent
// death signal, and when it dies the kernel kills every process of the pid
// namespace, so no child or grandchild outlives the job, even one that
// left the session with setsid. Run also applies Task.Timeout as a
// deadline when it is set. bwrap has Pdeathsig SIGKILL, so a sandbox dies
// with the worker; Go ties that signal to the OS thread that started
// bwrap, so code in the worker that locks a thread and lets it exit would
// kill the sandboxes that thread started.
//
// # Self-test
//
// Check runs a tiny program in the sandbox and verifies its result and
// that only the loopback interface is visible. The worker offers python only
// when Check returns nil, and shows Check's error otherwise.
package python
