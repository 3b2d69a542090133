package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/protocol/protocoltest"
)

// The orchestrator's side of docker services against fake workers that
// speak the real protocol over real WebSockets: each instance is an
// in-process HTTP server reached through the worker's stream connection.

func serviceServer(t *testing.T, edit func(*ServerConfig)) *Server {
	t.Helper()
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Orchestrator.Services.ReconcileInterval = 50 * time.Millisecond
	cfg.Orchestrator.Services.RestartBackoff = 50 * time.Millisecond
	// Long transfers on a loaded machine must not pass for silence.
	cfg.Orchestrator.HeartbeatInterval = 2 * time.Second
	if edit != nil {
		edit(&cfg)
	}
	srv, _ := startServer(t, cfg)
	return srv
}

func serviceCaps(n int) job.Capabilities {
	return job.Capabilities{Runtimes: []job.Type{job.TypeDocker}, Concurrency: 1,
		Docker: &job.DockerCapabilities{Services: n}}
}

// serviceWorker registers a trusted fake worker offering n instances.
func serviceWorker(t *testing.T, srv *Server, src string, n int, h func(*job.ServiceInstance) http.Handler) *protocoltest.ServiceWorker {
	t.Helper()
	w := protocoltest.RegisterFrom(t, srv.WorkerURL(), src, testWorkerSecret, serviceCaps(n))
	return protocoltest.ServeServices(w, srv.URL(), h)
}

func deployService(t *testing.T, srv *Server, token, name, body string) answer {
	t.Helper()
	return send(t, "POST", srv.URL()+"/api/deploy/"+name, token, "application/json", []byte(body))
}

func mustDeployService(t *testing.T, srv *Server, name, body string) {
	t.Helper()
	if a := deployService(t, srv, srv.AdminToken(), name, body); a.status != 201 && a.status != 200 {
		t.Fatalf("deploy %s: %v", name, a)
	}
}

// seen is what an instance's server saw of a request.
type seen struct {
	Method, Path, RawQuery string
	Header                 http.Header
	BodySHA                [32]byte
	BodyLen                int
	Instance               string
	Version                int64
}

func echoService(in *job.ServiceInstance) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s := seen{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header,
			BodySHA: sha256.Sum256(b), BodyLen: len(b), Instance: in.ID, Version: in.Version}
		j, _ := json.Marshal(s)
		w.Header().Set("X-Seen", string(j))
		w.Header().Add("X-Multi", "one")
		w.Header().Add("X-Multi", "two")
		w.Header().Set("Set-Cookie", "platform=stolen")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.WriteHeader(207)
		w.Write(b)
	})
}

func seenOf(t *testing.T, h http.Header) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal([]byte(h.Get("X-Seen")), &s); err != nil {
		t.Fatalf("X-Seen %q: %v", h.Get("X-Seen"), err)
	}
	return s
}

func TestServiceSeedExampleExactRequest(t *testing.T) {
	srv := serviceServer(t, nil)
	sw := serviceWorker(t, srv, "", 2, echoService)
	// The seed's example, as written (plus the token).
	a := deployService(t, srv, srv.AdminToken(), "user/my-service",
		`{"runtime": "docker", "docker_image": "myapp:latest", "docker_command": ["/app/entrypoint.sh"]}`)
	if a.status != 201 {
		t.Fatalf("deploy: %v", a)
	}
	var v api.DeploymentView
	json.Unmarshal(a.body, &v)
	if v.Service == nil || v.Service.Port != 8080 || v.Service.MinInstances != 0 || v.Service.MaxInstances != 10 || v.Service.Concurrency != 80 {
		t.Fatalf("deployment %s: want the documented defaults", a.body)
	}

	body := make([]byte, 256*40)
	for i := range body {
		body[i] = byte(i)
	}
	req, _ := http.NewRequest("PUT", srv.URL()+"/user/my-service/a/b%20c?x=1&x=2&y=%2F", bytes.NewReader(body))
	req.Header.Add("X-Rep", "a")
	req.Header.Add("X-Rep", "b")
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
	req.Header.Set("Cookie", "session=platform")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "must go")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 207 || !bytes.Equal(got, body) {
		t.Fatalf("answer %d, %d bytes (want 207 and the body back)", resp.StatusCode, len(got))
	}
	in := <-sw.Starts()
	if in.Spec.Image != "myapp:latest" || strings.Join(in.Spec.Command, " ") != "/app/entrypoint.sh" || in.Spec.Port != 8080 || in.Namespace != "user" || in.Service != "user/my-service" {
		t.Fatalf("service_start %+v", in)
	}
	s := seenOf(t, resp.Header)
	if s.Method != "PUT" || s.Path != "/a/b c" || s.RawQuery != "x=1&x=2&y=%2F" || s.BodyLen != len(body) || s.BodySHA != sha256.Sum256(body) {
		t.Fatalf("the instance saw %+v", s)
	}
	if strings.Join(s.Header.Values("X-Rep"), ",") != "a,b" || s.Header.Get("X-Forwarded-Prefix") != "/user/my-service" {
		t.Fatalf("headers seen %v", s.Header)
	}
	for _, h := range []string{"Authorization", "Cookie", "X-Hop"} {
		if s.Header.Get(h) != "" {
			t.Errorf("the instance got the caller's %s", h)
		}
	}
	if strings.Join(resp.Header.Values("X-Multi"), ",") != "one,two" || resp.Header.Get("Content-Length") != fmt.Sprint(len(body)) {
		t.Errorf("answer headers %v", resp.Header)
	}
	if csp := resp.Header.Values("Content-Security-Policy"); resp.Header.Get("Set-Cookie") != "" || len(csp) != 1 || !strings.Contains(csp[0], "sandbox") {
		t.Errorf("shared-origin rules not applied: %v", resp.Header)
	}

	// The deployment shows its instance.
	a = send(t, "GET", srv.URL()+"/api/deploy/user/my-service", srv.AdminToken(), "", nil)
	json.Unmarshal(a.body, &v)
	if len(v.Instances) != 1 || v.Instances[0].WorkerID != sw.ID || v.Instances[0].State != "ready" {
		t.Fatalf("instances: %s", a.body)
	}
	m := send(t, "GET", srv.URL()+"/metrics", srv.AdminToken(), "", nil)
	for _, name := range []string{`zerverless_service_cold_starts_total{service="user/my-service"} 1`, "zerverless_service_instances 1", `zerverless_service_request_seconds_count{code="2xx",service="user/my-service"} 1`} {
		if !strings.Contains(string(m.body), name) {
			t.Errorf("metrics lack %s", name)
		}
	}
	// Undeploy stops it.
	if a := send(t, "DELETE", srv.URL()+"/api/deploy/user/my-service", srv.AdminToken(), "", nil); a.status != 204 {
		t.Fatalf("undeploy: %v", a)
	}
	select {
	case id := <-sw.Stopped():
		if id != in.ID {
			t.Fatalf("stopped %s, want %s", id, in.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("undeploy did not stop the instance")
	}
}

func TestServiceDeployValidation(t *testing.T) {
	srv := serviceServer(t, nil)
	for body, field := range map[string]string{
		`{"runtime":"docker"}`:                                                        "docker_image",
		`{"runtime":"docker","docker_image":"a","port":0}`:                            "port",
		`{"runtime":"docker","docker_image":"a","max_instances":1000}`:                "max_instances",
		`{"runtime":"docker","docker_image":"a","min_instances":3,"max_instances":2}`: "min_instances",
		`{"runtime":"docker","docker_image":"a","concurrency":0}`:                     "concurrency",
		`{"runtime":"docker","docker_image":"a","idle_timeout_seconds":-1}`:           "idle_timeout_seconds",
		`{"runtime":"docker","docker_image":"a","readiness_path":"x"}`:                "readiness_path",
		`{"runtime":"docker","docker_image":"a","docker_env":{"PORT":"1"}}`:           "docker_env",
		`{"runtime":"lua","code":"x","docker_image":"a"}`:                             "runtime",
		`{"runtime":"docker","docker_image":"a","code":"x"}`:                          "code",
		`{"runtime":"docker","docker_image":"a","dockerfile":"FROM a"}`:               "dockerfile",
	} {
		a := deployService(t, srv, srv.AdminToken(), "ns/svc", body)
		var e struct{ Error, Field string }
		json.Unmarshal(a.body, &e)
		if a.status != 400 || e.Field != field || e.Error == "" {
			t.Errorf("%s: %v, want 400 naming %s", body, a, field)
		}
	}
}

func TestServiceLargeBodiesBoundedMemory(t *testing.T) {
	srv := serviceServer(t, nil)
	const size = 100 << 20
	serviceWorker(t, srv, "", 1, func(*job.ServiceInstance) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "POST" {
				n, _ := io.Copy(io.Discard, r.Body)
				fmt.Fprint(w, n)
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(size))
			io.Copy(w, io.LimitReader(zeros{}, size))
		})
	})
	mustDeployService(t, srv, "big/svc", `{"runtime":"docker","docker_image":"big:1"}`)
	var peak atomic.Uint64
	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	resp, err := http.Post(srv.URL()+"/big/svc/up", "application/octet-stream", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != fmt.Sprint(size) {
		t.Fatalf("upload: %d %s", resp.StatusCode, b)
	}
	resp, err = http.Get(srv.URL() + "/big/svc/down")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	close(stop)
	wg.Wait()
	if n != size || err != nil {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	// The fake worker's instance, the orchestrator and the client share
	// this process: what they all hold stays far below the body's size.
	if grow := int64(peak.Load()) - int64(base.HeapInuse); grow > 48<<20 {
		t.Fatalf("the heap grew by %d MiB while 100 MiB went each way", grow>>20)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestServiceEventStream(t *testing.T) {
	srv := serviceServer(t, nil)
	release := make(chan struct{})
	serviceWorker(t, srv, "", 1, func(*job.ServiceInstance) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			<-release
			fmt.Fprint(w, "data: last\n\n")
		})
	})
	mustDeployService(t, srv, "sse/svc", `{"runtime":"docker","docker_image":"sse:1"}`)
	resp, err := http.Get(srv.URL() + "/sse/svc/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event %q %v", line, err)
	}
	close(release) // the response ends only now
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: last\n\n" {
		t.Fatalf("rest %q", rest)
	}
}

func getOK(t *testing.T, url string) (seen, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 207 {
		return seen{}, resp.StatusCode
	}
	return seenOf(t, resp.Header), resp.StatusCode
}

func TestServiceScaleToZeroAndBack(t *testing.T) {
	srv := serviceServer(t, nil)
	sw := serviceWorker(t, srv, "", 2, echoService)
	mustDeployService(t, srv, "zero/svc", `{"runtime":"docker","docker_image":"z:1","idle_timeout_seconds":0.3}`)
	first, status := getOK(t, srv.URL()+"/zero/svc/")
	if status != 207 {
		t.Fatalf("first request: %d", status)
	}
	select {
	case id := <-sw.Stopped():
		if id != first.Instance {
			t.Fatalf("stopped %s", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the idle instance was not stopped")
	}
	eventually(t, 5*time.Second, func() error {
		if n := len(sw.Running()); n != 0 {
			return fmt.Errorf("%d instances run", n)
		}
		return nil
	})
	second, status := getOK(t, srv.URL()+"/zero/svc/")
	if status != 207 || second.Instance == first.Instance {
		t.Fatalf("after scaling to zero: %d from %s", status, second.Instance)
	}
}

// blocking is a service whose requests wait until release is closed;
// entered receives each instance id as a request arrives.
func blocking(entered chan string, release chan struct{}) func(*job.ServiceInstance) http.Handler {
	return func(in *job.ServiceInstance) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			entered <- in.ID
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			w.Header().Set("X-Instance", in.ID)
			fmt.Fprint(w, "done")
		})
	}
}

func TestServiceTwoInstancesOverTwoWorkers(t *testing.T) {
	srv := serviceServer(t, nil)
	entered, release := make(chan string, 10), make(chan struct{})
	a := serviceWorker(t, srv, "", 4, blocking(entered, release))
	b := serviceWorker(t, srv, "", 4, blocking(entered, release))
	// Both workers' stream connections are attached (just after their
	// upgrade is answered) before the requests that start the instances.
	eventually(t, 5*time.Second, func() error {
		if n := srv.Orchestrator().ServiceHosts(); n != 2 {
			return fmt.Errorf("%d workers take services", n)
		}
		return nil
	})
	mustDeployService(t, srv, "two/svc", `{"runtime":"docker","docker_image":"t:1","concurrency":1,"max_instances":2}`)
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL() + "/two/svc/")
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	got := map[string]bool{<-entered: true, <-entered: true}
	if len(got) != 2 {
		t.Fatalf("both requests went to one instance: %v", got)
	}
	close(release)
	wg.Wait()
	for range 2 {
		if c := <-codes; c != 200 {
			t.Fatalf("status %d", c)
		}
	}
	if len(a.Running()) != 1 || len(b.Running()) != 1 {
		t.Fatalf("instances not spread: %v and %v", a.Running(), b.Running())
	}
}

func TestServiceBusyAtMax(t *testing.T) {
	srv := serviceServer(t, nil)
	entered, release := make(chan string, 10), make(chan struct{})
	serviceWorker(t, srv, "", 4, blocking(entered, release))
	mustDeployService(t, srv, "max/svc", `{"runtime":"docker","docker_image":"m:1","concurrency":1,"max_instances":1}`)
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get(srv.URL() + "/max/svc/")
		if err == nil {
			resp.Body.Close()
			done <- resp.StatusCode
		}
		close(done)
	}()
	<-entered
	a := send(t, "GET", srv.URL()+"/max/svc/", "", "", nil)
	if a.status != 503 || a.header.Get("Retry-After") == "" {
		t.Fatalf("beyond max_instances: %v %v", a, a.header)
	}
	close(release)
	if c := <-done; c != 200 {
		t.Fatalf("the first request: %d", c)
	}
}

func TestServiceCrashRestarted(t *testing.T) {
	srv := serviceServer(t, nil)
	sw := serviceWorker(t, srv, "", 2, echoService)
	mustDeployService(t, srv, "crash/svc", `{"runtime":"docker","docker_image":"c:1","min_instances":1}`)
	first := sw.NextStart(t, "min_instances started nothing")
	eventually(t, 5*time.Second, func() error {
		_, status := getOK(t, srv.URL()+"/crash/svc/")
		if status != 207 {
			return fmt.Errorf("status %d", status)
		}
		return nil
	})
	if err := sw.Crash(first.ID, 3, "panic: out of luck\n"); err != nil {
		t.Fatal(err)
	}
	second := sw.NextStart(t, "the crashed instance was not restarted")
	eventually(t, 5*time.Second, func() error {
		s, status := getOK(t, srv.URL()+"/crash/svc/")
		if status != 207 || s.Instance != second.ID {
			return fmt.Errorf("status %d from %s", status, s.Instance)
		}
		return nil
	})
	a := send(t, "GET", srv.URL()+"/api/deploy/crash/svc", srv.AdminToken(), "", nil)
	var v api.DeploymentView
	json.Unmarshal(a.body, &v)
	if len(v.Instances) != 1 || v.Instances[0].Restarts != 1 || v.Instances[0].LastExit == nil || v.Instances[0].LastExit.ExitCode != 3 ||
		!strings.Contains(v.Instances[0].LastExit.Output, "out of luck") {
		t.Fatalf("instances after the crash: %s", a.body)
	}
	a = send(t, "GET", srv.URL()+"/api/deploy/crash/svc/logs", srv.AdminToken(), "", nil)
	if a.status != 200 || !strings.Contains(string(a.body), "out of luck") {
		t.Fatalf("logs: %v", a)
	}
}

// A request that comes while a crashed instance waits for its backoff
// waits for that restart: it does not start a second instance beside it.
func TestServiceRequestWaitsForTheRestart(t *testing.T) {
	srv := serviceServer(t, func(c *ServerConfig) { c.Orchestrator.Services.RestartBackoff = 300 * time.Millisecond })
	sw := serviceWorker(t, srv, "", 4, echoService)
	mustDeployService(t, srv, "wait/svc", `{"runtime":"docker","docker_image":"w:1","start_timeout_seconds":30}`)
	if _, status := getOK(t, srv.URL()+"/wait/svc/"); status != 207 {
		t.Fatalf("first call: %d", status)
	}
	first := sw.NextStart(t, "no instance started")
	if err := sw.Crash(first.ID, 3, "crashed\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		a := send(t, "GET", srv.URL()+"/api/deploy/wait/svc", srv.AdminToken(), "", nil)
		if !strings.Contains(string(a.body), `"state":"restarting"`) {
			return fmt.Errorf("not restarting yet: %s", a.body)
		}
		return nil
	})
	s, status := getOK(t, srv.URL()+"/wait/svc/")
	second := sw.NextStart(t, "the crashed instance was not restarted")
	if status != 207 || s.Instance != second.ID {
		t.Fatalf("the call during the backoff: %d from %s, want the restarted %s", status, s.Instance, second.ID)
	}
	a := send(t, "GET", srv.URL()+"/api/deploy/wait/svc", srv.AdminToken(), "", nil)
	var v api.DeploymentView
	json.Unmarshal(a.body, &v)
	if len(v.Instances) != 1 || v.Instances[0].Restarts != 1 {
		t.Fatalf("instances after a call during the backoff: %s", a.body)
	}
}

func TestServiceWorkerKilledMidRequest(t *testing.T) {
	srv := serviceServer(t, nil)
	entered, release := make(chan string, 10), make(chan struct{})
	a := serviceWorker(t, srv, "", 4, blocking(entered, release))
	mustDeployService(t, srv, "kill/svc", `{"runtime":"docker","docker_image":"k:1"}`)
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get(srv.URL() + "/kill/svc/")
		if err != nil {
			done <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-entered
	b := serviceWorker(t, srv, "", 4, blocking(entered, release))
	a.Close() // the worker vanishes
	select {
	case c := <-done:
		if c != 502 {
			t.Fatalf("the request in flight on the lost worker: %d, want 502", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight on the lost worker did not end")
	}
	close(release)
	resp, err := http.Get(srv.URL() + "/kill/svc/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b.Running()) != 1 {
		t.Fatalf("after the loss: %d, instances on the other worker %v", resp.StatusCode, b.Running())
	}
}

func TestServiceRedeployUnderLoad(t *testing.T) {
	srv := serviceServer(t, nil)
	serviceWorker(t, srv, "", 4, echoService)
	serviceWorker(t, srv, "", 4, echoService)
	mustDeployService(t, srv, "red/svc", `{"runtime":"docker","docker_image":"r:1"}`)
	if _, status := getOK(t, srv.URL()+"/red/svc/"); status != 207 {
		t.Fatalf("v1: %d", status)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failures, v2 atomic.Int64
	var firstFailure atomic.Value
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				resp, err := http.Get(srv.URL() + "/red/svc/")
				if err != nil {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 207 {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, resp.Status)
					continue
				}
				var s seen
				json.Unmarshal([]byte(resp.Header.Get("X-Seen")), &s)
				if s.Version == 2 {
					v2.Add(1)
				}
			}
		}()
	}
	mustDeployService(t, srv, "red/svc", `{"runtime":"docker","docker_image":"r:2"}`)
	eventually(t, 15*time.Second, func() error {
		a := send(t, "GET", srv.URL()+"/api/deploy/red/svc", srv.AdminToken(), "", nil)
		var v api.DeploymentView
		json.Unmarshal(a.body, &v)
		for _, in := range v.Instances {
			if in.Version != 2 {
				return fmt.Errorf("instances %s", a.body)
			}
		}
		if v2.Load() == 0 {
			return fmt.Errorf("no answer from version 2 yet")
		}
		return nil
	})
	cancel()
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d requests failed during the redeploy, first: %v", n, firstFailure.Load())
	}
}

func TestServiceTenancy(t *testing.T) {
	srv := serviceServer(t, nil)
	serviceWorker(t, srv, "", 4, echoService)
	c := client.New(srv.URL(), nil).WithToken(srv.AdminToken())
	alice := newToken(t, c, api.TokenRequest{Namespace: "alice", Name: "alice"}).Token
	bob := newToken(t, c, api.TokenRequest{Namespace: "bob", Name: "bob"}).Token
	if a := deployService(t, srv, alice, "alice/app", `{"runtime":"docker","docker_image":"a:1","public":false}`); a.status != 201 {
		t.Fatalf("alice deploys: %v", a)
	}
	if a := deployService(t, srv, "", "alice/other", `{"runtime":"docker","docker_image":"a:1"}`); a.status != 401 {
		t.Fatalf("anonymous deploy: %v", a)
	}
	if a := deployService(t, srv, bob, "alice/app", `{"runtime":"docker","docker_image":"evil:1"}`); a.status != 403 {
		t.Fatalf("bob deploys over alice's service: %v", a)
	}
	for _, p := range []string{"/api/deploy/alice/app", "/api/deploy/alice/app/logs"} {
		if a := send(t, "GET", srv.URL()+p, bob, "", nil); a.status != 404 {
			t.Fatalf("bob reads %s: %v", p, a)
		}
	}
	if a := send(t, "DELETE", srv.URL()+"/api/deploy/alice/app", bob, "", nil); a.status != 404 {
		t.Fatalf("bob undeploys: %v", a)
	}
	if a := send(t, "GET", srv.URL()+"/alice/app/", "", "", nil); a.status != 401 {
		t.Fatalf("anonymous call of a private service: %v", a)
	}
	if a := send(t, "GET", srv.URL()+"/alice/app/", bob, "", nil); a.status != 403 {
		t.Fatalf("bob calls alice's private service: %v", a)
	}
	if a := send(t, "GET", srv.URL()+"/alice/app/", alice, "", nil); a.status != 207 {
		t.Fatalf("alice calls her service: %v", a)
	} else if s := seenOf(t, a.header); s.Header.Get("Authorization") != "" {
		t.Fatal("alice's token reached her service")
	}
	// The namespace's instance quota.
	if _, err := c.PutNamespacePolicy(context.Background(), job.NamespacePolicy{Namespace: "bob", Quotas: job.Quotas{MaxInstances: 1}}); err != nil {
		t.Fatal(err)
	}
	deployService(t, srv, bob, "bob/one", `{"runtime":"docker","docker_image":"b:1","min_instances":1}`)
	deployService(t, srv, bob, "bob/two", `{"runtime":"docker","docker_image":"b:1"}`)
	eventually(t, 5*time.Second, func() error {
		if _, st := getOK(t, srv.URL()+"/bob/one/"); st != 207 {
			return fmt.Errorf("bob/one: %d", st)
		}
		return nil
	})
	if a := send(t, "GET", srv.URL()+"/bob/two/", "", "", nil); a.status != 429 {
		t.Fatalf("a second instance over bob's quota: %v", a)
	}
}

func TestServiceNeverOnAnonymousWorkers(t *testing.T) {
	srv := serviceServer(t, func(c *ServerConfig) { c.Orchestrator.OpenVolunteering = true })
	w := protocoltest.Register(t, srv.WorkerURL(), "", serviceCaps(4))
	if w.Trusted || w.StreamKey != "" {
		t.Fatalf("an anonymous worker got trusted %v, stream key %q", w.Trusted, w.StreamKey)
	}
	w.KeepAlive()
	mustDeployService(t, srv, "anon/svc", `{"runtime":"docker","docker_image":"a:1","start_timeout_seconds":1}`)
	if a := send(t, "GET", srv.URL()+"/anon/svc/", "", "", nil); a.status != 503 {
		t.Fatalf("with only an anonymous worker: %v", a)
	}
	if _, err := w.TryNext(300 * time.Millisecond); err == nil {
		t.Fatal("the anonymous worker was sent something")
	}
}

func TestServiceStreamKeyRefused(t *testing.T) {
	srv := serviceServer(t, nil)
	ctx := context.Background()
	if _, status, err := protocoltest.DialStreams(ctx, srv.URL(), "", "not-a-key"); err == nil || status != 401 {
		t.Fatalf("a wrong key: %d %v", status, err)
	}
	if _, status, err := protocoltest.DialStreams(ctx, srv.URL(), "", ""); err == nil || status != 401 {
		t.Fatalf("no key: %d %v", status, err)
	}
	victim := protocoltest.RegisterFrom(t, srv.WorkerURL(), "127.0.0.1", testWorkerSecret, serviceCaps(1))
	victim.KeepAlive()
	// Another worker, at another address, presents the victim's key.
	protocoltest.RegisterFrom(t, srv.WorkerURL(), "127.0.0.2", testWorkerSecret, serviceCaps(1)).KeepAlive()
	if _, status, err := protocoltest.DialStreams(ctx, srv.URL(), "127.0.0.2", victim.StreamKey); err == nil || status != 401 {
		t.Fatalf("another worker's key from another address: %d %v", status, err)
	}
	// The victim's own connection, then a second one with its key.
	sw := protocoltest.ServeServices(victim, srv.URL(), echoService)
	if _, status, err := protocoltest.DialStreams(ctx, srv.URL(), "127.0.0.1", sw.StreamKey); err == nil || status != 409 {
		t.Fatalf("a second connection with a key in use: %d %v", status, err)
	}
	// A key dies with its session.
	victim.Close()
	eventually(t, 5*time.Second, func() error {
		if _, status, err := protocoltest.DialStreams(ctx, srv.URL(), "127.0.0.1", victim.StreamKey); err == nil || status != 401 {
			return fmt.Errorf("the key of a closed session: %d %v", status, err)
		}
		return nil
	})
}

func TestServiceCLIImageAndBuild(t *testing.T) {
	srv := serviceServer(t, nil)
	caps := serviceCaps(4)
	caps.Docker.Build = true
	w := protocoltest.RegisterFrom(t, srv.WorkerURL(), "", testWorkerSecret, caps)
	sw := protocoltest.ServeServices(w, srv.URL(), echoService)
	cli := cliAgainst(srv)
	if code, out, errs := cli("deploy", "cli/svc", "--image", "myapp:latest", "--concurrency", "5", "--", "/app/entrypoint.sh", "-v"); code != 0 || !strings.Contains(out, "docker service myapp:latest") {
		t.Fatalf("deploy --image: %d %q %q", code, out, errs)
	}
	if _, status := getOK(t, srv.URL()+"/cli/svc/x"); status != 207 {
		t.Fatalf("call: %d", status)
	}
	if in := <-sw.Starts(); strings.Join(in.Spec.Command, " ") != "/app/entrypoint.sh -v" || in.Spec.Image != "myapp:latest" {
		t.Fatalf("started %+v", in.Spec)
	}

	// From a directory: the context is uploaded and built as a job of
	// the namespace; the service runs the image once built, on the worker
	// that holds it.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY server /server\nCMD [\"/server\"]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "server"), []byte("binary"), 0o755)
	code, out, errs := cli("deploy", "cli/built", dir, "--json")
	if code != 0 {
		t.Fatalf("deploy DIR: %d %q %q", code, out, errs)
	}
	var v api.DeploymentView
	json.Unmarshal([]byte(out), &v)
	if v.Service == nil || v.Service.BuildJobID == "" || !strings.HasPrefix(v.Service.Image, job.BuiltImagePrefix+"cli/") {
		t.Fatalf("deployed %s", out)
	}
	if a := send(t, "GET", srv.URL()+"/cli/built/", "", "", nil); a.status != 503 {
		t.Fatalf("before the build ended: %v", a)
	}
	task := <-sw.Tasks()
	if task.JobID != v.Service.BuildJobID || task.Spec.Docker == nil || task.Spec.Docker.Build == nil {
		t.Fatalf("assigned %+v", task)
	}
	sw.Answer(task, job.Result{Status: job.StatusCompleted, Build: &job.BuildResult{Image: v.Service.Image, ImageID: "sha256:1"}})
	caps.Docker.BuiltImages = []string{v.Service.Image}
	sw.Send(protocol.Message{Type: protocol.TypeCapabilities, Capabilities: &caps})
	eventually(t, 10*time.Second, func() error {
		if _, status := getOK(t, srv.URL()+"/cli/built/"); status != 207 {
			return fmt.Errorf("status %d", status)
		}
		return nil
	})
}

// TestServiceWaitIsBounded: requests wait while an instance starts, at
// most ServicesConfig.MaxWaiting of them (one more is 503 at once), and
// are answered once it is ready.
func TestServiceWaitIsBounded(t *testing.T) {
	srv := serviceServer(t, func(c *ServerConfig) { c.Orchestrator.Services.MaxWaiting = 1 })
	sw := serviceWorker(t, srv, "", 2, echoService)
	sw.Hold(true)
	mustDeployService(t, srv, "wait/svc", `{"runtime":"docker","docker_image":"w:1","max_instances":1}`)
	code := make(chan int, 1)
	go func() {
		_, status := getOK(t, srv.URL()+"/wait/svc/")
		code <- status
	}()
	// The instance is asked for by the first request, which then waits
	// (under the same lock): a second one finds the queue full.
	in := <-sw.Starts()
	if a := send(t, "GET", srv.URL()+"/wait/svc/", "", "", nil); a.status != 503 || a.header.Get("Retry-After") == "" {
		t.Fatalf("a second request while one waits: %v", a)
	}
	if err := sw.Ready(in.ID); err != nil {
		t.Fatal(err)
	}
	if c := <-code; c != 207 {
		t.Fatalf("the waiting request: %d", c)
	}
}
