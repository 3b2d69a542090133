package python_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime/python"
)

// probe runs code, which must set result to a dict of probe name to
// outcome, and returns that dict.
func probe(t *testing.T, rt *python.Python, code, input string) map[string]string {
	t.Helper()
	res := run(t, rt, code, input, 20*time.Second)
	if res.Status != job.StatusCompleted {
		t.Fatalf("Status = %s (error %q, stderr %q), want completed", res.Status, res.Error, res.Stderr)
	}
	var out map[string]string
	if err := json.Unmarshal(res.Result, &out); err != nil {
		t.Fatalf("Result %q: %v", res.Result, err)
	}
	return out
}

// attempt is Python that defines try_(name, fn): it records "ok: <value>"
// when fn returns and "denied: <exception>" when it raises.
const attempt = `
result = {}
def try_(name, fn):
    try:
        result[name] = "ok: %r" % (fn(),)
    except BaseException as e:
        result[name] = "denied: %s: %s" % (type(e).__name__, e)
`

// wantDenied fails the test for every probe that was not denied.
func wantDenied(t *testing.T, out map[string]string, names ...string) {
	t.Helper()
	for _, n := range names {
		got, ok := out[n]
		if !ok {
			t.Errorf("%s: no outcome", n)
			continue
		}
		if !strings.HasPrefix(got, "denied: ") {
			t.Errorf("%s: %s, want it denied", n, got)
		} else {
			t.Logf("%s: %s", n, got)
		}
	}
}

func TestNoNetwork(t *testing.T) {
	rt := newRuntime(t)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	sockDir := t.TempDir()
	unixPath := filepath.Join(sockDir, "worker.sock")
	unix, err := net.Listen("unix", unixPath)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close()
	abstract := fmt.Sprintf("@zerverless-test-%d", rand.Uint64())
	abs, err := net.Listen("unix", abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer abs.Close()

	input, _ := json.Marshal(map[string]any{
		"port": tcp.Addr().(*net.TCPAddr).Port, "unix": unixPath, "abstract": "\x00" + abstract[1:],
	})
	out := probe(t, rt, attempt+`
import socket
def connect(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(addr)
    return "connected"
try_("tcp 127.0.0.1 worker port", lambda: connect(socket.AF_INET, ("127.0.0.1", INPUT["port"])))
try_("tcp 1.1.1.1:53", lambda: connect(socket.AF_INET, ("1.1.1.1", 53)))
try_("tcp6 ::1", lambda: connect(socket.AF_INET6, ("::1", INPUT["port"])))
try_("dns", lambda: socket.getaddrinfo("example.com", 80))
try_("udp 8.8.8.8", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53)))
try_("unix socket of the worker", lambda: connect(socket.AF_UNIX, INPUT["unix"]))
try_("abstract unix socket of the worker", lambda: connect(socket.AF_UNIX, INPUT["abstract"]))
try_("docker socket", lambda: connect(socket.AF_UNIX, "/var/run/docker.sock"))
try_("docker socket /run", lambda: connect(socket.AF_UNIX, "/run/docker.sock"))
try_("raw socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
try_("netlink route", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).bind((0, 0)) or [n for _, n in socket.if_nameindex() if n != "lo"][0])
`, string(input))
	wantDenied(t, out,
		"tcp 127.0.0.1 worker port", "tcp 1.1.1.1:53", "tcp6 ::1", "dns", "udp 8.8.8.8",
		"unix socket of the worker", "abstract unix socket of the worker",
		"docker socket", "docker socket /run", "raw socket", "netlink route")
}

func TestNoHostFiles(t *testing.T) {
	rt := newRuntime(t)
	secret := fmt.Sprintf("zerverless-secret-%d", rand.Uint64())
	tmpSecret := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(tmpSecret, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	paths := []string{tmpSecret}
	if home, err := os.UserHomeDir(); err == nil {
		f, err := os.CreateTemp(home, "zerverless-secret-*")
		if err == nil {
			f.WriteString(secret)
			f.Chmod(0o644)
			f.Close()
			t.Cleanup(func() { os.Remove(f.Name()) })
			paths = append(paths, f.Name())
		}
	}
	wd, _ := os.Getwd()
	paths = append(paths, filepath.Join(wd, "python_test.go"))
	input, _ := json.Marshal(map[string]any{"paths": paths, "secret": secret})

	out := probe(t, rt, attempt+`
import os
def read(p):
    with open(p, "rb") as f:
        return len(f.read())
try_("/etc/shadow", lambda: read("/etc/shadow"))
try_("/etc/passwd", lambda: read("/etc/passwd"))
try_("/root", lambda: os.listdir("/root"))
try_("/home", lambda: os.listdir("/home"))
try_("/var", lambda: os.listdir("/var"))
try_("/sys", lambda: os.listdir("/sys"))
for i, p in enumerate(INPUT["paths"]):
    try_("secret %d %s" % (i, p), lambda p=p: read(p))
    try_("dir of secret %d" % i, lambda p=p: os.listdir(os.path.dirname(p)))

# Nothing anywhere in the sandbox holds the secret.
found = []
for top in ("/tmp", "/"):
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/dev", "/usr")]
        for f in files:
            try:
                with open(os.path.join(root, f), "rb") as fh:
                    if INPUT["secret"].encode() in fh.read():
                        found.append(os.path.join(root, f))
            except OSError:
                pass
try_("secret anywhere", lambda: found[0])
result["root entries"] = "ok: " + " ".join(sorted(os.listdir("/")))
result["cwd"] = "ok: %s %r" % (os.getcwd(), os.listdir("."))
result["pids"] = "ok: %r" % sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
result["caps"] = "ok: " + [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1]
`, string(input))
	names := []string{"/etc/shadow", "/etc/passwd", "/root", "/home", "/var", "/sys", "secret anywhere"}
	for i, p := range paths {
		names = append(names, fmt.Sprintf("secret %d %s", i, p), fmt.Sprintf("dir of secret %d", i))
	}
	wantDenied(t, out, names...)
	for _, e := range strings.Fields(strings.TrimPrefix(out["root entries"], "ok: ")) {
		switch e {
		case "bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "proc", "dev", "tmp":
		default:
			t.Errorf("/ holds %q; want only system dirs, /proc, /dev and /tmp", e)
		}
	}
	if out["cwd"] != "ok: /tmp []" {
		t.Errorf("cwd = %s, want an empty /tmp", out["cwd"])
	}
	if out["caps"] != "ok: 0000000000000000" {
		t.Errorf("effective capabilities = %s, want none", out["caps"])
	}
	// The sandbox sees its own pid namespace: bwrap's init, python.
	if out["pids"] != "ok: [1, 2]" {
		t.Errorf("pids visible = %s, want [1, 2]", out["pids"])
	}
}

func TestWritesOnlyToTmp(t *testing.T) {
	rt := newRuntime(t)
	wd, _ := os.Getwd()
	input, _ := json.Marshal(map[string]any{"wd": wd})
	out := probe(t, rt, attempt+`
import os
def write(p):
    with open(p, "wb") as f:
        f.write(b"x")
    return p
for p in ["/x", "/usr/x", "/usr/lib/x", "/bin/x", "/dev/x", "/proc/x", "/etc/x", "/root/x", "/home/x", INPUT["wd"] + "/x"]:
    try_("write " + p, lambda p=p: write(p))
try_("mkdir /newdir", lambda: os.mkdir("/newdir"))
try_("chmod /usr/bin/python3", lambda: os.chmod("/usr/bin/python3", 0o777))
def mount():
    if os.system("mount -t tmpfs none /tmp 2>/dev/null") != 0:
        raise OSError("mount failed")
try_("mount", mount)
def write_big(p, n):
    with open(p, "wb") as f:
        for _ in range(n >> 20):
            f.write(b"x" * (1 << 20))
    return n
try_("fill /tmp past its size", lambda: write_big("/tmp/big", 80 << 20))
result["size of /tmp/big"] = "ok: %d MiB" % (os.path.getsize("/tmp/big") >> 20)
os.remove("/tmp/big")
result["write /tmp"] = "ok: " + write("/tmp/ok")
result["write /dev/shm"] = "ok: " + write("/dev/shm/ok")
`, string(input))
	wantDenied(t, out, "write /x", "write /usr/x", "write /usr/lib/x", "write /bin/x", "write /dev/x",
		"write /proc/x", "write /etc/x", "write /root/x", "write /home/x", "write "+wd+"/x",
		"mkdir /newdir", "chmod /usr/bin/python3", "mount", "fill /tmp past its size")
	t.Logf("size of /tmp/big: %s", out["size of /tmp/big"])
	if out["write /tmp"] != "ok: /tmp/ok" || out["write /dev/shm"] != "ok: /dev/shm/ok" {
		t.Errorf("writes to /tmp and /dev/shm: %s, %s; want both to work", out["write /tmp"], out["write /dev/shm"])
	}
}

// markedRuntime returns a runtime whose sandboxes can be found on the host:
// an unusual open-files limit shows in the bootstrap's command line.
func markedRuntime(t *testing.T) (*python.Python, string) {
	t.Helper()
	newRuntime(t) // skips when the sandbox is unavailable
	cfg := python.DefaultConfig()
	cfg.OpenFiles = 300 + rand.IntN(600)
	return python.New(cfg), fmt.Sprintf(`"RLIMIT_NOFILE":[%d,%d]`, cfg.OpenFiles, cfg.OpenFiles)
}

// sandboxProcs returns the host pids whose command line holds marker.
func sandboxProcs(marker string) []string {
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmd, []byte(marker)) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// eventually polls f until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func noneLeft(t *testing.T, marker string) {
	t.Helper()
	eventually(t, 5*time.Second, func() error {
		if p := sandboxProcs(marker); len(p) > 0 {
			return fmt.Errorf("sandbox processes left behind: %v", p)
		}
		return nil
	})
}

func TestTimeoutKillsProcessTree(t *testing.T) {
	rt, marker := markedRuntime(t)
	const timeout = 1500 * time.Millisecond
	// The sleeping child runs sleep, not python: it is found by its
	// unusual argument.
	sleepArg := fmt.Sprint(100000 + rand.IntN(100000))
	sleepMarker := "sleep\x00" + sleepArg + "\x00"
	seen := make(chan []string, 1)
	time.AfterFunc(timeout*2/3, func() {
		seen <- append(sandboxProcs(marker), sandboxProcs(sleepMarker)...)
	})
	start := time.Now()
	res := run(t, rt, `
import os, subprocess, time
subprocess.Popen(["sleep", INPUT])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            pass
    os._exit(0)
print("started", flush=True)
while True:
    time.sleep(1)
`, `"`+sleepArg+`"`, timeout)
	if el := time.Since(start); el > timeout+time.Second {
		t.Errorf("Run returned after %v, want within %v", el, timeout+time.Second)
	}
	if res.Status != job.StatusTimeout {
		t.Errorf("Status = %s (error %q), want timeout", res.Status, res.Error)
	}
	if res.Output != "started\n" {
		t.Errorf("Output = %q, want what was printed before the timeout", res.Output)
	}
	// bwrap, its init, python, the detached grandchild and sleep.
	if s := <-seen; len(s) < 5 {
		t.Errorf("processes seen during the run: %v, want at least 5", s)
	}
	noneLeft(t, marker)
	noneLeft(t, sleepMarker)
}

func TestCancelKillsProcessTree(t *testing.T) {
	rt, marker := markedRuntime(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	res, err := rt.Run(ctx, job.Task{Spec: job.Spec{Code: `
import subprocess
subprocess.Popen(["sleep", "1000"]).wait()
`}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != job.StatusCanceled {
		t.Errorf("Status = %s, want canceled", res.Status)
	}
	noneLeft(t, marker)
}

func TestForkBombIsStopped(t *testing.T) {
	rt, marker := markedRuntime(t)
	// A naive bomb: every process forks until fork fails, and the error
	// ends it.
	start := time.Now()
	res := run(t, rt, "import os\nwhile True:\n    os.fork()\n", "", 10*time.Second)
	if res.Status != job.StatusFailed || !strings.Contains(res.Error, "BlockingIOError") {
		t.Errorf("naive bomb: Status %s error %q, want failed with BlockingIOError", res.Status, res.Error)
	}
	t.Logf("naive bomb ended in %v", time.Since(start))
	noneLeft(t, marker)

	// A stubborn bomb that ignores fork errors runs into the timeout, and
	// the timeout kills every process.
	start = time.Now()
	res = run(t, rt, "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", "", 2*time.Second)
	if res.Status != job.StatusTimeout {
		t.Errorf("stubborn bomb: Status %s, want timeout", res.Status)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("stubborn bomb: Run returned after %v, want within 3s", el)
	}
	noneLeft(t, marker)
}

// TestProcessLimitIsPerSandbox shows that RLIMIT_NPROC counts each
// sandbox's processes alone: two sandboxes at once can each start nearly
// Procs processes, and neither more.
func TestProcessLimitIsPerSandbox(t *testing.T) {
	rt, marker := markedRuntime(t)
	const code = `
import os, time
pids, err = [], ""
try:
    while True:
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        pids.append(pid)
except OSError as e:
    err = str(e)
time.sleep(0.5)  # hold them while the other sandbox forks
for p in pids:
    os.kill(p, 9)
result = {"forked": len(pids), "error": err}
`
	var wg sync.WaitGroup
	outs := make([]job.Result, 2)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = run(t, rt, code, "", 20*time.Second)
		}()
	}
	wg.Wait()
	for _, res := range outs {
		var got struct {
			Forked int    `json:"forked"`
			Error  string `json:"error"`
		}
		if err := json.Unmarshal(res.Result, &got); err != nil {
			t.Fatalf("Result %q (status %s, error %q): %v", res.Result, res.Status, res.Error, err)
		}
		if got.Forked >= python.DefaultProcs || got.Forked < python.DefaultProcs-8 {
			t.Errorf("forked %d processes, want just under the limit of %d", got.Forked, python.DefaultProcs)
		}
		if !strings.Contains(got.Error, "Resource temporarily unavailable") {
			t.Errorf("fork error %q, want EAGAIN", got.Error)
		}
	}
	noneLeft(t, marker)
}
