package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/zerverless/zerverless/internal/agent"
	"github.com/zerverless/zerverless/internal/job"
)

// The connections of one instance (one run of it, under one id) are an
// HTTP/1.1 client of its own: each is a stream to the instance through
// its worker, kept idle after an answer and reused by the next request
// to the same instance, up to the instance's concurrency. A request
// holds its instance's concurrency slot, not a connection: from the pick
// until its answer's body is done. The idle connections of an instance
// are closed when it is asked to stop, ends or loses its worker, and no
// new one opens then: a request never goes to an instance that is
// drained or gone.
//
// A stream is pipelined: the orchestrator writes "instance ID\n" and the
// request behind it at once; the worker's answer line ("ok" or "error
// MESSAGE") is read before the instance's answer, as the first bytes of
// the connection, and an error there fails the request (502 with the
// reason).
//
// A request on a reused connection that the instance closed meanwhile
// is sent again on a new connection when that is safe: always when none
// of it was written (the connection was seen closed first), and when it
// was written, for a request without side effects (GET, HEAD, OPTIONS,
// TRACE, or one that carries an Idempotency-Key), as net/http's
// transport does. The default idle timeout of these connections
// (ServicesConfig.IdleConnTimeout, 1 s) is shorter than the keep-alive
// timeouts of the common HTTP servers (Node 5 s, Gunicorn 2 s, nginx
// 75 s), so that it is the orchestrator that ends an idle connection,
// not the instance while a request is on its way.

// instancePool is the client of one run of an instance.
type instancePool struct {
	t *http.Transport

	mu     sync.Mutex
	closed bool // no new connection opens
}

// newInstancePool returns the pool of in's run now (under its id now),
// at most max connections at once; s.mu is held.
func (s *services) newInstancePool(in *instance, max int) *instancePool {
	id := in.id
	// sess is the session of the run's worker; nil once the run ended.
	sess := func() *yamux.Session {
		s.mu.Lock()
		defer s.mu.Unlock()
		if in.id != id || in.host == nil || in.host.sess == nil || in.host.sess.IsClosed() {
			return nil
		}
		return in.host.sess
	}
	p := &instancePool{}
	p.t = &http.Transport{
		// An answer's header is bounded as a request's is
		// (http.DefaultMaxHeaderBytes, 1 MiB): a larger one is answered
		// 502, so that an instance cannot make the orchestrator hold
		// the transport's default of 10 MiB for each request in flight.
		MaxResponseHeaderBytes: http.DefaultMaxHeaderBytes,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			ss := sess()
			if closed || ss == nil {
				return nil, errors.New("the instance is stopping or gone")
			}
			return s.open(ss, id)
		},
		DisableCompression:  true,
		MaxIdleConnsPerHost: max,
		MaxConnsPerHost:     max,
		IdleConnTimeout:     s.cfg.IdleConnTimeout,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     32 << 10,
		ReadBufferSize:      32 << 10,
	}
	return p
}

// close closes the idle connections and opens no more; the connections
// in use close when their request ends. It never blocks.
func (p *instancePool) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	go p.t.CloseIdleConnections()
}

// poolTransport is the transport of a request to one instance: the
// pool's, with a request body that can be sent again when none of it
// reached the connection (net/http's transport needs GetBody for that).
type poolTransport struct{ p *instancePool }

func (t poolTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody && r.GetBody == nil {
		rb := &replayBody{rc: r.Body}
		r2 := *r
		r2.Body = rb
		r2.GetBody = rb.again
		r = &r2
	}
	return t.p.t.RoundTrip(r)
}

// maxReplay bounds the start of a request body kept to send it again:
// more than the transport's write buffer, which is all that it reads of
// the body before its first write to the connection.
const maxReplay = 64 << 10

// replayBody is a request body that net/http may ask again (GetBody)
// when its connection was found closed before any of the request was
// written to it: it keeps what was read, up to maxReplay, and gives it
// again followed by the rest. Closing it does not close the caller's
// body, which must stay readable for that (the server closes it when the
// handler returns).
type replayBody struct {
	rc io.ReadCloser

	mu   sync.Mutex
	kept []byte
	over bool // more than maxReplay was read: it cannot be given again
	from io.Reader
}

func (b *replayBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	src := io.Reader(b.rc)
	if b.from != nil {
		src = b.from
	}
	n, err := src.Read(p)
	if !b.over && b.from == nil {
		if len(b.kept)+n > maxReplay {
			b.over, b.kept = true, nil
		} else {
			b.kept = append(b.kept, p[:n]...)
		}
	}
	return n, err
}

func (b *replayBody) Close() error { return nil }

func (b *replayBody) again() (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.over || b.from != nil {
		return nil, errors.New("the request's body was sent already")
	}
	b.from = io.MultiReader(bytes.NewReader(b.kept), b.rc)
	b.kept = nil
	return b, nil
}

// open opens a stream to instance id over sess: it writes the request
// for the instance and returns at once; the worker's answer is read as
// the connection's first bytes.
func (s *services) open(sess *yamux.Session, id string) (net.Conn, error) {
	st, err := sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("open a stream to its worker: %w", err)
	}
	if _, err := io.WriteString(st, "instance "+id+"\n"); err != nil {
		st.Close()
		return nil, fmt.Errorf("write to its worker: %w", err)
	}
	// The worker answers once it reached the instance.
	st.SetReadDeadline(time.Now().Add(s.cfg.StreamOpenTimeout))
	return &streamConn{Stream: st}, nil
}

// streamConn is a stream to an instance whose first line, the worker's
// answer, is read before its first byte.
type streamConn struct {
	*yamux.Stream
	answered bool // guarded by the reader: only one goroutine reads
	r        io.Reader
	// eof: a Read ended; a request written after would go to a
	// connection its instance closed.
	mu  sync.Mutex
	eof bool
}

// errInstanceClosed is a write to a connection whose instance closed it.
var errInstanceClosed = errors.New("the instance closed the connection")

func (c *streamConn) Read(p []byte) (int, error) {
	if !c.answered {
		line, br, err := agent.ReadHeader(c.Stream)
		if err != nil {
			c.ended()
			return 0, fmt.Errorf("read its worker's answer: %w", err)
		}
		c.Stream.SetReadDeadline(time.Time{})
		if line != "ok" {
			c.ended()
			why, _ := strings.CutPrefix(line, "error ")
			return 0, fmt.Errorf("its worker could not reach it: %s", job.CutText(why, agent.MaxHeader))
		}
		c.answered, c.r = true, br
	}
	n, err := c.r.Read(p)
	if err != nil {
		c.ended()
	}
	return n, err
}

func (c *streamConn) ended() {
	c.mu.Lock()
	c.eof = true
	c.mu.Unlock()
}

// Write refuses, writing nothing, once the instance closed the
// connection: the request is then sent again on another.
func (c *streamConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	eof := c.eof
	c.mu.Unlock()
	if eof {
		return 0, errInstanceClosed
	}
	return c.Stream.Write(p)
}
