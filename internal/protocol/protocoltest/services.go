package protocoltest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/yamux"

	"github.com/zerverless/zerverless/internal/agent"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// DialStreams opens the stream connection of a worker at baseURL
// (http://host:port) with key from local address src ("" lets the
// system choose). It returns the HTTP status of a refusal.
func DialStreams(ctx context.Context, baseURL, src, key string) (net.Conn, int, error) {
	url := "ws" + strings.TrimPrefix(baseURL, "http") + "/ws/streams"
	client := http.DefaultClient
	if src != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		client = &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	h := http.Header{}
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client, HTTPHeader: h, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		return nil, status, err
	}
	return websocket.NetConn(context.WithoutCancel(ctx), ws, websocket.MessageBinary), http.StatusSwitchingProtocols, nil
}

// ServiceWorker is a fake worker that runs service instances as
// in-process HTTP servers: it answers service_start with service_state
// ready (unless Hold says otherwise), service_stop with exited, and
// serves its stream connection as a worker does: a yamux server whose
// streams name an instance (the request may follow at once), answered
// "ok", then carry one HTTP/1.1 connection to the instance's server,
// kept by the orchestrator for further requests.
type ServiceWorker struct {
	*Worker
	handler func(*job.ServiceInstance) http.Handler
	sess    *yamux.Session

	mu        sync.Mutex
	opened    int            // streams accepted for an instance
	open      map[string]int // streams open now, by instance
	instances map[string]*fakeInstance
	hold      bool
	starts    chan *job.ServiceInstance
	stopped   chan string
	tasks     chan *job.Task
}

type fakeInstance struct {
	inst *job.ServiceInstance
	ln   *streamListener
}

// ServeServices runs w (registered with services, holding a stream key)
// as a ServiceWorker at baseURL; handler gives each instance its server.
// It stops when the test ends.
func ServeServices(w *Worker, baseURL string, handler func(*job.ServiceInstance) http.Handler) *ServiceWorker {
	t := w.T
	t.Helper()
	if w.StreamKey == "" {
		t.Fatal("the worker got no stream key")
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	nc, status, err := DialStreams(ctx, baseURL, w.Src, w.StreamKey)
	if err != nil {
		t.Fatalf("stream connection: %d %v", status, err)
	}
	sess, err := yamux.Server(nc, agent.YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	sw := &ServiceWorker{Worker: w, handler: handler, sess: sess, instances: map[string]*fakeInstance{}, open: map[string]int{},
		starts: make(chan *job.ServiceInstance, 1000), stopped: make(chan string, 1000), tasks: make(chan *job.Task, 100)}
	t.Cleanup(func() { sess.Close(); sw.closeAll() })
	go sw.acceptStreams()
	go sw.readControl()
	w.KeepAlive()
	return sw
}

// Hold, when on, keeps the instances started from now on starting (no
// ready report) until Ready is called for them.
func (sw *ServiceWorker) Hold(on bool) {
	sw.mu.Lock()
	sw.hold = on
	sw.mu.Unlock()
}

// Starts delivers the instances the orchestrator started here.
func (sw *ServiceWorker) Starts() <-chan *job.ServiceInstance { return sw.starts }

// NextStart returns the next instance the worker was asked to start, or
// fails t with why after 10 seconds without one.
func (sw *ServiceWorker) NextStart(t testing.TB, why string) *job.ServiceInstance {
	t.Helper()
	select {
	case in := <-sw.starts:
		return in
	case <-time.After(10 * time.Second):
		t.Fatal(why)
		return nil
	}
}

// StreamsOpened counts the streams the orchestrator opened here to an
// instance (each carries one connection, for one or more requests).
func (sw *ServiceWorker) StreamsOpened() int {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.opened
}

// StreamsOpen counts the streams to instance id open now.
func (sw *ServiceWorker) StreamsOpen(id string) int {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.open[id]
}

// SessionStreams counts the streams of the stream connection that are
// not closed by both ends.
func (sw *ServiceWorker) SessionStreams() int { return sw.sess.NumStreams() }

// Tasks delivers the jobs it is assigned (answer them with Answer).
func (sw *ServiceWorker) Tasks() <-chan *job.Task { return sw.tasks }

// Stopped delivers the ids of the instances it asked to stop.
func (sw *ServiceWorker) Stopped() <-chan string { return sw.stopped }

// Running returns the ids of the instances running here.
func (sw *ServiceWorker) Running() []string {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	var ids []string
	for id := range sw.instances {
		ids = append(ids, id)
	}
	return ids
}

func (sw *ServiceWorker) closeAll() {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	for _, fi := range sw.instances {
		fi.ln.Close()
	}
}

func (sw *ServiceWorker) report(r job.InstanceReport) error {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	return sw.Conn.Write(ctx, protocol.Message{Type: protocol.TypeServiceState, Report: &r})
}

// Ready reports instance id ready.
func (sw *ServiceWorker) Ready(id string) error {
	return sw.report(job.InstanceReport{ID: id, State: job.InstanceReady})
}

// Crash ends instance id unasked, as a container that exits does.
func (sw *ServiceWorker) Crash(id string, code int, output string) error {
	sw.mu.Lock()
	fi := sw.instances[id]
	delete(sw.instances, id)
	sw.mu.Unlock()
	if fi != nil {
		fi.ln.Close()
	}
	return sw.report(job.InstanceReport{ID: id, State: job.InstanceExited, ExitCode: code, Output: output})
}

func (sw *ServiceWorker) readControl() {
	for {
		m, err := sw.Conn.Read(context.Background())
		if err != nil {
			return
		}
		switch m.Type {
		case protocol.TypeAssign:
			sw.tasks <- m.Task
		case protocol.TypeServiceStart:
			in := m.Instance
			fi := &fakeInstance{inst: in, ln: newStreamListener()}
			sw.mu.Lock()
			sw.instances[in.ID] = fi
			hold := sw.hold
			sw.mu.Unlock()
			go http.Serve(fi.ln, sw.handler(in))
			sw.starts <- in
			sw.report(job.InstanceReport{ID: in.ID, State: job.InstanceStarting})
			if !hold {
				sw.Ready(in.ID)
			}
		case protocol.TypeServiceStop:
			sw.mu.Lock()
			fi := sw.instances[m.InstanceID]
			delete(sw.instances, m.InstanceID)
			sw.mu.Unlock()
			if fi != nil {
				fi.ln.Close()
			}
			sw.stopped <- m.InstanceID
			sw.report(job.InstanceReport{ID: m.InstanceID, State: job.InstanceExited, Error: "stopped"})
		}
	}
}

func (sw *ServiceWorker) acceptStreams() {
	for {
		st, err := sw.sess.AcceptStream()
		if err != nil {
			return
		}
		go func() {
			line, br, err := agent.ReadHeader(st)
			if err != nil {
				st.Close()
				return
			}
			id, _ := strings.CutPrefix(line, "instance ")
			sw.mu.Lock()
			fi := sw.instances[id]
			sw.mu.Unlock()
			if fi == nil {
				io.WriteString(st, "error no such instance\n")
				st.Close()
				return
			}
			sw.mu.Lock()
			sw.opened++
			sw.open[id]++
			sw.mu.Unlock()
			io.WriteString(st, "ok\n")
			c := &readConn{Conn: st, r: br}
			c.closed = func() {
				sw.mu.Lock()
				if sw.open[id]--; sw.open[id] <= 0 {
					delete(sw.open, id)
				}
				sw.mu.Unlock()
			}
			if !fi.ln.give(c) {
				c.Close()
			}
		}()
	}
}

// readConn reads through r, which may hold bytes read from the conn;
// closed is called once, at its first close.
type readConn struct {
	net.Conn
	r      io.Reader
	once   sync.Once
	closed func()
}

func (c *readConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *readConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.closed)
	return err
}

// streamListener is a net.Listener of the streams given to it.
type streamListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newStreamListener() *streamListener {
	return &streamListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *streamListener) give(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	case <-time.After(dialTimeout):
		return false
	}
}

func (l *streamListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, errors.New("listener closed")
	}
}

func (l *streamListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *streamListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// Output sends what instance id wrote to stream while it runs, after
// dropped bytes left out, as a worker's service_output does.
func (sw *ServiceWorker) Output(id string, stream job.LogStream, text string, dropped int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	return sw.Conn.Write(ctx, protocol.Message{Type: protocol.TypeServiceOutput, InstanceID: id, Stream: stream, Text: text, Dropped: dropped})
}
