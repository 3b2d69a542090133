package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerverless/zerverless/internal/agent"
	"github.com/zerverless/zerverless/internal/job"
)

// Resolver resolves a destination's name, which the proxy passes
// absolute (ending in a dot) so that no search domain is appended;
// *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Limits of one proxy (one job).
const (
	// maxHeaderBytes bounds a request's line and headers.
	maxHeaderBytes = 64 << 10
	// headerTimeout bounds the wait for a request's headers.
	headerTimeout = 30 * time.Second
	// resolveTimeout and dialTimeout bound a lookup and a dial.
	resolveTimeout = 10 * time.Second
	dialTimeout    = 10 * time.Second
	// maxNotes bounds the refusal lines kept.
	maxNotes = 64
)

// Config is what one job's proxy allows. Allow and Owner are both
// required: a destination must match a pattern of each.
type Config struct {
	// Allow are the job's patterns.
	Allow []job.EgressPattern
	// Owner are the worker owner's patterns. An address pattern here is
	// the only way to reach an address that Blocked refuses.
	Owner []job.EgressPattern
	// Local are the worker's own networks (LocalPrefixes), refused like
	// private ones.
	Local []netip.Prefix
	// Resolver resolves names; nil: net.DefaultResolver.
	Resolver Resolver
	// Dial dials the checked address; nil: a net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// MaxBytes bounds the bytes sent and received, together, over all
	// the job's connections; past it every connection is cut. 0: no
	// bound.
	MaxBytes int64
	// MaxConns bounds the connections the job opens in all; past it a
	// request is refused. 0: no bound.
	MaxConns int
	// Window, when positive, makes MaxBytes and MaxConns bounds per
	// window of that length rather than per proxy, for what runs long (a
	// service instance): past MaxBytes in a window every connection is
	// cut and new ones are refused until the window ends; then both
	// counts start again. MaxConns then also bounds the connections open
	// at once, so that those kept from earlier windows do not add up.
	// Records count everything, in at most job.MaxInstanceEgress
	// destinations (the first ones; what an instance's report carries).
	Window time.Duration
	// Now is the clock of Window; nil: time.Now.
	Now func() time.Time
	// Subject names what the proxy serves in its refusals ("job" when
	// empty; "instance").
	Subject string
}

// Proxy is one job's egress proxy. Serve it each connection the job's
// container opens; Close it when the job ends. Its methods are safe for
// concurrent use.
type Proxy struct {
	cfg Config

	total atomic.Int64 // bytes both ways, all connections

	mu sync.Mutex // guards what follows
	// dests are the destinations reached, in order of first connection.
	dests  []*dest
	conns  int // connections dialed or being dialed
	live   int // of them, those not closed yet
	notes  []string
	extra  int    // refusal lines past maxNotes
	cut    string // why the byte limit cut the connections; "": it did not
	open   map[io.Closer]struct{}
	closed bool
	// With a Window: its end, and the bytes and connections within it.
	windowEnd time.Time
	wBytes    int64
	wConns    int
}

type dest struct {
	host       string
	port       int
	sent, recv atomic.Int64
	conns      atomic.Int64
}

// New returns a proxy for cfg.
func New(cfg Config) *Proxy {
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: dialTimeout}
		cfg.Dial = d.DialContext
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Subject == "" {
		cfg.Subject = "job"
	}
	return &Proxy{cfg: cfg, open: map[io.Closer]struct{}{}}
}

// Serve answers one connection of the job: an HTTP CONNECT, or a plain
// HTTP request with an absolute http:// URL, allowed or refused. It
// blocks until the connection ends, and closes c.
func (p *Proxy) Serve(ctx context.Context, c net.Conn) {
	defer c.Close()
	if !p.track(c) {
		return
	}
	defer p.untrack(c)
	lr := &io.LimitedReader{R: c, N: maxHeaderBytes}
	br := bufio.NewReader(lr)
	_ = c.SetReadDeadline(time.Now().Add(headerTimeout))
	req, err := http.ReadRequest(br)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		reply(c, http.StatusBadRequest, "egress: not an HTTP proxy request\n")
		return
	}
	lr.N = math.MaxInt64
	var host, port string
	switch {
	case req.Method == http.MethodConnect:
		host, port, err = net.SplitHostPort(req.Host)
	case req.URL.IsAbs() && req.URL.Scheme == "http" && req.URL.Host != "":
		host, port = req.URL.Hostname(), req.URL.Port()
		if port == "" {
			port = "80"
		}
	default:
		err = errors.New("bad request")
	}
	if err != nil {
		reply(c, http.StatusBadRequest, "egress: send CONNECT host:port, or a request for an absolute http:// URL\n")
		return
	}
	target := net.JoinHostPort(host, port)
	up, d, why := p.connect(ctx, host, port)
	if why != "" {
		msg := fmt.Sprintf("egress: refused %s: %s", target, why)
		p.note(msg)
		reply(c, http.StatusForbidden, msg+"\n")
		return
	}
	defer p.releaseConn()
	defer up.Close()
	if !p.track(up) {
		return
	}
	defer p.untrack(up)
	cu := &countedConn{c: up, p: p, d: d}
	if req.Method == http.MethodConnect {
		if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
			return
		}
		agent.Splice(cu, cu, c, br)
		return
	}
	for _, v := range req.Header.Values("Connection") {
		for _, h := range strings.Split(v, ",") {
			req.Header.Del(strings.TrimSpace(h))
		}
	}
	for _, h := range []string{"Proxy-Connection", "Proxy-Authorization", "Connection", "Keep-Alive", "Te", "Trailer", "Upgrade"} {
		req.Header.Del(h)
	}
	req.Close = true // one request per connection, both sides
	req.Host = req.URL.Host
	if err := req.Write(cu); err != nil {
		return
	}
	_, _ = io.Copy(c, cu)
}

// connect decides on host:port and dials the address it checked. why
// says why not, for the job to read.
func (p *Proxy) connect(ctx context.Context, host, portStr string) (net.Conn, *dest, string) {
	n, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || n == 0 {
		return nil, nil, "not a port"
	}
	port := uint16(n)
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || strings.HasSuffix(host, ".") {
		return nil, nil, "not a host name"
	}
	match := func(ps []job.EgressPattern) bool {
		return slices.ContainsFunc(ps, func(q job.EgressPattern) bool { return q.Matches(host, port) })
	}
	switch {
	case !match(p.cfg.Allow):
		return nil, nil, "not on the allow-list of this " + p.cfg.Subject
	case !match(p.cfg.Owner):
		return nil, nil, "not allowed by this worker's owner"
	}
	if why := p.takeConn(); why != "" {
		return nil, nil, why
	}
	dialed := false
	defer func() {
		if !dialed {
			p.releaseConn()
		}
	}()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a.Unmap()}
	} else {
		rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
		// Absolute: the worker's search domains do not extend the name.
		addrs, err = p.cfg.Resolver.LookupNetIP(rctx, "ip", host+".")
		cancel()
		if err != nil || len(addrs) == 0 {
			return nil, nil, fmt.Sprintf("cannot resolve the name: %v", err)
		}
	}
	var refusals []string
	for _, a := range addrs {
		a = a.Unmap()
		if why := Blocked(a, p.cfg.Local); why != "" && !p.ownerNames(a, port) {
			refusals = append(refusals, fmt.Sprintf("%s is %s", a, why))
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		// The address checked is the address dialed: no second lookup.
		c, err := p.cfg.Dial(dctx, "tcp", netip.AddrPortFrom(a, port).String())
		cancel()
		if err != nil {
			refusals = append(refusals, fmt.Sprintf("%s: %v", a, err))
			continue
		}
		dialed = true
		return c, p.dest(host, int(port)), ""
	}
	return nil, nil, strings.Join(refusals, "; ") + " (only an address this worker's owner names in --docker-egress is reached on the worker's machine or networks)"
}

// ownerNames reports whether the owner's list names address a with port.
func (p *Proxy) ownerNames(a netip.Addr, port uint16) bool {
	return slices.ContainsFunc(p.cfg.Owner, func(q job.EgressPattern) bool { return q.Addr == a && q.Port == port })
}

func (p *Proxy) takeConn() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.Window > 0 {
		p.rollLocked()
	}
	if p.cut != "" {
		return p.cut
	}
	switch {
	case p.cfg.Window > 0 && p.cfg.MaxConns > 0 && p.wConns >= p.cfg.MaxConns:
		return fmt.Sprintf("the %s opened its limit of %d connections per %s; new ones are refused until %s",
			p.cfg.Subject, p.cfg.MaxConns, p.cfg.Window, p.windowEnd.UTC().Format(time.RFC3339))
	case p.cfg.Window > 0 && p.cfg.MaxConns > 0 && p.live >= p.cfg.MaxConns:
		return fmt.Sprintf("the %s has its limit of %d connections open at once; one must close first", p.cfg.Subject, p.cfg.MaxConns)
	case p.cfg.Window <= 0 && p.cfg.MaxConns > 0 && p.conns >= p.cfg.MaxConns:
		return fmt.Sprintf("the %s opened its limit of %d connections", p.cfg.Subject, p.cfg.MaxConns)
	}
	p.conns++
	p.wConns++
	p.live++
	return ""
}

// releaseConn gives back the place of a connection takeConn counted: it
// closed, or was never dialed.
func (p *Proxy) releaseConn() {
	p.mu.Lock()
	p.live--
	p.mu.Unlock()
}

// rollLocked starts a new window when the current one ended: the
// window's counts and its cut start again.
func (p *Proxy) rollLocked() {
	if now := p.cfg.Now(); !now.Before(p.windowEnd) {
		p.windowEnd = now.Add(p.cfg.Window)
		p.wBytes, p.wConns, p.cut = 0, 0, ""
	}
}

func (p *Proxy) dest(host string, port int) *dest {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.dests {
		if d.host == host && d.port == port {
			d.conns.Add(1)
			return d
		}
	}
	d := &dest{host: host, port: port}
	d.conns.Add(1)
	if p.cfg.Window > 0 && len(p.dests) >= job.MaxInstanceEgress {
		// Counted in the total, not recorded: the instance's report
		// carries the first destinations only.
		return d
	}
	p.dests = append(p.dests, d)
	return d
}

// track adds c to the open connections, or reports false when the proxy
// is closed or cut.
func (p *Proxy) track(c io.Closer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.open[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c io.Closer) {
	p.mu.Lock()
	delete(p.open, c)
	p.mu.Unlock()
}

// count adds n bytes and cuts every connection once the total is past
// MaxBytes.
func (p *Proxy) count(n int) {
	if n <= 0 {
		return
	}
	t := p.total.Add(int64(n))
	if p.cfg.Window > 0 {
		p.countWindow(n)
		return
	}
	if p.cfg.MaxBytes > 0 && t > p.cfg.MaxBytes {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.cut == "" {
			p.cut = fmt.Sprintf("the %s's egress passed its limit of %d bytes (sent and received): its connections were cut", p.cfg.Subject, p.cfg.MaxBytes)
			p.noteLocked("egress: " + p.cut)
		}
		p.closeOpenLocked()
	}
}

// countWindow is count with a Window.
func (p *Proxy) countWindow(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rollLocked()
	p.wBytes += int64(n)
	if p.cfg.MaxBytes <= 0 || p.wBytes <= p.cfg.MaxBytes {
		return
	}
	if p.cut == "" {
		p.cut = fmt.Sprintf("the %s's egress passed its limit of %d bytes (sent and received) per %s: its connections were cut, and new ones are refused until %s",
			p.cfg.Subject, p.cfg.MaxBytes, p.cfg.Window, p.windowEnd.UTC().Format(time.RFC3339))
		p.noteLocked("egress: " + p.cut)
	}
	p.closeOpenLocked()
}

func (p *Proxy) closeOpenLocked() {
	for c := range p.open {
		c.Close()
	}
}

func (p *Proxy) note(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noteLocked(s)
}

func (p *Proxy) noteLocked(s string) {
	if len(p.notes) >= maxNotes {
		p.extra++
		return
	}
	p.notes = append(p.notes, s)
}

// Close closes every connection and refuses those that come later.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for c := range p.open {
		c.Close()
	}
}

// Records returns each destination reached, in order of first
// connection, with its bytes and connections.
func (p *Proxy) Records() []job.EgressRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]job.EgressRecord, 0, len(p.dests))
	for _, d := range p.dests {
		out = append(out, job.EgressRecord{Host: d.host, Port: d.port, BytesSent: d.sent.Load(),
			BytesReceived: d.recv.Load(), Connections: int(d.conns.Load())})
	}
	return out
}

// Notes returns the lines that say what was refused and cut, for the
// job's stderr.
func (p *Proxy) Notes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.notes)
	if p.extra > 0 {
		out = append(out, fmt.Sprintf("egress: and %d more refusals", p.extra))
	}
	return out
}

// TakeNotes returns the lines noted since the last TakeNotes (as Notes
// does) and forgets them: what runs long reports its refusals as they
// come, maxNotes at most between two takes.
func (p *Proxy) TakeNotes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.notes
	if p.extra > 0 {
		out = append(out, fmt.Sprintf("egress: and %d more refusals", p.extra))
	}
	p.notes, p.extra = nil, 0
	return out
}

// Cut says why the byte limit cut the job's connections ("" when it did
// not).
func (p *Proxy) Cut() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// reply writes a short HTTP response that ends the connection.
func reply(c net.Conn, status int, body string) {
	_, _ = fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}

// countedConn counts what crosses an upstream connection. It has only
// the methods of a net.Conn (and CloseWrite), so that io.Copy cannot go
// around its Read and Write.
type countedConn struct {
	c net.Conn
	p *Proxy
	d *dest
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.c.Read(b)
	c.d.recv.Add(int64(n))
	c.p.count(n)
	return n, err
}

func (c *countedConn) Write(b []byte) (int, error) {
	n, err := c.c.Write(b)
	c.d.sent.Add(int64(n))
	c.p.count(n)
	return n, err
}

func (c *countedConn) Close() error                       { return c.c.Close() }
func (c *countedConn) LocalAddr() net.Addr                { return c.c.LocalAddr() }
func (c *countedConn) RemoteAddr() net.Addr               { return c.c.RemoteAddr() }
func (c *countedConn) SetDeadline(t time.Time) error      { return c.c.SetDeadline(t) }
func (c *countedConn) SetReadDeadline(t time.Time) error  { return c.c.SetReadDeadline(t) }
func (c *countedConn) SetWriteDeadline(t time.Time) error { return c.c.SetWriteDeadline(t) }

// CloseWrite passes a half close on.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.c.Close()
}
