// Package client is a Go client for the Zerverless HTTP API. It decodes the
// API's views as they are (api.View) and turns every error response into an
// *Error carrying the status, message and field.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// View is a job as the API shows it.
type View = api.View

// Summary is a job as lists show it: its state and the sizes of its
// result's parts, not their content.
type Summary = api.Summary

// Client talks to one orchestrator. It is safe for concurrent use and
// reuses connections.
type Client struct {
	base string
	hc   *http.Client
	// inner is hc's transport before any token was added.
	inner http.RoundTripper
}

// New returns a client for the API at baseURL (for example
// "http://localhost:8000"). A nil httpClient uses a client of its own whose
// transport keeps enough idle connections for many concurrent calls. The
// http.Client's Timeout, if any, must exceed the waits asked for.
func New(baseURL string, httpClient *http.Client) *Client {
	if httpClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 256
		httpClient = &http.Client{Transport: t}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: httpClient, inner: httpClient.Transport}
}

// WithToken returns a client that sends "Authorization: Bearer token" with
// every request to c's server (and only to it: not to a host a redirect
// leads to). It shares c's connections; c itself is unchanged. An empty
// token sends none.
func (c *Client) WithToken(token string) *Client {
	n := *c
	hc := *c.hc
	hc.Transport = c.inner
	if token != "" {
		inner := c.inner
		if inner == nil {
			inner = http.DefaultTransport
		}
		host := ""
		if u, err := url.Parse(c.base); err == nil {
			host = u.Host
		}
		hc.Transport = &bearerTransport{inner: inner, token: token, host: host}
	}
	n.hc = &hc
	return &n
}

// bearerTransport adds the token to requests for host.
type bearerTransport struct {
	inner http.RoundTripper
	token string
	host  string
}

func (t *bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != t.host || req.Header.Get("Authorization") != "" {
		return t.inner.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.inner.RoundTrip(r)
}

// BaseURL returns the API address the client talks to.
func (c *Client) BaseURL() string { return c.base }

// Error is an error answer of the API.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the API's error message.
	Message string
	// Field names the request field at fault, if any.
	Field string
	// JobStatus is the job's status when the request conflicted with it
	// (canceling a job that has already ended).
	JobStatus job.Status
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = fmt.Sprintf("field %q: %s", e.Field, msg)
	}
	return fmt.Sprintf("%s (HTTP %d)", msg, e.StatusCode)
}

// Code returns the error code the API answered with.
func (e *Error) Code() job.Code { return api.CodeForStatus(e.StatusCode) }

// Unwrap exposes the error as a *job.Error, so that job.ErrorCode and
// job.ErrorField work on client errors as on the orchestrator's own.
func (e *Error) Unwrap() error {
	return &job.Error{Code: e.Code(), Field: e.Field, Message: e.Message}
}

// IsNotFound reports whether err is the API's 404.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusNotFound
}

// Submit submits a job and returns it as created (pending). It does not
// wait for the job to run (Run does).
func (c *Client) Submit(ctx context.Context, r job.Request) (View, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return View{}, fmt.Errorf("encode job request: %w", err)
	}
	var v View
	err = c.do(ctx, http.MethodPost, "/api/jobs", body, &v)
	return v, err
}

// Run submits a job and, in the same request, waits up to wait for it to
// end (the server caps wait, at 60 s by default): it returns the job as it
// is then, ended or still pending or running (Await goes on waiting).
// With wait <= 0 it is Submit. An *Error means the job was refused and
// nothing was stored; any other error (ctx done, the connection lost)
// leaves it unknown whether the job was accepted, and an accepted job
// runs whether or not its answer arrives.
func (c *Client) Run(ctx context.Context, r job.Request, wait time.Duration) (View, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return View{}, fmt.Errorf("encode job request: %w", err)
	}
	p := "/api/jobs"
	if wait > 0 {
		p += "?wait=" + url.QueryEscape(wait.String())
	}
	var v View
	err = c.do(ctx, http.MethodPost, p, body, &v)
	return v, err
}

// Job returns the job with id. With wait > 0 the server holds the request
// until the job ends or wait passes (the server caps wait, at 60 s by
// default), and returns the job's state then.
func (c *Client) Job(ctx context.Context, id string, wait time.Duration) (View, error) {
	return c.job(ctx, id, wait, false)
}

// JobWithSpec returns the job with id including its spec (code, module,
// input, container settings).
func (c *Client) JobWithSpec(ctx context.Context, id string) (View, error) {
	return c.job(ctx, id, 0, true)
}

func (c *Client) job(ctx context.Context, id string, wait time.Duration, spec bool) (View, error) {
	q := url.Values{}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	if spec {
		q.Set("include", "spec")
	}
	p := "/api/jobs/" + url.PathEscape(id)
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var v View
	err := c.do(ctx, http.MethodGet, p, nil, &v)
	return v, err
}

// DefaultPoll is how long each request of Await asks the server to hold.
const DefaultPoll = 60 * time.Second

// Await blocks until the job with id ends or ctx is done, asking the server
// to hold each request for up to poll (DefaultPoll when zero). It returns
// the job in its final state, or the last state seen with ctx's error.
func (c *Client) Await(ctx context.Context, id string, poll time.Duration) (View, error) {
	if poll <= 0 {
		poll = DefaultPoll
	}
	for {
		v, err := c.Job(ctx, id, poll)
		if err != nil {
			return v, err
		}
		if v.Status.Terminal() {
			return v, nil
		}
		if err := ctx.Err(); err != nil {
			return v, err
		}
	}
}

// Jobs lists the summaries of the jobs matching f, newest first, and
// returns the cursor of the next page ("" on the last page).
func (c *Client) Jobs(ctx context.Context, f store.JobFilter) ([]Summary, string, error) {
	q := url.Values{}
	if f.Status != "" {
		q.Set("status", string(f.Status))
	}
	if f.Namespace != "" {
		q.Set("namespace", f.Namespace)
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Cursor != "" {
		q.Set("cursor", f.Cursor)
	}
	p := "/api/jobs"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var list api.JobList
	if err := c.do(ctx, http.MethodGet, p, nil, &list); err != nil {
		return nil, "", err
	}
	return list.Jobs, list.NextCursor, nil
}

// Cancel cancels the job with id and returns it. A job that has already
// ended is an *Error with status 409 and its JobStatus set.
func (c *Client) Cancel(ctx context.Context, id string) (View, error) {
	var v View
	err := c.do(ctx, http.MethodDelete, "/api/jobs/"+url.PathEscape(id), nil, &v)
	return v, err
}

// Workers lists the connected workers.
func (c *Client) Workers(ctx context.Context) ([]job.WorkerInfo, error) {
	var all []job.WorkerInfo
	cursor := ""
	for {
		var list api.WorkerList
		path := "/api/workers"
		if cursor != "" {
			path += "?cursor=" + url.QueryEscape(cursor)
		}
		if err := c.do(ctx, http.MethodGet, path, nil, &list); err != nil {
			return all, err
		}
		all = append(all, list.Workers...)
		if list.NextCursor == "" || list.NextCursor == cursor {
			return all, nil
		}
		cursor = list.NextCursor
	}
}

// Stats returns a snapshot of workers and jobs.
func (c *Client) Stats(ctx context.Context) (job.Stats, error) {
	var st job.Stats
	err := c.do(ctx, http.MethodGet, "/stats", nil, &st)
	return st, err
}

// Info returns the server's version and uptime.
func (c *Client) Info(ctx context.Context) (api.Info, error) {
	var info api.Info
	err := c.do(ctx, http.MethodGet, "/info", nil, &info)
	return info, err
}

// Health returns nil when the server answers GET /health with ok.
func (c *Client) Health(ctx context.Context) error {
	var h api.Health
	if err := c.do(ctx, http.MethodGet, "/health", nil, &h); err != nil {
		return err
	}
	if h.Status != "ok" {
		return fmt.Errorf("server health is %q", h.Status)
	}
	return nil
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// do sends one request and decodes a 2xx JSON answer into out. Any other
// answer is an *Error. The response body is always drained and closed so
// that the connection is reused.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// A *url.Error, which names the method and URL already.
		return err
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// decodeError reads the API's JSON error, or keeps the start of whatever
// else answered (a proxy's page, for example).
func decodeError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{StatusCode: resp.StatusCode}
	var body api.ErrorBody
	if json.Unmarshal(data, &body) == nil && body.Error != "" {
		e.Message, e.Field, e.JobStatus = body.Error, body.Field, body.JobStatus
		return e
	}
	msg := strings.TrimSpace(string(data))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	e.Message = msg
	return e
}
