// Package netlimit bounds what the peers of an HTTP server can hold: its
// connections in total and per remote address, the long-lived sessions
// (worker WebSockets) apart from them, and how long and how slowly a
// request may be read. Every bound leaves room under the process's
// descriptor limit for everything else the process opens.
//
// A Listener wraps a net.Listener. Each accepted connection belongs to the
// HTTP pool until Promote moves it to the session pool; a connection that
// finds the HTTP pool full either takes the place of the oldest connection
// of the address that holds the most (when that address holds more than
// the newcomer's would), or is closed at once. So one peer, or many, can
// fill the pool but never keep a peer with few connections out of it, and
// sessions never compete with requests.
package netlimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Config bounds an HTTP server's connections and request reads. Start from
// DefaultConfig.
type Config struct {
	// Descriptors is the process's open-file limit (RLIMIT_NOFILE, the
	// soft limit once raised to the hard one). MaxConns and MaxSessions
	// default from it and must leave ReservedDescriptors of it free.
	// Default 1024; serve sets the real limit.
	Descriptors int
	// MaxConns is the most HTTP connections open at once, sessions not
	// counted. 0 (the default) derives it: of the descriptors not
	// reserved, four fifths.
	MaxConns int
	// MaxConnsPerAddr is the most HTTP connections one remote address
	// (an IPv4 address, or an IPv6 /64) holds at once. 0 (the default)
	// derives it: DefaultConnsPerAddr, or MaxConns when that is fewer (a
	// reverse proxy or a busy client on one address opens many).
	MaxConnsPerAddr int
	// MaxSessions is the most promoted sessions (authenticated worker
	// WebSockets) at once. 0 (the default) derives it: of the descriptors
	// not reserved, one fifth, at least 16.
	MaxSessions int
	// ReadHeaderTimeout bounds the read of a request's headers (default
	// 10 s).
	ReadHeaderTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request (default 30 s).
	IdleTimeout time.Duration
	// MinBodyRate is the slowest average rate, in bytes per second, at
	// which a request body is read once BodyGrace has passed (default
	// 16 KiB/s). A body that falls behind ends its connection.
	MinBodyRate int64
	// BodyGrace is the time a body is given before MinBodyRate applies
	// (default 10 s).
	BodyGrace time.Duration
}

// ReservedDescriptors is the least number of descriptors that MaxConns and
// MaxSessions leave to the rest of the process: the store, the embedded
// workers and their sandboxes, the Docker client, logs. Derived limits
// leave more: a fifth of Descriptors when that is larger.
const ReservedDescriptors = 512

// DefaultConnsPerAddr is the connections one address may hold when
// Config.MaxConnsPerAddr is left to derive.
const DefaultConnsPerAddr = 512

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Descriptors:       1024,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MinBodyRate:       16 << 10,
		BodyGrace:         10 * time.Second,
	}
}

// Resolve returns c with MaxConns and MaxSessions derived where they are
// 0, or an error naming the first setting that makes no sense.
func (c Config) Resolve() (Config, error) {
	if c.Descriptors <= ReservedDescriptors {
		return c, fmt.Errorf("descriptors: the open-file limit %d leaves nothing for connections once %d are reserved; raise it (ulimit -n)", c.Descriptors, ReservedDescriptors)
	}
	avail := c.Descriptors - max(ReservedDescriptors, c.Descriptors/5)
	switch {
	case c.MaxConns < 0:
		return c, fmt.Errorf("--max-conns: must not be negative (0 derives it from the open-file limit)")
	case c.MaxSessions < 0:
		return c, fmt.Errorf("--max-worker-sessions: must not be negative (0 derives it from the open-file limit)")
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = max(avail/5, 16)
	}
	if c.MaxConns == 0 {
		c.MaxConns = max(avail-c.MaxSessions, 16)
	}
	if c.MaxConnsPerAddr == 0 {
		c.MaxConnsPerAddr = min(DefaultConnsPerAddr, c.MaxConns)
	}
	switch {
	case c.MaxConns+c.MaxSessions > c.Descriptors-ReservedDescriptors:
		return c, fmt.Errorf("--max-conns: %d connections and %d worker sessions leave fewer than %d of the %d open files for the rest of the process", c.MaxConns, c.MaxSessions, ReservedDescriptors, c.Descriptors)
	case c.MaxConnsPerAddr < 0:
		return c, fmt.Errorf("--max-conns-per-addr: must not be negative (0 derives it)")
	case c.MaxConnsPerAddr > c.MaxConns:
		return c, fmt.Errorf("--max-conns-per-addr: %d is more than max-conns (%d)", c.MaxConnsPerAddr, c.MaxConns)
	case c.ReadHeaderTimeout <= 0:
		return c, fmt.Errorf("--read-header-timeout: must be positive")
	case c.IdleTimeout <= 0:
		return c, fmt.Errorf("--idle-timeout: must be positive")
	case c.MinBodyRate < 1:
		return c, fmt.Errorf("--min-body-rate: must be at least 1 byte per second")
	case c.BodyGrace <= 0:
		return c, fmt.Errorf("--body-grace: must be positive")
	}
	return c, nil
}

// Stats counts what a Listener did.
type Stats struct {
	// Conns and Sessions are open now.
	Conns, Sessions int
	// Refused were closed at accept; Evicted were closed to make room.
	Refused, Evicted int64
}

// Listener enforces Config's connection limits on the connections it
// accepts. Close the Listener to stop accepting; connections it handed out
// stay open until closed.
type Listener struct {
	net.Listener
	cfg Config

	refused, evicted atomic.Int64

	mu sync.Mutex
	// byAddr holds each address's HTTP-pool connections, oldest first;
	// conns counts them all and sessions the promoted ones.
	byAddr   map[netip.Prefix][]*conn
	conns    int
	sessions int
}

// NewListener wraps ln. cfg must have been resolved (Config.Resolve).
func NewListener(ln net.Listener, cfg Config) *Listener {
	return &Listener{Listener: ln, cfg: cfg, byAddr: make(map[netip.Prefix][]*conn)}
}

// Stats reports the open connections and what was refused or evicted.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Conns: l.conns, Sessions: l.sessions, Refused: l.refused.Load(), Evicted: l.evicted.Load()}
}

// Accept returns the next connection the limits admit. A connection they
// do not admit is closed and never returned; another may be closed to make
// room for it.
func (l *Listener) Accept() (net.Conn, error) { return l.accept(l.Listener) }

// Also returns a listener that accepts from ln under l's limits: its
// connections count with l's, against one MaxConns and MaxSessions, each
// under its remote address, and Promote finds them through l.ConnContext.
// Closing it closes ln; l stays open.
func (l *Listener) Also(ln net.Listener) net.Listener { return &also{Listener: ln, l: l} }

type also struct {
	net.Listener
	l *Listener
}

func (a *also) Accept() (net.Conn, error) { return a.l.accept(a.Listener) }

func (l *Listener) accept(ln net.Listener) (net.Conn, error) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return nil, err
		}
		key := addrKey(nc.RemoteAddr())
		c := &conn{Conn: nc, l: l, key: key}
		l.mu.Lock()
		victim, ok := l.admitLocked(key)
		if ok {
			l.byAddr[key] = append(l.byAddr[key], c)
			l.conns++
		}
		l.mu.Unlock()
		if victim != nil {
			l.evicted.Add(1)
			victim.Conn.Close()
		}
		if !ok {
			l.refused.Add(1)
			nc.Close()
			continue
		}
		return c, nil
	}
}

// admitLocked decides whether a connection from key may join the pool,
// and which connection, if any, leaves to make room (already taken out of
// the pool; the caller closes it).
func (l *Listener) admitLocked(key netip.Prefix) (victim *conn, ok bool) {
	mine := len(l.byAddr[key])
	if mine >= l.cfg.MaxConnsPerAddr {
		return nil, false
	}
	if l.conns < l.cfg.MaxConns {
		return nil, true
	}
	var top netip.Prefix
	most := 0
	for k, cs := range l.byAddr {
		if len(cs) > most {
			top, most = k, len(cs)
		}
	}
	if most <= mine+1 {
		return nil, false
	}
	victim = l.byAddr[top][0]
	l.removeLocked(victim)
	return victim, true
}

// removeLocked takes c out of the HTTP pool.
func (l *Listener) removeLocked(c *conn) {
	if c.gone || c.session {
		return
	}
	c.gone = true
	cs := l.byAddr[c.key]
	for i, x := range cs {
		if x == c {
			cs = append(cs[:i], cs[i+1:]...)
			break
		}
	}
	if len(cs) == 0 {
		delete(l.byAddr, c.key)
	} else {
		l.byAddr[c.key] = cs
	}
	l.conns--
}

// ConnContext is an http.Server ConnContext that lets Promote find the
// connection of a request.
func (l *Listener) ConnContext(ctx context.Context, nc net.Conn) context.Context {
	if c, ok := nc.(*conn); ok && c.l == l {
		return context.WithValue(ctx, connKey{}, c)
	}
	return ctx
}

// ErrTooManySessions is returned by Promote when MaxSessions are open.
var ErrTooManySessions = errors.New("the orchestrator holds as many worker sessions as it may")

// Promote moves the connection of the request whose context is ctx from
// the HTTP pool to the session pool: it no longer counts against the
// connection limits and is never evicted, and counts against MaxSessions
// until it is closed. It fails with ErrTooManySessions when the session
// pool is full, and does nothing for a connection no Listener accepted
// (an httptest server). Call it once the session is authenticated.
func Promote(ctx context.Context) error {
	c, ok := ctx.Value(connKey{}).(*conn)
	if !ok {
		return nil
	}
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.session {
		return nil
	}
	if c.gone {
		return net.ErrClosed
	}
	if l.sessions >= l.cfg.MaxSessions {
		return fmt.Errorf("%w (%d)", ErrTooManySessions, l.cfg.MaxSessions)
	}
	l.removeLocked(c)
	c.gone = false
	c.session = true
	l.sessions++
	return nil
}

type connKey struct{}

// conn is an accepted connection; closing it gives its place back.
type conn struct {
	net.Conn
	l   *Listener
	key netip.Prefix
	// gone and session are guarded by l.mu.
	gone, session bool
}

func (c *conn) Close() error {
	l := c.l
	l.mu.Lock()
	if c.session {
		c.session = false
		c.gone = true
		l.sessions--
	} else {
		l.removeLocked(c)
	}
	l.mu.Unlock()
	return c.Conn.Close()
}

// addrKey is the address a connection counts against: its IPv4 address,
// or the /64 of its IPv6 address (one host usually has a whole /64). All
// connections whose address is no IP (in-process ones, see Also) count
// under one key of their own, the zero Prefix, which no IP has.
func addrKey(a net.Addr) netip.Prefix {
	var ip netip.Addr
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ = netip.AddrFromSlice(ta.IP)
	} else if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	p, _ := ip.Prefix(bits)
	return p
}

// LimitBody ends the connection of a request whose body arrives slower than
// MinBodyRate on average once BodyGrace has passed: it sets the read
// deadline before each read of the body, and clears it once the whole body
// has been read, so that a long answer (a function that runs for minutes)
// keeps its connection. A body that falls behind fails its read, and the
// deadline stays passed, so the server closes the connection rather than
// drain the rest. Requests without a body pass untouched.
func LimitBody(cfg Config, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			r.Body = &rateBody{
				ReadCloser: r.Body,
				rc:         http.NewResponseController(w),
				start:      time.Now(),
				grace:      cfg.BodyGrace,
				rate:       cfg.MinBodyRate,
				length:     r.ContentLength,
			}
		}
		h.ServeHTTP(w, r)
	})
}

type rateBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	start  time.Time
	grace  time.Duration
	rate   int64
	length int64 // -1 when unknown (chunked)
	n      int64
	done   bool
}

func (b *rateBody) Read(p []byte) (int, error) {
	if b.done {
		return b.ReadCloser.Read(p)
	}
	due := b.start.Add(b.grace + time.Duration(float64(b.n)/float64(b.rate)*float64(time.Second)))
	b.rc.SetReadDeadline(due)
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err == io.EOF || (b.length > 0 && b.n >= b.length) {
		// The body is over: the server's background read of the
		// connection must not time out while the handler answers.
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = fmt.Errorf("request body arrived slower than %d bytes per second: %w", b.rate, err)
	}
	return n, err
}
