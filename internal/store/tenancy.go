package store

import (
	"context"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// TokenRecord is a token as the store keeps it: its public fields, the hex
// SHA-256 of its secret (never the secret), and when it was revoked.
type TokenRecord struct {
	ID        string
	Kind      job.TokenKind
	Namespace string
	Name      string
	// Hash is the hex SHA-256 of the token's secret; it is unique.
	Hash string
	// CreatedAt is when the token was made.
	CreatedAt time.Time
	// RevokedAt is when the token was revoked; zero while it is valid.
	RevokedAt time.Time
}

// Revoked reports whether the token has been revoked.
func (r *TokenRecord) Revoked() bool { return !r.RevokedAt.IsZero() }

// Token returns the token as the domain shows it (CreatedAt in Unix
// seconds).
func (r *TokenRecord) Token() job.Token {
	return job.Token{ID: r.ID, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, CreatedAt: r.CreatedAt.Unix()}
}

// Tenancy keeps what multi-tenancy needs: tokens, namespace policies, and
// which namespaces uploaded each build context. Every method is safe for
// concurrent use.
type Tenancy interface {
	// CreateToken stores a new token and returns once it is durable. A
	// duplicate ID or Hash is a conflict; ID, Kind and Hash are required
	// (invalid).
	CreateToken(ctx context.Context, t *TokenRecord) error
	// TokenByHash returns the token whose secret hashes to hash, revoked
	// or not, or an error with code not_found.
	TokenByHash(ctx context.Context, hash string) (*TokenRecord, error)
	// ListTokens returns every token, revoked ones included, oldest first.
	ListTokens(ctx context.Context) ([]*TokenRecord, error)
	// RevokeToken marks the token with id revoked at t, and returns it. A
	// token revoked before keeps its first revocation time. An unknown id
	// is not_found.
	RevokeToken(ctx context.Context, id string, t time.Time) (*TokenRecord, error)

	// PutNamespacePolicy creates or replaces the policy of p.Namespace.
	PutNamespacePolicy(ctx context.Context, p job.NamespacePolicy) error
	// GetNamespacePolicy returns the policy of ns, or an error with code
	// not_found when none was set.
	GetNamespacePolicy(ctx context.Context, ns string) (job.NamespacePolicy, error)
	// ListNamespacePolicies returns every policy set, by namespace.
	ListNamespacePolicies(ctx context.Context) ([]job.NamespacePolicy, error)

	// AddBuildContextOwner records that namespace ns uploaded the build
	// context with id. Deleting the context's record forgets its owners.
	AddBuildContextOwner(ctx context.Context, id, ns string) error
	// BuildContextOwned reports whether namespace ns uploaded the build
	// context with id.
	BuildContextOwned(ctx context.Context, id, ns string) (bool, error)
	// BuildContextBytes returns the stored size of the build contexts
	// namespace ns uploaded.
	BuildContextBytes(ctx context.Context, ns string) (int64, error)
}
