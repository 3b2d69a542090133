package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/zerverless/zerverless/internal/api"
)

// UploadContext sends a build context to POST /api/build-contexts: r is a
// tar or tar.gz stream (contentType application/x-tar or
// application/gzip) or a JSON {"files": ...} body (application/json).
func (c *Client) UploadContext(ctx context.Context, r io.Reader, contentType string) (api.BuildContextView, error) {
	var v api.BuildContextView
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/build-contexts", r)
	if err != nil {
		return v, fmt.Errorf("upload build context: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", contentType)
	resp, err := c.hc.Do(req)
	if err != nil {
		return v, err
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return v, decodeError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return v, fmt.Errorf("upload build context: decode answer: %w", err)
	}
	return v, nil
}
