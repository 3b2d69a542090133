// Package admission decides what a caller may do, in which namespace, and
// within which quotas, for every entry point that acts for a tenant: jobs,
// builds and their contexts, workers, functions, tokens and namespace
// policies. The HTTP adapter authenticates a request, puts the principal
// in the context (job.WithPrincipal) and calls one method of Service; it
// decodes and encodes, nothing more.
//
// Admission fails closed. Every dependency is a required argument of New
// (there is no "auth off" mode: a test that wants none passes an explicit
// open policy, by name), and every method takes the caller from its
// context and refuses a context that carries none (unauthorized). A join
// token may call nothing here (forbidden). The services below (the
// orchestrator, deployments) refuse a context without a principal again,
// so a caller that bypasses this package gets nothing either.
//
// What a namespace token sees: its own jobs, build contexts and functions
// (another namespace's are not_found, never forbidden, so that names do
// not leak); of the workers, only what concerns its namespace (see
// Workers). An admin token sees and does everything.
package admission

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/zerverless/zerverless/internal/buildctx"
	"github.com/zerverless/zerverless/internal/contextstore"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// Jobs is what admission needs of the orchestrator. Every method that acts
// for a tenant refuses a context without a principal itself as well.
type Jobs interface {
	Submit(ctx context.Context, r job.Request) (*job.Job, error)
	Job(ctx context.Context, id string) (*job.Job, error)
	// WaitVisible waits up to wait for the job with id to end, but only
	// for a job whose namespace sees accepts; it returns any other job at
	// once, for admission to hide.
	WaitVisible(ctx context.Context, id string, wait time.Duration, sees func(namespace string) bool) (*job.Job, error)
	Jobs(ctx context.Context, f store.JobFilter) ([]*job.Summary, string, error)
	Cancel(ctx context.Context, id string) (*job.Job, error)
	// WorkerPage returns a page of the connected workers f keeps, sorted
	// by id, and the cursor of the next page ("" when there is none).
	WorkerPage(f job.WorkerFilter) ([]job.WorkerInfo, string)
	// Pools describes the dispatch pools: all of them (namespace ""), or
	// those that accept namespace's jobs, counting only its pending jobs.
	Pools(namespace string) []job.PoolInfo
	Stats(ctx context.Context) (job.Stats, error)
	// HeldJob returns the job with jobID when leaseID is its current
	// lease.
	HeldJob(jobID, leaseID string) (*job.Job, bool)
}

// Functions is what admission needs of function deployments
// (internal/deploy implements it).
type Functions interface {
	Deploy(ctx context.Context, namespace, path string, r job.DeployRequest) (*job.Deployment, error)
	Deployment(ctx context.Context, namespace, path string) (*job.Deployment, error)
	Deployments(ctx context.Context, namespace string, withCode bool) ([]*job.Deployment, error)
	Undeploy(ctx context.Context, namespace, path string) error
	Invoke(ctx context.Context, urlPath string, req job.FunctionRequest) (job.FunctionResponse, error)
	Lookup(urlPath string) (d *job.Deployment, rest string, ok bool)
}

// Tokens is what admission needs of the token service (internal/auth
// implements it).
type Tokens interface {
	// Authenticate turns a bearer secret into its principal; an empty,
	// unknown or revoked secret is unauthorized.
	Authenticate(ctx context.Context, secret string) (job.Principal, error)
	Create(ctx context.Context, kind job.TokenKind, namespace, name string) (job.Token, string, error)
	List(ctx context.Context) ([]job.Token, error)
	Revoke(ctx context.Context, id string) (job.Token, error)
	PutPolicy(ctx context.Context, p job.NamespacePolicy) error
	NamespacePolicy(ctx context.Context, ns string) (job.NamespacePolicy, error)
	Policies(ctx context.Context) ([]job.NamespacePolicy, error)
}

// Contexts is what admission needs of the build context store
// (contextstore.Store implements it).
type Contexts interface {
	// Put validates r as it streams in and calls admit with the record
	// it would store before storing anything; when admit refuses, nothing
	// is kept. grow is asked before every write to the upload's
	// temporary file; its error stops the upload and nothing is kept.
	Put(ctx context.Context, r io.Reader, form contextstore.Form, grow func(n int64) error, admit func(*store.BuildContext) error) (*store.BuildContext, error)
	Open(ctx context.Context, id string) (io.ReadCloser, *store.BuildContext, error)
	Touch(ctx context.Context, id string) error
}

// ContextOwners records which namespaces uploaded each build context (the
// store implements it).
type ContextOwners interface {
	AddBuildContextOwner(ctx context.Context, id, ns string) error
	BuildContextOwned(ctx context.Context, id, ns string) (bool, error)
	BuildContextBytes(ctx context.Context, ns string) (int64, error)
}

// Quotas gives a namespace's quotas, its policy's with the platform's
// defaults (the orchestrator implements it).
type Quotas interface {
	Quotas(ctx context.Context, namespace string) job.Quotas
}

// Deps are admission's dependencies. Every field is required: New refuses
// a nil one.
type Deps struct {
	Jobs      Jobs
	Functions Functions
	Tokens    Tokens
	Contexts  Contexts
	Owners    ContextOwners
	Quotas    Quotas
	Logs      Logs
	// Services runs docker services' instances (the orchestrator). It is
	// the one optional dependency: without it, deploying a docker service
	// is refused (unavailable) and none is served.
	Services Services
}

// Config tunes build admission. Start from DefaultConfig; a zero field
// takes its default, a negative one is refused by New.
type Config struct {
	// ContextLimits bound a build context's files, inline or uploaded
	// (default buildctx.DefaultLimits: 100 MiB, 1,000 files).
	ContextLimits buildctx.Limits
	// MaxDockerfileInstructions caps a Dockerfile's instructions (default
	// 100).
	MaxDockerfileInstructions int
	// MaxDockerfileBytes caps a Dockerfile, inline or read from the
	// context (default 1 MiB).
	MaxDockerfileBytes int
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		ContextLimits:             buildctx.DefaultLimits(),
		MaxDockerfileInstructions: 100,
		MaxDockerfileBytes:        1 << 20,
	}
}

// withDefaults returns c with its zero fields at their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.ContextLimits.MaxBytes = cmp.Or(c.ContextLimits.MaxBytes, d.ContextLimits.MaxBytes)
	c.ContextLimits.MaxFiles = cmp.Or(c.ContextLimits.MaxFiles, d.ContextLimits.MaxFiles)
	c.MaxDockerfileInstructions = cmp.Or(c.MaxDockerfileInstructions, d.MaxDockerfileInstructions)
	c.MaxDockerfileBytes = cmp.Or(c.MaxDockerfileBytes, d.MaxDockerfileBytes)
	return c
}

// validate refuses a config that would refuse every build, naming the
// field.
func (c Config) validate() error {
	switch {
	case c.ContextLimits.MaxBytes <= 0:
		return errors.New("admission: ContextLimits.MaxBytes must be positive")
	case c.ContextLimits.MaxFiles <= 0:
		return errors.New("admission: ContextLimits.MaxFiles must be positive")
	case c.MaxDockerfileInstructions <= 0:
		return errors.New("admission: MaxDockerfileInstructions must be positive")
	case c.MaxDockerfileBytes <= 0:
		return errors.New("admission: MaxDockerfileBytes must be positive")
	}
	return nil
}

// Service admits or refuses every call made for a tenant. It is safe for
// concurrent use.
type Service struct {
	cfg Config
	d   Deps
	// uploads serializes, per namespace, the quota check and the storing
	// of build contexts, so that concurrent uploads cannot together pass
	// the quota.
	uploads keyedMutex
	// uploading counts, per namespace, the bytes that uploads in progress
	// have written to their temporary files.
	upMu      sync.Mutex
	uploading map[string]int64
}

// New returns the admission service over d. Every dependency is
// required, and a nil one is an error that names it.
func New(cfg Config, d Deps) (*Service, error) {
	missing := ""
	switch {
	case d.Jobs == nil:
		missing = "Jobs"
	case d.Functions == nil:
		missing = "Functions"
	case d.Tokens == nil:
		missing = "Tokens"
	case d.Contexts == nil:
		missing = "Contexts"
	case d.Owners == nil:
		missing = "Owners"
	case d.Quotas == nil:
		missing = "Quotas"
	case d.Logs == nil:
		missing = "Logs"
	}
	if missing != "" {
		return nil, fmt.Errorf("admission: the %s dependency is required (there is no open mode)", missing)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, d: d, uploading: make(map[string]int64)}, nil
}

// Authenticate turns the secret of a bearer token ("" when the request
// sent none) into its principal. An empty, unknown or revoked secret is
// unauthorized.
func (s *Service) Authenticate(ctx context.Context, secret string) (job.Principal, error) {
	return s.d.Tokens.Authenticate(ctx, secret)
}

// Caller returns the principal of ctx when it may call the API at all: an
// admin or a namespace token. No principal is unauthorized; a join token,
// or a kind the platform does not know, is forbidden.
func Caller(ctx context.Context) (job.Principal, error) {
	p, err := job.Caller(ctx)
	if err != nil {
		return p, err
	}
	switch {
	case p.Kind == job.TokenWorker:
		return p, job.Errorf(job.CodeForbidden, "a worker's join token cannot call the API; use an admin or namespace token")
	case !p.Admin() && p.Kind != job.TokenNamespace:
		return p, job.Errorf(job.CodeForbidden, "token kind %q cannot call the API", p.Kind)
	case p.Kind == job.TokenNamespace && !job.ValidNamespace(p.Namespace):
		return p, job.Errorf(job.CodeForbidden, "a namespace token without a valid namespace cannot call the API")
	}
	return p, nil
}

// admin returns the principal of ctx when it is an admin.
func admin(ctx context.Context) (job.Principal, error) {
	p, err := Caller(ctx)
	if err != nil {
		return p, err
	}
	if !p.Admin() {
		return p, job.Errorf(job.CodeForbidden, "this needs an admin token")
	}
	return p, nil
}

// scope returns the namespace that the caller acts in when it asks for ns
// (named field in a request): a namespace token that names none acts in
// its own, and naming another is forbidden. An admin gets ns as asked
// ("" stays "": every namespace, or the default one, as the call says).
func scope(ctx context.Context, ns, field string) (job.Principal, string, error) {
	p, err := Caller(ctx)
	if err != nil {
		return p, "", err
	}
	if ns != "" && !job.ValidNamespace(ns) {
		return p, "", job.Invalid(field, "must be 1-63 lowercase letters, digits or inner dashes")
	}
	if p.Admin() {
		return p, ns, nil
	}
	if ns == "" {
		return p, p.Namespace, nil
	}
	if ns != p.Namespace {
		return p, "", &job.Error{Code: job.CodeForbidden, Field: field,
			Message: "this token acts only in namespace " + p.Namespace}
	}
	return p, ns, nil
}

// Scope is scope for a caller outside this package that names a
// namespace in field: the namespace it acts in, or why it may not.
func (s *Service) Scope(ctx context.Context, ns, field string) (string, error) {
	_, ns, err := scope(ctx, ns, field)
	return ns, err
}

// keyedMutex is a mutex per key, dropped when nobody holds it.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu    sync.Mutex
	users int
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*keyedEntry)
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.users++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.users--; e.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
