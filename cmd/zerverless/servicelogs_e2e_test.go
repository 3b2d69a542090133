package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServiceLogsEndToEnd: `serve` with its embedded docker worker and
// the real engine runs two instances of a service that prints a line per
// request; a follower of its log sees the line of each instance while
// both requests are still held open by their instances (nothing has
// ended), each line with the instance that wrote it; undeploying ends the
// stream.
func TestServiceLogsEndToEnd(t *testing.T) {
	img := serviceTestImage(t)
	url, token := serveWithServices(t)
	a := send(t, "POST", url+"/api/deploy/user/talk", token, "application/json",
		[]byte(`{"runtime":"docker","docker_image":"`+img+`","docker_command":["/app/entrypoint.sh"],"min_instances":2,"max_instances":2,"concurrency":1}`))
	if a.status != 201 {
		t.Fatalf("deploy: %v", a)
	}
	s := openServiceLog(t, url, token, "user/talk", "")
	if s.status != 200 {
		t.Fatalf("follow: %d %s", s.status, s.body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan string, 2)
	for _, say := range []string{"hello-from-first", "hello-from-second"} {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", url+"/user/talk/?sleep=10m&say="+say, nil)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			ended <- say
		}()
	}
	by := map[string]string{} // line: instance
	for len(by) < 2 {
		e := s.next(t, 2*time.Minute)
		for line := range strings.Lines(e.ev.Text) {
			if line = strings.TrimSpace(line); strings.HasPrefix(line, "hello-from-") {
				by[line] = e.ev.Instance
			}
		}
	}
	select {
	case say := <-ended:
		t.Fatalf("the request %s ended before both lines were seen", say)
	default:
	}
	if by["hello-from-first"] == "" || by["hello-from-first"] == by["hello-from-second"] {
		t.Fatalf("the lines' instances: %v, want two", by)
	}
	cancel()
	if a := send(t, "DELETE", url+"/api/deploy/user/talk", token, "", nil); a.status != 204 {
		t.Fatalf("undeploy: %v", a)
	}
	for {
		if e := s.next(t, time.Minute); e.event == "end" {
			break
		}
	}
}
