package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// followWriteTimeout bounds one write to a follower of a service's log:
// one that takes nothing for that long (its connection is stuck) is cut
// off, and gives back its follower slot.
const followWriteTimeout = 30 * time.Second

// followServiceLogs is GET /api/deploy/{namespace}/{path}/logs?follow=true
// for the docker service at svcPath: its instances' output as
// Server-Sent Events — "event: stdout|stderr", "id: SEQ", "data: " the
// job.ServiceLogEvent as JSON with the instance that wrote it; "event:
// dropped" when the follower missed events (it fell behind, or resumed
// past what the log holds); "event: end" when the service is undeployed
// or the orchestrator shuts down, and the stream ends. A Last-Event-ID
// header (an EventSource reconnecting) or ?after= resumes after that
// event. The service view's tenancy applies: another namespace's service
// is 404. It reports false, answering nothing, when follow is false.
func (f *functions) followServiceLogs(w http.ResponseWriter, r *http.Request, svcPath string) bool {
	q := r.URL.Query()
	follow, err := parseBool("follow", q.Get("follow"))
	if err != nil {
		f.writeError(w, r, err)
		return true
	}
	if !follow {
		return false
	}
	after, err := parseAfter(q.Get("after"), r.Header.Get("Last-Event-ID"))
	if err != nil {
		f.writeError(w, r, err)
		return true
	}
	rc := http.NewResponseController(w)
	var (
		mu       sync.Mutex // orders writes: events and keepalives
		started  bool
		finished bool
		stop     = make(chan struct{})
	)
	write := func(format string, args ...any) error {
		_ = rc.SetWriteDeadline(time.Now().Add(followWriteTimeout))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return err
		}
		return rc.Flush()
	}
	begin := func() {
		if started {
			return
		}
		started = true
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
	}
	go func() {
		t := time.NewTicker(logKeepalive)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-r.Context().Done():
				return
			case <-t.C:
			}
			mu.Lock()
			if started && !finished {
				_ = write(": keepalive\n\n")
			}
			mu.Unlock()
		}
	}()
	defer close(stop)
	ns := r.PathValue("namespace")
	err = f.adm.FollowServiceLog(r.Context(), ns, svcPath, after, func(ev job.ServiceLogEvent) error {
		mu.Lock()
		defer mu.Unlock()
		begin()
		if ev.Seq == 0 { // admitted: the stream is open
			return write("")
		}
		data, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		return write("id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Stream, data)
	})
	mu.Lock()
	defer mu.Unlock()
	defer func() { finished = true }()
	if !started {
		if err != nil {
			f.writeError(w, r, err)
			return true
		}
		begin()
		_ = rc.Flush()
		return true
	}
	if err != nil && r.Context().Err() == nil {
		f.log.Warn("service log stream ended early", "namespace", ns, "path", svcPath, "err", err)
	}
	return true
}
