package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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
}

// Conn is one end of a protocol session over a WebSocket. Write may be
// called from several goroutines at once; Read from one at a time.
type Conn struct {
	ws *websocket.Conn
}

// NewConn wraps an established WebSocket.
func NewConn(ws *websocket.Conn, opts Options) *Conn {
	limit := opts.ReadLimit
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	ws.SetReadLimit(limit)
	return &Conn{ws: ws}
}

// Accept upgrades an HTTP request to a protocol connection.
// originPatterns lists the Origin hosts a browser page may connect from
// (see websocket.AcceptOptions); requests without an Origin header (native
// workers) are always accepted.
func Accept(w http.ResponseWriter, r *http.Request, originPatterns []string, opts Options) (*Conn, error) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OriginPatterns:  originPatterns,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, err
	}
	return NewConn(ws, opts), nil
}

// Dial connects to an orchestrator's WebSocket endpoint at url
// (ws://host:port/ws/volunteer).
func Dial(ctx context.Context, url string, header http.Header, opts Options) (*Conn, error) {
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPHeader:      header,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, err
	}
	return NewConn(ws, opts), nil
}

// Read blocks for the next message and decodes it. A message that does not
// decode is returned as an error; the caller decides whether to close.
func (c *Conn) Read(ctx context.Context) (Message, error) {
	typ, data, err := c.ws.Read(ctx)
	if err != nil {
		return Message{}, err
	}
	if typ != websocket.MessageText {
		return Message{}, &DecodeError{Err: errors.New("binary frames are not part of the protocol")}
	}
	m, err := Decode(data)
	if err != nil {
		return Message{}, &DecodeError{Err: err}
	}
	return m, nil
}

// ErrIdle is returned by ReadIdle when no data arrived for its idle limit.
var ErrIdle = errors.New("no data from the peer")

// ReadIdle is Read that fails with ErrIdle when no data arrives for idle:
// before a message starts, or between two parts of it. A large message
// that keeps arriving is read however long it takes, since its sender
// cannot send anything else (a heartbeat) meanwhile.
func (c *Conn) ReadIdle(ctx context.Context, idle time.Duration) (Message, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t := time.AfterFunc(idle, func() { cancel(ErrIdle) })
	defer t.Stop()
	typ, r, err := c.ws.Reader(ctx)
	var data []byte
	if err == nil {
		t.Reset(idle)
		data, err = io.ReadAll(&idleReader{r: r, t: t, idle: idle})
	}
	if err != nil {
		if errors.Is(context.Cause(ctx), ErrIdle) {
			return Message{}, fmt.Errorf("%w for %s: %w", ErrIdle, idle, err)
		}
		return Message{}, err
	}
	t.Stop()
	if typ != websocket.MessageText {
		return Message{}, &DecodeError{Err: errors.New("binary frames are not part of the protocol")}
	}
	m, err := Decode(data)
	if err != nil {
		return Message{}, &DecodeError{Err: err}
	}
	return m, nil
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
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s message: %w", m.Type, err)
	}
	return c.ws.Write(ctx, websocket.MessageText, data)
}

// Close closes the connection with a normal status and reason.
func (c *Conn) Close(reason string) error {
	return c.ws.Close(websocket.StatusNormalClosure, reason)
}

// CloseNow closes the connection without the closing handshake.
func (c *Conn) CloseNow() error { return c.ws.CloseNow() }
