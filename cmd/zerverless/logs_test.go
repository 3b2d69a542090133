package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/store"
)

// sseEvent is one Server-Sent Event as the wire carries it.
type sseEvent struct {
	id, event string
	ev        job.LogEvent
}

// sseStream reads GET /api/jobs/ID/logs?follow=true as a browser's
// EventSource would, with secret as the bearer token and lastID (when not
// empty) as Last-Event-ID. Events arrive on events; done is closed when
// the server ends the stream.
type sseStream struct {
	status int
	body   []byte // the answer when it is not a stream
	events chan sseEvent
	done   chan struct{}
}

func openLogStream(t *testing.T, base, secret, id, lastID string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/jobs/"+id+"/logs?follow=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	s := &sseStream{status: resp.StatusCode, events: make(chan sseEvent, 4096), done: make(chan struct{})}
	if resp.StatusCode != http.StatusOK {
		s.body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		close(s.done)
		return s
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q, want text/event-stream", ct)
	}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.event != "" {
					s.events <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				cur.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				cur.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.ev); err != nil {
					t.Errorf("event data %q: %v", line, err)
				}
			}
		}
	}()
	return s
}

// next returns the next event, failing after d or when the stream ends.
func (s *sseStream) next(t *testing.T, d time.Duration) sseEvent {
	t.Helper()
	select {
	case e := <-s.events:
		if e.id != strconv.FormatUint(e.ev.Seq, 10) || e.event != string(e.ev.Stream) {
			t.Fatalf("event id %q and name %q do not match its data %+v", e.id, e.event, e.ev)
		}
		return e
	case <-s.done:
		select {
		case e := <-s.events:
			return e
		default:
		}
		t.Fatal("the stream ended")
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
	}
	panic("unreachable")
}

// rest reads the stream to its end and returns its events; the last must
// end the log.
func (s *sseStream) rest(t *testing.T, d time.Duration) []sseEvent {
	t.Helper()
	var out []sseEvent
	for {
		e := s.next(t, d)
		out = append(out, e)
		if e.ev.Ends() {
			select {
			case <-s.done:
			case <-time.After(d):
				t.Fatal("the stream went on after the end")
			}
			return out
		}
	}
}

// firstLineWhileRunning follows job id until its first stdout event that
// holds want, and checks that the job is still running then; it returns
// the events up to it.
func firstLineWhileRunning(t *testing.T, srv *Server, c *client.Client, s *sseStream, id, want string) []sseEvent {
	t.Helper()
	var seen []sseEvent
	for {
		e := s.next(t, 120*time.Second)
		seen = append(seen, e)
		if e.ev.Ends() {
			t.Fatalf("the job ended before %q reached the follower: %+v", want, seen)
		}
		if strings.Contains(e.ev.Text, want) {
			break
		}
	}
	v, err := c.Job(context.Background(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != job.StatusRunning {
		t.Fatalf("when %q reached the follower the job was %s, want running", want, v.Status)
	}
	return seen
}

// stdoutOf joins the text of the stdout events.
func stdoutOf(evs []sseEvent, stream job.LogStream) (text string, events int) {
	for _, e := range evs {
		if e.ev.Stream == stream {
			text += e.ev.Text
			events++
		}
	}
	return text, events
}

// lastAttempt returns the events of the job's last attempt: those after
// the last status event that restarts it (its worker was lost, and it
// runs again). It logs each restart.
func lastAttempt(t *testing.T, evs []sseEvent) []sseEvent {
	t.Helper()
	last := 0
	for i, e := range evs {
		if e.ev.Stream == job.LogStatus && e.ev.Restarted {
			t.Logf("attempt %d restarted: %s", e.ev.Attempt, e.ev.Reason)
			last = i
		}
	}
	return evs[last:]
}

const tenLines = "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\nline 7\nline 8\nline 9\nline 10\n"

// checkLive follows job id from the start: its first line arrives while
// it runs, then the rest, in several events, and the stream ends with the
// job completed and its result's output what was streamed.
func checkLive(t *testing.T, srv *Server, c *client.Client, id string) {
	t.Helper()
	s := openLogStream(t, srv.URL(), srv.AdminToken(), id, "")
	if s.status != http.StatusOK {
		t.Fatalf("follow: %d %s", s.status, s.body)
	}
	evs := firstLineWhileRunning(t, srv, c, s, id, "line 1")
	evs = append(evs, s.rest(t, 120*time.Second)...)
	for i, e := range evs {
		if e.ev.Seq != evs[0].ev.Seq+uint64(i) {
			t.Fatalf("event %d has seq %d: %+v", i, e.ev.Seq, evs)
		}
	}
	out, n := stdoutOf(evs, job.LogStdout)
	if out != tenLines || n < 2 {
		t.Errorf("streamed stdout %q in %d events, want the ten lines in more than one", out, n)
	}
	last := evs[len(evs)-1].ev
	if last.Status != job.StatusCompleted {
		t.Errorf("the stream ended with %+v, want completed", last)
	}
	v := waitDone(t, c, id, 30*time.Second)
	if v.ResultView == nil || v.Output != tenLines {
		t.Errorf("the result's output is %+v, want the ten lines", v.ResultView)
	}
}

// TestLiveLogsDocker: a container printing a line every 0.5 s for 5 s;
// its first line reaches a follower while it runs, and `zerverless run`
// prints it while the job runs too.
func TestLiveLogsDocker(t *testing.T) {
	img := testImage(t, "zerverless-test/busybox:e2e")
	srv, c := startServer(t, dockerServerConfig(t, 1))
	script := "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; sleep 0.5; done"
	v, err := c.Submit(context.Background(), job.Request{Type: job.TypeDocker, DockerImage: img, DockerCommand: []string{"sh", "-c", script}})
	if err != nil {
		t.Fatal(err)
	}
	checkLive(t, srv, c, v.ID)

	// The CLI: the first line is on stdout while the job still runs.
	out := newLineWatch("line 1")
	var errOut bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run(context.Background(), []string{"run", "--server", srv.URL(), "--token", srv.AdminToken(), "--image", img, "--", "sh", "-c", script},
			out, &errOut, func(string) string { return "" })
	}()
	select {
	case <-out.seen:
	case c := <-code:
		t.Fatalf("run ended (%d) before printing the first line: stdout %q stderr %q", c, out.String(), errOut.String())
	case <-time.After(120 * time.Second):
		t.Fatal("run printed no line")
	}
	jobs, _, err := c.Jobs(context.Background(), store.JobFilter{Status: job.StatusRunning})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("when run printed its first line, the running jobs were %+v (%v), want the job", jobs, err)
	}
	if got := <-code; got != 0 || out.String() != tenLines {
		t.Errorf("run: exit %d stdout %q stderr %q", got, out.String(), errOut.String())
	}

	// zerverless logs, after the end, prints the stored output.
	var logOut, logErr bytes.Buffer
	if got := run(context.Background(), []string{"logs", "--server", srv.URL(), "--token", srv.AdminToken(), v.ID}, &logOut, &logErr, func(string) string { return "" }); got != 0 || logOut.String() != tenLines {
		t.Errorf("logs: exit %d stdout %q stderr %q", got, logOut.String(), logErr.String())
	}
	logOut.Reset()
	if got := run(context.Background(), []string{"logs", "-f", "--server", srv.URL(), "--token", srv.AdminToken(), v.ID}, &logOut, &logErr, func(string) string { return "" }); got != 0 || logOut.String() != tenLines {
		t.Errorf("logs -f: exit %d stdout %q stderr %q", got, logOut.String(), logErr.String())
	}
}

// TestLiveLogsSandboxed: the same for a Python job and a Lua job (Lua has
// no clock: it spins between lines).
func TestLiveLogsSandboxed(t *testing.T) {
	srv, c := startServer(t, testServerConfig(t, t.TempDir(), 1))
	for _, tc := range []struct {
		name string
		r    job.Request
	}{
		{"python", job.Request{Type: job.TypePython, Code: "import time\nfor i in range(1, 11):\n    print('line', i)\n    time.sleep(0.5)\n"}},
		{"lua", job.Request{Type: job.TypeLua, Code: "for i = 1, 10 do print('line ' .. i); local x = 0; for j = 1, 3000000 do x = x + j end end"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := c.Submit(context.Background(), tc.r)
			if err != nil {
				t.Fatal(err)
			}
			checkLive(t, srv, c, v.ID)
		})
	}
}

// TestLiveLogsBuild: a build's steps stream while it builds, and `zerverless
// build` prints them as they come.
func TestLiveLogsBuild(t *testing.T) {
	fakeImage(t, "zerverless-test/busybox:build", nil)
	srv, c := startServer(t, buildServerConfig(t))
	code, raw := postJob(t, srv, `{"job_type": "docker",
	  "dockerfile": "FROM zerverless-test/busybox:build\nRUN echo first step; sleep 2\nRUN echo second step\nCMD [\"echo\", \"ran\"]",
	  "build_context": {"x": "y"}}`)
	if code != http.StatusCreated {
		t.Fatalf("submit: %d %s", code, raw)
	}
	var v api.View
	json.Unmarshal(raw, &v)
	s := openLogStream(t, srv.URL(), srv.AdminToken(), v.ID, "")
	evs := firstLineWhileRunning(t, srv, c, s, v.ID, "first step")
	evs = append(evs, s.rest(t, 120*time.Second)...)
	log, _ := stdoutOf(evs, job.LogStderr)
	if !strings.Contains(log, "Step 1/4") || !strings.Contains(log, "Step 4/4") || !strings.Contains(log, "second step") {
		t.Errorf("the build's log streamed %q, want its steps", log)
	}
	if out, _ := stdoutOf(lastAttempt(t, evs), job.LogStdout); out != "ran\n" {
		t.Errorf("the image's run streamed %q", out)
	}
	if last := evs[len(evs)-1].ev; last.Status != job.StatusCompleted {
		t.Errorf("the stream ended with %+v", last)
	}
}

// TestLiveLogsHTTP: the log as a page, follow after the end (stored events
// then the end), Last-Event-ID resumes, a canceled job's stream ends with
// canceled, and another namespace's token gets 404 as for the job view.
func TestLiveLogsHTTP(t *testing.T) {
	tn := startTenants(t)
	srv := tn.srv
	ctx := context.Background()
	alice := client.New(srv.URL(), nil).WithToken(tn.alice)
	v, err := alice.Submit(ctx, job.Request{Type: job.TypeLua, Code: "print('hello'); print('world')"})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, alice, v.ID, 30*time.Second)

	all := openLogStream(t, srv.URL(), tn.alice, v.ID, "").rest(t, 30*time.Second)
	if out, _ := stdoutOf(all, job.LogStdout); out != "hello\nworld\n" {
		t.Fatalf("follow after the end streamed %q: %+v", out, all)
	}
	// Resume after the first event: every later one, none before.
	resumed := openLogStream(t, srv.URL(), tn.alice, v.ID, all[0].id).rest(t, 30*time.Second)
	if len(resumed) != len(all)-1 || resumed[0].id != all[1].id {
		t.Errorf("resumed after %s: %+v, want %+v", all[0].id, resumed, all[1:])
	}
	page, err := alice.JobLog(ctx, v.ID, 0)
	if err != nil || !page.Ended || len(page.Events) != len(all) || page.Next != all[len(all)-1].ev.Seq {
		t.Errorf("the page: %+v %v", page, err)
	}

	// Another namespace: 404 for the page and the stream, as for the job.
	for _, path := range []string{"/logs", "/logs?follow=true", ""} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL()+"/api/jobs/"+v.ID+path, nil)
		req.Header.Set("Authorization", "Bearer "+tn.bob)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || bytes.Contains(body, []byte("hello")) {
			t.Errorf("bob GET %s: %d %s, want 404", path, resp.StatusCode, body)
		}
	}
	// No token: 401.
	resp, err := http.Get(srv.URL() + "/api/jobs/" + v.ID + "/logs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d", resp.StatusCode)
	}
	// Bad input.
	for _, q := range []string{"?follow=maybe", "?after=x", "?limit=0", "?tail=1"} {
		resp, err := authGet(srv, srv.URL()+"/api/jobs/"+v.ID+"/logs"+q)
		if err != nil {
			t.Fatal(err)
		}
		var e api.ErrorBody
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || e.Field == "" {
			t.Errorf("%s: %d %+v, want 400 naming the field", q, resp.StatusCode, e)
		}
	}

	// A canceled job: the stream ends with canceled. No worker runs js, so
	// it stays pending until canceled.
	s := openLogStream(t, srv.URL(), tn.alice, tn.aliceJob, "")
	if _, err := alice.Cancel(ctx, tn.aliceJob); err != nil {
		t.Fatal(err)
	}
	evs := s.rest(t, 30*time.Second)
	if last := evs[len(evs)-1].ev; last.Status != job.StatusCanceled {
		t.Errorf("the canceled job's stream ended with %+v", last)
	}
}

// lineWatch is an io.Writer that closes seen once what was written holds
// want.
type lineWatch struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func newLineWatch(want string) *lineWatch { return &lineWatch{want: want, seen: make(chan struct{})} }

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *lineWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestMetricsScrape: after docker, build and Lua jobs, /metrics holds the
// per-runtime usage histograms, output bytes, build durations and cache
// hits, per-namespace counts, and the embedded worker's own report with
// its worker label.
func TestMetricsScrape(t *testing.T) {
	fakeImage(t, "zerverless-test/busybox:build", nil)
	cfg := buildServerConfig(t)
	cfg.Worker.MetricsInterval = 100 * time.Millisecond
	srv, c := startServer(t, cfg)
	img := testImage(t, "zerverless-test/busybox:e2e")
	burn := "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; echo burnt"
	if v := submitWait(t, c, job.Request{Type: job.TypeDocker, Namespace: "alice", DockerImage: img, DockerCommand: []string{"sh", "-c", burn}}); v.Status != job.StatusCompleted {
		t.Fatalf("docker job: %+v", v)
	}
	if v := submitWait(t, c, job.Request{Type: job.TypeLua, Code: "print('hi')"}); v.Status != job.StatusCompleted {
		t.Fatalf("lua job: %+v", v)
	}
	body := `{"job_type": "docker", "dockerfile": "FROM zerverless-test/busybox:build\nRUN echo built > /b\nCMD [\"cat\", \"/b\"]"}`
	for range 2 {
		if v := postWait(t, srv, c, body); v.Status != job.StatusCompleted {
			t.Fatalf("build: %+v", v)
		}
	}
	url, token := srv.URL()+"/metrics", srv.AdminToken()
	eventually(t, 10*time.Second, func() error {
		for name, want := range map[string]map[string]float64{
			"zerverless_job_cpu_seconds_count":          {`{runtime="docker"}`: 1},
			"zerverless_job_peak_memory_bytes_count":    {`{runtime="docker"}`: 1},
			"zerverless_build_seconds_count":            {"": 2},
			"zerverless_builds_total":                   {`{cache_hit="false"}`: 1, `{cache_hit="true"}`: 1},
			"zerverless_namespace_jobs_submitted_total": {`{namespace="alice"}`: 1, `{namespace="default"}`: 3},
			"zerverless_namespace_jobs_finished_total":  {`{namespace="alice",status="completed"}`: 1},
		} {
			got := metricValues(t, url, token, name)
			for k, v := range want {
				if got[k] < v {
					return fmt.Errorf("%s = %v, want at least %v", name, got, want)
				}
			}
		}
		for name, labels := range map[string][]string{
			"zerverless_job_output_bytes_total": {`{runtime="docker",stream="stdout"}`, `{runtime="lua",stream="stdout"}`},
			"zerverless_job_log_bytes_total":    {`{stream="stdout"}`, `{stream="stderr"}`},
		} {
			got := metricValues(t, url, token, name)
			for _, l := range labels {
				if got[l] <= 0 {
					return fmt.Errorf("%s = %v, want %s above 0", name, got, l)
				}
			}
		}
		// The embedded worker's own report.
		tasks := metricValues(t, url, token, "zerverless_worker_tasks_total")
		if len(tasks) != 1 {
			return fmt.Errorf("zerverless_worker_tasks_total = %v, want the embedded worker's", tasks)
		}
		for labels, n := range tasks {
			if !strings.HasPrefix(labels, `{worker="`) || n < 4 {
				return fmt.Errorf("zerverless_worker_tasks_total = %v, want 4 tasks or more", tasks)
			}
			for _, name := range []string{"zerverless_worker_images_cached", "zerverless_worker_containers_running", "zerverless_worker_idle_processes", "zerverless_worker_warm_holders"} {
				if _, ok := metricValues(t, url, token, name)[labels]; !ok {
					return fmt.Errorf("%s has no series %s", name, labels)
				}
			}
			if n := metricValues(t, url, token, "zerverless_worker_images_cached")[labels]; n < 1 {
				return fmt.Errorf("zerverless_worker_images_cached = %v, want the built image", n)
			}
		}
		return nil
	})
}

// TestLiveLogsAcrossRestart: a client following a job's log over HTTP sees
// the stream end when the orchestrator shuts down (which does not wait on
// it), reconnects to the restarted orchestrator with Last-Event-ID, and
// gets every event stored after it — the output written after its last
// event, the attempt restarting — then the rest, to the end.
func TestLiveLogsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testServerConfig(t, dir, 0)
	srv, err := StartServer(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(srv.URL(), nil).WithToken(srv.AdminToken())
	lua := job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1}
	holder := dialRaw(t, srv.WorkerURL(), lua)
	holder.keepAlive()
	v, err := c.Submit(context.Background(), job.Request{Type: job.TypeLua, Code: "return 1"})
	if err != nil {
		t.Fatal(err)
	}
	task := holder.next(5 * time.Second)
	output := func(text string) protocol.Message {
		return protocol.Message{Type: protocol.TypeOutput, JobID: task.JobID, LeaseID: task.LeaseID, Stream: job.LogStdout, Text: text}
	}
	s := openLogStream(t, srv.URL(), srv.AdminToken(), v.ID, "")
	holder.send(output("one\n"))
	var last sseEvent
	for last.ev.Text != "one\n" {
		last = s.next(t, 10*time.Second)
	}
	holder.send(output("two\n"))
	eventually(t, 10*time.Second, func() error {
		page, err := c.JobLog(context.Background(), v.ID, last.ev.Seq)
		if err != nil || len(page.Events) == 0 {
			return fmt.Errorf("nothing stored after %d: %v", last.ev.Seq, err)
		}
		return nil
	})
	if err := srv.Close(); err != nil {
		t.Fatalf("close with a follower connected: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived the server")
	}

	srv2, c2 := startServer(t, cfg)
	s2 := openLogStream(t, srv2.URL(), srv2.AdminToken(), v.ID, last.id)
	if s2.status != http.StatusOK {
		t.Fatalf("resume: %d %s", s2.status, s2.body)
	}
	first := s2.next(t, 10*time.Second)
	if first.ev.Seq != last.ev.Seq+1 || first.ev.Text != "two\n" {
		t.Fatalf("after Last-Event-ID %s the first event is %+v, want two", last.id, first)
	}
	for e := first; !e.ev.Restarted; {
		e = s2.next(t, 10*time.Second)
	}
	w2 := dialRaw(t, srv2.WorkerURL(), lua)
	task2 := w2.next(10 * time.Second)
	w2.send(protocol.Message{Type: protocol.TypeOutput, JobID: task2.JobID, LeaseID: task2.LeaseID, Stream: job.LogStdout, Text: "three\n"})
	w2.send(protocol.Message{Type: protocol.TypeResult, JobID: task2.JobID, LeaseID: task2.LeaseID, Result: &job.Result{Status: job.StatusCompleted, Output: "three\n"}})
	rest := s2.rest(t, 10*time.Second)
	if out, _ := stdoutOf(rest, job.LogStdout); out != "three\n" || rest[len(rest)-1].ev.Status != job.StatusCompleted {
		t.Errorf("after the restart: %+v", rest)
	}
	if v := waitDone(t, c2, v.ID, 10*time.Second); v.Attempt != 2 {
		t.Errorf("attempt %d, want 2", v.Attempt)
	}
}

// TestLiveLogsAcrossWorkerLoss: a worker that goes away mid-run shows in
// an HTTP follower's stream as the attempt restarting; the next worker's
// output follows in the same stream, to the end.
func TestLiveLogsAcrossWorkerLoss(t *testing.T) {
	srv, c := startServer(t, testServerConfig(t, t.TempDir(), 0))
	lua := job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1}
	first := dialRaw(t, srv.WorkerURL(), lua)
	v, err := c.Submit(context.Background(), job.Request{Type: job.TypeLua, Code: "return 1", MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	task := first.next(5 * time.Second)
	s := openLogStream(t, srv.URL(), srv.AdminToken(), v.ID, "")
	first.send(protocol.Message{Type: protocol.TypeOutput, JobID: task.JobID, LeaseID: task.LeaseID, Stream: job.LogStdout, Text: "first try\n"})
	for e := s.next(t, 10*time.Second); e.ev.Text != "first try\n"; e = s.next(t, 10*time.Second) {
	}
	first.Close()
	var restart sseEvent
	for restart = s.next(t, 10*time.Second); !restart.ev.Restarted; restart = s.next(t, 10*time.Second) {
	}
	if restart.event != "status" || restart.ev.Status != job.StatusPending {
		t.Errorf("the restart is %+v, want a pending status event", restart)
	}
	second := dialRaw(t, srv.WorkerURL(), lua)
	task2 := second.next(10 * time.Second)
	second.send(protocol.Message{Type: protocol.TypeOutput, JobID: task2.JobID, LeaseID: task2.LeaseID, Stream: job.LogStdout, Text: "second try\n"})
	second.send(protocol.Message{Type: protocol.TypeResult, JobID: task2.JobID, LeaseID: task2.LeaseID, Result: &job.Result{Status: job.StatusCompleted, Output: "second try\n"}})
	rest := s.rest(t, 10*time.Second)
	if out, _ := stdoutOf(rest, job.LogStdout); out != "second try\n" || rest[len(rest)-1].ev.Status != job.StatusCompleted {
		t.Errorf("after the restart: %+v", rest)
	}
}
