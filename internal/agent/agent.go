// Package agent is the small program of Zerverless that runs inside a
// container's network namespace: the relay that carries connections
// between the worker and a container that has no network of its own.
//
// A container of Zerverless has network "none": loopback only. Its
// relay, a second container (of the runtime's own image, holding only
// this program) whose network namespace the job, build step or service
// instance joins, speaks to the worker over its standard input and output
// (the engine's attach stream) with yamux, so that
//
//   - the worker opens a stream and asks the relay to dial a port on the
//     namespace's loopback (a service instance's port): "dial PORT\n",
//     answered "ok\n" or "error MESSAGE\n", then the bytes of the
//     connection both ways;
//   - with -socket, the worker may open the same sessions over a unix
//     socket the relay listens on (in a directory only the worker and the
//     relay's container have), the shorter way for its dials; or, the
//     shortest, a connection to that socket that begins "dial PORT\n",
//     answered "ok\n" with the dialed socket itself (SCM_RIGHTS), which
//     the worker then reads and writes without the relay in between, or
//     "error MESSAGE\n";
//   - a connection the container opens to a port the relay listens on
//     (an egress proxy) becomes a stream the relay opens to the worker,
//     which begins "accept ADDRESS\n" (the listening address it came to),
//     then the connection's bytes both ways.
//
// The relay dials nothing but the namespace's loopback, and opens no
// connection of its own anywhere else: it has no route to anywhere else.
// What crosses to the worker is decided there.
package agent

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
)

// Command is the name of the program's mode that runs the relay: the
// relay's container runs "/agent relay [flags]" (see Main).
const Command = "relay"

// Limits of a relay, the same on both sides.
const (
	// MaxHeader bounds the first line of a stream.
	MaxHeader = 256
	// DefaultMaxConns bounds the connections a relay carries at once.
	DefaultMaxConns = 1024
	// dialTimeout bounds a dial on the loopback.
	dialTimeout = 5 * time.Second
)

// YamuxConfig is the session configuration of both ends: keep-alives off
// (the attach stream's life is the container's), a bounded backlog, and
// windows large enough for a fast local stream.
func YamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.AcceptBacklog = 256
	c.MaxStreamWindowSize = 1 << 20
	c.StreamOpenTimeout = 30 * time.Second
	c.LogOutput = io.Discard
	return c
}

// Main runs the agent with args (after the program and mode names) on
// stdin and stdout, logging to stderr, and returns the exit status.
func Main(args []string, stdin io.Reader, stdout io.Writer, stderr io.Writer) int {
	fs := flag.NewFlagSet(Command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var listen multiFlag
	fs.Var(&listen, "listen", "a loopback address to accept connections on and carry to the worker (repeatable)")
	maxConns := fs.Int("max-conns", DefaultMaxConns, "connections carried at once")
	socket := fs.String("socket", "", "a unix socket to accept the worker's sessions on too, for its dials (the worker's own shortcut past the attach stream)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *maxConns < 1 {
		fmt.Fprintln(stderr, "relay: -max-conns must be at least 1")
		return 2
	}
	r := &relay{slots: make(chan struct{}, *maxConns), log: stderr}
	sess, err := yamux.Server(FrameConn(stdio{stdin, stdout}), YamuxConfig())
	if err != nil {
		fmt.Fprintln(stderr, "relay:", err)
		return 1
	}
	for _, addr := range listen {
		if err := r.listen(sess, addr); err != nil {
			fmt.Fprintln(stderr, "relay:", err)
			return 1
		}
	}
	if *socket != "" {
		if err := r.serveSocket(sess, *socket); err != nil {
			fmt.Fprintln(stderr, "relay:", err)
			return 1
		}
	}
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			// The worker went away (or closed the session): the relay's
			// work is over.
			return 0
		}
		go r.serveDial(st)
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// stdio is one end of the attach stream as a connection.
type stdio struct {
	io.Reader
	io.Writer
}

func (stdio) Close() error { return nil }

type relay struct {
	slots chan struct{}
	log   io.Writer
}

// take takes a connection slot, or reports that there is none.
func (r *relay) take() bool {
	select {
	case r.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (r *relay) give() { <-r.slots }

// serveDial answers a stream the worker opened: "dial PORT".
func (r *relay) serveDial(st net.Conn) {
	defer st.Close()
	line, br, err := ReadHeader(st)
	if err != nil {
		return
	}
	port, ok := strings.CutPrefix(line, "dial ")
	n, err := strconv.Atoi(port)
	if !ok || err != nil || n < 1 || n > 65535 {
		_, _ = io.WriteString(st, "error bad request\n")
		return
	}
	if !r.take() {
		_, _ = io.WriteString(st, "error too many connections\n")
		return
	}
	defer r.give()
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), dialTimeout)
	if err != nil {
		_, _ = io.WriteString(st, "error "+oneLine(err.Error())+"\n")
		return
	}
	defer c.Close()
	if _, err := io.WriteString(st, "ok\n"); err != nil {
		return
	}
	Splice(c, c, st, br)
}

// serveSocket accepts, on the unix socket path, sessions of the worker in
// which it opens streams as on the attach stream's, until sess ends. The
// socket is the worker's to reach (it is created in a directory of the
// worker's that only this relay's container mounts): it carries dials
// only, the shortest way from the worker (no engine in between).
func (r *relay) serveSocket(sess *yamux.Session, path string) error {
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	// The worker runs as another user: the directory guards the socket.
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return err
	}
	go func() {
		<-sess.CloseChan()
		l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go r.serveSocketConn(sess, c)
		}
	}()
	return nil
}

// serveSocketConn serves one connection of the worker to the socket:
// one that begins "dial PORT\n" asks for the connection itself (see
// passDial); any other carries a yamux session of dials.
func (r *relay) serveSocketConn(sess *yamux.Session, c net.Conn) {
	br := bufio.NewReaderSize(c, MaxHeader)
	_ = c.SetReadDeadline(time.Now().Add(dialTimeout))
	first, err := br.Peek(1)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return
	}
	if uc, ok := c.(*net.UnixConn); ok && first[0] == 'd' {
		r.passDial(uc, br)
		return
	}
	held, _ := br.Peek(br.Buffered())
	rc := bufferedConn{Conn: c, r: io.MultiReader(bytes.NewReader(bytes.Clone(held)), c)}
	ws, err := yamux.Server(FrameConn(rc), YamuxConfig())
	if err != nil {
		c.Close()
		return
	}
	defer ws.Close()
	go func() {
		<-sess.CloseChan()
		ws.Close()
	}()
	for {
		st, err := ws.AcceptStream()
		if err != nil {
			return
		}
		go r.serveDial(st)
	}
}

// passDial answers "dial PORT" on the worker's connection c to the
// socket by dialing the port on the namespace's loopback and handing the
// worker the connected socket itself ("ok\n" with its descriptor, as
// SCM_RIGHTS), so that the worker reads and writes it directly and the
// relay carries none of its bytes; or "error MESSAGE\n". The socket
// handed over is connected to the loopback of this namespace and to
// nothing else: it gives the worker no way in or out beyond that
// connection.
func (r *relay) passDial(c *net.UnixConn, br *bufio.Reader) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	line, err := br.ReadSlice('\n')
	if err != nil {
		return
	}
	port, ok := strings.CutPrefix(strings.TrimSuffix(string(line), "\n"), "dial ")
	n, err := strconv.Atoi(port)
	if !ok || err != nil || n < 1 || n > 65535 {
		_, _ = io.WriteString(c, "error bad request\n")
		return
	}
	tc, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), dialTimeout)
	if err != nil {
		_, _ = io.WriteString(c, "error "+oneLine(err.Error())+"\n")
		return
	}
	defer tc.Close()
	sc, ok := tc.(syscall.Conn)
	if !ok {
		_, _ = io.WriteString(c, "error not a socket\n")
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		_, _ = io.WriteString(c, "error "+oneLine(err.Error())+"\n")
		return
	}
	var werr error
	if err := raw.Control(func(fd uintptr) {
		_, _, werr = c.WriteMsgUnix([]byte("ok\n"), syscall.UnixRights(int(fd)), nil)
	}); err != nil && werr == nil {
		werr = err
	}
	_ = werr // the worker sees the connection end without an answer
}

// listen accepts connections on addr (a loopback address) and carries
// each to the worker.
func (r *relay) listen(sess *yamux.Session, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen %q: not a loopback address", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go func() {
		<-sess.CloseChan()
		l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if !r.take() {
				c.Close()
				continue
			}
			go func() {
				defer r.give()
				defer c.Close()
				st, err := sess.OpenStream()
				if err != nil {
					return
				}
				defer st.Close()
				if _, err := io.WriteString(st, "accept "+addr+"\n"); err != nil {
					return
				}
				Splice(c, c, st, st)
			}()
		}
	}()
	return nil
}

// ReadHeader reads a stream's first line (without its newline), at most
// MaxHeader bytes, and returns a reader of the rest.
func ReadHeader(c io.Reader) (string, *bufio.Reader, error) {
	br := bufio.NewReaderSize(c, MaxHeader)
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", nil, errors.New("relay: header too long")
		}
		return "", nil, err
	}
	return strings.TrimSuffix(string(line), "\n"), br, nil
}

// Splice copies both ways between a and b, reading a through ra and b
// through rb (readers that may hold bytes already read from them), until
// both directions end; the end of a direction is passed on as a half
// close where the connection has one.
func Splice(a net.Conn, ra io.Reader, b net.Conn, rb io.Reader) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(a, rb)
		CloseWrite(a)
	}()
	_, _ = io.Copy(b, ra)
	CloseWrite(b)
	wg.Wait()
}

// CloseWrite ends c's writing: a half close where c has one, else a
// close.
func CloseWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > MaxHeader-16 {
		s = s[:MaxHeader-16]
	}
	return s
}

// bufferedConn is a connection whose first bytes were read into r.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
