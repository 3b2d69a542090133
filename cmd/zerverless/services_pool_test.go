package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// The orchestrator keeps the connections to an instance for the next
// requests to it (internal/orchestrator/servicepool.go).

func TestServiceStreamsReused(t *testing.T) {
	// Kept idle longer than any pause of a loaded machine between two
	// requests: what is counted is reuse, not the idle timeout.
	srv := serviceServer(t, func(c *ServerConfig) { c.Orchestrator.Services.IdleConnTimeout = time.Minute })
	sw := serviceWorker(t, srv, "", 2, echoService)
	mustDeployService(t, srv, "pool/svc", `{"runtime":"docker","docker_image":"p:1"}`)
	const n = 30
	for i := range n {
		body := []byte(fmt.Sprintf("request %d", i))
		resp, err := http.Post(srv.URL()+"/pool/svc/", "text/plain", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 207 || !bytes.Equal(got, body) {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, got)
		}
	}
	// Sequential requests reuse their connection: a new one is opened
	// only when the next request came before the last was back in the
	// pool (the transport dials while it waits for one), which a loaded
	// machine makes happen now and then, never for most of them.
	if got := sw.StreamsOpened(); got > n/3 {
		t.Fatalf("%d streams opened for %d sequential requests", got, n)
	}
}

func TestServiceIdleStreamsBounded(t *testing.T) {
	srv := serviceServer(t, func(c *ServerConfig) { c.Orchestrator.Services.IdleConnTimeout = 200 * time.Millisecond })
	entered, release := make(chan string, 10), make(chan struct{})
	sw := serviceWorker(t, srv, "", 2, blocking(entered, release))
	mustDeployService(t, srv, "bound/svc", `{"runtime":"docker","docker_image":"b:1","concurrency":2,"max_instances":1}`)
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL() + "/bound/svc/")
			if err != nil {
				codes <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	id := <-entered
	<-entered
	if n := sw.StreamsOpen(id); n != 2 {
		t.Fatalf("%d streams open with 2 requests in flight", n)
	}
	close(release)
	wg.Wait()
	for range 2 {
		if c := <-codes; c != 200 {
			t.Fatalf("status %d", c)
		}
	}
	for range 5 {
		if resp, err := http.Get(srv.URL() + "/bound/svc/"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("sequential: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		<-entered
	}
	if n := sw.StreamsOpened(); n > 2 {
		t.Fatalf("%d streams opened to an instance of concurrency 2", n)
	}
	// Idle, they close after IdleConnTimeout.
	eventually(t, 5*time.Second, func() error {
		if n := sw.StreamsOpen(id); n != 0 {
			return fmt.Errorf("%d idle streams open", n)
		}
		return nil
	})
}

// closingService answers, but closes a kept connection without
// answering the first request to /drop that comes on it (as an instance
// that ended an idle connection just as a request was sent on it), and
// closes every connection after answering /bye (without saying so).
func closingService(dropped *atomic.Int64) func(*job.ServiceInstance) http.Handler {
	return func(in *job.ServiceInstance) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			switch r.URL.Path {
			case "/drop":
				if dropped.Add(1) == 1 {
					c, _, _ := w.(http.Hijacker).Hijack()
					c.Close()
					return
				}
			case "/bye":
				c, bw, _ := w.(http.Hijacker).Hijack()
				fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b)+3, "bye"+string(b))
				bw.Flush()
				c.Close()
				return
			}
			fmt.Fprintf(w, "%s %s", r.URL.Path, b)
		})
	}
}

func TestServiceClosedIdleStreamRetried(t *testing.T) {
	srv := serviceServer(t, nil)
	var dropped atomic.Int64
	sw := serviceWorker(t, srv, "", 2, closingService(&dropped))
	mustDeployService(t, srv, "close/svc", `{"runtime":"docker","docker_image":"c:1"}`)
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL()+"/close/svc"+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, b := call("GET", "/a", ""); st != 200 || b != "/a " {
		t.Fatalf("first: %d %q", st, b)
	}
	// The instance closes the kept connection once the request is on it:
	// a GET is sent again, on a new connection.
	if st, b := call("GET", "/drop", ""); st != 200 || b != "/drop " {
		t.Fatalf("a GET on a connection the instance closed: %d %q", st, b)
	}
	// The instance closes a connection after its answer: the next
	// request, of any method, goes on a new one. (A request with a body
	// sent while the close is on its way may have reached the instance:
	// it fails, 502, unless it is a GET, HEAD, OPTIONS or TRACE or
	// carries an Idempotency-Key; servicepool.go.)
	for i := range 3 {
		if st, b := call("POST", "/bye", "x"); st != 200 || b != "byex" {
			t.Fatalf("a closing answer %d: %d %q", i, st, b)
		}
		// Once the orchestrator saw the end (and closed its side too).
		eventually(t, 5*time.Second, func() error {
			if n := sw.SessionStreams(); n != 0 {
				return fmt.Errorf("%d streams open", n)
			}
			return nil
		})
		if st, b := call("POST", "/c", "body"); st != 200 || b != "/c body" {
			t.Fatalf("a POST after a closed connection: %d %q", st, b)
		}
	}
}

func TestServicePooledStreamsOfOneServiceOnly(t *testing.T) {
	srv := serviceServer(t, nil)
	sw := serviceWorker(t, srv, "", 4, echoService)
	mustDeployService(t, srv, "alice/app", `{"runtime":"docker","docker_image":"a:1"}`)
	mustDeployService(t, srv, "bob/app", `{"runtime":"docker","docker_image":"b:1"}`)
	owner := map[string]string{}
	for i := range 20 {
		for _, name := range []string{"alice/app", "bob/app"} {
			s, st := getOK(t, srv.URL()+"/"+name+"/"+fmt.Sprint(i))
			if st != 207 {
				t.Fatalf("%s: %d", name, st)
			}
			if o, ok := owner[s.Instance]; ok && o != name {
				t.Fatalf("instance %s of %s answered %s", s.Instance, o, name)
			}
			owner[s.Instance] = name
		}
	}
	if len(owner) != 2 {
		t.Fatalf("instances: %v", owner)
	}
	if n := sw.StreamsOpened(); n > 4 {
		t.Fatalf("%d streams for 2 instances", n)
	}
}

func TestServicePooledStreamsWorkerLostAndRedeploy(t *testing.T) {
	srv := serviceServer(t, nil)
	entered, release := make(chan string, 10), make(chan struct{})
	slow := func(in *job.ServiceInstance) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/block" {
				blocking(entered, release)(in).ServeHTTP(w, r)
				return
			}
			echoService(in).ServeHTTP(w, r)
		})
	}
	a := serviceWorker(t, srv, "", 4, slow)
	mustDeployService(t, srv, "lost/svc", `{"runtime":"docker","docker_image":"l:1"}`)
	for range 3 {
		if _, st := getOK(t, srv.URL()+"/lost/svc/warm"); st != 207 {
			t.Fatalf("warm: %d", st)
		}
	}
	// A GET in flight on a kept connection of a worker that is lost ends
	// 502 at once (it is not sent again to the instance that is gone).
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get(srv.URL() + "/lost/svc/block")
		if err != nil {
			done <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-entered
	b := serviceWorker(t, srv, "", 4, slow)
	a.Close()
	select {
	case c := <-done:
		if c != 502 {
			t.Fatalf("the request in flight on the lost worker: %d, want 502", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight on the lost worker did not end")
	}
	first, st := getOK(t, srv.URL()+"/lost/svc/again")
	if st != 207 || len(b.Running()) != 1 {
		t.Fatalf("after the loss: %d, %v", st, b.Running())
	}
	getOK(t, srv.URL()+"/lost/svc/again")
	// A redeploy drains the old instance: its kept connections close,
	// and every request is answered, by the new version once it is ready.
	mustDeployService(t, srv, "lost/svc", `{"runtime":"docker","docker_image":"l:2"}`)
	eventually(t, 10*time.Second, func() error {
		s, st := getOK(t, srv.URL()+"/lost/svc/v")
		if st != 207 {
			t.Fatalf("during the redeploy: %d", st)
		}
		if s.Version != 2 {
			return fmt.Errorf("answered by version %d", s.Version)
		}
		if n := b.StreamsOpen(first.Instance); n != 0 {
			return fmt.Errorf("%d streams to the old instance open", n)
		}
		return nil
	})
	close(release)
}
