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
	"testing"

	"github.com/zerverless/zerverless/internal/job"
)

func TestBlocked(t *testing.T) {
	local := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	for addr, blocked := range map[string]bool{
		"127.0.0.1": true, "127.1.2.3": true, "::1": true, "::ffff:127.0.0.1": true,
		"10.0.0.1": true, "172.16.5.4": true, "172.17.0.1": true, "192.168.1.1": true,
		"169.254.169.254": true, "fe80::1": true, "fd00:ec2::254": true, "fc00::1": true,
		"100.64.0.1": true, "100.127.255.255": true, "0.0.0.0": true, "::": true, "0.1.2.3": true,
		"224.0.0.1": true, "ff02::1": true, "255.255.255.255": true, "240.0.0.1": true,
		"64:ff9b::7f00:1": true, "64:ff9b::a9fe:a9fe": true, "2002:7f00:1::": true,
		"203.0.113.9":   true, // the worker's own network
		"93.184.216.34": false, "1.1.1.1": false, "100.128.0.1": false, "2606:4700::1111": false,
		"64:ff9b::101:101": false, "172.32.0.1": false,
	} {
		why := Blocked(netip.MustParseAddr(addr), local)
		if (why != "") != blocked {
			t.Errorf("%s: blocked %q, want blocked %v", addr, why, blocked)
		}
	}
}

// scriptedResolver answers each lookup with the next of its answers: a
// name that resolves to a public address when checked and to loopback
// afterwards.
type scriptedResolver struct {
	mu      sync.Mutex
	answers [][]netip.Addr
	calls   int
}

func (r *scriptedResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.answers[min(r.calls, len(r.answers)-1)]
	r.calls++
	return a, nil
}

func patterns(t testing.TB, s ...string) []job.EgressPattern {
	t.Helper()
	p, err := job.ParseEgress(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// proxyClient serves one connection of p and returns the client's end;
// served is closed when Serve returned.
func proxyClient(p *Proxy) net.Conn {
	c, _ := proxyClientDone(p)
	return c
}

func proxyClientDone(p *Proxy) (c net.Conn, served chan struct{}) {
	client, server := net.Pipe()
	served = make(chan struct{})
	go func() {
		defer close(served)
		p.Serve(context.Background(), server)
	}()
	return client, served
}

// TestProxyDialsWhatItChecked: the address checked is the address
// dialed, once, whatever the name resolves to later; a name that
// resolves to loopback is refused unless the owner names the address.
func TestProxyDialsWhatItChecked(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host %s path %s", r.Host, r.URL.Path)
	}))
	defer srv.Close()
	var dialed []string
	var mu sync.Mutex
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	res := &scriptedResolver{answers: [][]netip.Addr{{netip.MustParseAddr("93.184.216.34")}, {netip.MustParseAddr("127.0.0.1")}}}
	p := New(Config{Allow: patterns(t, "rebind.example:80"), Owner: patterns(t, "*.example:80"), Resolver: res, Dial: dial})
	c := proxyClient(p)
	fmt.Fprint(c, "GET http://rebind.example/x HTTP/1.1\r\nHost: elsewhere\r\nProxy-Authorization: secret\r\n\r\n")
	b, _ := io.ReadAll(c)
	if !strings.Contains(string(b), "host rebind.example path /x") {
		t.Fatalf("answer: %q", b)
	}
	if res.calls != 1 || len(dialed) != 1 || dialed[0] != "93.184.216.34:80" {
		t.Fatalf("lookups %d, dialed %v", res.calls, dialed)
	}
	// The next lookup says loopback: refused, nothing dialed.
	c = proxyClient(p)
	fmt.Fprint(c, "CONNECT rebind.example:80 HTTP/1.1\r\nHost: rebind.example:80\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("CONNECT to a name now on loopback: %v %v", resp, err)
	}
	if len(dialed) != 1 || !strings.Contains(strings.Join(p.Notes(), "\n"), "refused rebind.example:80: 127.0.0.1 is a loopback address") {
		t.Fatalf("dialed %v, notes %q", dialed, p.Notes())
	}
	// The owner names the address: allowed.
	p = New(Config{Allow: patterns(t, "rebind.example:80"), Owner: patterns(t, "*.example:80", "127.0.0.1:80"), Resolver: res, Dial: dial})
	c, served := proxyClientDone(p)
	fmt.Fprint(c, "CONNECT rebind.example:80 HTTP/1.1\r\nHost: rebind.example:80\r\n\r\nGET /y HTTP/1.0\r\nHost: a\r\n\r\n")
	b, _ = io.ReadAll(c)
	if !strings.Contains(string(b), "200 Connection established") || !strings.Contains(string(b), "path /y") || dialed[1] != "127.0.0.1:80" {
		t.Fatalf("answer %q, dialed %v", b, dialed)
	}
	c.Close()
	<-served
	rec := p.Records()
	if len(rec) != 1 || rec[0].Host != "rebind.example" || rec[0].Connections != 1 || rec[0].BytesSent == 0 || rec[0].BytesReceived == 0 {
		t.Fatalf("records %+v", rec)
	}
}

// TestProxyRefusesBadRequests: what is not a proxy request, or not
// allowed, is answered and closed; the connection limit holds.
func TestProxyRefusesBadRequests(t *testing.T) {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, fmt.Errorf("no dial expected (%s)", addr)
	}
	p := New(Config{Allow: patterns(t, "a.example:443", "b.example:443"), Owner: patterns(t, "a.example:443"),
		Resolver: &scriptedResolver{answers: [][]netip.Addr{{netip.MustParseAddr("93.184.216.34")}}}, Dial: dial, MaxConns: 1})
	for req, status := range map[string]int{
		"GET /relative HTTP/1.1\r\nHost: a.example\r\n\r\n":             http.StatusBadRequest,
		"GET https://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n":    http.StatusBadRequest,
		"CONNECT a.example HTTP/1.1\r\nHost: a.example\r\n\r\n":         http.StatusBadRequest,
		"not http at all\r\n\r\n":                                       http.StatusBadRequest,
		"CONNECT c.example:443 HTTP/1.1\r\nHost: c\r\n\r\n":             http.StatusForbidden,
		"CONNECT b.example:443 HTTP/1.1\r\nHost: b\r\n\r\n":             http.StatusForbidden,
		"CONNECT a.example:444 HTTP/1.1\r\nHost: a\r\n\r\n":             http.StatusForbidden,
		"CONNECT 93.184.216.34:443 HTTP/1.1\r\nHost: a\r\n\r\n":         http.StatusForbidden,
		"GET http://a.example:443/ HTTP/1.1\r\nHost: a.example\r\n\r\n": http.StatusForbidden, // dial fails
	} {
		c := proxyClient(p)
		go func() { _, _ = io.WriteString(c, req) }()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != status {
			t.Errorf("%q: %v %v, want %d", req, resp, err, status)
		}
		c.Close()
	}
	notes := strings.Join(p.Notes(), "\n")
	for _, want := range []string{"refused c.example:443: not on the allow-list", "refused b.example:443: not allowed by this worker's owner"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	// The failed dial took the one connection: the next is refused by
	// the limit.
	c := proxyClient(p)
	go func() { _, _ = io.WriteString(c, "CONNECT a.example:443 HTTP/1.1\r\nHost: a\r\n\r\n") }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusForbidden || !strings.Contains(strings.Join(p.Notes(), "\n"), "limit of 1 connections") {
		t.Errorf("past the connection limit: %v %v %q", resp, err, p.Notes())
	}
}

// TestProxyHeaderLimit: endless headers end the connection.
func TestProxyHeaderLimit(t *testing.T) {
	p := New(Config{Allow: patterns(t, "a.example:80"), Owner: patterns(t, "a.example:80")})
	c := proxyClient(p)
	go func() {
		_, _ = io.WriteString(c, "GET http://a.example/ HTTP/1.1\r\n")
		for {
			if _, err := io.WriteString(c, "X-Pad: "+strings.Repeat("a", 1000)+"\r\n"); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("%v %v", resp, err)
	}
	c.Close()
}

// FuzzProxyRequest: whatever a container sends, the proxy answers or
// closes, and dials only the one address its allow-lists name.
func FuzzProxyRequest(f *testing.F) {
	for _, s := range []string{
		"CONNECT a.example:443 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://a.example:443/x HTTP/1.1\r\nHost: b\r\n\r\n",
		"CONNECT [::1]:443 HTTP/1.1\r\n\r\n",
		"GET http://127.0.0.1:443/ HTTP/1.0\r\n\r\n",
		"CONNECT A.EXAMPLE.:443 HTTP/1.1\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, req string) {
		var dialed []string
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialed = append(dialed, addr)
			return nil, fmt.Errorf("no network here")
		}
		res := &scriptedResolver{answers: [][]netip.Addr{{netip.MustParseAddr("93.184.216.34")}}}
		p := New(Config{Allow: patterns(t, "a.example:443"), Owner: patterns(t, "*.example:443"), Resolver: res, Dial: dial})
		c, served := proxyClientDone(p)
		go func() { _, _ = io.Copy(io.Discard, c) }()
		go func() {
			// The end of the request is the end of the connection.
			_, _ = io.WriteString(c, req)
			c.Close()
		}()
		<-served
		c.Close()
		for _, a := range dialed {
			if a != "93.184.216.34:443" {
				t.Fatalf("%q dialed %s", req, a)
			}
		}
	})
}
