package docker

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/zerverless/zerverless/internal/agent"
)

// refusedDial dials port through the relay socket in dir, within d, and
// returns why the worker refused what it was handed; the test fails if it
// took it.
func refusedDial(t *testing.T, dir string, port int, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	c, err := (&netRelay{dir: dir}).dialPassed(ctx, port)
	if err == nil {
		c.Close()
		t.Fatal("accepted")
	}
	t.Log(err)
	return err
}

// echoListener accepts on the loopback and echoes each connection.
func echoListener(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRelayHandsOverTheDialedSocket runs the agent's relay in-process
// with its socket and dials through it: the worker gets the connected
// socket itself, and a port nothing listens on is the relay's error.
func TestRelayHandsOverTheDialedSocket(t *testing.T) {
	dir := t.TempDir()
	stdin, keep := io.Pipe()
	t.Cleanup(func() { keep.Close() })
	go agent.Main([]string{"-socket", filepath.Join(dir, relaySocketName)}, stdin, io.Discard, io.Discard)
	r := &netRelay{dir: dir}
	port := echoListener(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var c net.Conn
	var err error
	for c, err = r.dialPassed(ctx, port); err != nil && ctx.Err() == nil; c, err = r.dialPassed(ctx, port) {
		time.Sleep(5 * time.Millisecond) // the socket appears
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(handedConn); !ok {
		t.Fatalf("handed over a %T", c)
	}
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo: %q %v", b, err)
	}
	// A session of streams over the socket is served as before.
	uc, err := net.Dial("unix", filepath.Join(dir, relaySocketName))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := yamux.Client(agent.FrameConn(uc), agent.YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(st, "dial "+strconv.Itoa(port)+"\nping"); err != nil {
		t.Fatal(err)
	}
	if line, br, err := agent.ReadHeader(st); err != nil || line != "ok" {
		t.Fatalf("stream dial: %q %v", line, err)
	} else if _, err := io.ReadFull(br, b); err != nil || string(b) != "ping" {
		t.Fatalf("stream echo: %q %v", b, err)
	}
	closed := freePort(t)
	if _, err := r.dialPassed(ctx, closed); err == nil || !strings.Contains(err.Error(), "dial port "+strconv.Itoa(closed)) {
		t.Fatalf("a port nothing listens on: %v", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRelayHandsOverOnlyItsDial: what the worker takes from the relay's
// socket is one TCP connection to the loopback port it asked for; any
// other descriptor (a unix socket, a file, two at once, a connection to
// another port) is refused and closed, and a relay that answers nothing
// (an agent that hands over no connection) falls back to streams.
func TestRelayHandsOverOnlyItsDial(t *testing.T) {
	port := echoListener(t)
	other := echoListener(t)
	fds := map[string]func(t *testing.T) []int{
		"a unix socket": func(t *testing.T) []int {
			p, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
			if err != nil {
				t.Fatal(err)
			}
			syscall.Close(p[1])
			return p[:1]
		},
		"a file": func(t *testing.T) []int {
			f, err := os.Open(os.Args[0])
			if err != nil {
				t.Fatal(err)
			}
			fd, _ := syscall.Dup(int(f.Fd()))
			f.Close()
			return []int{fd}
		},
		"two connections": func(t *testing.T) []int { return []int{tcpFD(t, port), tcpFD(t, port)} },
		"another port":    func(t *testing.T) []int { return []int{tcpFD(t, other)} },
		"none":            func(t *testing.T) []int { return nil },
	}
	for name, give := range fds {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fakeRelay(t, dir, func(c *net.UnixConn) {
				fds := give(t)
				defer func() {
					for _, fd := range fds {
						syscall.Close(fd)
					}
				}()
				var oob []byte
				if len(fds) > 0 {
					oob = syscall.UnixRights(fds...)
				}
				_, _, _ = c.WriteMsgUnix([]byte("ok\n"), oob, nil)
			})
			err := refusedDial(t, dir, port, 10*time.Second)
			if errors.Is(err, errNotPassed) {
				t.Fatalf("taken for an agent that hands over nothing: %v", err)
			}
		})
	}
	t.Run("an agent that hands over nothing", func(t *testing.T) {
		dir := t.TempDir()
		fakeRelay(t, dir, func(c *net.UnixConn) {})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := (&netRelay{dir: dir}).dialPassed(ctx, port); !errors.Is(err, errNotPassed) {
			t.Fatalf("got %v, want errNotPassed", err)
		}
	})
}

// fakeRelay listens on the relay socket in dir and answers each
// connection's first line with answer, then closes it.
func fakeRelay(t *testing.T, dir string, answer func(c *net.UnixConn)) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(dir, relaySocketName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, _, err := agent.ReadHeader(c); err != nil {
					return
				}
				answer(c.(*net.UnixConn))
			}()
		}
	}()
}

// tcpFD is the descriptor of a new connection to port on the loopback.
func tcpFD(t *testing.T, port int) int {
	t.Helper()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return fd
}
