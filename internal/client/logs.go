package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if *after > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(*after, 10))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, decodeError(resp)
	}
	*opened = true
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxLogLine)
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() == 0 {
				continue
			}
			var ev job.LogEvent
			if err := json.Unmarshal([]byte(data.String()), &ev); err != nil {
				return false, fmt.Errorf("GET %s: decode event: %w", path, err)
			}
			data.Reset()
			if ev.Seq <= *after && *after > 0 {
				continue
			}
			if err := fn(ev); err != nil {
				return false, &callbackError{err}
			}
			*after = max(*after, ev.Seq)
			if ev.Ends() {
				return true, nil
			}
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
		// id:, event: and comments: the data says it all.
	}
	if err := sc.Err(); err != nil {
		return false, err
	}
	return false, fmt.Errorf("GET %s: the stream ended before the job did", path)
}
