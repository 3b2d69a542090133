package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// TokenRequest is the body of POST /api/tokens.
type TokenRequest struct {
	// Kind is namespace (the default), worker (a join token) or admin.
	Kind      job.TokenKind `json:"kind,omitempty"`
	Namespace string        `json:"namespace,omitempty"`
	Name      string        `json:"name,omitempty"`
}

// TokenView is a token as the API shows it. Token, the secret, is present
// only in the answer to POST /api/tokens: it is not kept and cannot be
// shown again.
type TokenView struct {
	ID        string        `json:"id"`
	Kind      job.TokenKind `json:"kind"`
	Namespace string        `json:"namespace,omitempty"`
	Name      string        `json:"name,omitempty"`
	CreatedAt time.Time     `json:"created_at"`
	Token     string        `json:"token,omitempty"`
}

// TokenList is the body of GET /api/tokens.
type TokenList struct {
	Tokens []TokenView `json:"tokens"`
}

// PolicyList is the body of GET /api/namespaces.
type PolicyList struct {
	Namespaces []job.NamespacePolicy `json:"namespaces"`
}

func newTokenView(t job.Token) TokenView {
	return TokenView{ID: t.ID, Kind: t.Kind, Namespace: t.Namespace, Name: t.Name,
		CreatedAt: time.Unix(t.CreatedAt, 0).UTC()}
}

// tokenRoutes registers the admin routes: tokens and namespace policies.
func (s *server) tokenRoutes() {
	s.handle("POST /api/tokens", s.createToken)
	s.handle("GET /api/tokens", s.listTokens)
	s.handle("DELETE /api/tokens/{id}", s.revokeToken)
	s.handle("GET /api/namespaces", s.listPolicies)
	s.handle("GET /api/namespaces/{namespace}", s.getPolicy)
	s.handle("PUT /api/namespaces/{namespace}", s.putPolicy)
}

// decodeStrict decodes one JSON object into v, refusing unknown fields.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return job.Invalid("", "request body is not valid JSON for this route: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return job.Invalid("", "request body must be a single JSON object")
	}
	return nil
}

// createToken is POST /api/tokens: 201 with the secret in "token", once.
func (s *server) createToken(w http.ResponseWriter, r *http.Request) {
	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req TokenRequest
	if err := decodeStrict(body, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Kind == "" {
		req.Kind = job.TokenNamespace
	}
	t, secret, err := s.adm.CreateToken(r.Context(), req.Kind, req.Namespace, req.Name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.auditToken(r, "token created", t)
	v := newTokenView(t)
	v.Token = secret
	w.Header().Set("Location", "/api/tokens/"+t.ID)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, v)
}

// listTokens is GET /api/tokens: the tokens not revoked, without secrets.
func (s *server) listTokens(w http.ResponseWriter, r *http.Request) {
	list, err := s.adm.Tokens(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := TokenList{Tokens: make([]TokenView, len(list))}
	for i, t := range list {
		out.Tokens[i] = newTokenView(t)
	}
	writeJSON(w, http.StatusOK, out)
}

// revokeToken is DELETE /api/tokens/{id}: 204; the token is refused from
// then on.
func (s *server) revokeToken(w http.ResponseWriter, r *http.Request) {
	t, err := s.adm.RevokeToken(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.auditToken(r, "token revoked", t)
	w.WriteHeader(http.StatusNoContent)
}

// listPolicies is GET /api/namespaces: every policy that was set.
func (s *server) listPolicies(w http.ResponseWriter, r *http.Request) {
	list, err := s.adm.Policies(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []job.NamespacePolicy{}
	}
	writeJSON(w, http.StatusOK, PolicyList{Namespaces: list})
}

// getPolicy is GET /api/namespaces/{namespace}: its policy, with zero
// fields where the platform's defaults apply.
func (s *server) getPolicy(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("namespace")
	if !job.ValidNamespace(ns) {
		s.writeError(w, r, job.Invalid("namespace", "must be 1-63 lowercase letters, digits or inner dashes"))
		return
	}
	p, err := s.adm.Policy(r.Context(), ns)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// putPolicy is PUT /api/namespaces/{namespace} with a job.NamespacePolicy
// (its namespace field may be left out): it replaces the policy.
func (s *server) putPolicy(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("namespace")
	if !job.ValidNamespace(ns) {
		s.writeError(w, r, job.Invalid("namespace", "must be 1-63 lowercase letters, digits or inner dashes"))
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var p job.NamespacePolicy
	if err := decodeStrict(body, &p); err != nil {
		s.writeError(w, r, err)
		return
	}
	if p.Namespace != "" && p.Namespace != ns {
		s.writeError(w, r, job.Invalid("namespace", "is %q in the body but %q in the path", p.Namespace, ns))
		return
	}
	p.Namespace = ns
	if err := s.adm.PutPolicy(r.Context(), p); err != nil {
		s.writeError(w, r, err)
		return
	}
	pj, _ := json.Marshal(p)
	s.audit.LogAttrs(r.Context(), slog.LevelInfo, "namespace policy set",
		slog.String("namespace", ns), slog.String("policy", string(pj)),
		slog.String("by_token_id", principal(r).TokenID), slog.String("remote", r.RemoteAddr))
	writeJSON(w, http.StatusOK, p)
}

// auditToken records an administrative action on token t in the audit log.
func (s *server) auditToken(r *http.Request, msg string, t job.Token) {
	s.audit.LogAttrs(r.Context(), slog.LevelInfo, msg,
		slog.String("token_id", t.ID), slog.String("kind", string(t.Kind)),
		slog.String("namespace", t.Namespace), slog.String("name", t.Name),
		slog.String("by_token_id", principal(r).TokenID), slog.String("remote", r.RemoteAddr))
}
