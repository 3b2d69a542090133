package protocol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// DefaultReadLimit is the largest message a Conn accepts by default: it
// fits a 32 MiB Wasm module in base64 and 16 MiB of output with room to
// spare. Both ends set it deliberately; change it with Options.ReadLimit.
const DefaultReadLimit = 64 << 20

// Options configure a Conn.
type Options struct {
	// ReadLimit is the largest message accepted (default DefaultReadLimit).
	ReadLimit int64
	// RegisterReadLimit is, on the accepting side, the largest message
	// read until Authenticated is called (default
	// DefaultRegisterReadLimit). A larger message ends the connection
	// with close status 1009 (message too big).
	RegisterReadLimit int64
	// Declarations bound what the peer declares in "register" and
	// "capabilities", checked by the accepting side's Read and ReadIdle
	// (zero fields: DefaultDeclarationLimits).
	Declarations DeclarationLimits
	// OnAuthenticated, when set on the accepting side, is called by
	// Authenticated before the read limit is raised; its error fails
	// Authenticated.
	OnAuthenticated func() error
	// HTTPClient, on the dialing side, is the client the handshake goes
	// through (nil: http.DefaultClient).
	HTTPClient *http.Client
}

// Conn is one end of a protocol session over a WebSocket. Write may be
// called from several goroutines at once; Read from one at a time.
type Conn struct {
	ws    *websocket.Conn
	limit int64
	// decl is set on the accepting side, which checks what the peer
	// declares; onAuth runs when the session is authenticated.
	decl   *DeclarationLimits
	onAuth func() error
	// budget, when set, is charged with the memory of every message
	// ReadIdle holds while reading it.
	budget *ReadBudget

	// bound is the context given to Bind (a *boundCtx), whose end
	// closes the connection.
	bound atomic.Pointer[boundCtx]
	// idle is ReadIdle's timer, made by its first call and reset for
	// each message (ReadIdle is called from one goroutine at a time);
	// idleFired says that it went off and closed the connection.
	idle      *time.Timer
	idleFired atomic.Bool
	// writeMu orders the writes of WriteWithin, which share writeTimer;
	// writeFired says that it went off and closed the connection.
	writeMu    sync.Mutex
	writeTimer *time.Timer
	writeFired atomic.Bool
}

type boundCtx struct{ ctx context.Context }

// ReadBudget bounds the memory that the connections sharing it hold at
// once in messages they are still reading: a message that would take the
// total past the budget fails its read with ErrReadBudget, and its bytes
// are given back. It bounds the memory that many peers, each within its
// own read limit, can make the reading side hold together. Safe for
// concurrent use.
type ReadBudget struct {
	max  int64
	used atomic.Int64
}

// NewReadBudget returns a budget of bytes (at least 1).
func NewReadBudget(bytes int64) *ReadBudget {
	return &ReadBudget{max: max(bytes, 1)}
}

// Used is the bytes held now by messages being read.
func (b *ReadBudget) Used() int64 { return b.used.Load() }

// ErrReadBudget fails a read that would take its ReadBudget over.
var ErrReadBudget = errors.New("the messages being read from peers like this one are over their memory budget")

// readCharged reads src to its end into buf, charging b with the memory
// the message holds: the capacity buf grows to, not only the bytes read
// (a buffer that doubles holds up to twice what it read). It returns what
// it charged, which the caller gives back once the message is done with.
func readCharged(buf *bytes.Buffer, src io.Reader, b *ReadBudget) (charged int64, err error) {
	for {
		if buf.Available() < bytes.MinRead {
			buf.Grow(bytes.MinRead)
		}
		if c := int64(buf.Cap()); c > charged {
			d := c - charged
			charged = c
			if b.used.Add(d) > b.max {
				return charged, fmt.Errorf("%w (%d bytes)", ErrReadBudget, b.max)
			}
		}
		p := buf.AvailableBuffer()
		n, err := src.Read(p[:cap(p)])
		buf.Write(p[:n])
		if err == io.EOF {
			return charged, nil
		}
		if err != nil {
			return charged, err
		}
	}
}

// ShareReadBudget makes ReadIdle charge every message it reads from now
// on to b, until the message has been read whole and decoded. A message
// that would take b over fails ReadIdle with ErrReadBudget; the caller
// should end the session.
func (c *Conn) ShareReadBudget(b *ReadBudget) { c.budget = b }

// NewConn wraps an established WebSocket, reading messages up to
// opts.ReadLimit at once. It is the dialing side's constructor; Accept
// makes the accepting side's.
func NewConn(ws *websocket.Conn, opts Options) *Conn {
	limit := opts.ReadLimit
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	ws.SetReadLimit(limit)
	return &Conn{ws: ws, limit: limit}
}

// Accept upgrades an HTTP request to a protocol connection.
// originPatterns lists the Origin hosts a browser page may connect from
// (see websocket.AcceptOptions); requests without an Origin header (native
// workers) are always accepted. Until Authenticated is called, the
// connection reads messages of at most opts.RegisterReadLimit; every
// "register" and "capabilities" it reads is checked against
// opts.Declarations.
func Accept(w http.ResponseWriter, r *http.Request, originPatterns []string, opts Options) (*Conn, error) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OriginPatterns:  originPatterns,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, err
	}
	c := NewConn(ws, opts)
	pre := opts.RegisterReadLimit
	if pre <= 0 {
		pre = DefaultRegisterReadLimit
	}
	ws.SetReadLimit(min(pre, c.limit))
	decl := opts.Declarations.orDefault()
	c.decl = &decl
	c.onAuth = opts.OnAuthenticated
	return c, nil
}

// Authenticated marks the accepted session as authenticated: it runs
// Options.OnAuthenticated, then raises the read limit from
// RegisterReadLimit to ReadLimit for the messages that follow. On error
// the limit stays low and the caller should refuse the session.
func (c *Conn) Authenticated() error { return c.AuthenticatedUpTo(c.limit) }

// AuthenticatedUpTo is Authenticated for a session that may send less
// than ReadLimit (an anonymous volunteer): the read limit is raised to
// limit, or ReadLimit when that is lower.
func (c *Conn) AuthenticatedUpTo(limit int64) error {
	if c.onAuth != nil {
		if err := c.onAuth(); err != nil {
			return err
		}
	}
	c.ws.SetReadLimit(min(limit, c.limit))
	return nil
}

// decode decodes a whole message and checks it against what the peer may
// declare.
func (c *Conn) decode(typ websocket.MessageType, data []byte) (Message, error) {
	if typ != websocket.MessageText {
		return Message{}, &DecodeError{Err: errors.New("binary frames are not part of the protocol")}
	}
	m, err := Decode(data)
	if err == nil && c.decl != nil {
		err = c.decl.Check(&m)
	}
	if err != nil {
		return Message{}, &DecodeError{Err: err}
	}
	return m, nil
}

// Dial connects to an orchestrator's WebSocket endpoint at url
// (ws://host:port/ws/volunteer).
func Dial(ctx context.Context, url string, header http.Header, opts Options) (*Conn, error) {
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient:      opts.HTTPClient,
		HTTPHeader:      header,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, err
	}
	return NewConn(ws, opts), nil
}

// Bind ties the connection to ctx, the context of the session that uses
// it: when ctx ends, the connection is closed. A Read or Write whose
// context ends closes the connection as well (the WebSocket cannot be
// read from or written to halfway through a message), but it watches its
// context anew for each message; one made with ctx itself after Bind
// relies on the watch Bind set up once. Call Bind before the connection is
// used with ctx, and at most once.
func (c *Conn) Bind(ctx context.Context) {
	if ctx.Done() == nil || !c.bound.CompareAndSwap(nil, &boundCtx{ctx: ctx}) {
		return
	}
	context.AfterFunc(ctx, func() { c.ws.CloseNow() })
}

// wsContext is the context to hand the WebSocket for a call made with
// ctx: none that it must watch when Bind already watches ctx.
func (c *Conn) wsContext(ctx context.Context) context.Context {
	if b := c.bound.Load(); b != nil && b.ctx == ctx {
		return context.Background()
	}
	return ctx
}

// ended returns err, or when ctx has ended (which closed the connection,
// as the call found) ctx's error wrapping it, as the WebSocket's own
// calls report an ended context.
func ended(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w: %w", context.Cause(ctx), err)
	}
	return err
}

// Read blocks for the next message and decodes it. A message that does not
// decode is returned as an error; the caller decides whether to close.
func (c *Conn) Read(ctx context.Context) (Message, error) {
	typ, r, err := c.ws.Reader(c.wsContext(ctx))
	if err != nil {
		return Message{}, ended(ctx, err)
	}
	buf := getBuffer()
	defer putBuffer(buf)
	if _, err := buf.ReadFrom(r); err != nil {
		return Message{}, ended(ctx, err)
	}
	return c.decode(typ, buf.Bytes())
}

// buffers holds the buffers that messages are read into and encoded in,
// so that a message costs no allocation of its size. A decoded Message
// holds copies of what it took from one (json.Unmarshal copies), and a
// written one has left it once the WebSocket's Write returns.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer is the largest buffer kept for reuse: the rare large
// message (a Wasm module, a big result) is not held on to.
const maxPooledBuffer = 64 << 10

func getBuffer() *bytes.Buffer { return buffers.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuffer {
		return
	}
	b.Reset()
	buffers.Put(b)
}

// ErrIdle is returned by ReadIdle when no data arrived for its idle limit.
var ErrIdle = errors.New("no data from the peer")

// ReadIdle is Read that fails with ErrIdle when no data arrives for idle:
// before a message starts, or between two parts of it. A large message
// that keeps arriving is read however long it takes, since its sender
// cannot send anything else (a heartbeat) meanwhile. Idleness closes the
// connection. One timer serves every call, reset as data arrives.
func (c *Conn) ReadIdle(ctx context.Context, idle time.Duration) (Message, error) {
	if c.idle == nil {
		c.idle = time.AfterFunc(idle, func() {
			c.idleFired.Store(true)
			c.ws.CloseNow()
		})
	} else {
		c.idle.Reset(idle)
	}
	m, err := c.readIdle(ctx, idle)
	if !c.idle.Stop() || c.idleFired.Load() {
		// The connection was closed for idleness, perhaps just as the
		// message ended: what comes next fails as it did.
		if err == nil {
			return m, nil
		}
		return Message{}, fmt.Errorf("%w for %s: %w", ErrIdle, idle, err)
	}
	return m, err
}

func (c *Conn) readIdle(ctx context.Context, idle time.Duration) (Message, error) {
	typ, r, err := c.ws.Reader(c.wsContext(ctx))
	if err != nil {
		return Message{}, ended(ctx, err)
	}
	buf := getBuffer()
	defer putBuffer(buf)
	c.idle.Reset(idle)
	var src io.Reader = &idleReader{r: r, t: c.idle, idle: idle}
	if c.budget != nil {
		var charged int64
		charged, err = readCharged(buf, src, c.budget)
		defer c.budget.used.Add(-charged)
	} else {
		_, err = buf.ReadFrom(src)
	}
	if err != nil {
		return Message{}, ended(ctx, err)
	}
	return c.decode(typ, buf.Bytes())
}

// idleReader restarts an idle timer whenever data arrives.
type idleReader struct {
	r    io.Reader
	t    *time.Timer
	idle time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.Reset(r.idle)
	}
	return n, err
}

// DecodeError is returned by Read for a message that arrived whole but is
// not a valid protocol message. The connection is still usable.
type DecodeError struct{ Err error }

func (e *DecodeError) Error() string { return e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// Write encodes and sends one message. It blocks until the message is
// written or ctx is done.
func (c *Conn) Write(ctx context.Context, m Message) error {
	buf := getBuffer()
	defer putBuffer(buf)
	if err := encode(buf, &m); err != nil {
		return err
	}
	return ended(ctx, c.ws.Write(c.wsContext(ctx), websocket.MessageText, buf.Bytes()))
}

// ErrWriteTimeout fails a WriteWithin that did not finish in time; the
// connection was closed.
var ErrWriteTimeout = errors.New("the peer did not take the message in time")

// WriteWithin is Write that fails with ErrWriteTimeout, closing the
// connection, when the message is not written within d. Its calls are
// written one at a time and share one timer.
func (c *Conn) WriteWithin(ctx context.Context, m Message, d time.Duration) error {
	buf := getBuffer()
	defer putBuffer(buf)
	if err := encode(buf, &m); err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.writeTimer == nil {
		c.writeTimer = time.AfterFunc(d, func() {
			c.writeFired.Store(true)
			c.ws.CloseNow()
		})
	} else {
		c.writeTimer.Reset(d)
	}
	err := c.ws.Write(c.wsContext(ctx), websocket.MessageText, buf.Bytes())
	if !c.writeTimer.Stop() || c.writeFired.Load() {
		if err == nil {
			return nil
		}
		return fmt.Errorf("%w (%s): %w", ErrWriteTimeout, d, err)
	}
	return ended(ctx, err)
}

// Close closes the connection with a normal status and reason.
func (c *Conn) Close(reason string) error {
	return c.ws.Close(websocket.StatusNormalClosure, reason)
}

// CloseGoingAway closes the connection with status 1001 (going away): the
// sender is stopping. It sends the close frame and waits (at most 5 s) for
// the peer's, which a concurrent Read consumes.
func (c *Conn) CloseGoingAway(reason string) error {
	return c.ws.Close(websocket.StatusGoingAway, reason)
}

// ClosedCleanly reports whether err ends a connection that the peer closed
// on purpose, with status 1000 (normal) or 1001 (going away), and the
// reason it gave. Any other error (a dropped connection, a timeout, a
// protocol error) is not a clean close.
func ClosedCleanly(err error) (reason string, ok bool) {
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		return "", false
	}
	if ce.Code != websocket.StatusNormalClosure && ce.Code != websocket.StatusGoingAway {
		return "", false
	}
	return ce.Reason, true
}

// CloseNow closes the connection without the closing handshake.
func (c *Conn) CloseNow() error { return c.ws.CloseNow() }
