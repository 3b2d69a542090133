package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/hashicorp/yamux"

	"github.com/zerverless/zerverless/internal/agent"
)

// A relay is the network of a container that has none (see package
// agent): a container of the runtime's agent image, running the agent's
// relay, whose network namespace (loopback only) the container joins
// with NetworkMode "container:ID". The worker speaks to the relay over
// the relay container's attach stream, so the container's traffic
// reaches nothing but what the worker decides to carry: the worker dials
// ports on the namespace's loopback through it (a service instance), and
// the relay hands the worker each connection the container opens to a
// port it listens on (an egress proxy).
//
// The relay container runs as 65534 with no capability, a read-only
// root, no new privileges and no network, and is bounded by relayMemory,
// relayPids and relayNoFile; it carries the deadline label of what it
// serves, so the reaper removes it with that.
const (
	agentImageRepo = "zerverless/agent"
	// relayMemory bounds a relay container: the agent and its streams'
	// buffers (agent.YamuxConfig's windows).
	relayMemory = 128 << 20
	relayPids   = 64
	relayNoFile = 2048
)

// agentImageTag names the agent image of binary: its content's digest,
// so a new binary gets a new image and a stale one is never used.
func agentImageTag(binary []byte) string {
	sum := sha256.Sum256(binary)
	return agentImageRepo + ":" + hex.EncodeToString(sum[:8])
}

// CheckAgentBinary reports whether path is a static executable, as an
// agent (Config.AgentBinary) must be.
func CheckAgentBinary(path string) error { return checkAgentBinary(path, "") }

// checkAgentBinary reports whether path is a static executable for the
// engine's architecture (arch as the engine names it); an empty arch
// checks only that it is static.
func checkAgentBinary(path, arch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("agent %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("agent %s is not a static executable (build it with CGO_ENABLED=0)", path)
		}
	}
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "x86_64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "aarch64": elf.EM_AARCH64}
	if m, ok := want[arch]; arch != "" && (!ok || f.Machine != m) {
		return fmt.Errorf("agent %s is for %s, the engine runs %s", path, f.Machine, arch)
	}
	return nil
}

// agentImage returns the agent image, importing it once.
func (d *Docker) agentImage(ctx context.Context) (string, error) {
	if d.cfg.AgentBinary == "" {
		return "", refuse("this worker has no agent (--docker-agent): it runs no containers that need a relay")
	}
	d.agentMu.Lock()
	defer d.agentMu.Unlock()
	if d.agentRef != "" {
		return d.agentRef, nil
	}
	bin, err := os.ReadFile(d.cfg.AgentBinary)
	if err != nil {
		return "", fmt.Errorf("read agent: %w", err)
	}
	ref := agentImageTag(bin)
	if _, err := d.engine.ImageInspect(ctx, ref); err == nil {
		d.agentRef = ref
		return ref, nil
	} else if !errdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect %s: %w", ref, err)
	}
	v, err := d.engine.ServerVersion(ctx)
	if err != nil {
		return "", fmt.Errorf("docker engine version: %w", err)
	}
	if err := checkAgentBinary(d.cfg.AgentBinary, v.Arch); err != nil {
		return "", err
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	epoch := time.Unix(0, 0)
	_ = tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch})
	_ = tw.WriteHeader(&tar.Header{Name: "agent", Typeflag: tar.TypeReg, Mode: 0o555, Size: int64(len(bin)), ModTime: epoch})
	_, _ = tw.Write(bin)
	_ = tw.Close()
	rc, err := d.engine.ImageImport(ctx,
		image.ImportSource{Source: &b, SourceName: "-"}, ref,
		image.ImportOptions{Changes: []string{`ENTRYPOINT ["/agent"]`, "LABEL " + LabelManagedBy + "=" + managedBy}})
	if err != nil {
		return "", fmt.Errorf("import %s: %w", ref, err)
	}
	if err := drainJSON(rc); err != nil {
		return "", fmt.Errorf("import %s: %w", ref, err)
	}
	d.agentRef = ref
	return ref, nil
}

// relayConfig is what a relay is started with.
type relayConfig struct {
	role     string    // its label role ("job-relay", "service-relay", …)
	jobID    string    // the job or instance it serves, for its labels
	deadline time.Time // its deadline label; zero: none
	listen   []string  // loopback addresses to accept on and hand over
	maxConns int       // connections at once; 0: agent.DefaultMaxConns
	// socket: the worker's dials go over a unix socket of the relay
	// (Config.RelaySocketDir), when there is one, not the attach stream.
	socket bool
}

// netRelay is a running relay and the worker's session with it.
type netRelay struct {
	d    *Docker
	id   string
	sess *yamux.Session
	// dials is the session of the worker's dials: over the relay's
	// socket, or sess; set once dialsSet is closed.
	dials    *yamux.Session
	dialsSet chan struct{}
	// noPass: the relay hands over no connection (dialPassed), its
	// streams carry them.
	noPass atomic.Bool
	// dir holds the relay's socket; "" when none.
	dir  string
	hj   types.HijackedResponse
	once sync.Once
	// stderr keeps the agent's last words, for errors.
	stderr *lockedTail
}

// startRelay creates and starts a relay; the container that is to use
// it joins its namespace with NetworkMode r.networkMode(). On error
// nothing is left.
func (d *Docker) startRelay(ctx context.Context, rc relayConfig) (*netRelay, error) {
	ref, err := d.agentImage(ctx)
	if err != nil {
		return nil, err
	}
	args := []string{agent.Command}
	for _, l := range rc.listen {
		args = append(args, "-listen", l)
	}
	if rc.maxConns > 0 {
		args = append(args, "-max-conns", strconv.Itoa(rc.maxConns))
	}
	var binds []string
	dir, err := d.relaySocketDir(rc)
	if err != nil {
		return nil, err
	}
	if dir != "" {
		binds = []string{dir + ":" + relaySocketMount}
		args = append(args, "-socket", relaySocketMount+"/"+relaySocketName)
	}
	pids := int64(relayPids)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	created, err := d.engine.ContainerCreate(cctx,
		&container.Config{
			Image: ref, Cmd: args, User: strconv.Itoa(nobody) + ":" + strconv.Itoa(nobody),
			// StdinOnce: the relay's input ends with the worker's attach
			// stream, so a relay whose worker died (kill -9) ends too.
			OpenStdin: true, StdinOnce: true, AttachStdin: true, AttachStdout: true, AttachStderr: true,
			NetworkDisabled: false, Labels: d.labelsUntil(rc.role, rc.jobID, rc.deadline),
		},
		&container.HostConfig{
			NetworkMode: "none", ReadonlyRootfs: true, CapDrop: []string{"ALL"}, Binds: binds,
			SecurityOpt: []string{"no-new-privileges"}, LogConfig: container.LogConfig{Type: "none"},
			Resources: container.Resources{
				Memory: relayMemory, MemorySwap: relayMemory, PidsLimit: &pids,
				Ulimits: containerUlimits(relayNoFile),
			},
		}, nil, nil, "")
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create relay: %w", err)
	}
	r := &netRelay{d: d, id: created.ID, dir: dir, stderr: &lockedTail{max: 4096}}
	fail := func(err error) (*netRelay, error) {
		r.close()
		return nil, err
	}
	r.hj, err = d.engine.ContainerAttach(cctx, r.id, container.AttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		return fail(fmt.Errorf("attach relay: %w", err))
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, r.stderr, r.hj.Reader)
		pw.CloseWithError(cmpErr(err, io.EOF))
	}()
	if err := d.engine.ContainerStart(cctx, r.id, container.StartOptions{}); err != nil {
		return fail(fmt.Errorf("start relay: %w", err))
	}
	r.sess, err = yamux.Client(agent.FrameConn(attachConn{Reader: pr, w: r.hj.Conn, closeR: pr}), agent.YamuxConfig())
	if err != nil {
		return fail(fmt.Errorf("relay session: %w", err))
	}
	r.dialsSet = make(chan struct{})
	if dir == "" {
		r.dials = r.sess
		close(r.dialsSet)
		return r, nil
	}
	// The socket is dialed while the caller goes on (the instance's
	// container is created meanwhile); the first dial waits for it.
	go func() {
		defer close(r.dialsSet)
		s, err := dialRelaySocket(context.WithoutCancel(ctx), filepath.Join(dir, relaySocketName), r.sess.CloseChan())
		if err != nil {
			// An engine on another machine (or in another file
			// system): the attach stream carries the dials.
			d.cfg.Logger.Warn("docker relay socket not reachable; dials go over the attach stream", "worker_id", d.cfg.WorkerID, "container", r.id, "err", err)
			r.dials = r.sess
			return
		}
		r.dials = s
	}()
	return r, nil
}

// The relay's socket: a directory of RelaySocketDir, mounted at
// relaySocketMount in the relay's container alone.
const (
	relaySocketMount = "/run/relay"
	relaySocketName  = "relay.sock"
	// relaySocketWait bounds the wait for a relay's socket to appear.
	relaySocketWait = 3 * time.Second
)

// relaySocketDir creates the directory of a new relay's socket, when the
// relay is to have one: writable by the relay's user, in RelaySocketDir
// (which only the worker's user may enter, see privateDir; when it is
// not so, the relay gets no socket). Its name
// starts with the runtime's instance, so that Sweep tells those of an
// earlier run.
func (d *Docker) relaySocketDir(rc relayConfig) (string, error) {
	if !rc.socket || d.cfg.RelaySocketDir == "" {
		return "", nil
	}
	if err := privateDir(d.cfg.RelaySocketDir, true); err != nil {
		// Not the worker's alone: the dials go over the attach stream.
		d.cfg.Logger.Warn("docker relay socket directory refused; dials go over the attach stream", "worker_id", d.cfg.WorkerID, "err", err)
		return "", nil
	}
	dir, err := os.MkdirTemp(d.cfg.RelaySocketDir, d.instance+"-")
	if err != nil {
		return "", fmt.Errorf("relay socket directory: %w", err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("relay socket directory: %w", err)
	}
	return dir, nil
}

// relayDirRE is the name of a relay's socket directory: the runtime's
// instance (randomHex(8)) and os.MkdirTemp's number. The sweep removes
// nothing else.
var relayDirRE = regexp.MustCompile(`^[0-9a-f]{16}-[0-9]+$`)

// privateDir checks that path is a directory of the worker's user that
// no other user may enter or replace, and keeps it mode 0700; create
// makes it when it is missing (its parents too). A symbolic link, a file
// or a directory of another user is refused, and so is a path under a
// directory that another user may write to without the sticky bit: the
// default lies at a name known in advance in the temporary directory,
// where another local user could have made it first, to reach the
// relays' sockets (every instance's ports) or have the sweep remove what
// it leads to.
func privateDir(path string, create bool) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if create {
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			return err
		}
		if err := os.Mkdir(abs, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	me := os.Geteuid()
	fi, err := os.Lstat(abs)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (a symbolic link or a file): refused", abs)
	}
	if uid, ok := fileOwner(fi); !ok || uid != me {
		return fmt.Errorf("%s belongs to user %d, not to this worker's (%d): refused", abs, uid, me)
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		pi, err := os.Stat(p)
		if err != nil {
			return err
		}
		uid, _ := fileOwner(pi)
		if uid != 0 && uid != me {
			return fmt.Errorf("%s is under %s, of user %d: refused", abs, p, uid)
		}
		if pi.Mode().Perm()&0o022 != 0 && pi.Mode()&fs.ModeSticky == 0 {
			return fmt.Errorf("%s is under %s, which other users may write to: refused", abs, p)
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	if fi.Mode().Perm() != 0o700 {
		return os.Chmod(abs, 0o700)
	}
	return nil
}

// fileOwner is the user that owns the file of fi.
func fileOwner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, false
	}
	return int(st.Uid), true
}

// sweepRelaySockets removes the socket directories of earlier runs: the
// directories of RelaySocketDir named as a relay's (relayDirRE) and not
// of this runtime. It touches nothing in a directory privateDir refuses.
func (d *Docker) sweepRelaySockets() error {
	if d.cfg.RelaySocketDir == "" {
		return nil
	}
	if err := privateDir(d.cfg.RelaySocketDir, false); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	ents, err := os.ReadDir(d.cfg.RelaySocketDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if e.IsDir() && relayDirRE.MatchString(e.Name()) && !strings.HasPrefix(e.Name(), d.instance+"-") {
			errs = append(errs, os.RemoveAll(filepath.Join(d.cfg.RelaySocketDir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// dialRelaySocket opens a session over the relay's socket at path,
// waiting for it to appear (relaySocketWait at most, and until ended).
func dialRelaySocket(ctx context.Context, path string, ended <-chan struct{}) (*yamux.Session, error) {
	deadline := time.Now().Add(relaySocketWait)
	for {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			s, err := yamux.Client(agent.FrameConn(c), agent.YamuxConfig())
			if err != nil {
				c.Close()
			}
			return s, err
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ended:
			return nil, errors.New("the relay ended")
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// networkMode is the NetworkMode of a container that uses the relay.
func (r *netRelay) networkMode() container.NetworkMode {
	return container.NetworkMode("container:" + r.id)
}

// dial opens a connection to port on the namespace's loopback. Over the
// relay's socket it returns the connection itself, dialed (dialPassed:
// a dial there is a round trip on the machine). Over the relay's streams
// it returns once the relay is asked, without waiting for its answer, so
// that what is written to the connection follows at once; dialed waits
// for the answer (ctx bounds the wait), and reads wait for it too.
func (r *netRelay) dial(ctx context.Context, port int) (c net.Conn, dialed func() error, err error) {
	select {
	case <-r.dialsSet:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	if r.dials != r.sess && !r.noPass.Load() {
		c, err := r.dialPassed(ctx, port)
		if err != errNotPassed {
			return c, func() error { return nil }, err
		}
		// An agent that hands over no connection: its streams carry them.
		r.noPass.Store(true)
	}
	st, err := r.dials.OpenStream()
	if err != nil {
		return nil, nil, fmt.Errorf("relay: %w", err)
	}
	if _, err := io.WriteString(st, "dial "+strconv.Itoa(port)+"\n"); err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("relay: %w", err)
	}
	dc := &dialConn{Stream: st}
	dc.dialed = sync.OnceValue(func() error {
		stop := context.AfterFunc(ctx, func() { st.Close() })
		defer stop()
		line, br, err := agent.ReadHeader(st)
		switch {
		case err != nil && ctx.Err() != nil:
			err = ctx.Err()
		case err != nil:
			err = fmt.Errorf("relay: %w", err)
		case line != "ok":
			err = fmt.Errorf("relay: dial port %d: %s", port, strings.TrimPrefix(line, "error "))
		}
		if err != nil {
			st.Close()
			return err
		}
		dc.r = br
		return nil
	})
	return dc, dc.dialed, nil
}

// errNotPassed is a relay that answered a dial on its socket with
// nothing: an agent that only carries streams.
var errNotPassed = errors.New("the relay hands over no connection")

// dialPassed asks the relay, on a connection of its own to the relay's
// socket, to dial port and hand over the connected socket (see the
// agent's passDial): the worker then reads and writes the instance's
// connection itself, without the relay in between. What it accepts is a
// TCP connection to the namespace's loopback, nothing else.
func (r *netRelay) dialPassed(ctx context.Context, port int) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "unix", filepath.Join(r.dir, relaySocketName))
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	defer c.Close()
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, errNotPassed
	}
	stop := context.AfterFunc(ctx, func() { _ = uc.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(uc, "dial "+strconv.Itoa(port)+"\n"); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	// The relay's answer may come with descriptors; the worker keeps the
	// first, closes any other at once (holding a few hundred per dial
	// would take the worker's descriptors), and never lets a close of
	// one wait (closeHanded).
	fd, handed := -1, 0
	defer func() {
		if fd >= 0 {
			closeHanded(fd)
		}
	}()
	var line []byte
	buf := make([]byte, agent.MaxHeader)
	// Room for a descriptor a message (two, aligned): the kernel drops
	// the others before they take any of the worker's.
	oob := make([]byte, syscall.CmsgSpace(4))
	for !bytes.Contains(line, []byte("\n")) {
		n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
		if oobn > 0 {
			msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				got, _ := syscall.ParseUnixRights(&m)
				for _, g := range got {
					handed++
					if fd < 0 {
						fd = g
					} else {
						closeHanded(g)
					}
				}
			}
		}
		line = append(line, buf[:n]...)
		switch {
		case errors.Is(err, io.EOF) && len(line) == 0 && handed == 0:
			return nil, errNotPassed
		case err != nil && ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			return nil, fmt.Errorf("relay: %w", err)
		case len(line) > agent.MaxHeader:
			return nil, errors.New("relay: answer too long")
		}
	}
	answer, _, _ := strings.Cut(string(line), "\n")
	if answer != "ok" {
		return nil, fmt.Errorf("relay: dial port %d: %s", port, strings.TrimPrefix(answer, "error "))
	}
	if handed != 1 {
		return nil, fmt.Errorf("relay: dial port %d: %d descriptors handed over, not one", port, handed)
	}
	f := os.NewFile(uintptr(fd), "relay dial")
	nc, err := net.FileConn(f)
	if err != nil {
		// fd is closed by the defer, without lingering.
		return nil, fmt.Errorf("relay: dial port %d: %w", port, err)
	}
	fd = -1
	f.Close() // nc holds its own copy: not the last close
	tc, ok := nc.(*net.TCPConn)
	ra, _ := nc.RemoteAddr().(*net.TCPAddr)
	if !ok || ra == nil || !ra.IP.IsLoopback() || ra.Port != port {
		closeConnHanded(nc)
		return nil, fmt.Errorf("relay: dial port %d: handed over %v, not a connection to its loopback port", port, nc.RemoteAddr())
	}
	return handedConn{tc}, nil
}

// A descriptor handed over by the relay may be a socket the relay set to
// linger on close (SO_LINGER) with bytes its peer never reads: if the
// relay let go of its own copy, the worker's close would wait as long as
// the relay likes, holding a thread. Each close of one first sets it not
// to linger: the close returns at once, and the kernel sends what is
// queued, or gives up, on its own.

// closeHanded closes a descriptor handed over by the relay.
func closeHanded(fd int) {
	_ = syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{})
	syscall.Close(fd)
}

// closeConnHanded closes a connection made of a descriptor handed over.
func closeConnHanded(c net.Conn) error {
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			_ = raw.Control(func(fd uintptr) {
				_ = syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{})
			})
		}
	}
	return c.Close()
}

// handedConn is the instance's connection handed over by the relay (see
// closeHanded).
type handedConn struct{ *net.TCPConn }

func (c handedConn) Close() error { return closeConnHanded(c.TCPConn) }

// dialConn is a stream to a port whose relay's answer is read first.
type dialConn struct {
	*yamux.Stream
	dialed func() error
	r      io.Reader // after the answer
}

func (c *dialConn) Read(p []byte) (int, error) {
	if err := c.dialed(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// accept returns the next connection the container opened to an address
// the relay listens on, and that address.
func (r *netRelay) accept() (net.Conn, string, error) {
	for {
		st, err := r.sess.AcceptStream()
		if err != nil {
			return nil, "", err
		}
		_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, br, err := agent.ReadHeader(st)
		_ = st.SetReadDeadline(time.Time{})
		addr, ok := strings.CutPrefix(line, "accept ")
		if err != nil || !ok {
			st.Close()
			continue
		}
		return &bufferedConn{Conn: st, r: br}, addr, nil
	}
}

// done is closed when the relay's session ends (its container stopped).
func (r *netRelay) done() <-chan struct{} { return r.sess.CloseChan() }

// close ends the session and removes the relay's container.
func (r *netRelay) close() {
	r.once.Do(func() {
		if r.sess != nil {
			r.sess.Close()
		}
		if r.dialsSet != nil {
			<-r.dialsSet // it ends with sess
			r.dials.Close()
		}
		if r.dir != "" {
			os.RemoveAll(r.dir)
		}
		if r.hj.Conn != nil {
			r.hj.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := r.d.engine.ContainerRemove(ctx, r.id, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
			r.d.cfg.Logger.Warn("docker relay removal failed", "worker_id", r.d.cfg.WorkerID, "container", r.id, "err", err)
		}
	})
}

// attachConn is the worker's end of a relay's attach stream: reads come
// demultiplexed from its stdout, writes go to its stdin.
type attachConn struct {
	io.Reader
	w      net.Conn
	closeR *io.PipeReader
}

func (c attachConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c attachConn) Close() error {
	c.closeR.Close()
	return c.w.Close()
}

// bufferedConn is a stream whose first bytes were read into r.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// lockedTail keeps the last max bytes written to it.
type lockedTail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *lockedTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *lockedTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
