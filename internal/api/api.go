// Package api is the HTTP adapter of Zerverless: the JSON job API, the
// health, info, stats and metrics endpoints, and the WebSocket endpoint
// where workers connect. It codes against Service, which the orchestrator
// implements, and maps every error code to one HTTP status.
package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/netlimit"
	"github.com/zerverless/zerverless/internal/protocol"
)

// server holds what the handlers share.
type server struct {
	cfg     Config
	svc     Service
	log     *slog.Logger
	audit   *slog.Logger // records with "audit"=true
	metrics http.Handler
	mux     *http.ServeMux
}

// New returns the API's handler. metrics serves GET /metrics (the
// orchestrator owns the Prometheus registry); when nil the route is
// absent. A nil log discards. Unknown routes answer 404 and wrong methods
// 405 with an Allow header, both as JSON errors; a panic in a handler is
// logged and answered 500.
func New(cfg Config, svc Service, log *slog.Logger, metrics http.Handler) http.Handler {
	def := DefaultConfig()
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = def.MaxBodyBytes
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = def.MaxWait
	}
	if cfg.RequestLimits == (job.RequestLimits{}) {
		cfg.RequestLimits = def.RequestLimits
	}
	if cfg.WorkerReadLimit <= 0 {
		cfg.WorkerReadLimit = def.WorkerReadLimit
	}
	if cfg.MaxContextBytes <= 0 {
		cfg.MaxContextBytes = def.MaxContextBytes
	}
	if cfg.StartTime.IsZero() {
		cfg.StartTime = time.Now()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{cfg: cfg, svc: svc, log: log, audit: log.With("audit", true), metrics: metrics, mux: http.NewServeMux()}
	s.routes()
	return s
}

func (s *server) routes() {
	m := s.mux
	// Open routes: health, the volunteer page, the worker WebSocket
	// (workers authenticate inside the protocol) and the workers' fetch
	// of build contexts (authenticated by a lease, in buildRoutes).
	m.HandleFunc("GET /health", s.health)
	m.HandleFunc("GET /ws/volunteer", s.volunteer)

	m.HandleFunc("POST /api/jobs", s.guard(anyToken, s.submitJob))
	m.HandleFunc("GET /api/jobs", s.guard(anyToken, s.listJobs))
	m.HandleFunc("GET /api/jobs/{id}", s.guard(anyToken, s.getJob))
	m.HandleFunc("DELETE /api/jobs/{id}", s.guard(anyToken, s.cancelJob))
	m.HandleFunc("GET /api/workers", s.guard(anyToken, s.listWorkers))
	m.HandleFunc("GET /info", s.guard(anyToken, s.info))
	m.HandleFunc("GET /stats", s.guard(anyToken, s.stats))
	s.buildRoutes(m)
	s.tokenRoutes(m)
	if s.metrics != nil {
		m.HandleFunc("GET /metrics", s.guard(anyToken, s.metrics.ServeHTTP))
	}
	if s.cfg.Volunteer != nil {
		m.Handle("GET /volunteer/", s.cfg.Volunteer)
	}
}

// ServeHTTP routes r, turning the mux's own 404 and 405 answers into JSON
// errors and any panic into a 500.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer s.recoverPanic(w, r)
	if _, pattern := s.mux.Handler(r); pattern == "" {
		s.noRoute(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// noRoute answers a request that matches no route: 405 with Allow when
// the path exists under other methods, 404 otherwise.
func (s *server) noRoute(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{header: http.Header{}}
	s.mux.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", rec.header.Get("Allow"))
		s.errorf(w, http.StatusMethodNotAllowed, "", fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path))
		return
	}
	s.errorf(w, http.StatusNotFound, "", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
}

// statusRecorder keeps the status and headers of the mux's own fallback
// answers and drops their plain-text bodies.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header { return r.header }
func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *statusRecorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return len(b), nil
}

// recoverPanic answers a panicking handler with a 500 JSON error and logs
// the panic with its stack. http.ErrAbortHandler is let through.
func (s *server) recoverPanic(w http.ResponseWriter, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	s.log.LogAttrs(r.Context(), slog.LevelError, "handler panicked",
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
	s.errorf(w, http.StatusInternalServerError, "", internalMessage)
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		// Every body is a type of this package; this is a programming
		// error, and the recover middleware answers it.
		panic(fmt.Sprintf("encode %T: %v", v, err))
	}
	data = append(data, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	w.Write(data)
}

func (s *server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Health{Status: "ok"})
}

func (s *server) info(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Info{
		Version:         s.cfg.Version,
		GoVersion:       runtime.Version(),
		ProtocolVersion: protocol.Version,
		StartedAt:       s.cfg.StartTime.UTC(),
		UptimeSeconds:   time.Since(s.cfg.StartTime).Seconds(),
	})
}

func (s *server) stats(w http.ResponseWriter, r *http.Request) {
	st, err := s.svc.Stats(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *server) listWorkers(w http.ResponseWriter, r *http.Request) {
	ws := s.svc.Workers()
	p := principal(r)
	for i := range ws {
		if !p.Admin() {
			// A namespace token sees which of its own jobs run where,
			// and only how many others do.
			ws[i].RunningJobs = slices.DeleteFunc(ws[i].RunningJobs, func(id string) bool {
				return !p.Sees(ws[i].JobNamespaces[id])
			})
		}
		if ws[i].RunningJobs == nil {
			ws[i].RunningJobs = []string{}
		}
	}
	if ws == nil {
		ws = []job.WorkerInfo{}
	}
	writeJSON(w, http.StatusOK, WorkerList{Workers: ws})
}

// volunteer upgrades to the worker protocol and hands the connection to
// the orchestrator; it returns when the connection ends.
func (s *server) volunteer(w http.ResponseWriter, r *http.Request) {
	conn, err := protocol.Accept(w, r, s.cfg.OriginPatterns, protocol.Options{
		ReadLimit:         s.cfg.WorkerReadLimit,
		RegisterReadLimit: s.cfg.WorkerRegisterLimit,
		Declarations:      s.cfg.WorkerDeclarations,
		// A registered session leaves the HTTP connection limits for
		// the worker sessions' own.
		OnAuthenticated: func() error { return netlimit.Promote(r.Context()) },
	})
	if err != nil {
		// Accept has answered the client already.
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "worker upgrade refused",
			slog.String("remote", r.RemoteAddr), slog.Any("err", err))
		return
	}
	defer conn.CloseNow()
	// The request's context ends when the server shuts down: the worker
	// is told so (close status 1001) and the session ends when the
	// close completes, rather than the connection being dropped.
	stop := context.AfterFunc(r.Context(), func() { conn.CloseGoingAway("the orchestrator is shutting down") })
	defer stop()
	err = s.svc.ServeWorker(context.WithoutCancel(r.Context()), conn, r.RemoteAddr)
	if reason, ok := protocol.ClosedCleanly(err); ok {
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "worker closed its connection",
			slog.String("remote", r.RemoteAddr), slog.String("reason", reason))
	} else if err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "worker connection ended",
			slog.String("remote", r.RemoteAddr), slog.Any("err", err))
	}
}
