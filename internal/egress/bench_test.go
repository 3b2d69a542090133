package egress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// BenchmarkProxyCONNECT moves 32 MiB through a CONNECT tunnel of the
// proxy and, as the baseline, over a direct connection to the same
// server, and reports the ratio of their times (proxy/direct); and
// through a proxy with a Window (a service instance's), whose counts
// take its lock, against the plain one (window/proxy).
func BenchmarkProxyCONNECT(b *testing.B) {
	const size = 32 << 20
	src, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	go func() {
		buf := make([]byte, size)
		for {
			c, err := src.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = c.Write(buf); c.Close() }()
		}
	}()
	port := src.Addr().(*net.TCPAddr).Port
	pats := patterns(b, "127.0.0.1:"+strconv.Itoa(port))
	listen := func(p *Proxy) net.Listener {
		pl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				c, err := pl.Accept()
				if err != nil {
					return
				}
				go p.Serve(context.Background(), c)
			}
		}()
		return pl
	}
	pl := listen(New(Config{Allow: pats, Owner: pats}))
	defer pl.Close()
	wl := listen(New(Config{Allow: pats, Owner: pats, Window: time.Hour, MaxBytes: 1 << 50}))
	defer wl.Close()
	direct := func() {
		c, err := net.Dial("tcp", src.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if n, _ := io.Copy(io.Discard, c); n != size {
			b.Fatalf("read %d", n)
		}
	}
	proxied := func(pl net.Listener) {
		c, err := net.Dial("tcp", pl.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n", port)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("%v %v", resp, err)
		}
		if n, _ := io.Copy(io.Discard, br); n != size {
			b.Fatalf("read %d", n)
		}
	}
	var td, tp, tw time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		direct()
		t1 := time.Now()
		proxied(pl)
		t2 := time.Now()
		proxied(wl)
		td += t1.Sub(t0)
		tp += t2.Sub(t1)
		tw += time.Since(t2)
	}
	b.ReportMetric(float64(tp)/float64(td), "proxy/direct")
	b.ReportMetric(float64(tw)/float64(tp), "window/proxy")
	b.ReportMetric(float64(size)*float64(b.N)/tp.Seconds()/(1<<20), "proxy-MiB/s")
}

// BenchmarkCount times the count of one 32 KiB read by a plain proxy and,
// alternately, by one with a Window, and reports their ratio
// (window/plain): what the window's lock costs per read.
func BenchmarkCount(b *testing.B) {
	plain := New(Config{MaxBytes: 1 << 62})
	window := New(Config{MaxBytes: 1 << 62, Window: time.Hour})
	const batch = 1000
	var tp, tw time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		for range batch {
			plain.count(32 << 10)
		}
		t1 := time.Now()
		for range batch {
			window.count(32 << 10)
		}
		tp += t1.Sub(t0)
		tw += time.Since(t1)
	}
	b.ReportMetric(float64(tw)/float64(tp), "window/plain")
	b.ReportMetric(float64(tw)/float64(b.N*batch), "window-ns/read")
	b.ReportMetric(float64(tp)/float64(b.N*batch), "plain-ns/read")
}
