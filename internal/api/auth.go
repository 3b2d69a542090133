package api

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/zerverless/zerverless/internal/admission"
	"github.com/zerverless/zerverless/internal/job"
)

// principal returns the caller that the route's guard authenticated (the
// zero principal on an open route).
func principal(r *http.Request) job.Principal {
	p, _ := job.PrincipalFrom(r.Context())
	return p
}

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

// authenticate establishes the caller of r through admission (a request
// without a token asks with the empty secret, which only an explicit open
// policy admits). A missing or refused token is answered 401 here, with
// WWW-Authenticate, and logged for audit; ok is then false.
func (s *server) authenticate(w http.ResponseWriter, r *http.Request) (p job.Principal, ok bool) {
	secret, present := bearer(r)
	var err error
	if present && secret == "" {
		err = job.Errorf(job.CodeUnauthorized, "the Authorization header must be \"Bearer <token>\"")
	} else {
		p, err = s.adm.Authenticate(r.Context(), secret)
		if err == nil && p.Kind == "" {
			err = job.Errorf(job.CodeUnauthorized, "the token service returned no principal")
		}
		if err != nil && !present && job.ErrorCode(err) == job.CodeUnauthorized {
			err = job.Errorf(job.CodeUnauthorized, "this route needs an Authorization: Bearer token")
		}
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

// guard wraps h so that it runs only for an authenticated API caller
// (admission.Caller: an admin or a namespace token), with the caller in
// the request's context; what the caller may do there is admission's to
// decide. Each use of a token is logged at debug level.
func (s *server) guard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		defer s.logUse(r, p, sw)
		ctx := job.WithPrincipal(r.Context(), p)
		if _, err := admission.Caller(ctx); err != nil {
			s.writeError(sw, r, err)
			return
		}
		h(sw, r.WithContext(ctx))
	}
}

// logUse records one use of a token at debug level.
func (s *server) logUse(r *http.Request, p job.Principal, sw *statusWriter) {
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
