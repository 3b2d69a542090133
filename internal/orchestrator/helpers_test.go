package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/protocol/protocoltest"
	"github.com/zerverless/zerverless/internal/store"
	"github.com/zerverless/zerverless/internal/store/sqlite"
	"github.com/zerverless/zerverless/internal/testutil"
)

// harness is an orchestrator over a real SQLite store, serving workers over
// real WebSocket connections.
type harness struct {
	t     *testing.T
	dir   string
	cfg   Config
	store *sqlite.Store
	o     *Orchestrator
	srv   *httptest.Server
}

const harnessSecret = "harness-secret"

func testConfig() Config {
	cfg := DefaultConfig()
	// Silence ends a session after HeartbeatInterval × HeartbeatMisses
	// (750 ms): long enough for a fake worker on a loaded machine.
	cfg.HeartbeatInterval = 250 * time.Millisecond
	cfg.LeaseGrace = time.Second
	cfg.WriteTimeout = 5 * time.Second
	// Raw workers present harnessSecret and are trusted; those that
	// present nothing are anonymous volunteers.
	cfg.LocalWorkerSecret = harnessSecret
	cfg.OpenVolunteering = true
	cfg.BuildKey = testBuildKey
	return cfg
}

// newHarness starts an orchestrator with cfg on a store in dir.
func newHarness(t *testing.T, dir string, cfg Config) *harness {
	t.Helper()
	return newHarnessWith(t, dir, cfg, nil)
}

// newHarnessWith is newHarness with the orchestrator's store wrapped by
// wrap (nil: not wrapped).
func newHarnessWith(t *testing.T, dir string, cfg Config, wrap func(store.Store) store.Store) *harness {
	t.Helper()
	return newHarnessMetrics(t, dir, cfg, wrap, nil)
}

// newHarnessMetrics is newHarnessWith with the metrics registered with
// reg (nil: none).
func newHarnessMetrics(t *testing.T, dir string, cfg Config, wrap func(store.Store) store.Store, reg prometheus.Registerer) *harness {
	t.Helper()
	scfg := sqlite.DefaultConfig()
	scfg.Path = filepath.Join(dir, "jobs.db")
	st, err := sqlite.Open(context.Background(), scfg)
	if err != nil {
		t.Fatal(err)
	}
	var ost store.Store = st
	if wrap != nil {
		ost = wrap(st)
	}
	o, err := New(cfg, ost, testLog(), reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, cfg: cfg, store: st, o: o}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := protocol.Accept(w, r, nil, protocol.Options{})
		if err != nil {
			return
		}
		o.ServeWorker(r.Context(), conn, r.RemoteAddr)
	}))
	t.Cleanup(h.close)
	return h
}

// close stops the orchestrator, then the HTTP server and the store.
func (h *harness) close() {
	h.o.Close()
	h.srv.CloseClientConnections()
	h.srv.Close()
	h.store.Close()
}

func (h *harness) url() string { return "ws" + strings.TrimPrefix(h.srv.URL, "http") }

func (h *harness) submit(r job.Request) *job.Job {
	h.t.Helper()
	j, err := h.o.Submit(tenantCtx(), r)
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

func (h *harness) job(id string) *job.Job {
	h.t.Helper()
	j, err := h.o.Job(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

func (h *harness) stored(id string) *job.Job {
	h.t.Helper()
	j, err := h.store.GetJob(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

// rawWorker speaks the protocol by hand: protocoltest's fake worker, with
// the short names these tests use.
type rawWorker struct {
	*protocoltest.Worker
	t    testing.TB
	conn *protocol.Conn
	id   string
}

func newRawWorker(w *protocoltest.Worker) *rawWorker {
	return &rawWorker{Worker: w, t: w.T, conn: w.Conn, id: w.ID}
}

// fake is r's protocoltest worker; a rawWorker made from a connection a
// test registered by hand gets one on first use.
func (r *rawWorker) fake() *protocoltest.Worker {
	if r.Worker == nil {
		r.Worker = &protocoltest.Worker{T: r.t, Conn: r.conn, ID: r.id}
	}
	return r.Worker
}

// next reads until an assignment arrives.
func (r *rawWorker) next(d time.Duration) *job.Task { r.t.Helper(); return r.fake().Next(d) }

func (r *rawWorker) send(m protocol.Message) { r.t.Helper(); r.fake().Send(m) }

// keepAlive sends heartbeats until the test ends or the connection fails.
func (r *rawWorker) keepAlive() { r.fake().KeepAlive() }

func luaCaps(concurrency int) job.Capabilities {
	return job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: concurrency}
}

func (h *harness) dial(caps job.Capabilities) *rawWorker {
	h.t.Helper()
	return h.dialAs(caps, harnessSecret)
}

// dialAs connects a raw worker that presents token ("" for an anonymous
// volunteer).
func (h *harness) dialAs(caps job.Capabilities, token string) *rawWorker {
	h.t.Helper()
	return newRawWorker(protocoltest.Register(h.t, h.url(), token, caps))
}

// eventually polls f until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	testutil.Eventually(t, d, f)
}

func ptr[T any](v T) *T { return &v }

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func resultMessage(t *job.Task, s job.Status) protocol.Message {
	return protocol.Message{Type: protocol.TypeResult, JobID: t.JobID, LeaseID: t.LeaseID, Result: &job.Result{Status: s}}
}

func testLog() *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// proven gives w's identity a record of many returned results, so that the
// leases it loses are charged to their jobs as the job's own failures (see
// loseLeaseLocked).
func (h *harness) proven(w *rawWorker) *rawWorker {
	h.t.Helper()
	eventually(h.t, 5*time.Second, func() error {
		h.o.mu.Lock()
		defer h.o.mu.Unlock()
		ww, ok := h.o.workers[w.id]
		if !ok {
			return fmt.Errorf("worker %s is not registered yet", w.id)
		}
		h.o.standingLocked(ww.reputationKey()).results += 1000
		h.o.standingChangedLocked(ww)
		return nil
	})
	return w
}
