package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zerverless/zerverless/internal/admission"
	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/auth"
	"github.com/zerverless/zerverless/internal/contextstore"
	"github.com/zerverless/zerverless/internal/deploy"
	"github.com/zerverless/zerverless/internal/memnet"
	"github.com/zerverless/zerverless/internal/netlimit"
	"github.com/zerverless/zerverless/internal/orchestrator"
	"github.com/zerverless/zerverless/internal/store/sqlite"
	"github.com/zerverless/zerverless/internal/worker"
	"github.com/zerverless/zerverless/web"
)

// ServerConfig is everything `zerverless serve` sets up.
type ServerConfig struct {
	// Addr is the HTTP listen address (default ":8000"; "127.0.0.1:0" in
	// tests picks a free port).
	Addr string
	// DataDir holds the embedded store (default "./zerverless-data").
	DataDir string
	// Workers is how many embedded workers to start (default 2).
	Workers int
	// WorkersInProcess makes the embedded workers reach the orchestrator
	// through an in-process listener rather than the TCP port (default
	// true): the same HTTP server, handshakes, join token and connection
	// limits, with no socket between them. Their connections report the
	// address "inprocess".
	WorkersInProcess bool
	// Worker configures each embedded worker; URL is filled in.
	Worker worker.Config
	// Runtimes configures the runtimes of embedded workers.
	Runtimes RuntimeOptions
	// Orchestrator, Admission and API tune those parts.
	Orchestrator orchestrator.Config
	Admission    admission.Config
	API          api.Config
	// Deploy and Functions tune function deployments and invocations.
	Deploy    deploy.Config
	Functions api.FunctionsConfig
	// Contexts keeps uploaded build contexts (Dir defaults to
	// DataDir/build-contexts).
	Contexts contextstore.Config
	// Auth tunes the token service (its caches).
	Auth auth.Config
	// Net bounds the HTTP server's connections and request reads
	// (netlimit.DefaultConfig; serve sets Net.Descriptors to the process's
	// open-file limit).
	Net netlimit.Config
	// ShutdownTimeout bounds a graceful shutdown (default 10 s).
	ShutdownTimeout time.Duration
	Log             *slog.Logger
}

// DefaultServerConfig returns the documented defaults of `serve`.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		Addr:             ":8000",
		DataDir:          "zerverless-data",
		Workers:          2,
		WorkersInProcess: true,
		Worker:           worker.DefaultConfig(),
		Runtimes:         DefaultRuntimeOptions(),
		Orchestrator:     orchestrator.DefaultConfig(),
		Admission:        admission.DefaultConfig(),
		API:              api.DefaultConfig(),
		Contexts:         contextstore.DefaultConfig(),
		Deploy:           deploy.DefaultConfig(),
		Functions:        api.DefaultFunctionsConfig(),
		Net:              netlimit.DefaultConfig(),
		ShutdownTimeout:  10 * time.Second,
	}
}

// validate refuses the server settings that make no sense, naming the
// flag, and resolves the derived connection limits.
func (c *ServerConfig) validate() error {
	var s settings
	if c.Addr == "" {
		s.invalid("Addr", "must not be empty")
	} else if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		s.invalid("Addr", "%v", err)
	}
	if c.Workers < 0 {
		s.invalid("Workers", "must not be negative")
	}
	if c.ShutdownTimeout <= 0 {
		s.invalid("ShutdownTimeout", "must be positive")
	}
	if c.Contexts.TTL <= 0 {
		s.invalid("Contexts.TTL", "must be positive (got %s)", c.Contexts.TTL)
	}
	if c.API.WorkerRegisterLimit <= 0 || c.API.WorkerRegisterLimit > c.API.WorkerReadLimit && c.API.WorkerReadLimit > 0 {
		s.invalid("API.WorkerRegisterLimit", "must be positive and at most the largest worker message")
	}
	s.add("Orchestrator.", c.Orchestrator.Validate())
	s.add("API.", c.API.Validate())
	s.add("Functions.", c.Functions.Validate())
	s.add("Deploy.Limits.Services.", c.Deploy.Limits.Services.Validate())
	resolved, err := c.Net.Resolve()
	s.add("Net.", err)
	if err := s.err(); err != nil {
		return err
	}
	c.Net = resolved
	return nil
}

// Server is a running orchestrator with its store, HTTP API and embedded
// workers. End-to-end tests start it in-process.
type Server struct {
	cfg   ServerConfig
	log   *slog.Logger
	store *sqlite.Store
	orch  *orchestrator.Orchestrator
	fns   *deploy.Service
	auth  *auth.Service
	http  *http.Server
	ln    net.Listener
	// limits is ln: the connection limits around the TCP listener.
	limits *netlimit.Listener
	// inproc, when the embedded workers run in process, is the listener
	// they dial (served under limits too).
	inproc *memnet.Listener

	adminToken        string
	adminTokenCreated bool

	baseCancel context.CancelFunc
	workers    []*worker.Worker
	runtimes   *Runtimes
	stopWorker context.CancelFunc
	wg         sync.WaitGroup
	closeOnce  sync.Once
}

// StartServer opens the store, recovers jobs, listens, and starts the
// embedded workers. The server runs until Close.
func StartServer(ctx context.Context, cfg ServerConfig) (_ *Server, err error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// Listen first: a taken port fails before anything is created (a
	// first start would otherwise make an admin token it never prints).
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s.limits = netlimit.NewListener(ln, cfg.Net)
	s.ln = s.limits
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	scfg := sqlite.DefaultConfig()
	scfg.Path = filepath.Join(cfg.DataDir, "zerverless.db")
	s.store, err = sqlite.Open(ctx, scfg)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerConnMetrics(reg, s.limits)
	if cfg.Orchestrator.LocalWorkerSecret == "" {
		// The embedded workers' join token lives only in this process.
		cfg.Orchestrator.LocalWorkerSecret = rand.Text()
		s.cfg.Orchestrator.LocalWorkerSecret = cfg.Orchestrator.LocalWorkerSecret
	}
	if err := s.startAuth(ctx, &cfg); err != nil {
		return nil, err
	}
	if cfg.Orchestrator.MaxAnonymousSessions == 0 {
		// Half the worker sessions at most go to anonymous volunteers,
		// so that trusted workers always find room.
		cfg.Orchestrator.MaxAnonymousSessions = max(cfg.Net.MaxSessions/2, 1)
	}
	s.orch, err = orchestrator.New(cfg.Orchestrator, s.store, log, reg)
	if err != nil {
		return nil, fmt.Errorf("create orchestrator: %w", err)
	}
	if err := s.orch.Start(ctx); err != nil {
		return nil, fmt.Errorf("start orchestrator: %w", err)
	}
	cfg.Deploy.Quotas = s.orch
	cfg.Deploy.OnChange = s.orch.ReconcileServices
	s.fns = deploy.New(cfg.Deploy, s.store, s.orch, log)
	if err := s.fns.Start(ctx); err != nil {
		return nil, fmt.Errorf("start functions: %w", err)
	}
	s.orch.SetServiceDeployments(s.fns.Services)
	cfg.API.Streams = s.orch

	baseCtx, baseCancel := context.WithCancel(context.Background())
	s.baseCancel = baseCancel
	if cfg.API.Volunteer == nil {
		cfg.API.Volunteer = web.Volunteer()
	}
	if cfg.API.Dashboard == nil {
		cfg.API.Dashboard = web.Dashboard()
	}
	contexts, err := s.startContexts(baseCtx, &cfg)
	if err != nil {
		return nil, err
	}
	handler, err := s.newHandler(cfg, contexts, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if err != nil {
		return nil, err
	}
	// No WriteTimeout or ReadTimeout: they would cut ?wait= answers and
	// functions that run up to their timeout (job.DeployLimits.MaxTimeout,
	// 5 min by default) plus the queue wait. Slow clients are bounded by
	// ReadHeaderTimeout, the body rate of netlimit.LimitBody, IdleTimeout
	// and the connection limits of s.limits; worker WebSockets are
	// hijacked (the server clears their deadlines) and, once registered,
	// promoted out of the connection limits.
	s.http = &http.Server{
		Handler:           netlimit.LimitBody(cfg.Net, handler),
		ReadHeaderTimeout: cfg.Net.ReadHeaderTimeout,
		IdleTimeout:       cfg.Net.IdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ConnContext:       s.limits.ConnContext,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Log streams never go idle: they end when shutting down begins (their
	// clients resume with Last-Event-ID).
	s.http.RegisterOnShutdown(s.orch.EndLogFollowers)
	serve := func(ln net.Listener) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server", "err", err)
			}
		}()
	}
	serve(s.ln)
	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	if cfg.Workers > 0 && cfg.WorkersInProcess {
		// Only this process holds the listener: nothing else reaches
		// it, and its connections count apart from every real address.
		s.inproc = memnet.Listen("inprocess")
		serve(s.limits.Also(s.inproc))
		dial = s.inproc.Dial
	}
	log.Info("orchestrator listening", "addr", s.ln.Addr().String(), "data", cfg.DataDir,
		"max_conns", cfg.Net.MaxConns, "max_conns_per_addr", cfg.Net.MaxConnsPerAddr,
		"max_worker_sessions", cfg.Net.MaxSessions, "open_files", cfg.Net.Descriptors)

	if cfg.Workers > 0 {
		if err := s.wireContextFetcher(&cfg, dial); err != nil {
			return nil, err
		}
		if cfg.Runtimes.Slots == 0 {
			cfg.Runtimes.Slots = cfg.Workers * cfg.Worker.Concurrency
		}
		runtimes, err := BuildRuntimes(ctx, cfg.Runtimes, log)
		if err != nil {
			return nil, err
		}
		s.runtimes = runtimes
		wctx, stop := context.WithCancel(context.Background())
		s.stopWorker = stop
		for i := range cfg.Workers {
			wc := cfg.Worker
			wc.URL = s.WorkerURL()
			wc.JoinToken = cfg.Orchestrator.LocalWorkerSecret
			wc.Dial = dial
			wc.Name = fmt.Sprintf("embedded-%d", i+1)
			if wc.Docker == nil {
				wc.Docker = runtimes.Docker
			}
			w, err := worker.New(wc, runtimes.Set, log.With("worker", wc.Name))
			if err != nil {
				runtimes.Close(ctx)
				return nil, err
			}
			s.workers = append(s.workers, w)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				w.Run(wctx)
			}()
		}
	}
	return s, nil
}

// URL is the server's base HTTP URL.
func (s *Server) URL() string { return "http://" + s.hostPort() }

// WorkerURL is the WebSocket endpoint workers dial.
func (s *Server) WorkerURL() string { return "ws://" + s.hostPort() + "/ws/volunteer" }

func (s *Server) hostPort() string {
	addr := s.ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(addr.Port))
}

// Orchestrator returns the server's orchestrator.
func (s *Server) Orchestrator() *orchestrator.Orchestrator { return s.orch }

// Close shuts down gracefully: embedded workers stop, the HTTP server stops
// taking requests and finishes those in flight (up to ShutdownTimeout),
// worker connections end, and the store is closed. Jobs still pending or
// running stay in the store and are recovered by the next start.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.stopWorker != nil {
			s.stopWorker()
		}
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
			err = s.http.Shutdown(ctx)
			cancel()
		} else if s.ln != nil {
			s.ln.Close() // the start failed before serving
		}
		if s.baseCancel != nil {
			s.baseCancel()
		}
		s.wg.Wait()
		if s.runtimes != nil {
			s.runtimes.Close(context.Background())
		}
		if s.fns != nil {
			s.fns.Close()
		}
		if s.orch != nil {
			s.orch.Close()
		}
		if s.store != nil {
			if cerr := s.store.Close(); err == nil {
				err = cerr
			}
		}
	})
	return err
}

// Listening describes what the server binds: the address when it is one,
// or, when it binds every interface, that it does and the URLs it is
// reachable at on this machine's addresses (loopback first, at most a
// few).
func (s *Server) Listening() string {
	addrs, _ := net.InterfaceAddrs()
	return describeListen(s.ln.Addr().(*net.TCPAddr), addrs)
}

// describeListen is Listening for a bound address and the machine's
// interface addresses.
func describeListen(bound *net.TCPAddr, ifaddrs []net.Addr) string {
	port := fmt.Sprint(bound.Port)
	if !bound.IP.IsUnspecified() {
		return "http://" + net.JoinHostPort(bound.IP.String(), port)
	}
	v6 := bound.IP.To4() == nil // "::" also takes IPv4 (dual stack)
	urls := []string{"http://" + net.JoinHostPort("127.0.0.1", port)}
	const most = 4
	for _, a := range ifaddrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() || !ipn.IP.IsGlobalUnicast() {
			continue
		}
		if ipn.IP.To4() == nil && !v6 {
			continue
		}
		if len(urls) == most {
			urls = append(urls, "…")
			break
		}
		urls = append(urls, "http://"+net.JoinHostPort(ipn.IP.String(), port))
	}
	return fmt.Sprintf("every interface, port %s: %s", port, strings.Join(urls, ", "))
}

// registerConnMetrics exports what the connection limits hold and did.
func registerConnMetrics(reg prometheus.Registerer, l *netlimit.Listener) {
	stat := func(f func(netlimit.Stats) float64) func() float64 {
		return func() float64 { return f(l.Stats()) }
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "zerverless_http_connections", Help: "HTTP connections open, worker sessions not counted."},
			stat(func(s netlimit.Stats) float64 { return float64(s.Conns) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "zerverless_worker_sessions", Help: "Registered worker WebSockets open."},
			stat(func(s netlimit.Stats) float64 { return float64(s.Sessions) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "zerverless_http_connections_refused_total", Help: "Connections closed at accept: their address or the server held as many as it may."},
			stat(func(s netlimit.Stats) float64 { return float64(s.Refused) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "zerverless_http_connections_evicted_total", Help: "Connections closed to make room for an address that held fewer."},
			stat(func(s netlimit.Stats) float64 { return float64(s.Evicted) })),
	)
}
