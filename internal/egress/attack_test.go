package egress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestBlockedDeprecatedForms: the IPv6 forms that carry an IPv4 address
// or a site's own network (IPv4-compatible ::a.b.c.d, IPv4-translated
// ::ffff:0:a.b.c.d, site-local fec0::/10, Teredo) are refused like the
// addresses they stand for.
func TestBlockedDeprecatedForms(t *testing.T) {
	for _, a := range []string{
		"::127.0.0.1", "::7f00:1", "::a9fe:a9fe", "::10.0.0.1", "::1.1.1.1",
		"::ffff:0:127.0.0.1", "::ffff:0:a9fe:a9fe", "::ffff:0:1.1.1.1",
		"fec0::1", "feff::1", "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
		// NAT64 and 6to4 carrying 0.0.0.0, and local-use NAT64 (where it
		// goes is the local network's choice), with 127.0.0.1 where RFC
		// 6052 puts it for a /48 prefix.
		"64:ff9b::", "64:ff9b::0.0.0.0", "2002::", "2002::1", "64:ff9b:1:7f00:0:100::",
	} {
		if Blocked(netip.MustParseAddr(a), nil) == "" {
			t.Errorf("%s is not blocked", a)
		}
	}
	for _, a := range []string{"2001:4860:4860::8888", "2a00:1450:4001::1", "8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"} {
		if why := Blocked(netip.MustParseAddr(a), nil); why != "" {
			t.Errorf("%s is blocked: %s", a, why)
		}
	}
}

// namesResolver records the names it is asked and answers each from a
// table (with or without the final dot), as a DNS server would.
type namesResolver struct {
	mu     sync.Mutex
	asked  []string
	answer map[string][]netip.Addr
}

func (r *namesResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, host)
	if a, ok := r.answer[strings.TrimSuffix(host, ".")]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *namesResolver) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.asked...)
}

// ask sends req on a connection of p and returns the status of the
// answer (0: none).
func ask(t *testing.T, p *Proxy, req string) (int, string) {
	t.Helper()
	c, served := proxyClientDone(p)
	defer func() { c.Close(); <-served }()
	go func() { _, _ = io.WriteString(c, req) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestProxyLooksUpAbsoluteNames: the name looked up is exactly the name
// the lists allowed, as an absolute name, so that the worker's search
// domains (resolv.conf "search corp.internal") cannot turn an allowed
// name into one of the worker's own network; a name with more than one
// final dot is not a name.
func TestProxyLooksUpAbsoluteNames(t *testing.T) {
	res := &namesResolver{answer: map[string][]netip.Addr{"a.example": {netip.MustParseAddr("93.184.216.34")}}}
	dial := func(context.Context, string, string) (net.Conn, error) { return nil, fmt.Errorf("no network here") }
	p := New(Config{Allow: patterns(t, "a.example:443"), Owner: patterns(t, "*.example:443"), Resolver: res, Dial: dial})
	for _, host := range []string{"a.example", "A.Example.", "a.example.."} {
		ask(t, p, "CONNECT "+host+":443 HTTP/1.1\r\n\r\n")
	}
	if got := res.names(); len(got) != 2 || got[0] != "a.example." || got[1] != "a.example." {
		t.Fatalf("looked up %q, want a.example. twice", got)
	}
}

// TestProxyAddressSpellings: the other spellings of loopback (decimal,
// octal, hex, short, IPv4-mapped and -compatible IPv6, a zone) reach
// nothing and are never resolved as names; the mapped form of an address
// the owner named is that address.
func TestProxyAddressSpellings(t *testing.T) {
	res := &namesResolver{answer: map[string][]netip.Addr{}}
	var dialed []string
	var mu sync.Mutex
	dial := func(_ context.Context, _, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		return nil, fmt.Errorf("no network here")
	}
	p := New(Config{Allow: patterns(t, "a.example:80", "*.example:80"), Owner: patterns(t, "*.example:80"), Resolver: res, Dial: dial})
	for _, host := range []string{
		"2130706433", "0177.0.0.1", "0x7f.1", "0x7f000001", "127.1", "017700000001", "127.0.0.1",
		"[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::127.0.0.1]", "[::1]", "[fe80::1%25lo]", "[0:0:0:0:0:ffff:7f00:1]",
		"localhost", "127.0.0.1.example.evil", "a.example@127.0.0.1",
	} {
		for _, req := range []string{
			"CONNECT " + host + ":80 HTTP/1.1\r\nHost: a.example:80\r\n\r\n",
			"GET http://" + host + "/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
		} {
			if status, body := ask(t, p, req); status == http.StatusOK || status == 0 {
				t.Errorf("%q: %d %s", req, status, body)
			}
		}
	}
	if len(dialed) != 0 || len(res.names()) != 0 {
		t.Fatalf("dialed %v, looked up %v", dialed, res.names())
	}
	// The owner names 127.0.0.1:80 and the job asks for it: its mapped
	// spelling is the same address.
	p = New(Config{Allow: patterns(t, "127.0.0.1:80"), Owner: patterns(t, "127.0.0.1:80"), Resolver: res, Dial: dial})
	ask(t, p, "CONNECT [::ffff:127.0.0.1]:80 HTTP/1.1\r\n\r\n")
	if len(dialed) != 1 || dialed[0] != "127.0.0.1:80" {
		t.Fatalf("dialed %v", dialed)
	}
}

// TestProxyPorts: a port is 1-65535; nothing else is dialed.
func TestProxyPorts(t *testing.T) {
	res := &namesResolver{answer: map[string][]netip.Addr{"a.example": {netip.MustParseAddr("93.184.216.34")}}}
	var dialed atomic.Int32
	dial := func(context.Context, string, string) (net.Conn, error) {
		dialed.Add(1)
		return nil, fmt.Errorf("no network here")
	}
	p := New(Config{Allow: patterns(t, "a.example:443"), Owner: patterns(t, "a.example:443"), Resolver: res, Dial: dial})
	for _, port := range []string{"0", "65536", "65979", "-443", "+443", "0x1bb", "443 ", "", "4_43", "1e3"} {
		if status, _ := ask(t, p, "CONNECT a.example:"+port+" HTTP/1.1\r\n\r\n"); status == http.StatusOK || status == 0 {
			t.Errorf("port %q: %d", port, status)
		}
	}
	if dialed.Load() != 0 {
		t.Fatalf("dialed %d times", dialed.Load())
	}
}

// upstream is a server that counts the requests it gets and answers a
// redirect to loopback.
func upstream(t *testing.T) (dial func(context.Context, string, string) (net.Conn, error), requests *atomic.Int32, dialed *atomic.Int32) {
	requests, dialed = new(atomic.Int32), new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "http://127.0.0.1:1/secret", http.StatusFound)
			return
		}
		fmt.Fprintf(w, "host %s path %s", r.Host, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	return dial, requests, dialed
}

// TestProxyOneRequestPerConnection: a second request on the connection
// (pipelined, or smuggled after a body that Content-Length and chunked
// disagree on) never reaches the upstream, a redirect is passed back,
// not followed, and the Host and userinfo of the request do not choose
// the destination.
func TestProxyOneRequestPerConnection(t *testing.T) {
	dial, requests, dialed := upstream(t)
	res := &namesResolver{answer: map[string][]netip.Addr{"a.example": {netip.MustParseAddr("93.184.216.34")}}}
	p := New(Config{Allow: patterns(t, "a.example:80"), Owner: patterns(t, "a.example:80"), Resolver: res, Dial: dial})
	for _, c := range []struct{ req, want string }{
		{"GET http://a.example/one HTTP/1.1\r\nHost: a.example\r\n\r\nGET http://a.example/two HTTP/1.1\r\nHost: a.example\r\n\r\n", "path /one"},
		{"POST http://a.example/cl HTTP/1.1\r\nHost: a.example\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://a.example/smuggled HTTP/1.1\r\n\r\n", "path /cl"},
		{"GET http://a.example/redirect HTTP/1.1\r\n\r\n", "/secret"},
		{"GET http://127.0.0.1@a.example/u HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "host a.example path /u"},
	} {
		c1, served := proxyClientDone(p)
		go func() { _, _ = io.WriteString(c1, c.req) }()
		b, _ := io.ReadAll(c1)
		<-served
		if !strings.Contains(string(b), c.want) || strings.Contains(string(b), "two") || strings.Contains(string(b), "smuggled") {
			t.Errorf("%q: %q", c.req, b)
		}
	}
	if requests.Load() != 4 || dialed.Load() != 4 {
		t.Fatalf("upstream got %d requests on %d connections, want 4 on 4", requests.Load(), dialed.Load())
	}
}

// TestProxyResolvesToMany: of the addresses a name resolves to, the
// blocked ones (private, link-local with a zone) are never dialed; a name
// with only such addresses is refused.
func TestProxyResolvesToMany(t *testing.T) {
	var dialed []string
	var mu sync.Mutex
	dial := func(_ context.Context, _, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		return nil, fmt.Errorf("no network here")
	}
	res := &namesResolver{answer: map[string][]netip.Addr{
		"mixed.example": {netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("::ffff:169.254.169.254"), netip.MustParseAddr("93.184.216.34")},
		"ll.example":    {netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("fd00::1")},
	}}
	p := New(Config{Allow: patterns(t, "*.example:80"), Owner: patterns(t, "*.example:80"), Resolver: res, Dial: dial})
	ask(t, p, "CONNECT mixed.example:80 HTTP/1.1\r\n\r\n")
	ask(t, p, "CONNECT ll.example:80 HTTP/1.1\r\n\r\n")
	if len(dialed) != 1 || dialed[0] != "93.184.216.34:80" {
		t.Fatalf("dialed %v", dialed)
	}
	if n := strings.Join(p.Notes(), "\n"); !strings.Contains(n, "fe80::1%eth0 is a link-local address") || !strings.Contains(n, "fd00::1 is a private address") {
		t.Fatalf("notes %s", n)
	}
}

// TestProxyUploadLimit: the byte limit counts what the job sends too, by
// CONNECT and by a plain request's body.
func TestProxyUploadLimit(t *testing.T) {
	dial, _, _ := upstream(t)
	res := &namesResolver{answer: map[string][]netip.Addr{"a.example": {netip.MustParseAddr("93.184.216.34")}}}
	for _, head := range []string{
		"CONNECT a.example:80 HTTP/1.1\r\n\r\nPOST /up HTTP/1.1\r\nHost: a.example\r\nContent-Length: 100000000\r\n\r\n",
		"POST http://a.example/up HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n",
	} {
		p := New(Config{Allow: patterns(t, "a.example:80"), Owner: patterns(t, "a.example:80"), Resolver: res, Dial: dial, MaxBytes: 64 << 10})
		c, served := proxyClientDone(p)
		go func() { _, _ = io.Copy(io.Discard, c) }()
		sent := 0
		go func() {
			_, _ = io.WriteString(c, head)
			buf := make([]byte, 4096)
			for sent < 100000000 {
				n, err := c.Write(buf)
				sent += n
				if err != nil {
					return
				}
			}
		}()
		<-served
		c.Close()
		if p.Cut() == "" {
			t.Errorf("%q: not cut", head)
		}
		if rec := p.Records(); len(rec) != 1 || rec[0].BytesSent > 64<<10+64<<10 {
			t.Errorf("%q: records %+v", head, rec)
		}
	}
}

// TestProxyHeldConnections: a connection that never finishes its request
// (slowloris) takes none of the job's connections, and the end of the job
// (Close) ends it and an idle tunnel alike.
func TestProxyHeldConnections(t *testing.T) {
	dial, _, _ := upstream(t)
	res := &namesResolver{answer: map[string][]netip.Addr{"a.example": {netip.MustParseAddr("93.184.216.34")}}}
	p := New(Config{Allow: patterns(t, "a.example:80"), Owner: patterns(t, "a.example:80"), Resolver: res, Dial: dial, MaxConns: 1})
	var held []chan struct{}
	for range 8 {
		c, served := proxyClientDone(p)
		defer c.Close()
		go func() { _, _ = io.WriteString(c, "CONNECT a.example:80 HTTP/1.1\r\nX-Slow: ") }()
		held = append(held, served)
	}
	tunnel, served := proxyClientDone(p)
	defer tunnel.Close()
	go func() { _, _ = io.WriteString(tunnel, "CONNECT a.example:80 HTTP/1.1\r\n\r\n") }()
	br := bufio.NewReader(tunnel)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("the tunnel beside the held connections: %q %v", line, err)
	}
	held = append(held, served)
	p.Close()
	for _, s := range held {
		<-s
	}
}
