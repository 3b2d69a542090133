package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/zerverless/zerverless/internal/job"
)

// Authenticator turns the secret of a bearer token into the principal
// that holds it. An unknown, malformed or revoked secret is an
// unauthorized *job.Error; any other error is internal.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (job.Principal, error)
}

// Tokens is what the API needs of the token service (internal/auth
// implements it): authentication, and the admin routes' tokens and
// namespace policies.
type Tokens interface {
	Authenticator
	// Create makes a token and returns it with its secret, shown once.
	Create(ctx context.Context, kind job.TokenKind, namespace, name string) (job.Token, string, error)
	// List returns the tokens that are not revoked.
	List(ctx context.Context) ([]job.Token, error)
	// Revoke revokes the token with id (not_found when unknown).
	Revoke(ctx context.Context, id string) (job.Token, error)
	// PutPolicy creates or replaces a namespace's policy.
	PutPolicy(ctx context.Context, p job.NamespacePolicy) error
	// NamespacePolicy returns a namespace's policy (the zero policy when
	// none was set).
	NamespacePolicy(ctx context.Context, ns string) (job.NamespacePolicy, error)
	// Policies returns every policy that was set.
	Policies(ctx context.Context) ([]job.NamespacePolicy, error)
}

// ContextOwners records which namespaces uploaded each build context (the
// store implements it), so that a namespace token sees and builds from
// its own contexts only.
type ContextOwners interface {
	AddBuildContextOwner(ctx context.Context, id, ns string) error
	BuildContextOwned(ctx context.Context, id, ns string) (bool, error)
	BuildContextBytes(ctx context.Context, ns string) (int64, error)
}

// Quotas gives a namespace's quotas (its policy with the platform's
// defaults).
type Quotas interface {
	Quotas(ctx context.Context, namespace string) job.Quotas
}

// openPrincipal is the caller of every route when the API runs without a
// token service (Config.Auth nil): everyone is admin.
var openPrincipal = job.Principal{Kind: job.TokenAdmin, Name: "open"}

// principal returns the caller that the route's guard authenticated.
func principal(r *http.Request) job.Principal {
	if p, ok := job.PrincipalFrom(r.Context()); ok {
		return p
	}
	return openPrincipal
}

// access says who may call a route.
type access int

const (
	// anyToken: an admin or a namespace token; the handler scopes what a
	// namespace token sees.
	anyToken access = iota
	// adminOnly: an admin token.
	adminOnly
)

// bearer returns the secret of an "Authorization: Bearer" header, and
// whether the request has an Authorization header at all.
func bearer(r *http.Request) (secret string, present bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(rest), true
}

// authenticate establishes the caller of r. Without a token service every
// caller is admin. A missing or refused token is answered 401 here, with
// WWW-Authenticate, and logged for audit; ok is then false.
func (s *server) authenticate(w http.ResponseWriter, r *http.Request) (p job.Principal, ok bool) {
	if s.cfg.Auth == nil {
		return openPrincipal, true
	}
	secret, present := bearer(r)
	var err error
	switch {
	case !present:
		err = job.Errorf(job.CodeUnauthorized, "this route needs an Authorization: Bearer token")
	case secret == "":
		err = job.Errorf(job.CodeUnauthorized, "the Authorization header must be \"Bearer <token>\"")
	default:
		p, err = s.cfg.Auth.Authenticate(r.Context(), secret)
	}
	if err == nil {
		return p, true
	}
	if job.ErrorCode(err) != job.CodeUnauthorized {
		s.writeError(w, r, err)
		return job.Principal{}, false
	}
	s.audit.LogAttrs(r.Context(), slog.LevelWarn, "authentication failed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.String("remote", r.RemoteAddr), slog.Bool("token_sent", present), slog.Any("reason", err))
	challenge := `Bearer realm="zerverless"`
	if present {
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	s.writeError(w, r, err)
	return job.Principal{}, false
}

// permit answers 403 and returns false when p may not call a route that
// needs a.
func (s *server) permit(w http.ResponseWriter, r *http.Request, p job.Principal, a access) bool {
	switch {
	case p.Kind == job.TokenWorker:
		s.writeError(w, r, job.Errorf(job.CodeForbidden, "a worker's join token cannot call the API; use an admin or namespace token"))
		return false
	case a == adminOnly && !p.Admin():
		s.writeError(w, r, job.Errorf(job.CodeForbidden, "this route needs an admin token"))
		return false
	case !p.Admin() && p.Kind != job.TokenNamespace:
		s.writeError(w, r, job.Errorf(job.CodeForbidden, "token kind %q cannot call the API", p.Kind))
		return false
	}
	return true
}

// guard wraps h so that it runs only for a caller that a allows, with the
// caller in the request's context. Each use of a token is logged at debug
// level.
func (s *server) guard(a access, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		defer s.logUse(r, p, sw)
		if !s.permit(sw, r, p, a) {
			return
		}
		h(sw, r.WithContext(job.WithPrincipal(r.Context(), p)))
	}
}

// logUse records one use of a token at debug level.
func (s *server) logUse(r *http.Request, p job.Principal, sw *statusWriter) {
	if s.cfg.Auth == nil {
		return
	}
	status := sw.status
	if status == 0 {
		status = http.StatusOK
	}
	route := r.Pattern
	if route == "" {
		route = r.URL.Path
	}
	s.audit.LogAttrs(r.Context(), slog.LevelDebug, "token used",
		slog.String("token_id", p.TokenID), slog.String("kind", string(p.Kind)),
		slog.String("namespace", p.Namespace), slog.String("method", r.Method),
		slog.String("route", route), slog.Int("status", status))
}

// statusWriter keeps the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// scopeNamespace returns the namespace that p acts in when it asks for ns:
// a namespace token that names none acts in its own, and naming another is
// forbidden (field field). An admin gets ns as asked.
func scopeNamespace(p job.Principal, ns, field string) (string, error) {
	if p.Admin() {
		return ns, nil
	}
	if ns == "" {
		return p.Namespace, nil
	}
	if ns != p.Namespace {
		return "", &job.Error{Code: job.CodeForbidden, Field: field,
			Message: "this token acts only in namespace " + p.Namespace}
	}
	return ns, nil
}
