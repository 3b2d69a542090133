// Package api is the HTTP adapter of Zerverless: the JSON job API, the
// health, info, stats and metrics endpoints, and the WebSocket endpoint
// where workers connect. It authenticates a request's bearer token, puts
// the principal in the request's context and hands every call made for a
// tenant to admission.Service, which decides; a handler only decodes and
// encodes. It maps every error code to one HTTP status.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/zerverless/zerverless/internal/admission"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/netlimit"
	"github.com/zerverless/zerverless/internal/protocol"
)

// server holds what the handlers share.
type server struct {
	cfg     Config
	adm     *admission.Service
	svc     Service
	log     *slog.Logger
	audit   *slog.Logger // records with "audit"=true
	metrics http.Handler
	mux     *http.ServeMux
	// bodies is what the requests being served count against
	// cfg.MaxBodiesInFlight.
	bodies atomic.Int64
	// routes are the routes registered, for tests that walk them all.
	routes []route
}

// route is one registered route.
type route struct {
	pattern string
	// open routes need no token: they act for no tenant.
	open bool
	// params are the query parameters the route reads; any other is
	// answered 400 naming it.
	params []string
}

// New returns the API's handler. adm admits every call made for a tenant
// and svc serves the worker protocol; both are required. metrics serves
// GET /metrics (the orchestrator owns the Prometheus registry); when nil
// the route is absent. A nil log discards. Unknown routes answer 404 and
// wrong methods 405 with an Allow header, both as JSON errors; a query
// parameter the route does not read is 400 naming it; a panic in a
// handler is logged and answered 500. A config New refuses is an error.
func New(cfg Config, adm *admission.Service, svc Service, log *slog.Logger, metrics http.Handler) (http.Handler, error) {
	s, err := newServer(cfg, adm, log)
	if err != nil {
		return nil, err
	}
	if svc == nil {
		return nil, errors.New("api: the worker Service is required")
	}
	s.svc, s.metrics = svc, metrics
	s.register()
	return s, nil
}

// newServer checks cfg and adm and returns a server without routes.
func newServer(cfg Config, adm *admission.Service, log *slog.Logger) (*server, error) {
	if adm == nil {
		return nil, errors.New("api: the admission service is required (there is no open mode)")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.StartTime.IsZero() {
		cfg.StartTime = time.Now()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &server{cfg: cfg, adm: adm, log: log, audit: log.With("audit", true), mux: http.NewServeMux()}, nil
}

// handle registers a route that needs a token: h runs only for an
// authenticated API caller, whose principal its context carries. Every
// route is registered this way unless it is listed with handleOpen.
func (s *server) handle(pattern string, h http.HandlerFunc, params ...string) {
	s.routes = append(s.routes, route{pattern: pattern, params: params})
	s.mux.HandleFunc(pattern, s.queryCheck(params, s.guard(s.bodyBudget(h))))
}

// handleStreaming is handle for a route that streams its body rather
// than hold it (a build context upload), or counts it itself with
// reserveBody (a job submission, which gives it back before it waits):
// it is not counted against MaxBodiesInFlight here.
func (s *server) handleStreaming(pattern string, h http.HandlerFunc, params ...string) {
	s.routes = append(s.routes, route{pattern: pattern, params: params})
	s.mux.HandleFunc(pattern, s.queryCheck(params, s.guard(h)))
}

// bodyBudget counts the body of each request h serves against
// cfg.MaxBodiesInFlight while h runs (see reserveBody).
func (s *server) bodyBudget(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, ok := s.reserveBody(w, r)
		if !ok {
			return
		}
		defer s.bodies.Add(-n)
		h(w, r)
	}
}

// reserveBody counts r's body against cfg.MaxBodiesInFlight and returns
// the amount to give back (s.bodies.Add(-n)) once the body is no longer
// held; when it does not fit it answers 503 with Retry-After, before the
// body is read, and returns false. A body over MaxBodyBytes by its
// Content-Length is let through uncounted: the handler refuses it
// without reading it.
func (s *server) reserveBody(w http.ResponseWriter, r *http.Request) (n int64, ok bool) {
	n = r.ContentLength
	if r.Body == nil || r.Body == http.NoBody || n == 0 || n > s.cfg.MaxBodyBytes {
		return 0, true
	}
	if n < 0 {
		n = s.cfg.MaxBodyBytes
	}
	if s.bodies.Add(n) > s.cfg.MaxBodiesInFlight {
		s.bodies.Add(-n)
		w.Header().Set("Retry-After", "1")
		s.writeError(w, r, job.Errorf(job.CodeUnavailable, "the requests being served hold as many bodies as they may (%d bytes); try again shortly", s.cfg.MaxBodiesInFlight))
		return 0, false
	}
	return n, true
}

// handleOpen registers a route that needs no token because it acts for no
// tenant (health, the volunteer page, the worker protocol, a worker's
// fetch authenticated by its lease).
func (s *server) handleOpen(pattern string, h http.Handler, params ...string) {
	s.routes = append(s.routes, route{pattern: pattern, open: true, params: params})
	s.mux.Handle(pattern, s.queryCheck(params, h.ServeHTTP))
}

// queryCheck answers 400 naming the first query parameter that h does not
// read, so that a misspelt filter is never silently ignored.
func (s *server) queryCheck(params []string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k := range r.URL.Query() {
			if !slices.Contains(params, k) {
				msg := "unknown query parameter " + strconv.Quote(k)
				if len(params) > 0 {
					msg += " (this route reads " + strings.Join(params, ", ") + ")"
				} else {
					msg += " (this route reads none)"
				}
				s.writeError(w, r, job.Invalid(k, "%s", msg))
				return
			}
		}
		h(w, r)
	}
}

func (s *server) register() {
	s.handleOpen("GET /health", http.HandlerFunc(s.health))
	s.handleOpen("GET /ws/volunteer", http.HandlerFunc(s.volunteer))
	s.handleOpen("GET /api/openapi.json", http.HandlerFunc(s.openAPIDoc))

	s.handleStreaming("POST /api/jobs", s.submitJob, "wait")
	s.handle("GET /api/jobs", s.listJobs, "status", "namespace", "limit", "cursor")
	s.handle("GET /api/jobs/{id}", s.getJob, "wait", "include")
	s.handle("DELETE /api/jobs/{id}", s.cancelJob)
	s.handle("GET /api/jobs/{id}/logs", s.jobLogs, "follow", "after", "limit")
	s.handle("GET /api/workers", s.listWorkers, "runtime", "trusted", "namespace", "limit", "cursor")
	s.handle("GET /api/pools", s.listPools)
	s.handle("GET /info", s.info)
	s.handle("GET /stats", s.stats)
	s.buildRoutes()
	s.tokenRoutes()
	if s.metrics != nil {
		s.handle("GET /metrics", s.metrics.ServeHTTP)
	}
	if s.cfg.Volunteer != nil {
		s.handleOpen("GET /volunteer/", s.cfg.Volunteer)
	}
	if s.cfg.Dashboard != nil {
		s.handleOpen("GET /dashboard/", s.cfg.Dashboard)
	}
	if s.cfg.Streams != nil {
		s.handleOpen("GET /ws/streams", http.HandlerFunc(s.streams))
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
	st, err := s.adm.Stats(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *server) listWorkers(w http.ResponseWriter, r *http.Request) {
	f, err := parseWorkerFilter(r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ws, next, err := s.adm.Workers(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, WorkerList{Workers: ws, NextCursor: next})
}

// listPools is GET /api/pools: the dispatch pools, as the caller may see
// them (admission.Service.Pools).
func (s *server) listPools(w http.ResponseWriter, r *http.Request) {
	pools, err := s.adm.Pools(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, PoolList{Pools: pools})
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
