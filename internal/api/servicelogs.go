package api

import (
	"net/http"

	"github.com/zerverless/zerverless/internal/job"
)

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
	st := newSSE(w, r)
	ns := r.PathValue("namespace")
	err = f.adm.FollowServiceLog(r.Context(), ns, svcPath, after, func(ev job.ServiceLogEvent) error {
		if ev.Seq == 0 { // admitted: the stream is open
			return st.open()
		}
		return st.event(ev.Seq, string(ev.Stream), ev)
	})
	refuse := func(err error) { f.writeError(w, r, err) }
	if st.end(err, refuse) && r.Context().Err() == nil {
		f.log.Warn("service log stream ended early", "namespace", ns, "path", svcPath, "err", err)
	}
	return true
}
