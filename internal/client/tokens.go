package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/job"
)

// CreateToken makes a token (admin only) and returns it with its secret in
// Token, the only time the secret is shown.
func (c *Client) CreateToken(ctx context.Context, r api.TokenRequest) (api.TokenView, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return api.TokenView{}, fmt.Errorf("encode token request: %w", err)
	}
	var v api.TokenView
	err = c.do(ctx, http.MethodPost, "/api/tokens", body, &v)
	return v, err
}

// Tokens lists the tokens that are not revoked (admin only).
func (c *Client) Tokens(ctx context.Context) ([]api.TokenView, error) {
	var list api.TokenList
	err := c.do(ctx, http.MethodGet, "/api/tokens", nil, &list)
	return list.Tokens, err
}

// RevokeToken revokes the token with id (admin only).
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/tokens/"+url.PathEscape(id), nil, nil)
}

// NamespacePolicy returns the policy of ns (admin only).
func (c *Client) NamespacePolicy(ctx context.Context, ns string) (job.NamespacePolicy, error) {
	var p job.NamespacePolicy
	err := c.do(ctx, http.MethodGet, "/api/namespaces/"+url.PathEscape(ns), nil, &p)
	return p, err
}

// PutNamespacePolicy replaces the policy of p.Namespace (admin only).
func (c *Client) PutNamespacePolicy(ctx context.Context, p job.NamespacePolicy) (job.NamespacePolicy, error) {
	body, err := json.Marshal(p)
	if err != nil {
		return job.NamespacePolicy{}, fmt.Errorf("encode policy: %w", err)
	}
	var out job.NamespacePolicy
	err = c.do(ctx, http.MethodPut, "/api/namespaces/"+url.PathEscape(p.Namespace), body, &out)
	return out, err
}
