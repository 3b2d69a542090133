package worker

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/yamux"

	"github.com/zerverless/zerverless/internal/agent"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/runtime"
)

// Service instances (docs/protocol.md, "Services").
//
// A worker whose docker runtime runs services (its capabilities say how
// many, Docker.Services) starts and stops instances on the orchestrator's
// "service_start" and "service_stop", and reports their states in
// "service_state". Requests reach them over a second WebSocket, GET
// /ws/streams with the session's stream key, which carries a yamux session
// whose streams the orchestrator opens: each begins "instance ID\n" (the
// request's bytes may follow at once), which the worker answers "ok\n"
// and splices to a connection to the instance's port, or "error
// MESSAGE\n". The orchestrator keeps a stream for the next requests to
// the same instance. The stream connection is dialed again when
// it drops while the session lives. Instances belong to the session: when
// it ends they are stopped (the orchestrator starts them elsewhere), and
// one that could not be stopped then (its engine did not answer, say) is
// stopped when the next session begins, before it takes any: an
// orchestrator knows only the instances it started in its session with
// the worker, and a restarted one knows none.

// ServiceRuntime runs service instances: the docker runtime does.
type ServiceRuntime interface {
	// StartInstance starts inst and returns once it is ready (nil) or
	// ended (its reason). What the instance writes goes, as it is
	// written, to the sink ctx carries (runtime.WithSink), if any. report gets the instance's states in order:
	// ready, then exited exactly once however it ended (refused, never
	// ready, crashed, stopped); it is called for the first before
	// StartInstance returns. ctx bounds the start only.
	StartInstance(ctx context.Context, inst job.ServiceInstance, report func(job.InstanceReport)) error
	// StopInstance stops instance id and waits, up to ctx, until it is
	// removed and reported exited (with reason). It fails for an id it
	// does not run.
	StopInstance(ctx context.Context, id, reason string) error
	// DialInstance opens a connection to the port of the ready instance
	// id; it fails at once for an id that is unknown or not ready. It may
	// return before the dial is done, so that what is written to c
	// follows it at once: dialed waits for the dial's outcome (up to
	// ctx), and c's reads wait for it too.
	DialInstance(ctx context.Context, id string) (c net.Conn, dialed func() error, err error)
}

const (
	// DefaultMaxStreams bounds the request streams a worker carries to
	// its instances at once (Config.MaxStreams). Each instance gets an
	// equal share, MaxStreams over the instances the worker runs
	// (Docker.Services): instances of several namespaces share a worker,
	// and one whose requests never end must not take the streams of the
	// others.
	DefaultMaxStreams = 1024
	// streamReadLimit bounds one WebSocket message of the stream
	// connection: a yamux frame, at most its window (agent.YamuxConfig)
	// and a header.
	streamReadLimit = 16 << 20
	// streamHeaderTimeout bounds the wait for a stream's first line.
	streamHeaderTimeout = 10 * time.Second
	// instanceDialTimeout bounds a dial of an instance's port.
	instanceDialTimeout = 10 * time.Second
	// instanceStopTimeout bounds the stop of one instance.
	instanceStopTimeout = time.Minute
)

// serviceRuntime returns the runtime of the worker's service instances
// and how many it runs at once, or nil when it runs none.
func (w *Worker) serviceRuntime() (ServiceRuntime, int) {
	if w.cfg.Docker == nil || w.cfg.Docker.Services <= 0 {
		return nil, 0
	}
	rt, ok := w.runtimes[job.TypeDocker].(ServiceRuntime)
	if !ok {
		return nil, 0
	}
	return rt, w.cfg.Docker.Services
}

// streamShare is one instance's share of a worker's maxStreams streams,
// with n instances.
func streamShare(maxStreams, n int) int { return max(1, maxStreams/max(n, 1)) }

// services is the service side of one session.
type services struct {
	s   *session
	rt  ServiceRuntime // nil: none
	max int
	// slots bounds the streams that read their first line at once;
	// perInstance the streams carried to one instance.
	slots       chan struct{}
	perInstance int

	mu      sync.Mutex
	running map[string]bool // instances started and not yet exited
	carried map[string]int  // streams carried to each instance now
}

func newServices(s *session) *services {
	rt, n := s.w.serviceRuntime()
	return &services{s: s, rt: rt, max: n, slots: make(chan struct{}, s.w.cfg.MaxStreams),
		perInstance: streamShare(s.w.cfg.MaxStreams, n), running: map[string]bool{}, carried: map[string]int{}}
}

func (v *services) state(ctx context.Context, rep job.InstanceReport) {
	if ctx.Err() != nil {
		return // the session ended: the orchestrator knows
	}
	v.s.send(ctx, protocol.Message{Type: protocol.TypeServiceState, Report: &rep})
}

// start starts inst in the background, reporting it.
func (v *services) start(ctx context.Context, inst *job.ServiceInstance) {
	refuse := func(why string) {
		v.state(ctx, job.InstanceReport{ID: inst.ID, State: job.InstanceExited, Error: why})
	}
	switch ns := v.s.w.cfg.Namespaces; {
	case v.rt == nil:
		refuse("this worker runs no service instances")
		return
	case len(ns) > 0 && !slices.Contains(ns, inst.Namespace):
		refuse(fmt.Sprintf("this worker does not accept namespace %s", inst.Namespace))
		return
	}
	v.mu.Lock()
	if v.running[inst.ID] {
		v.mu.Unlock()
		v.s.log.Warn("service_start for an instance already running; ignored", "instance_id", inst.ID)
		return
	}
	if !v.s.w.claimInstance(inst.ID, v.max) {
		v.mu.Unlock()
		refuse(fmt.Sprintf("all %d service instance slots of this worker are taken", v.max))
		return
	}
	v.running[inst.ID] = true
	v.mu.Unlock()
	v.state(ctx, job.InstanceReport{ID: inst.ID, State: job.InstanceStarting})
	log := v.s.log.With("instance_id", inst.ID, "service", inst.Service, "namespace", inst.Namespace)
	// The instance's output goes to the orchestrator as it is written
	// (Config.ServiceOutputRate); the sender ends before its exit is
	// reported, so that its output comes first.
	sctx := ctx
	var live *liveOutput
	if v.s.w.cfg.ServiceOutputRate > 0 {
		live = v.s.startInstanceOutput(ctx, inst.ID)
		sctx = runtime.WithSink(ctx, live)
	}
	v.s.wg.Add(1)
	go func() {
		defer v.s.wg.Done()
		err := v.rt.StartInstance(sctx, *inst, func(rep job.InstanceReport) {
			rep.ID = inst.ID
			if rep.State == job.InstanceExited {
				if live != nil {
					live.close(ctx)
				}
				v.mu.Lock()
				delete(v.running, inst.ID)
				v.mu.Unlock()
				v.s.w.releaseInstance(inst.ID)
				log.Info("service instance exited", "exit_code", rep.ExitCode, "reason", rep.Error)
			}
			v.state(ctx, rep)
		})
		if err != nil {
			log.Warn("service instance did not start", "err", err)
		} else {
			log.Info("service instance ready")
		}
	}()
}

// stop stops instance id in the background; one this session does not
// run is reported exited at once, so that the orchestrator forgets it.
func (v *services) stop(ctx context.Context, id string) {
	v.mu.Lock()
	known := v.running[id]
	v.mu.Unlock()
	if !known || v.rt == nil {
		v.state(ctx, job.InstanceReport{ID: id, State: job.InstanceExited, Error: "no such instance on this worker"})
		return
	}
	v.s.wg.Add(1)
	go func() {
		defer v.s.wg.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), instanceStopTimeout)
		defer cancel()
		for {
			err := v.rt.StopInstance(sctx, id, "stopped by the orchestrator")
			v.mu.Lock()
			still := v.running[id]
			v.mu.Unlock()
			if err == nil || !still {
				return
			}
			// Started here but not yet known to the runtime (its start
			// is only beginning): try again shortly.
			select {
			case <-sctx.Done():
				v.s.log.Warn("stop of a service instance failed", "instance_id", id, "err", err)
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
}

// stopAll stops every instance of the session and waits for them.
func (v *services) stopAll() {
	if v.rt == nil {
		return
	}
	v.mu.Lock()
	ids := make([]string, 0, len(v.running))
	for id := range v.running {
		ids = append(ids, id)
	}
	v.mu.Unlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), instanceStopTimeout)
			defer cancel()
			_ = v.rt.StopInstance(ctx, id, "the worker's connection to the orchestrator ended")
		}()
	}
	wg.Wait()
}

// claimInstance counts instance id among the worker's, unless max run
// already (those that earlier sessions could not stop count too).
func (w *Worker) claimInstance(id string, max int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.instances) >= max {
		return false
	}
	w.instances[id] = true
	return true
}

// releaseInstance forgets instance id, which exited.
func (w *Worker) releaseInstance(id string) {
	w.mu.Lock()
	delete(w.instances, id)
	w.mu.Unlock()
}

// stopLeftovers stops, in the background, the instances that earlier
// sessions started and could not stop: no orchestrator knows them now.
// It is called before the session takes any instance of its own.
func (v *services) stopLeftovers(ctx context.Context) {
	if v.rt == nil {
		return
	}
	w := v.s.w
	w.mu.Lock()
	ids := make([]string, 0, len(w.instances))
	for id := range w.instances {
		ids = append(ids, id)
	}
	w.mu.Unlock()
	for _, id := range ids {
		v.s.log.Warn("stopping a service instance left by an earlier connection to the orchestrator", "instance_id", id)
		v.s.wg.Add(1)
		go func() {
			defer v.s.wg.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), instanceStopTimeout)
			defer cancel()
			if err := v.rt.StopInstance(sctx, id, "left by an earlier connection to the orchestrator"); err != nil {
				v.s.log.Warn("stop of a service instance left by an earlier connection failed", "instance_id", id, "err", err)
			}
		}()
	}
}

// streams keeps the stream connection up while ctx lives, dialing it
// again with backoff when it drops.
func (v *services) streams(ctx context.Context, key string) {
	cfg := v.s.w.cfg
	backoff := cfg.ReconnectMin
	for ctx.Err() == nil {
		began := time.Now()
		err := v.serveStreams(ctx, key)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > 10*time.Second {
			backoff = cfg.ReconnectMin
		}
		v.s.log.Warn("stream connection to the orchestrator ended; dialing again", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(backoff*2, cfg.ReconnectMax)
	}
}

// streamsURL is the stream endpoint of the orchestrator whose session
// endpoint is volunteerURL.
func streamsURL(volunteerURL string) (string, error) {
	u, err := url.Parse(volunteerURL)
	if err != nil {
		return "", err
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/ws/volunteer") + "/ws/streams"
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u.String(), nil
}

// serveStreams dials the stream connection and serves the streams the
// orchestrator opens in it until it ends.
func (v *services) serveStreams(ctx context.Context, key string) error {
	u, err := streamsURL(v.s.w.cfg.URL)
	if err != nil {
		return err
	}
	h := v.s.w.cfg.Header.Clone()
	if h == nil {
		h = make(map[string][]string)
	}
	h.Set("Authorization", "Bearer "+key)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ws, _, err := websocket.Dial(dctx, u, &websocket.DialOptions{HTTPClient: v.s.w.client, HTTPHeader: h})
	cancel()
	if err != nil {
		return fmt.Errorf("dial %s: %w", u, err)
	}
	ws.SetReadLimit(streamReadLimit)
	conn := websocket.NetConn(ctx, ws, websocket.MessageBinary)
	defer conn.Close()
	ycfg := agent.YamuxConfig()
	// Over a network, unlike an attach stream, a connection can die
	// silently: keep-alives find it.
	ycfg.EnableKeepAlive = true
	ycfg.KeepAliveInterval = 15 * time.Second
	sess, err := yamux.Server(agent.FrameConn(conn), ycfg)
	if err != nil {
		return fmt.Errorf("stream session: %w", err)
	}
	defer sess.Close()
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return err
		}
		select {
		case v.slots <- struct{}{}:
		default:
			_, _ = io.WriteString(st, "error too many streams on this worker\n")
			st.Close()
			continue
		}
		v.s.wg.Add(1)
		go func() {
			defer v.s.wg.Done()
			v.serveStream(ctx, st, func() { <-v.slots })
		}()
	}
}

// serveStream answers one stream: "instance ID", then the bytes of a
// connection to the instance's port. It calls read once it read the
// first line: from then on the stream counts in its instance's share.
func (v *services) serveStream(ctx context.Context, st net.Conn, read func()) {
	defer st.Close()
	_ = st.SetReadDeadline(time.Now().Add(streamHeaderTimeout))
	line, br, err := agent.ReadHeader(st)
	_ = st.SetReadDeadline(time.Time{})
	read()
	if err != nil {
		return
	}
	id, ok := strings.CutPrefix(line, "instance ")
	if !ok || id == "" || v.rt == nil {
		_, _ = io.WriteString(st, "error bad request\n")
		return
	}
	v.mu.Lock()
	known := v.running[id]
	full := v.carried[id] >= v.perInstance
	if known && !full {
		v.carried[id]++
	}
	v.mu.Unlock()
	switch {
	case !known:
		_, _ = io.WriteString(st, "error no such instance on this worker\n")
		return
	case full:
		_, _ = io.WriteString(st, fmt.Sprintf("error too many streams to this instance (%d, its share of this worker's)\n", v.perInstance))
		return
	}
	defer func() {
		v.mu.Lock()
		if v.carried[id]--; v.carried[id] <= 0 {
			delete(v.carried, id)
		}
		v.mu.Unlock()
	}()
	dctx, cancel := context.WithTimeout(ctx, instanceDialTimeout)
	defer cancel()
	c, dialed, err := v.rt.DialInstance(dctx, id)
	if err != nil {
		_, _ = io.WriteString(st, "error "+oneLine(err.Error())+"\n")
		return
	}
	defer c.Close()
	// The request's bytes follow the dial at once, without waiting for
	// its answer.
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		// Read with io.Copy's buffer: br's own (the header's, 256
		// bytes) would cut the request in frames that small.
		_, _ = io.Copy(c, struct{ io.Reader }{br})
		agent.CloseWrite(c)
	}()
	defer func() { <-sent }()
	if err := dialed(); err != nil {
		_, _ = io.WriteString(st, "error "+oneLine(err.Error())+"\n")
		st.Close()
		c.Close()
		return
	}
	cancel()
	if _, err := io.WriteString(st, "ok\n"); err != nil {
		c.Close()
		return
	}
	_, _ = io.Copy(st, c)
	agent.CloseWrite(st)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > agent.MaxHeader-16 {
		s = s[:agent.MaxHeader-16]
	}
	return s
}
