package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// A caller that asks for a service's answer and never reads it holds the
// instance's slot no longer than the service's timeout (and a short
// grace for the answer's last writes): the proxy's write to such a
// caller blocks once the connection's buffers are full, and the others
// would be refused (503) for as long as that caller stays connected. The
// same through a protocol switch: a caller that switched, then neither
// reads nor writes while the instance writes.
func TestServiceUnreadAnswerReleasesItsSlot(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(*job.ServiceInstance) http.Handler
		request string // after the request line's path, the headers
	}{
		{"answer", stallingService, "/endless HTTP/1.1\r\nHost: %s\r\n\r\n"},
		{"switch", floodingUpgrade, "/flood HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: zv-flood\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := serviceServer(t, nil)
			serviceWorker(t, srv, "", 1, tc.handler)
			mustDeployService(t, srv, "evil/unread", `{"runtime":"docker","docker_image":"e:1","max_instances":1,"concurrency":1,"timeout_seconds":1,"public":true}`)
			answers := func(when string) func() error {
				return func() error {
					if _, st := getOK(t, srv.URL()+"/evil/unread/ok"); st != 207 {
						return fmt.Errorf("%s: %d", when, st)
					}
					return nil
				}
			}
			eventually(t, 10*time.Second, answers("before"))

			host := strings.TrimPrefix(srv.URL(), "http://")
			c, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.(*net.TCPConn).SetReadBuffer(4 << 10)
			// The request, and not one byte of the answer read.
			fmt.Fprintf(c, "GET /evil/unread"+tc.request, host)
			eventually(t, 60*time.Second, answers("while a caller does not read its answer"))
		})
	}
}

// floodingUpgrade switches to the protocol its caller asked for, then
// writes without end; other paths are stallingService's.
func floodingUpgrade(in *job.ServiceInstance) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/flood" {
			stallingService(in).ServeHTTP(w, r)
			return
		}
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: zv-flood\r\n\r\n")
		rw.Flush()
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
}
