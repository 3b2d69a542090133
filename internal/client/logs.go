package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/job"
)

// LogPage is a page of a job's log.
type LogPage = api.LogPage

// JobLog returns the events of job id's log after seq after (0: from the
// start), at most one page; LogPage.Next is the after of the next page.
func (c *Client) JobLog(ctx context.Context, id string, after uint64) (LogPage, error) {
	var p LogPage
	path := "/api/jobs/" + url.PathEscape(id) + "/logs"
	if after > 0 {
		path += "?after=" + strconv.FormatUint(after, 10)
	}
	err := c.do(ctx, http.MethodGet, path, nil, &p)
	return p, err
}

// maxLogLine bounds one line of the event stream (an event's JSON).
const maxLogLine = 1 << 20

// FollowJobLog hands fn, in order, every event of job id's log after seq
// after as it is written, until the event that ends the log (the job's
// final status), which it hands fn too, and returns nil. A stream that
// breaks before the end (the connection, an orchestrator restart) is
// opened again after the last event fn had, so nothing is missed; an
// answer that is an error (*Error: not found, unauthorized; unavailable,
// too many followers, when it was the first) is returned.
// It returns fn's error, and ctx's when ctx is done.
func (c *Client) FollowJobLog(ctx context.Context, id string, after uint64, fn func(job.LogEvent) error) error {
	return follow(ctx, func(opened *bool) (bool, error) { return c.followOnce(ctx, id, &after, fn, opened) })
}

// follow calls once until the stream it opens reaches its end (ended),
// calling it again after a break, with a backoff of 100 ms doubling to
// 5 s; once sets opened when a stream was opened. An error answer (*Error)
// ends it when no stream was opened yet or when it is neither unavailable
// nor a bad gateway; so do fn's error (callbackError) and ctx's.
func follow(ctx context.Context, once func(opened *bool) (ended bool, err error)) error {
	backoff := 100 * time.Millisecond
	opened := false
	for {
		ended, err := once(&opened)
		if ended {
			return nil
		}
		var apiErr *Error
		var fnErr *callbackError
		switch {
		case errors.As(err, &fnErr):
			return fnErr.err
		case errors.As(err, &apiErr) && (!opened || apiErr.StatusCode != http.StatusServiceUnavailable && apiErr.StatusCode != http.StatusBadGateway):
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// followOnce reads one event stream; ended says that the log's end came.
func (c *Client) followOnce(ctx context.Context, id string, after *uint64, fn func(job.LogEvent) error, opened *bool) (ended bool, err error) {
	path := "/api/jobs/" + url.PathEscape(id) + "/logs?follow=true"
	body, err := c.openEvents(ctx, path, *after, opened)
	if err != nil {
		return false, err
	}
	defer body.Close()
	err = scanEvents(body, func(data []byte) (bool, error) {
		var ev job.LogEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			return false, fmt.Errorf("GET %s: decode event: %w", path, err)
		}
		if ev.Seq <= *after && *after > 0 {
			return false, nil
		}
		if err := fn(ev); err != nil {
			return false, &callbackError{err}
		}
		*after = max(*after, ev.Seq)
		return ev.Ends(), nil
	})
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return false, fmt.Errorf("GET %s: the stream ended before the job did", path)
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// openEvents opens the event stream at path, resumed after seq after (0:
// from its start), and sets opened once the answer is the stream; an
// answer that is not is its error (*Error).
func (c *Client) openEvents(ctx context.Context, path string, after uint64, opened *bool) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if after > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(after, 10))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	*opened = true
	return resp.Body, nil
}
