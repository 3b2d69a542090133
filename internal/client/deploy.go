package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/job"
)

// Deployment is a function as the API shows it.
type Deployment = api.DeploymentView

// deployPath is the API path of the function at namespace/path.
func deployPath(namespace, path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/api/deploy/" + url.PathEscape(namespace) + "/" + strings.Join(segs, "/")
}

// Deploy deploys r as the function at namespace/path, replacing any
// previous version, and returns it as stored (without code).
func (c *Client) Deploy(ctx context.Context, namespace, path string, r job.DeployRequest) (Deployment, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return Deployment{}, fmt.Errorf("encode deploy request: %w", err)
	}
	var d Deployment
	err = c.do(ctx, http.MethodPost, deployPath(namespace, path), body, &d)
	return d, err
}

// Deployment returns the function at namespace/path with its code.
func (c *Client) Deployment(ctx context.Context, namespace, path string) (Deployment, error) {
	var d Deployment
	err := c.do(ctx, http.MethodGet, deployPath(namespace, path), nil, &d)
	return d, err
}

// Deployments lists the functions of namespace (all when empty), with
// their code when withCode.
func (c *Client) Deployments(ctx context.Context, namespace string, withCode bool) ([]Deployment, error) {
	q := url.Values{}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	if withCode {
		q.Set("include", "code")
	}
	p := "/api/deploy"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var list api.DeploymentList
	err := c.do(ctx, http.MethodGet, p, nil, &list)
	return list.Deployments, err
}

// Undeploy removes the function at namespace/path.
func (c *Client) Undeploy(ctx context.Context, namespace, path string) error {
	p := deployPath(namespace, path)
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.base+p, nil)
	if err != nil {
		return fmt.Errorf("DELETE %s: %w", p, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp)
	}
	return nil
}
