package worker_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/hashicorp/yamux"

	"github.com/zerverless/zerverless/internal/agent"
	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/runtime"
	"github.com/zerverless/zerverless/internal/runtime/docker"
	"github.com/zerverless/zerverless/internal/testutil"
	"github.com/zerverless/zerverless/internal/worker"
)

// testLog writes a worker's log to the test's.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// fakeOrchestrator speaks the real protocol on /ws/volunteer and accepts
// the stream connection on /ws/streams with key, as a yamux client.
type fakeOrchestrator struct {
	srv      *httptest.Server
	key      string
	sessions chan *protocol.Conn
	register chan protocol.Message
	streams  chan *yamux.Session
	denied   chan string
}

func newFakeOrchestrator(t *testing.T, key string) *fakeOrchestrator {
	f := &fakeOrchestrator{key: key, sessions: make(chan *protocol.Conn, 4), register: make(chan protocol.Message, 4),
		streams: make(chan *yamux.Session, 4), denied: make(chan string, 16)}
	done := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/ws/volunteer", func(w http.ResponseWriter, r *http.Request) {
		c, err := protocol.Accept(w, r, nil, protocol.Options{})
		if err != nil {
			return
		}
		m, err := c.Read(r.Context())
		if err != nil || m.Type != protocol.TypeRegister {
			c.CloseNow()
			return
		}
		_ = c.Authenticated()
		f.register <- m
		f.sessions <- c
		<-done
	})
	mux.HandleFunc("/ws/streams", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.key {
			f.denied <- r.Header.Get("Authorization")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		ws.SetReadLimit(16 << 20)
		sess, err := yamux.Client(websocket.NetConn(context.Background(), ws, websocket.MessageBinary), agent.YamuxConfig())
		if err != nil {
			return
		}
		f.streams <- sess
		select {
		case <-sess.CloseChan():
		case <-done:
			sess.Close()
		}
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() { close(done); f.srv.Close() })
	return f
}

func (f *fakeOrchestrator) url() string {
	return "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/ws/volunteer"
}

func recv[T any](t *testing.T, c chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(2 * time.Minute):
		t.Fatalf("no %s", what)
	}
	var zero T
	return zero
}

// nextState reads the session until a service_state of id.
func nextState(t *testing.T, c *protocol.Conn, id string) job.InstanceReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		m, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read the session: %v", err)
		}
		if m.Type == protocol.TypeServiceState && m.Report.ID == id {
			return *m.Report
		}
	}
}

// busyPrefix begins the answer to a stream past the worker's bound or
// its instance's share.
const busyPrefix = "error too many streams"

// openStream opens a stream to instance id and returns it with the
// worker's answer line, trying again while the worker's streams are all
// taken (a stream closed here frees its slot there a little later).
func openStream(t *testing.T, sess *yamux.Session, id string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	var (
		st   net.Conn
		br   *bufio.Reader
		line string
	)
	testutil.Eventually(t, time.Minute, func() error {
		st, br, line = openStreamOnce(t, sess, id)
		if strings.HasPrefix(line, busyPrefix) {
			st.Close()
			return errors.New(line)
		}
		return nil
	})
	return st, br, line
}

// openStreamOnce opens a stream to instance id and returns it with the
// worker's answer line.
func openStreamOnce(t *testing.T, sess *yamux.Session, id string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := io.WriteString(st, "instance "+id+"\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(st)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return st, br, strings.TrimSuffix(line, "\n")
}

// request sends one HTTP request over a stream of its own to instance id.
func request(t *testing.T, sess *yamux.Session, id string, req *http.Request) *http.Response {
	t.Helper()
	st, br, line := openStream(t, sess, id)
	if line != "ok" {
		t.Fatalf("stream to %s: %q", id, line)
	}
	req.Close = true // the instance ends the connection, and so the stream, after it
	if err := req.Write(st); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body = streamBody{resp.Body, st}
	return resp
}

// streamBody is a response body whose Close ends its stream too, freeing
// the worker's slot.
type streamBody struct {
	io.ReadCloser
	st net.Conn
}

func (b streamBody) Close() error {
	b.st.Close()
	return b.ReadCloser.Close()
}

// A worker with services, against a fake orchestrator speaking the real
// protocol: it advertises them, opens the stream connection with its key,
// starts an instance on service_start and reports it, carries requests
// (and a streamed response) to it through the streams the orchestrator
// opens, dials the stream connection again when it drops, stops the
// instance on service_stop, and leaves nothing on the engine when it stops.
func TestWorkerServesInstancesOverStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	engine, err := docker.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	ref := "zerverless-test/goserver:worker-" + randomHex(4)
	if err := dockertest.ImportGoServer(ctx, engine, ref); err != nil {
		t.Fatal(err)
	}
	defer engine.ImageRemove(context.Background(), ref, image.RemoveOptions{PruneChildren: true})
	bin, err := dockertest.AgentBinary()
	if err != nil {
		t.Fatal(err)
	}
	dcfg := docker.DefaultConfig()
	dcfg.WorkerID = "zvworkertest-" + randomHex(4) // not a prefix that other packages' test cleanups remove
	dcfg.AgentBinary = bin
	dcfg.Services = 2
	d, err := docker.New(dcfg, engine)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	leftovers := func() int {
		cs, err := engine.ContainerList(context.Background(), container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", docker.LabelWorkerID+"="+dcfg.WorkerID))})
		if err != nil {
			t.Fatal(err)
		}
		return len(cs)
	}

	f := newFakeOrchestrator(t, "sk-"+randomHex(8))
	caps := d.Capabilities()
	wcfg := worker.DefaultConfig()
	wcfg.URL = f.url()
	wcfg.Docker = &caps
	wcfg.ReconnectMax = time.Second
	wcfg.MaxStreams = 4
	wcfg.Namespaces = []string{"user"}
	w, err := worker.New(wcfg, runtime.Set{job.TypeDocker: d}, slog.New(slog.NewTextHandler(testLog{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- w.Run(wctx) }()

	reg := recv(t, f.register, "register")
	if reg.Capabilities == nil || reg.Capabilities.Docker == nil || reg.Capabilities.Docker.Services != 2 {
		t.Fatalf("register: %+v", reg.Capabilities)
	}
	conn := recv(t, f.sessions, "session")
	if err := conn.Write(ctx, protocol.Message{Type: protocol.TypeRegistered, WorkerID: "w-1", Trusted: true,
		HeartbeatMS: 1000, StreamKey: f.key}); err != nil {
		t.Fatal(err)
	}
	sess := recv(t, f.streams, "stream connection")

	inst := &job.ServiceInstance{ID: "i-" + randomHex(4), Namespace: "user", Service: "user/svc", Version: 1,
		Spec: job.ServiceSpec{Image: ref, Port: 8080, ReadinessPath: "/healthz", StartTimeoutSeconds: 60}}
	if err := conn.Write(ctx, protocol.Message{Type: protocol.TypeServiceStart, Instance: inst}); err != nil {
		t.Fatal(err)
	}
	if rep := nextState(t, conn, inst.ID); rep.State != job.InstanceStarting {
		t.Fatalf("first report %+v", rep)
	}
	if rep := nextState(t, conn, inst.ID); rep.State != job.InstanceReady {
		t.Fatalf("second report %+v", rep)
	}

	// Streams are bounded (MaxStreams 4 over 2 instances: 2 each): a
	// third one to the instance at once is refused, while another
	// instance (of another tenant, say) still gets its share; and a slot
	// is free again once a stream ends.
	a, _, la := openStream(t, sess, inst.ID)
	b, _, lb := openStream(t, sess, inst.ID)
	if la != "ok" || lb != "ok" {
		t.Fatalf("two streams: %q %q", la, lb)
	}
	if _, _, line := openStreamOnce(t, sess, inst.ID); !strings.HasPrefix(line, busyPrefix+" to this instance") {
		t.Fatalf("a third stream: %q", line)
	}
	other := *inst
	other.ID, other.Service = "i-"+randomHex(4), "user/other"
	if err := conn.Write(ctx, protocol.Message{Type: protocol.TypeServiceStart, Instance: &other}); err != nil {
		t.Fatal(err)
	}
	nextState(t, conn, other.ID)
	if rep := nextState(t, conn, other.ID); rep.State != job.InstanceReady {
		t.Fatalf("the other instance: %+v", rep)
	}
	for range 2 {
		if _, _, line := openStreamOnce(t, sess, other.ID); line != "ok" {
			t.Fatalf("the other instance, with the first one's share taken: %q", line)
		}
	}
	if err := conn.Write(ctx, protocol.Message{Type: protocol.TypeServiceStop, InstanceID: other.ID}); err != nil {
		t.Fatal(err)
	}
	if rep := nextState(t, conn, other.ID); rep.State != job.InstanceExited {
		t.Fatalf("the other instance stopped: %+v", rep)
	}
	a.Close()
	b.Close()
	if st, _, line := openStream(t, sess, inst.ID); line != "ok" {
		t.Fatalf("after two streams ended: %q", line)
	} else {
		st.Close()
	}

	// A namespace the worker does not take is refused.
	foreign := *inst
	foreign.ID, foreign.Namespace = "i-"+randomHex(4), "other"
	if err := conn.Write(ctx, protocol.Message{Type: protocol.TypeServiceStart, Instance: &foreign}); err != nil {
		t.Fatal(err)
	}
	if rep := nextState(t, conn, foreign.ID); rep.State != job.InstanceExited || !strings.Contains(rep.Error, "namespace") {
		t.Fatalf("another namespace: %+v", rep)
	}

	// An unknown instance: an error line.
	if _, _, line := openStream(t, sess, "nope"); !strings.HasPrefix(line, "error ") {
		t.Fatalf("unknown instance: %q", line)
	}

	req, _ := http.NewRequest("POST", "http://svc/hello/world?q=1&q=2", strings.NewReader("payload"))
	req.Header.Add("X-Multi", "a")
	req.Header.Add("X-Multi", "b")
	resp := request(t, sess, inst.ID, req)
	var echo struct {
		Method, Path, Query string
		Headers             http.Header
		Body                []byte
	}
	if err := json.NewDecoder(resp.Body).Decode(&echo); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if echo.Method != "POST" || echo.Path != "/hello/world" || echo.Query != "q=1&q=2" || string(echo.Body) != "payload" ||
		strings.Join(echo.Headers["X-Multi"], ",") != "a,b" {
		t.Fatalf("echo %+v", echo)
	}

	// 100 MiB up and 100 MiB down stream through with the memory of the
	// whole process (worker, and the fake orchestrator's end) bounded.
	const big = 100 << 20
	peak := watchHeap(t)
	h := sha256.New()
	up, _ := http.NewRequest("POST", "http://svc/upload", io.TeeReader(io.LimitReader(pattern{}, big), h))
	up.ContentLength = big
	resp = request(t, sess, inst.ID, up)
	var sum struct {
		Bytes  int64
		SHA256 string
	}
	if err := json.NewDecoder(resp.Body).Decode(&sum); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if sum.Bytes != big || sum.SHA256 != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("upload: %+v", sum)
	}
	down, _ := http.NewRequest("GET", fmt.Sprintf("http://svc/bytes?n=%d", big), nil)
	resp = request(t, sess, inst.ID, down)
	if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != big {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	resp.Body.Close()
	if p := peak(); p > 64<<20 {
		t.Fatalf("the heap grew to %d MiB moving 100 MiB each way", p>>20)
	} else {
		t.Logf("peak heap %d MiB moving 100 MiB each way", p>>20)
	}

	// A streamed response: the first event arrives though the next is
	// ten minutes away.
	st, br, line := openStream(t, sess, inst.ID)
	if line != "ok" {
		t.Fatalf("stream: %q", line)
	}
	sse, _ := http.NewRequest("GET", "http://svc/sse?n=2&ms=600000", nil)
	if err := sse.Write(st); err != nil {
		t.Fatal(err)
	}
	first := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(br, sse)
		if err != nil {
			first <- err.Error()
			return
		}
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		first <- resp.Header.Get("Content-Type") + " " + line
	}()
	if line := recv(t, first, "first event"); line != "text/event-stream data: 0\n" {
		t.Fatalf("first event %q", line)
	}
	st.Close() // the caller goes away mid-stream

	// The stream connection drops: the worker dials it again.
	sess.Close()
	sess = recv(t, f.streams, "stream connection again")
	req, _ = http.NewRequest("GET", "http://svc/again", nil)
	if resp := request(t, sess, inst.ID, req); resp.StatusCode != 200 {
		t.Fatalf("after the reconnection: %d", resp.StatusCode)
	}

	if err := conn.Write(ctx, protocol.Message{Type: protocol.TypeServiceStop, InstanceID: inst.ID}); err != nil {
		t.Fatal(err)
	}
	if rep := nextState(t, conn, inst.ID); rep.State != job.InstanceExited || !strings.Contains(rep.Error, "stopped") {
		t.Fatalf("after stop %+v", rep)
	}
	if n := leftovers(); n != 0 {
		t.Fatalf("%d containers left after service_stop", n)
	}
	if _, _, line := openStream(t, sess, inst.ID); !strings.HasPrefix(line, "error ") {
		t.Fatalf("a stopped instance: %q", line)
	}

	// An instance still running when the worker stops goes with it.
	second := *inst
	second.ID = "i-" + randomHex(4)
	if err := conn.Write(ctx, protocol.Message{Type: protocol.TypeServiceStart, Instance: &second}); err != nil {
		t.Fatal(err)
	}
	nextState(t, conn, second.ID)
	if rep := nextState(t, conn, second.ID); rep.State != job.InstanceReady {
		t.Fatalf("second instance %+v", rep)
	}
	stopWorker()
	if err := recv(t, ran, "worker stop"); err != context.Canceled {
		t.Fatalf("Run: %v", err)
	}
	testutil.Eventually(t, time.Minute, func() error {
		if n := leftovers(); n != 0 {
			return fmt.Errorf("%d containers left after the worker stopped", n)
		}
		return nil
	})
	select {
	case a := <-f.denied:
		t.Fatalf("the worker presented %q", a)
	default:
	}
}

// pattern reads as an endless run of bytes.
type pattern struct{}

func (pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i * 7)
	}
	return len(p), nil
}

// watchHeap samples the heap in use until the returned function is
// called, which returns the most seen.
func watchHeap(t *testing.T) func() uint64 {
	t.Helper()
	goruntime.GC()
	stop := make(chan struct{})
	done := make(chan uint64)
	go func() {
		var most uint64
		var ms goruntime.MemStats
		for {
			goruntime.ReadMemStats(&ms)
			most = max(most, ms.HeapInuse)
			select {
			case <-stop:
				done <- most
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(stop); return <-done }
}

// stubbornRuntime runs fake service instances whose first stops fail, as
// when the engine does not answer.
var _ worker.ServiceRuntime = (*stubbornRuntime)(nil)

type stubbornRuntime struct {
	mu          sync.Mutex
	running     map[string]func(job.InstanceReport)
	failedStops int // stops that fail before they succeed
	stopped     chan string
}

func (r *stubbornRuntime) Run(context.Context, job.Task) (job.Result, error) {
	return job.Result{}, errors.New("no jobs here")
}

func (r *stubbornRuntime) StartInstance(_ context.Context, inst job.ServiceInstance, report func(job.InstanceReport)) error {
	r.mu.Lock()
	r.running[inst.ID] = report
	r.mu.Unlock()
	report(job.InstanceReport{ID: inst.ID, State: job.InstanceReady})
	return nil
}

func (r *stubbornRuntime) StopInstance(_ context.Context, id, reason string) error {
	r.mu.Lock()
	report, ok := r.running[id]
	if !ok {
		r.mu.Unlock()
		return errors.New("no such instance")
	}
	if r.failedStops > 0 {
		r.failedStops--
		r.mu.Unlock()
		return errors.New("the engine did not answer")
	}
	delete(r.running, id)
	r.mu.Unlock()
	report(job.InstanceReport{ID: id, State: job.InstanceExited, Error: reason})
	r.stopped <- id + ": " + reason
	return nil
}

func (r *stubbornRuntime) DialInstance(context.Context, string) (net.Conn, func() error, error) {
	return nil, nil, errors.New("not reachable in this test")
}

// TestWorkerStopsInstancesLeftByAnEarlierSession: an instance the worker
// could not stop when its session ended (the orchestrator restarted, say)
// is stopped when the next session begins, and its slot is free again.
func TestWorkerStopsInstancesLeftByAnEarlierSession(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt := &stubbornRuntime{running: map[string]func(job.InstanceReport){}, failedStops: 1, stopped: make(chan string, 4)}
	f := newFakeOrchestrator(t, "sk-"+randomHex(8))
	wcfg := worker.DefaultConfig()
	wcfg.URL = f.url()
	wcfg.Docker = &job.DockerCapabilities{Services: 1}
	wcfg.ReconnectMax = 200 * time.Millisecond
	w, err := worker.New(wcfg, runtime.Set{job.TypeDocker: rt}, slog.New(slog.NewTextHandler(testLog{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	go w.Run(wctx)
	session := func() *protocol.Conn {
		recv(t, f.register, "register")
		conn := recv(t, f.sessions, "session")
		if err := conn.Write(ctx, protocol.Message{Type: protocol.TypeRegistered, WorkerID: "w-" + randomHex(4), Trusted: true, HeartbeatMS: 1000}); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	start := func(conn *protocol.Conn, id string) job.InstanceReport {
		inst := &job.ServiceInstance{ID: id, Namespace: "user", Service: "user/svc", Version: 1, Spec: job.ServiceSpec{Image: "img", Port: 8080}}
		if err := conn.Write(ctx, protocol.Message{Type: protocol.TypeServiceStart, Instance: inst}); err != nil {
			t.Fatal(err)
		}
		if rep := nextState(t, conn, id); rep.State != job.InstanceStarting {
			return rep
		}
		return nextState(t, conn, id)
	}
	first := session()
	if rep := start(first, "i-1"); rep.State != job.InstanceReady {
		t.Fatalf("first instance: %+v", rep)
	}
	first.CloseNow() // the orchestrator goes away; the stop of i-1 fails

	second := session()
	if got := recv(t, rt.stopped, "stop of the instance left by the first session"); got != "i-1: left by an earlier connection to the orchestrator" {
		t.Fatalf("stopped %q", got)
	}
	if rep := start(second, "i-2"); rep.State != job.InstanceReady {
		t.Fatalf("an instance in the slot the leftover freed: %+v", rep)
	}
}
