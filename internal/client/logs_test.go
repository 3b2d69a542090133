package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// TestFollowJobLogResumes: a stream that breaks before the end is opened
// again with Last-Event-ID set to the last event handed over, and events
// already handed over are not handed again.
func TestFollowJobLogResumes(t *testing.T) {
	var calls atomic.Int32
	var lastIDs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
		w.Header().Set("Content-Type", "text/event-stream")
		event := func(seq int, stream, body string) {
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: {\"seq\":%d,\"stream\":%q,%s}\n\n", seq, stream, seq, stream, body)
		}
		switch n {
		case 1:
			event(1, "status", `"status":"running","attempt":1`)
			event(2, "stdout", `"text":"one\n"`)
			// The connection breaks: no end.
		case 2:
			fmt.Fprint(w, ": keepalive\n\n")
			event(2, "stdout", `"text":"one\n"`) // already had: skipped
			event(3, "stdout", `"text":"two\n"`)
			event(4, "status", `"status":"completed","attempt":1`)
		default:
			t.Errorf("call %d after the end", n)
		}
	}))
	defer srv.Close()
	var got []job.LogEvent
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := New(srv.URL, nil).FollowJobLog(ctx, "j", 0, func(ev job.LogEvent) error {
		got = append(got, ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[1].Text != "one\n" || got[2].Text != "two\n" || !got[3].Ends() {
		t.Errorf("events %+v", got)
	}
	if len(lastIDs) != 2 || lastIDs[0] != "" || lastIDs[1] != "2" {
		t.Errorf("Last-Event-ID sent %q, want none then 2", lastIDs)
	}
}

// TestFollowJobLogRefused: an error answer to the first request (not
// found, too many followers) is returned, not retried.
func TestFollowJobLogRefused(t *testing.T) {
	for _, status := range []int{http.StatusNotFound, http.StatusServiceUnavailable} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprint(w, `{"error":"no"}`)
		}))
		err := New(srv.URL, nil).FollowJobLog(context.Background(), "j", 0, func(job.LogEvent) error { return nil })
		srv.Close()
		var e *Error
		if !errors.As(err, &e) || e.StatusCode != status {
			t.Errorf("status %d: %v", status, err)
		}
	}
}
