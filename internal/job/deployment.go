package job

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Deployment is a function: code deployed at NAMESPACE/PATH that answers
// HTTP requests to /NAMESPACE/PATH/... . Its JSON field names are the API's.
type Deployment struct {
	Namespace string `json:"namespace"`
	// Path is one or more segments separated by "/", without a leading or
	// trailing slash (see ValidFunctionPath).
	Path    string `json:"path"`
	Runtime Type   `json:"runtime"`
	// Code is Lua, JavaScript or Python source; Wasm a WASI module. Views
	// without code leave both empty and keep Digest and CodeBytes.
	Code string `json:"code,omitempty"`
	Wasm []byte `json:"wasm,omitempty"`
	// Digest is the hex SHA-256 of the code or module; CodeBytes its size.
	Digest    string `json:"sha256"`
	CodeBytes int    `json:"code_bytes"`
	// Env is handed to the function: ENV in Lua, JavaScript and Python,
	// the "env" member of the request on a Wasm function's stdin.
	Env map[string]string `json:"env,omitempty"`
	// TimeoutSeconds bounds one invocation.
	TimeoutSeconds float64 `json:"timeout_seconds"`
	// MemoryMB bounds one invocation's memory where the runtime can; zero
	// is the worker's default.
	MemoryMB int `json:"memory_mb,omitempty"`
	// MaxConcurrency caps the invocations running at once; zero is no cap.
	MaxConcurrency int `json:"max_concurrency,omitempty"`
	// Public functions answer anyone; a private one answers only requests
	// with a token of its namespace or an admin token.
	Public bool `json:"public"`
	// AnonymousWorkers lets the function's invocations run on anonymous
	// volunteers' workers (with open volunteering), which then see its
	// env and its callers' requests, headers and cookies included, and
	// could answer falsely. Off by default: invocations go only to trusted
	// workers.
	AnonymousWorkers bool `json:"anonymous_workers"`
	// Service holds what a docker service (runtime "docker") runs and how
	// it scales; nil for functions.
	Service *ServiceConfig `json:"service,omitempty"`
	// Version is 1 when first deployed, +1 at every redeploy.
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Name returns "namespace/path".
func (d *Deployment) Name() string { return d.Namespace + "/" + d.Path }

// Timeout returns the invocation timeout.
func (d *Deployment) Timeout() time.Duration {
	return time.Duration(d.TimeoutSeconds * float64(time.Second))
}

// WithoutCode returns a copy of d without its code or module.
func (d *Deployment) WithoutCode() *Deployment {
	c := *d
	c.Code, c.Wasm = "", nil
	return &c
}

// FunctionRuntimes are the runtimes a function may use.
var FunctionRuntimes = []Type{TypeLua, TypeJS, TypePython, TypeWasm}

// ReservedNamespaces cannot hold functions: their URLs would be the
// platform's own routes (/api/..., /ws/..., /health, ...), now or later.
var ReservedNamespaces = []string{
	"api", "ws", "health", "info", "stats", "metrics", "volunteer",
	"dashboard", "static", "assets", "web", "ui", "admin", "debug", "auth",
	"login", "logout",
}

// DeployRequest is the body of POST /api/deploy/{namespace}/{path...}.
type DeployRequest struct {
	Runtime        Type              `json:"runtime"`
	Code           string            `json:"code,omitempty"`
	Wasm           []byte            `json:"wasm,omitempty"`
	Env            map[string]string `json:"env,omitempty"`
	TimeoutSeconds *float64          `json:"timeout_seconds,omitempty"`
	MemoryMB       int               `json:"memory_mb,omitempty"`
	MaxConcurrency int               `json:"max_concurrency,omitempty"`
	// Public is true when absent: a function answers anyone unless
	// deployed with "public": false.
	Public *bool `json:"public,omitempty"`
	// AnonymousWorkers (default false) lets anonymous volunteers run the
	// function; see Deployment.AnonymousWorkers.
	AnonymousWorkers bool `json:"anonymous_workers,omitempty"`
	// ServiceRequest holds the fields of a docker service (runtime
	// "docker"); see ServiceRequest.
	ServiceRequest
}

// DeployLimits bound what a deployment may ask for. Every field has a
// documented default in DefaultDeployLimits.
type DeployLimits struct {
	// MaxCodeBytes caps `code` (default 1 MiB).
	MaxCodeBytes int
	// MaxWasmBytes caps the decoded `wasm` module (default 32 MiB).
	MaxWasmBytes int
	// MaxEnvBytes caps the names and values of `env` together (default
	// 64 KiB).
	MaxEnvBytes int
	// DefaultTimeout applies when `timeout_seconds` is absent (default
	// 30 s).
	DefaultTimeout time.Duration
	// MaxTimeout caps `timeout_seconds` (default 5 min). The HTTP server
	// must never cut a response sooner than this plus the queue wait.
	MaxTimeout time.Duration
	// MaxMemoryMB caps `memory_mb` (default 16384).
	MaxMemoryMB int
	// MaxConcurrency caps `max_concurrency` (default 10000).
	MaxConcurrency int
	// Services bound docker services.
	Services ServiceLimits
}

// DefaultDeployLimits returns the documented defaults.
func DefaultDeployLimits() DeployLimits {
	return DeployLimits{
		MaxCodeBytes:   1 << 20,
		MaxWasmBytes:   32 << 20,
		MaxEnvBytes:    64 << 10,
		DefaultTimeout: 30 * time.Second,
		MaxTimeout:     5 * time.Minute,
		MaxMemoryMB:    16384,
		MaxConcurrency: 10000,
		Services:       DefaultServiceLimits(),
	}
}

// Function paths: 1 to MaxPathSegments segments of URL-safe characters,
// at most MaxPathBytes in all.
const (
	MaxPathSegments = 16
	MaxPathBytes    = 256
	maxSegmentBytes = 64
)

var segmentRE = regexp.MustCompile(`^[A-Za-z0-9_~.-]+$`)

// ValidFunctionPath checks a function's path (without its namespace):
// segments of letters, digits, "-", "_", ".", "~", separated by single
// slashes, none of them "." or "..", no leading or trailing slash. The
// error says what is wrong.
func ValidFunctionPath(p string) error {
	if p == "" {
		return fmt.Errorf("is required (NAMESPACE/PATH)")
	}
	if len(p) > MaxPathBytes {
		return fmt.Errorf("is %d bytes, over the limit of %d", len(p), MaxPathBytes)
	}
	segs := strings.Split(p, "/")
	if len(segs) > MaxPathSegments {
		return fmt.Errorf("has %d segments, over the limit of %d", len(segs), MaxPathSegments)
	}
	for _, s := range segs {
		switch {
		case s == "":
			return fmt.Errorf("%q has an empty segment (a leading, trailing or double slash)", p)
		case s == "." || s == "..":
			return fmt.Errorf("%q: segments . and .. are not allowed", p)
		case len(s) > maxSegmentBytes:
			return fmt.Errorf("segment %q is over %d bytes", s, maxSegmentBytes)
		case !segmentRE.MatchString(s):
			return fmt.Errorf("segment %q may hold only letters, digits and - _ . ~", s)
		}
	}
	return nil
}

// ValidateFunctionName checks a namespace and path for a deployment. Errors
// are invalid and name the field "namespace" or "path".
func ValidateFunctionName(namespace, path string) error {
	if !ValidNamespace(namespace) {
		return Invalid("namespace", "must be 1-63 lowercase letters, digits or inner dashes")
	}
	if slices.Contains(ReservedNamespaces, namespace) {
		return Invalid("namespace", "%q is reserved for the platform's own routes", namespace)
	}
	if err := ValidFunctionPath(path); err != nil {
		return Invalid("path", "%v", err)
	}
	return nil
}

// DecodeDeployRequest decodes and validates a deploy request. Every failure
// is an *Error with CodeInvalid naming the field at fault.
func DecodeDeployRequest(data []byte, lim DeployLimits) (DeployRequest, error) {
	var r DeployRequest
	if err := CheckNumbers(data); err != nil {
		return DeployRequest{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return DeployRequest{}, decodeError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return DeployRequest{}, Invalid("", "request body must be a single JSON object")
	}
	if err := r.Validate(lim); err != nil {
		return DeployRequest{}, err
	}
	return r, nil
}

// Validate checks r against lim and the rules of its runtime.
func (r *DeployRequest) Validate(lim DeployLimits) error {
	if r.Runtime == "" {
		return Invalid("runtime", "is required (one of lua, js, python, wasm, docker)")
	}
	if r.Runtime == TypeDocker {
		return r.validateService(lim)
	}
	if err := r.ServiceRequest.onlyForServices(); err != nil {
		return err
	}
	if !slices.Contains(FunctionRuntimes, r.Runtime) {
		return Invalid("runtime", "unknown function runtime %q (one of lua, js, python, wasm, docker)", r.Runtime)
	}
	if t := r.TimeoutSeconds; t != nil {
		if math.IsNaN(*t) || *t <= 0 {
			return Invalid("timeout_seconds", "must be a positive number of seconds")
		}
		if *t > lim.MaxTimeout.Seconds() {
			return Invalid("timeout_seconds", "must be at most %g", lim.MaxTimeout.Seconds())
		}
	}
	if r.MemoryMB < 0 || r.MemoryMB > lim.MaxMemoryMB {
		return Invalid("memory_mb", "must be between 1 and %d", lim.MaxMemoryMB)
	}
	if r.MaxConcurrency < 0 || r.MaxConcurrency > lim.MaxConcurrency {
		return Invalid("max_concurrency", "must be between 1 and %d (0: no cap)", lim.MaxConcurrency)
	}
	size := 0
	for k, v := range r.Env {
		if !envNameRE.MatchString(k) {
			return Invalid("env", "%q is not a valid environment variable name", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return Invalid("env", "value of %s must not contain NUL bytes", k)
		}
		size += len(k) + len(v)
	}
	if size > lim.MaxEnvBytes {
		return Invalid("env", "is %d bytes, over the limit of %d", size, lim.MaxEnvBytes)
	}
	if r.Runtime == TypeWasm {
		switch {
		case r.Code != "":
			return Invalid("code", "is not used by wasm functions; send the module in wasm")
		case len(r.Wasm) == 0:
			return Invalid("wasm", "is required for wasm functions (base64 of a WebAssembly module)")
		case len(r.Wasm) > lim.MaxWasmBytes:
			return Invalid("wasm", "module is %d bytes, over the limit of %d", len(r.Wasm), lim.MaxWasmBytes)
		case !IsWasmModule(r.Wasm):
			return Invalid("wasm", "is not a WebAssembly module (no \\0asm header)")
		}
		return nil
	}
	switch {
	case len(r.Wasm) > 0:
		return Invalid("wasm", "is only for wasm functions")
	case strings.TrimSpace(r.Code) == "":
		return Invalid("code", "is required for %s functions", r.Runtime)
	case len(r.Code) > lim.MaxCodeBytes:
		return Invalid("code", "is %d bytes, over the limit of %d", len(r.Code), lim.MaxCodeBytes)
	}
	return nil
}

// NewDeployment turns a validated request into a deployment at
// namespace/path, updated at now. The store sets Version and CreatedAt.
// digest is the hex SHA-256 of the code or module.
func (r *DeployRequest) NewDeployment(namespace, path, digest string, now time.Time, lim DeployLimits) *Deployment {
	if r.Runtime == TypeDocker {
		return r.newService(namespace, path, digest, now, lim)
	}
	timeout := lim.DefaultTimeout.Seconds()
	if r.TimeoutSeconds != nil {
		timeout = *r.TimeoutSeconds
	}
	size := len(r.Code)
	if r.Runtime == TypeWasm {
		size = len(r.Wasm)
	}
	return &Deployment{
		Namespace:      namespace,
		Path:           path,
		Runtime:        r.Runtime,
		Code:           r.Code,
		Wasm:           r.Wasm,
		Digest:         digest,
		CodeBytes:      size,
		Env:            r.Env,
		TimeoutSeconds: timeout,
		MemoryMB:       r.MemoryMB,
		MaxConcurrency: r.MaxConcurrency,
		Public:         r.Public == nil || *r.Public,

		AnonymousWorkers: r.AnonymousWorkers,
		CreatedAt:        now,
		UpdatedAt:        now,
	}
}
