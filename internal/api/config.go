package api

import (
	"net/http"
	"time"

	"github.com/zerverless/zerverless/internal/buildctx"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// Config configures the HTTP API. Start from DefaultConfig; every limit has
// a documented default that an operator may change.
type Config struct {
	// MaxBodyBytes caps a request body (default 64 MiB: a 32 MiB Wasm
	// module is about 43 MiB of base64, plus input and the rest). A larger
	// body is answered 413.
	MaxBodyBytes int64
	// MaxWait caps ?wait= on GET /api/jobs/{id} (default 60 s). The
	// http.Server's WriteTimeout, if any, must be longer than this.
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
	// BuildContexts keeps uploaded build contexts (POST
	// /api/build-contexts); nil: uploads are answered 503.
	BuildContexts BuildContexts
	// MaxContextBytes caps a build context upload as sent, compressed or
	// not (default 160 MiB: 100 MiB of files and room for tar headers).
	MaxContextBytes int64
	// ContextLimits bound a build context's files (default
	// buildctx.DefaultLimits: 100 MiB, 1,000 files).
	ContextLimits buildctx.Limits
	// MaxDockerfileInstructions caps a Dockerfile's instructions (default
	// 100).
	MaxDockerfileInstructions int
	// Auth authenticates bearer tokens and serves the admin routes
	// (/api/tokens, /api/namespaces). Nil leaves the API open: every
	// caller acts as admin (the package's own tests); serve always sets
	// it.
	Auth Tokens
	// ContextOwners, when set, scopes build contexts to the namespaces
	// that uploaded them.
	ContextOwners ContextOwners
	// Quotas, when set, bounds each namespace's stored build contexts
	// (Quotas.BuildContextMB); an upload over it is answered 429.
	Quotas Quotas
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:    64 << 20,
		MaxWait:         60 * time.Second,
		RequestLimits:   job.DefaultRequestLimits(),
		WorkerReadLimit: protocol.DefaultReadLimit,

		WorkerRegisterLimit: protocol.DefaultRegisterReadLimit,
		WorkerDeclarations:  protocol.DefaultDeclarationLimits(),
		Version:             "dev",

		MaxContextBytes:           160 << 20,
		ContextLimits:             buildctx.DefaultLimits(),
		MaxDockerfileInstructions: 100,
	}
}
