// Package auth is Zerverless's token service: it makes API and join tokens,
// keeps only a SHA-256 hash of each secret in the store, authenticates
// secrets into principals, revokes tokens, bootstraps the first admin token
// into the data directory, and keeps each namespace's policy.
//
// A secret is "zv_" followed by the unpadded base64url encoding of 32
// random bytes. It is shown once, when made; nothing can show it again.
package auth

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// SecretPrefix starts every secret, so that a token is recognizable in a
// configuration file or a leaked log.
const SecretPrefix = "zv_"

// secretBytes is the randomness of a secret.
const secretBytes = 32

// secretLen is the length of a secret as text.
var secretLen = len(SecretPrefix) + base64.RawURLEncoding.EncodedLen(secretBytes)

// MaxNameBytes caps a token's name.
const MaxNameBytes = 128

// Store is what the service needs of the store.
type Store interface {
	CreateToken(ctx context.Context, t *store.TokenRecord) error
	TokenByHash(ctx context.Context, hash string) (*store.TokenRecord, error)
	ListTokens(ctx context.Context) ([]*store.TokenRecord, error)
	RevokeToken(ctx context.Context, id string, t time.Time) (*store.TokenRecord, error)
	PutNamespacePolicy(ctx context.Context, p job.NamespacePolicy) error
	GetNamespacePolicy(ctx context.Context, ns string) (job.NamespacePolicy, error)
	ListNamespacePolicies(ctx context.Context) ([]job.NamespacePolicy, error)
}

// Config tunes the service. Zero fields take DefaultConfig's values;
// negative ones are refused by New.
type Config struct {
	// CacheSize caps the authenticated secrets and the policies kept in
	// memory (default 4096 each).
	CacheSize int
	// CacheTTL is how long a cached authentication or policy is trusted
	// (default 30 s). A revocation or policy change made through this
	// service takes effect in this process at once; CacheTTL bounds how
	// long another orchestrator over the same store may still accept a
	// revoked token.
	CacheTTL time.Duration
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{CacheSize: 4096, CacheTTL: 30 * time.Second}
}

// Service makes, checks and revokes tokens and keeps namespace policies.
// It is safe for concurrent use.
type Service struct {
	cfg Config
	st  Store
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	tokens   map[string]cachedPrincipal // by hash of the secret
	policies map[string]cachedPolicy    // by namespace
	// revocations counts Revoke calls; an authentication whose store
	// read may predate one caches nothing.
	revocations uint64
	// policyChanges counts PutPolicy calls, alike for policies.
	policyChanges uint64
}

type cachedPrincipal struct {
	p       job.Principal
	hash    string
	expires time.Time
}

type cachedPolicy struct {
	p       job.NamespacePolicy
	expires time.Time
}

// validate refuses negative settings, naming the field.
func (c Config) validate() error {
	switch {
	case c.CacheSize < 0:
		return fmt.Errorf("auth: CacheSize is %d; it must be positive", c.CacheSize)
	case c.CacheTTL < 0:
		return fmt.Errorf("auth: CacheTTL is %s; it must be positive", c.CacheTTL)
	}
	return nil
}

// New returns a service over st, which is required. A nil log discards;
// the service logs what it does on its own (bootstrap) with "audit"=true.
func New(cfg Config, st Store, log *slog.Logger) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if st == nil {
		return nil, errors.New("auth: the store is required")
	}
	def := DefaultConfig()
	cfg.CacheSize = cmp.Or(cfg.CacheSize, def.CacheSize)
	cfg.CacheTTL = cmp.Or(cfg.CacheTTL, def.CacheTTL)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		cfg: cfg, st: st, log: log.With("component", "auth", "audit", true), now: time.Now,
		tokens:   map[string]cachedPrincipal{},
		policies: map[string]cachedPolicy{},
	}, nil
}

// hashSecret returns the hex SHA-256 of secret, the form the store keeps.
func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// newSecret returns a fresh secret.
func newSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make token secret: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// newID returns a fresh token id: 16 hex digits, not secret.
func newID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make token id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Create makes a token of kind and returns it with its secret, which is
// not kept and cannot be shown again. A namespace token needs a valid
// namespace; admin and join tokens take none. Errors: invalid (naming the
// field kind, namespace or name), or the store's.
func (s *Service) Create(ctx context.Context, kind job.TokenKind, namespace, name string) (job.Token, string, error) {
	if !kind.Known() {
		return job.Token{}, "", job.Invalid("kind", "unknown token kind %q (one of admin, namespace, worker)", kind)
	}
	switch {
	case kind == job.TokenNamespace && namespace == "":
		return job.Token{}, "", job.Invalid("namespace", "is required for a namespace token")
	case kind == job.TokenNamespace && !job.ValidNamespace(namespace):
		return job.Token{}, "", job.Invalid("namespace", "must be 1-63 lowercase letters, digits or inner dashes")
	case kind != job.TokenNamespace && namespace != "":
		return job.Token{}, "", job.Invalid("namespace", "is only for namespace tokens; a %s token acts in every namespace", kind)
	}
	if err := validName(name); err != nil {
		return job.Token{}, "", err
	}
	secret, err := newSecret()
	if err != nil {
		return job.Token{}, "", err
	}
	id, err := newID()
	if err != nil {
		return job.Token{}, "", err
	}
	rec := &store.TokenRecord{ID: id, Kind: kind, Namespace: namespace, Name: name,
		Hash: hashSecret(secret), CreatedAt: s.now()}
	if err := s.st.CreateToken(ctx, rec); err != nil {
		return job.Token{}, "", err
	}
	return rec.Token(), secret, nil
}

func validName(name string) error {
	if len(name) > MaxNameBytes {
		return job.Invalid("name", "is %d bytes, over the limit of %d", len(name), MaxNameBytes)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return job.Invalid("name", "may hold only printable characters")
		}
	}
	return nil
}

// List returns the tokens that are not revoked, oldest first, without
// their secrets.
func (s *Service) List(ctx context.Context) ([]job.Token, error) {
	recs, err := s.st.ListTokens(ctx)
	if err != nil {
		return nil, err
	}
	out := []job.Token{}
	for _, r := range recs {
		if !r.Revoked() {
			out = append(out, r.Token())
		}
	}
	return out, nil
}

// Revoke revokes the token with id and returns it. From the moment Revoke
// returns, this service refuses the token. Revoking a revoked token again
// succeeds; an unknown id is not_found.
func (s *Service) Revoke(ctx context.Context, id string) (job.Token, error) {
	rec, err := s.st.RevokeToken(ctx, id, s.now())
	if job.ErrorCode(err) == job.CodeNotFound {
		return job.Token{}, job.Errorf(job.CodeNotFound, "no token has id %q", id)
	}
	if err != nil {
		return job.Token{}, err
	}
	s.mu.Lock()
	s.revocations++
	for h, c := range s.tokens {
		if c.p.TokenID == id {
			delete(s.tokens, h)
		}
	}
	s.mu.Unlock()
	return rec.Token(), nil
}

// Authenticate returns the principal of the token whose secret is given.
// An empty, malformed, unknown or revoked secret is an unauthorized
// *job.Error; any other error is the store's. Only the SHA-256 of the
// secret is looked up, and the stored hash is compared in constant time.
func (s *Service) Authenticate(ctx context.Context, secret string) (job.Principal, error) {
	if secret == "" {
		return job.Principal{}, job.Errorf(job.CodeUnauthorized, "missing token")
	}
	if len(secret) != secretLen || !strings.HasPrefix(secret, SecretPrefix) {
		return job.Principal{}, job.Errorf(job.CodeUnauthorized, "malformed token (a token starts with %q)", SecretPrefix)
	}
	h := hashSecret(secret)
	now := s.now()
	s.mu.Lock()
	c, ok := s.tokens[h]
	revocations := s.revocations
	s.mu.Unlock()
	if ok && now.Before(c.expires) && subtle.ConstantTimeCompare([]byte(c.hash), []byte(h)) == 1 {
		return c.p, nil
	}
	rec, err := s.st.TokenByHash(ctx, h)
	if job.ErrorCode(err) == job.CodeNotFound {
		return job.Principal{}, job.Errorf(job.CodeUnauthorized, "unknown token")
	}
	if err != nil {
		return job.Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(rec.Hash), []byte(h)) != 1 {
		return job.Principal{}, job.Errorf(job.CodeUnauthorized, "unknown token")
	}
	if rec.Revoked() {
		return job.Principal{}, job.Errorf(job.CodeUnauthorized, "token %s has been revoked", rec.ID)
	}
	p := job.Principal{TokenID: rec.ID, Kind: rec.Kind, Namespace: rec.Namespace, Name: rec.Name}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revocations != revocations {
		// A token was revoked while the store was read: the record may
		// be older than the revocation, and caching it would undo it.
		return p, nil
	}
	if len(s.tokens) >= s.cfg.CacheSize {
		for k := range s.tokens { // drop one entry, chosen by map order
			delete(s.tokens, k)
			break
		}
	}
	s.tokens[h] = cachedPrincipal{p: p, hash: h, expires: now.Add(s.cfg.CacheTTL)}
	return p, nil
}

// PutPolicy creates or replaces the policy of p.Namespace. Errors:
// invalid (naming the field), or the store's.
func (s *Service) PutPolicy(ctx context.Context, p job.NamespacePolicy) error {
	if !job.ValidNamespace(p.Namespace) {
		return job.Invalid("namespace", "must be 1-63 lowercase letters, digits or inner dashes")
	}
	if r := p.Quotas.SubmitsPerSecond; math.IsNaN(r) || math.IsInf(r, 0) {
		return job.Invalid("quotas.submits_per_second", "must be a number (negative: no limit)")
	}
	if err := p.Validate(); err != nil {
		return err
	}
	if err := s.st.PutNamespacePolicy(ctx, p); err != nil {
		return err
	}
	s.mu.Lock()
	s.policyChanges++
	delete(s.policies, p.Namespace)
	s.mu.Unlock()
	return nil
}

// NamespacePolicy returns the policy set for ns, or the zero policy (every
// field at the platform's defaults) when none was set. The orchestrator
// reads policies through this method.
func (s *Service) NamespacePolicy(ctx context.Context, ns string) (job.NamespacePolicy, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.policies[ns]
	changes := s.policyChanges
	s.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.p, nil
	}
	p, err := s.st.GetNamespacePolicy(ctx, ns)
	if job.ErrorCode(err) == job.CodeNotFound {
		p, err = job.NamespacePolicy{Namespace: ns}, nil
	}
	if err != nil {
		return job.NamespacePolicy{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.policyChanges != changes {
		// A policy was set while the store was read: caching what was
		// read could keep the old one for CacheTTL.
		return p, nil
	}
	if len(s.policies) >= s.cfg.CacheSize {
		for k := range s.policies {
			delete(s.policies, k)
			break
		}
	}
	s.policies[ns] = cachedPolicy{p: p, expires: now.Add(s.cfg.CacheTTL)}
	return p, nil
}

// Policies returns every policy that was set, by namespace.
func (s *Service) Policies(ctx context.Context) ([]job.NamespacePolicy, error) {
	return s.st.ListNamespacePolicies(ctx)
}

// IsUnauthorized reports whether err says that a secret was refused.
func IsUnauthorized(err error) bool {
	var e *job.Error
	return errors.As(err, &e) && e.Code == job.CodeUnauthorized
}
