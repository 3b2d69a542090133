package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/job"
)

// ServiceLogs is the recent output of a docker service's instances.
type ServiceLogs = api.ServiceLogs

// ServiceLogs returns the recent output of the docker service at
// namespace/path, with its instances.
func (c *Client) ServiceLogs(ctx context.Context, namespace, path string) (ServiceLogs, error) {
	var l ServiceLogs
	err := c.do(ctx, http.MethodGet, deployPath(namespace, path)+"/logs", nil, &l)
	return l, err
}

// FollowServiceLog hands fn, in order, the events of the live log of the
// docker service at namespace/path after seq after (0: what it holds now)
// as its instances write them, until the log's end (the service was
// undeployed, the orchestrator shuts down), which it hands fn too, and
// returns nil. A stream that breaks before the end is opened again after
// the last event fn had (the orchestrator says with a dropped event what
// it no longer holds). An answer that is an error (*Error) is returned;
// so are fn's error and ctx's.
func (c *Client) FollowServiceLog(ctx context.Context, namespace, path string, after uint64, fn func(job.ServiceLogEvent) error) error {
	return follow(ctx, func(opened *bool) (bool, error) {
		return c.followServiceOnce(ctx, namespace, path, &after, fn, opened)
	})
}

func (c *Client) followServiceOnce(ctx context.Context, namespace, path string, after *uint64, fn func(job.ServiceLogEvent) error, opened *bool) (ended bool, err error) {
	p := deployPath(namespace, path) + "/logs?follow=true"
	body, err := c.openEvents(ctx, p, *after, opened)
	if err != nil {
		return false, err
	}
	defer body.Close()
	err = scanEvents(body, func(data []byte) (bool, error) {
		var ev job.ServiceLogEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			return false, fmt.Errorf("GET %s: decode event: %w", p, err)
		}
		if ev.Seq <= *after && *after > 0 {
			return false, nil
		}
		if err := fn(ev); err != nil {
			return false, &callbackError{err}
		}
		*after = max(*after, ev.Seq)
		return ev.Stream == job.LogEnd, nil
	})
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return false, fmt.Errorf("GET %s: the stream ended before the log did", p)
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// scanEvents hands fn the data of each Server-Sent Event r carries, until
// fn says done (nil), fails (its error) or r ends (io.ErrUnexpectedEOF).
func scanEvents(r io.Reader, fn func(data []byte) (done bool, err error)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLogLine)
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() == 0 {
				continue
			}
			done, err := fn([]byte(data.String()))
			data.Reset()
			if err != nil {
				return err
			}
			if done {
				return nil
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
		return err
	}
	return io.ErrUnexpectedEOF
}
