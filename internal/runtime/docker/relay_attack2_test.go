package docker

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The relays' socket directory by default lies at a name known in
// advance (zerverless-relays-<worker id>) in the temporary directory,
// which every local user may write to. These are the attacks of another
// user of the volunteer's machine on it.

// attackerUID is a local user that is not the worker's.
const attackerUID = 4242

// stickyBase is a directory like /tmp: world-writable with the sticky bit.
func stickyBase(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these attacks play another local user: run the tests as root")
	}
	// A short path: a unix socket's is at most 107 bytes.
	top, err := os.MkdirTemp("", "za")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	base := filepath.Join(top, "tmp")
	if err := os.Mkdir(base, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	return base
}

// connectAs reports whether user uid can connect to the unix socket at path.
func connectAs(t *testing.T, uid int, path string) error {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", "-c", "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return errors.New(strings.TrimSpace(string(out)))
	}
	return nil
}

// Another local user makes the socket directory first, its own and open
// to all: the relay must get no socket in it (the user would reach every
// instance's ports through it, past the orchestrator, or answer the
// worker's dials itself); the instance still answers, over the attach
// stream. Without a directory made in advance, the socket is the
// worker's alone.
func TestAttack2RelaySocketDirMadeByAnotherUser(t *testing.T) {
	base := stickyBase(t)
	dir := filepath.Join(base, "zerverless-relays-w")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	if err := os.Chown(dir, attackerUID, attackerUID); err != nil {
		t.Fatal(err)
	}
	d := serviceRuntime(t, func(c *Config) { c.RelaySocketDir = dir })
	inst := testInstance(t, nil)
	startInstance(t, d, inst)
	d.services.mu.Lock()
	r := d.services.byID[inst.ID].relay
	d.services.mu.Unlock()
	<-r.dialsSet
	if r.dir != "" {
		if err := connectAs(t, attackerUID, filepath.Join(r.dir, relaySocketName)); err == nil {
			t.Fatalf("another local user connects to the relay's socket in its own directory %s", r.dir)
		}
		t.Fatalf("the relay's socket is in a directory of another user: %s", r.dir)
	}
	if r.dials != r.sess {
		t.Fatal("the dials do not go over the attach stream")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("the worker wrote into another user's directory: %v", ents)
	}
	if resp := get(t, d, inst.ID, "/", nil); resp.StatusCode != 200 {
		t.Fatalf("over the attach stream: %d", resp.StatusCode)
	}

	// Made by the worker itself, the directory keeps the others out.
	own := filepath.Join(base, "zerverless-relays-v")
	d2 := serviceRuntime(t, func(c *Config) { c.RelaySocketDir = own })
	inst2 := testInstance(t, nil)
	startInstance(t, d2, inst2)
	d2.services.mu.Lock()
	r2 := d2.services.byID[inst2.ID].relay
	d2.services.mu.Unlock()
	<-r2.dialsSet
	if r2.dir == "" || r2.dials == r2.sess {
		t.Fatalf("no socket in the worker's own directory %q", r2.dir)
	}
	if err := connectAs(t, attackerUID, filepath.Join(r2.dir, relaySocketName)); err == nil {
		t.Fatal("another local user connects to the relay's socket")
	} else if !strings.Contains(err.Error(), "Permission denied") {
		t.Fatalf("another local user's connection failed for another reason: %v", err)
	}
}

// Another local user puts a symbolic link at the directory's name, to a
// directory of the worker's user (its home, say): the sweep at start must
// remove nothing there, and no relay's directory goes there.
func TestAttack2RelaySocketDirSymlinkSweep(t *testing.T) {
	base := stickyBase(t)
	victim := filepath.Join(t.TempDir(), "home")
	if err := os.MkdirAll(filepath.Join(victim, "work"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"notes.txt", "0123456789abcdef-1"} {
		if err := os.WriteFile(filepath.Join(victim, name), []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(base, "zerverless-relays-w")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, attackerUID, attackerUID); err != nil {
		t.Fatal(err)
	}
	d := newTestRuntime(t, func(c *Config) { c.RelaySocketDir = link })
	_, err := d.Sweep(context.Background())
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Sweep of a linked directory: %v", err)
	}
	dir, err := d.relaySocketDir(relayConfig{socket: true})
	if err != nil || dir != "" {
		t.Errorf("a relay's directory through the link: %q, %v", dir, err)
	}
	ents, _ := os.ReadDir(victim)
	if len(ents) != 3 {
		t.Fatalf("the linked directory after the sweep: %v", ents)
	}
	if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o755 {
		t.Fatalf("the linked directory's mode changed: %v", fi.Mode())
	}
}

// An operator's --docker-relay-sockets may name a directory that holds
// other things: the sweep removes only relays' directories of earlier
// runs (named as the runtime names them), nothing else, and not what a
// link named like one leads to.
func TestAttack2RelaySweepRemovesOnlyRelayDirs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "relays")
	other := t.TempDir()
	for _, p := range []string{dir + "/keep", dir + "/0123456789abcdef-7", other + "/x"} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
	os.WriteFile(filepath.Join(dir, "abcdefabcdefabcd-9"), []byte("a file"), 0o644)
	if err := os.Symlink(other, filepath.Join(dir, "fedcba9876543210-3")); err != nil {
		t.Fatal(err)
	}
	d := newTestRuntime(t, func(c *Config) { c.RelaySocketDir = dir })
	if _, err := d.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"keep", "notes.txt", "abcdefabcdefabcd-9", "fedcba9876543210-3"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s after the sweep: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "0123456789abcdef-7")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an earlier run's relay directory after the sweep: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, "x")); err != nil {
		t.Errorf("what a link leads to, after the sweep: %v", err)
	}

	// Under a directory others may write to, without the sticky bit (they
	// could rename the socket directory away and put theirs), refused.
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	if err := privateDir(filepath.Join(open, "relays"), true); err == nil || !strings.Contains(err.Error(), "other users may write") {
		t.Errorf("under a world-writable directory: %v", err)
	}
}

// From inside an instance (which shares its relay's network namespace,
// not its mounts), the relay's socket is out of reach: not at its path
// in the relay (/run/relay), nor at the worker's, nor under an abstract
// name (abstract sockets belong to the network namespace), nor through
// /proc of the relay's processes (another pid namespace). The control:
// the worker's dials do go over that socket.
func TestAttack2RelaySocketFromInsideTheInstance(t *testing.T) {
	// A short path: a unix socket's is at most 107 bytes.
	short, err := os.MkdirTemp("", "zr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	d := serviceRuntime(t, func(c *Config) { c.RelaySocketDir = filepath.Join(short, "r") })
	inst := testInstance(t, nil)
	startInstance(t, d, inst)
	d.services.mu.Lock()
	r := d.services.byID[inst.ID].relay
	d.services.mu.Unlock()
	<-r.dialsSet
	if r.dir == "" || r.dials == r.sess {
		t.Fatalf("no relay socket (dir %q): nothing to attack", r.dir)
	}
	targets := []string{
		"unix:" + relaySocketMount + "/" + relaySocketName,
		"unix:" + filepath.Join(r.dir, relaySocketName),
		"unix:@" + relaySocketMount + "/" + relaySocketName,
		"unix:@" + relaySocketName,
		"unix:@",
	}
	for pid := 1; pid <= 12; pid++ {
		targets = append(targets, "unix:/proc/"+strconv.Itoa(pid)+"/root"+relaySocketMount+"/"+relaySocketName)
	}
	q := "addr=127.0.0.1:8080"
	for _, tgt := range targets {
		q += "&addr=" + url.QueryEscape(tgt)
	}
	resp := get(t, d, inst.ID, "/dial?"+q, nil)
	defer resp.Body.Close()
	var results []struct {
		Addr  string
		OK    bool
		Error string
	}
	if err := json.NewDecoder(resp.Body).Decode(&results); err != nil {
		t.Fatal(err)
	}
	if len(results) != len(targets)+1 || !results[0].OK {
		t.Fatalf("dial results: %+v", results)
	}
	for _, res := range results[1:] {
		if res.OK {
			t.Errorf("from inside the instance, the relay's socket is reachable at %s", res.Addr)
		}
	}
}
