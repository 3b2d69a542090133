package admission

import (
	"context"

	"github.com/zerverless/zerverless/internal/job"
)

// CreateToken makes a token, for an admin only, and returns it with its
// secret, shown once.
func (s *Service) CreateToken(ctx context.Context, kind job.TokenKind, namespace, name string) (job.Token, string, error) {
	if _, err := admin(ctx); err != nil {
		return job.Token{}, "", err
	}
	return s.d.Tokens.Create(ctx, kind, namespace, name)
}

// Tokens lists the tokens that are not revoked, for an admin only.
func (s *Service) Tokens(ctx context.Context) ([]job.Token, error) {
	if _, err := admin(ctx); err != nil {
		return nil, err
	}
	return s.d.Tokens.List(ctx)
}

// RevokeToken revokes the token with id, for an admin only.
func (s *Service) RevokeToken(ctx context.Context, id string) (job.Token, error) {
	if _, err := admin(ctx); err != nil {
		return job.Token{}, err
	}
	return s.d.Tokens.Revoke(ctx, id)
}

// PutPolicy replaces a namespace's policy, for an admin only.
func (s *Service) PutPolicy(ctx context.Context, p job.NamespacePolicy) error {
	if _, err := admin(ctx); err != nil {
		return err
	}
	return s.d.Tokens.PutPolicy(ctx, p)
}

// Policy returns a namespace's policy, for an admin only.
func (s *Service) Policy(ctx context.Context, ns string) (job.NamespacePolicy, error) {
	if _, err := admin(ctx); err != nil {
		return job.NamespacePolicy{}, err
	}
	return s.d.Tokens.NamespacePolicy(ctx, ns)
}

// Policies returns every policy that was set, for an admin only.
func (s *Service) Policies(ctx context.Context) ([]job.NamespacePolicy, error) {
	if _, err := admin(ctx); err != nil {
		return nil, err
	}
	return s.d.Tokens.Policies(ctx)
}
