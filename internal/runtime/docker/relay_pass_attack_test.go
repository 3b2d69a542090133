package docker

import (
	"context"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// Attacks of a relay that is not the worker's agent (a guest that took
// its place in the instance's container) on the worker through the
// descriptors it hands over on its socket.

// openFDs counts the descriptors this process holds.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// unsent is what is queued on the unix connection c and not yet read by
// its peer.
func unsent(c *net.UnixConn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	_ = raw.Control(func(fd uintptr) {
		var v int32
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, siocoutq, uintptr(unsafe.Pointer(&v))); e == 0 {
			n = int(v)
		}
	})
	return n
}

// A relay that sends message after message, each with four descriptors,
// before the end of its answer's line: while it waits, the worker must
// not hold them all (some hundreds a dial, times every dial of the
// instance's share of the worker's streams, would take the worker's
// descriptors from every other tenant).
func TestAttackRelayPassFloodsDescriptors(t *testing.T) {
	port := echoListener(t)
	dir := t.TempDir()
	const messages = 60 // within the answer's 256 bytes
	held := make(chan int, 1)
	fakeRelay(t, dir, func(c *net.UnixConn) {
		null, err := os.Open(os.DevNull)
		if err != nil {
			t.Error(err)
			return
		}
		defer null.Close()
		before := openFDs(t)
		for i := 0; i < messages; i++ {
			var fds []int
			for k := 0; k < 4; k++ {
				fd, err := syscall.Dup(int(null.Fd()))
				if err != nil {
					t.Error(err)
					return
				}
				fds = append(fds, fd)
			}
			_, _, err := c.WriteMsgUnix([]byte("o"), syscall.UnixRights(fds...), nil)
			for _, fd := range fds {
				syscall.Close(fd)
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
		// Once the worker has read them all, count what it holds.
		deadline := time.Now().Add(10 * time.Second)
		for unsent(c) != 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		held <- openFDs(t) - before
		_, _, _ = c.WriteMsgUnix([]byte("k\n"), nil, nil)
	})
	refusedDial(t, dir, port, 20*time.Second)
	if n := <-held; n > 8 {
		t.Fatalf("the worker held %d descriptors of one dial's answer at once", n)
	}
}

// lingeringConn is the descriptor of a connection to port whose close
// waits (SO_LINGER, an hour) for what it has queued, which the peer never
// reads: the last close of it blocks its caller's thread.
func lingeringConn(t *testing.T, port int) int {
	t.Helper()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	_ = c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		if _, err := c.Write(buf); err != nil {
			break
		}
	}
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 3600}); err != nil {
		t.Fatal(err)
	}
	return fd
}

// sinkListener accepts on the loopback and never reads.
func sinkListener(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// returns fails the test unless f returns (within half a minute; the
// descriptors at stake linger an hour).
func returns(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s blocked: the worker's thread waits on a descriptor the relay made linger", what)
	}
}

// A relay that hands over connections set to linger on close, and lets
// go of its own copy: neither refusing one (a connection to another
// port) nor closing one accepted may block the worker, which would hold
// a thread and the stream's slot for as long as the relay likes.
func TestAttackRelayPassLingeringClose(t *testing.T) {
	sink := sinkListener(t)
	for name, port := range map[string]func(want int) int{
		"refused":  func(int) int { return sink },
		"accepted": func(want int) int { return want },
	} {
		t.Run(name, func(t *testing.T) {
			want := sink
			dir := t.TempDir()
			fakeRelay(t, dir, func(c *net.UnixConn) {
				// The relay lets go of its copy before the worker has
				// the whole answer: the worker's is the last.
				fd := lingeringConn(t, port(want))
				_, _, _ = c.WriteMsgUnix([]byte("ok"), syscall.UnixRights(fd), nil)
				syscall.Close(fd)
				_, _, _ = c.WriteMsgUnix([]byte("\n"), nil, nil)
			})
			if name == "refused" {
				want = echoListener(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var c net.Conn
			var err error
			returns(t, "the dial", func() { c, err = (&netRelay{dir: dir}).dialPassed(ctx, want) })
			if name == "refused" {
				if err == nil {
					c.Close()
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			returns(t, "closing the connection", func() { c.Close() })
		})
	}
}

// siocoutq is Linux's SIOCOUTQ (TIOCOUTQ).
const siocoutq = 0x5411
