package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// Config configures the HTTP API. Start from DefaultConfig; every limit has
// a documented default that an operator may change. A zero field takes its
// default; a negative one is refused by New.
type Config struct {
	// MaxBodyBytes caps a request body (default 64 MiB: a 32 MiB Wasm
	// module is about 43 MiB of base64, plus input and the rest). A larger
	// body is answered 413.
	MaxBodyBytes int64
	// MaxBodiesInFlight bounds the request bodies that the API's
	// handlers hold at once while they serve them (default 256 MiB), each
	// counted as its Content-Length (MaxBodyBytes when it is not known).
	// A request that does not fit is answered 503 with Retry-After
	// before its body is read: without it, a few dozen 64 MiB
	// submissions at once, even refused ones, take gigabytes (a body is
	// held several times over while it is decoded: a 60 MB submission
	// takes about 300 MB until it is answered). Uploads of
	// build contexts stream to disk and are not counted. It must be at
	// least MaxBodyBytes.
	MaxBodiesInFlight int64
	// MaxWait caps ?wait= on GET /api/jobs/{id} and POST /api/jobs
	// (default 60 s). The http.Server's WriteTimeout, if any, must be
	// longer than this.
	MaxWait time.Duration
	// RequestLimits bound what a job request may ask for (default
	// job.DefaultRequestLimits).
	RequestLimits job.RequestLimits
	// OriginPatterns are the Origin hosts from which a browser page may
	// open /ws/volunteer (for example "example.com", "*.example.com").
	// Native workers send no Origin and are always accepted; a browser
	// page served by the orchestrator itself is accepted too. Default none.
	OriginPatterns []string
	// WorkerReadLimit is the largest WebSocket message accepted from a
	// worker (default protocol.DefaultReadLimit, 64 MiB).
	WorkerReadLimit int64
	// WorkerRegisterLimit is the largest WebSocket message read from a
	// worker before it is authenticated, its "register" (default
	// protocol.DefaultRegisterReadLimit, 16 KiB).
	WorkerRegisterLimit int64
	// WorkerDeclarations bound what a worker declares about itself: name,
	// notes, capability lists (default protocol.DefaultDeclarationLimits).
	WorkerDeclarations protocol.DeclarationLimits
	// Version is the software version that GET /info reports.
	Version string
	// StartTime is when the process started, for GET /info's uptime. The
	// zero value means the time New is called.
	StartTime time.Time
	// Volunteer, when set, serves GET /volunteer/ and the paths under it:
	// the browser volunteer page (web.Volunteer). Default none.
	Volunteer http.Handler
	// Dashboard, when set, serves GET /dashboard/ and the paths under
	// it: the dashboard for people (web.Dashboard), which calls this API
	// with a token of its user's. Default none.
	Dashboard http.Handler
	// Streams, when set, serves GET /ws/streams: the stream connections
	// of workers that run docker service instances (the orchestrator).
	// Default none.
	Streams StreamAcceptor
	// MaxContextBytes caps a build context upload as sent, compressed or
	// not (default 160 MiB: 100 MiB of files and room for tar headers).
	MaxContextBytes int64
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:        64 << 20,
		MaxBodiesInFlight:   256 << 20,
		MaxWait:             60 * time.Second,
		RequestLimits:       job.DefaultRequestLimits(),
		WorkerReadLimit:     protocol.DefaultReadLimit,
		WorkerRegisterLimit: protocol.DefaultRegisterReadLimit,
		WorkerDeclarations:  protocol.DefaultDeclarationLimits(),
		Version:             "dev",
		MaxContextBytes:     160 << 20,
	}
}

// withDefaults returns c with its zero fields at their defaults.
func (c Config) withDefaults() Config {
	def := DefaultConfig()
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = def.MaxBodyBytes
	}
	if c.MaxBodiesInFlight == 0 {
		c.MaxBodiesInFlight = max(def.MaxBodiesInFlight, c.MaxBodyBytes)
	}
	if c.MaxWait == 0 {
		c.MaxWait = def.MaxWait
	}
	if c.RequestLimits == (job.RequestLimits{}) {
		c.RequestLimits = def.RequestLimits
	}
	if c.WorkerReadLimit == 0 {
		c.WorkerReadLimit = def.WorkerReadLimit
	}
	if c.MaxContextBytes == 0 {
		c.MaxContextBytes = def.MaxContextBytes
	}
	return c
}

// validate refuses settings that would break the API, naming the field.
func (c Config) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) { errs = append(errs, job.Invalid(field, format, args...)) }
	if c.MaxBodyBytes < 0 {
		bad("MaxBodyBytes", "is %d; it must be positive (0: the default)", c.MaxBodyBytes)
	}
	if c.MaxBodiesInFlight < c.MaxBodyBytes {
		bad("MaxBodiesInFlight", "is %d; it must be at least MaxBodyBytes (%d)", c.MaxBodiesInFlight, c.MaxBodyBytes)
	}
	if c.MaxWait < 0 {
		bad("MaxWait", "is %s; it must be positive (0: the default)", c.MaxWait)
	}
	if c.WorkerReadLimit < 0 || c.WorkerReadLimit > 0 && c.WorkerReadLimit < 4<<10 {
		bad("WorkerReadLimit", "is %d bytes; a worker's messages need at least 4 KiB (0: the default)", c.WorkerReadLimit)
	}
	if c.WorkerRegisterLimit < 0 || c.WorkerRegisterLimit > 0 && c.WorkerRegisterLimit < 1<<10 {
		bad("WorkerRegisterLimit", "is %d bytes; a register message needs at least 1 KiB (0: the default)", c.WorkerRegisterLimit)
	}
	if c.MaxContextBytes < 0 {
		bad("MaxContextBytes", "is %d; it must be positive (0: the default)", c.MaxContextBytes)
	}
	for _, p := range c.OriginPatterns {
		if p == "" {
			bad("OriginPatterns", "holds an empty pattern")
		}
	}
	if err := c.RequestLimits.Validate(); err != nil {
		bad("RequestLimits", "%v", err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("api config: %w", err)
	}
	return nil
}

// Validate reports every setting of c that makes no sense: each is a
// *job.Error (code invalid) whose Field is its path in Config, joined.
func (c Config) Validate() error { return c.validate() }
