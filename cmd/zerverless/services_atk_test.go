package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// A caller that asks for a service's answer and never reads it holds the
// instance's slot no longer than the service's timeout (and a short
// grace for the answer's last writes): the proxy's write to such a
// caller blocks once the connection's buffers are full, and the others
// would be refused (503) for as long as that caller stays connected.
func TestServiceUnreadAnswerReleasesItsSlot(t *testing.T) {
	srv := serviceServer(t, nil)
	serviceWorker(t, srv, "", 1, stallingService)
	mustDeployService(t, srv, "evil/unread", `{"runtime":"docker","docker_image":"e:1","max_instances":1,"concurrency":1,"timeout_seconds":1,"public":true}`)
	eventually(t, 10*time.Second, func() error {
		if _, st := getOK(t, srv.URL()+"/evil/unread/ok"); st != 207 {
			return fmt.Errorf("before: %d", st)
		}
		return nil
	})

	host := strings.TrimPrefix(srv.URL(), "http://")
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	// The request, and not one byte of the answer read.
	fmt.Fprintf(c, "GET /evil/unread/endless HTTP/1.1\r\nHost: %s\r\n\r\n", host)

	eventually(t, 60*time.Second, func() error {
		if _, st := getOK(t, srv.URL()+"/evil/unread/ok"); st != 207 {
			return fmt.Errorf("while a caller does not read its answer: %d", st)
		}
		return nil
	})
}
