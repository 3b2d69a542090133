// Package memnet is a network within one process: a Listener whose
// connections are buffered in-memory pipes, reached by its Dial. What it
// carries never touches a socket, so only code handed the Listener can
// connect to it.
//
// A connection behaves as a TCP connection does where the HTTP server and
// the WebSocket library rely on it: writes are buffered up to BufferBytes
// in each direction (a writer blocks only when the reader falls that far
// behind, so two peers that write at once do not deadlock as over
// net.Pipe), read and write deadlines fail with an error whose Timeout is
// true and can be moved while a call blocks, and closing one end lets the
// other read what was sent before io.EOF.
package memnet

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// BufferBytes is the most data written to a connection and not yet read,
// in each direction.
const BufferBytes = 1 << 20

// Addr is the address of both ends of every connection: its String is
// Name, which parses as no IP address, so that whatever counts peers by
// address counts this network apart from every real one.
type Addr struct{ Name string }

// Network is "memnet".
func (Addr) Network() string { return "memnet" }

func (a Addr) String() string { return a.Name }

// Listener is a net.Listener whose connections come from its Dial.
type Listener struct {
	addr  Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// Listen returns a listener whose connections report name as both their
// addresses.
func Listen(name string) *Listener {
	return &Listener{addr: Addr{Name: name}, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept blocks until Dial connects, or fails with net.ErrClosed once
// the listener is closed.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and Dial. Connections already made stay open until
// their ends are closed.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns the listener's address.
func (l *Listener) Addr() net.Addr { return l.addr }

// Dial connects to the listener, whatever network and address are asked
// for (it has the signature of net.Dialer.DialContext). It blocks until
// Accept takes the connection, ctx ends, or the listener is closed
// (net.ErrClosed).
func (l *Listener) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	client, server := Pipe(l.addr)
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, &net.OpError{Op: "dial", Net: l.addr.Network(), Addr: l.addr, Err: net.ErrClosed}
	case <-ctx.Done():
		return nil, &net.OpError{Op: "dial", Net: l.addr.Network(), Addr: l.addr, Err: ctx.Err()}
	}
}

// Pipe returns the two ends of a connection whose addresses are addr.
func Pipe(addr net.Addr) (net.Conn, net.Conn) {
	ab, ba := newBuffer(), newBuffer()
	a := &conn{addr: addr, rx: ba, tx: ab, done: make(chan struct{})}
	b := &conn{addr: addr, rx: ab, tx: ba, done: make(chan struct{})}
	a.peer, b.peer = b, a
	a.rd.init()
	a.wd.init()
	b.rd.init()
	b.wd.init()
	return a, b
}

// buffer holds what one end wrote and the other has not read yet.
type buffer struct {
	mu   sync.Mutex
	data []byte
	off  int // data[off:] is unread
	// readable and writable wake a blocked reader and writer (one
	// token each; who takes it passes it on when more is left).
	readable, writable chan struct{}
}

func newBuffer() *buffer {
	return &buffer{readable: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// read moves what is buffered into p; 0 when nothing is.
func (b *buffer) read(p []byte) int {
	b.mu.Lock()
	n := copy(p, b.data[b.off:])
	b.off += n
	left := len(b.data) - b.off
	if left == 0 {
		b.data, b.off = b.data[:0], 0
	}
	b.mu.Unlock()
	if n > 0 {
		wake(b.writable)
	}
	if left > 0 {
		wake(b.readable)
	}
	return n
}

// write buffers as much of p as there is room for and returns how much.
func (b *buffer) write(p []byte) int {
	b.mu.Lock()
	n := min(len(p), BufferBytes-(len(b.data)-b.off))
	if n > 0 {
		if b.off > 0 && len(b.data)+n > cap(b.data) {
			b.data = b.data[:copy(b.data, b.data[b.off:])]
			b.off = 0
		}
		b.data = append(b.data, p[:n]...)
	}
	room := len(b.data)-b.off < BufferBytes
	b.mu.Unlock()
	if n > 0 {
		wake(b.readable)
	}
	if room {
		wake(b.writable)
	}
	return n
}

// conn is one end of a pipe.
type conn struct {
	addr   net.Addr
	rx, tx *buffer
	rd, wd deadline
	peer   *conn
	done   chan struct{} // closed by Close
	once   sync.Once
}

func (c *conn) Read(p []byte) (int, error) {
	for {
		select {
		case <-c.done:
			return 0, c.opError("read", net.ErrClosed)
		case <-c.rd.expired():
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		default:
		}
		if len(p) == 0 {
			return 0, nil
		}
		if n := c.rx.read(p); n > 0 {
			return n, nil
		}
		select {
		case <-c.peer.done:
			// What the peer wrote before closing has been read
			// (write returns before Close can start).
			if n := c.rx.read(p); n > 0 {
				return n, nil
			}
			return 0, io.EOF
		default:
		}
		select {
		case <-c.rx.readable:
		case <-c.peer.done:
		case <-c.done:
		case <-c.rd.expired():
		}
	}
}

func (c *conn) Write(p []byte) (int, error) {
	written := 0
	for {
		select {
		case <-c.done:
			return written, c.opError("write", net.ErrClosed)
		case <-c.peer.done:
			return written, c.opError("write", io.ErrClosedPipe)
		case <-c.wd.expired():
			return written, c.opError("write", os.ErrDeadlineExceeded)
		default:
		}
		written += c.tx.write(p[written:])
		if written == len(p) {
			return written, nil
		}
		select {
		case <-c.tx.writable:
		case <-c.peer.done:
		case <-c.done:
		case <-c.wd.expired():
		}
	}
}

// Close ends this end: the peer reads what was written, then io.EOF, and
// its writes fail.
func (c *conn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.rd.set(time.Time{})
		c.wd.set(time.Time{})
	})
	return nil
}

func (c *conn) LocalAddr() net.Addr  { return c.addr }
func (c *conn) RemoteAddr() net.Addr { return c.addr }

func (c *conn) SetDeadline(t time.Time) error {
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

func (c *conn) SetReadDeadline(t time.Time) error  { c.rd.set(t); return nil }
func (c *conn) SetWriteDeadline(t time.Time) error { c.wd.set(t); return nil }

func (c *conn) opError(op string, err error) error {
	if err == io.EOF {
		return err
	}
	return &net.OpError{Op: op, Net: c.addr.Network(), Source: c.addr, Addr: c.addr, Err: err}
}

// deadline is a read or write deadline: expired's channel is closed once
// it has passed.
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer
	c     chan struct{}
	shut  bool   // c is closed
	gen   uint64 // which set the timer belongs to
}

func (d *deadline) init() { d.c = make(chan struct{}) }

// expired returns a channel closed when the deadline passes.
func (d *deadline) expired() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.c
}

// set moves the deadline; the zero time removes it.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop() // one that fired already finds gen moved on
		d.timer = nil
	}
	if d.shut {
		d.c, d.shut = make(chan struct{}), false
	}
	if t.IsZero() {
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		close(d.c)
		d.shut = true
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(dur, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen && !d.shut {
			close(d.c)
			d.shut = true
		}
	})
}
