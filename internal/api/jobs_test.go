package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/admission"
	"github.com/zerverless/zerverless/internal/api/apitest"
	"github.com/zerverless/zerverless/internal/job"
)

// TestSubmitWait: POST /api/jobs?wait= submits the job as without a wait,
// then waits for it as GET's wait does (same syntax, same cap), and
// answers 201 with the job as it is then. A bad wait is refused before
// anything is read or submitted.
func TestSubmitWait(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxWait = 10 * time.Second
	h, svc, _ := newTestAPI(t, cfg)
	svc.OnWait = func(j *job.Job) {
		if j.Spec.Code == "pending" {
			return
		}
		j.Status = job.StatusCompleted
		j.FinishedAt = time.Now()
		j.Result = &job.Result{Status: job.StatusCompleted, Output: "hi\n", Result: json.RawMessage(`{"n":1}`)}
	}
	const lua = `{"job_type":"lua","code":"print('hi') return {n=1}"}`

	for _, tt := range []struct {
		wait string
		want time.Duration
	}{
		{"30s", 10 * time.Second},
		{"2", 2 * time.Second},
		{"0.5", 500 * time.Millisecond},
		{"1e9", 10 * time.Second},
		{"250ms", 250 * time.Millisecond},
	} {
		n := len(svc.Submitted())
		res := do(t, h, "POST", "/api/jobs?wait="+tt.wait, strings.NewReader(lua))
		if res.status != http.StatusCreated {
			t.Fatalf("wait=%s: %d %s", tt.wait, res.status, res.body)
		}
		m := res.json(t)
		if m["status"] != "completed" || m["output"] != "hi\n" {
			t.Fatalf("wait=%s: the answer is not the ended job: %s", tt.wait, res.body)
		}
		if loc := res.header.Get("Location"); loc != "/api/jobs/"+m["id"].(string) {
			t.Errorf("wait=%s: Location %q", tt.wait, loc)
		}
		if len(svc.Submitted()) != n+1 {
			t.Fatalf("wait=%s: %d submissions, want one", tt.wait, len(svc.Submitted())-n)
		}
		if got := svc.Waits()[len(svc.Waits())-1]; got != tt.want {
			t.Errorf("wait=%s reached Wait as %v, want %v", tt.wait, got, tt.want)
		}
	}

	// A job that has not ended when the wait passes is answered as it is.
	res := do(t, h, "POST", "/api/jobs?wait=1", strings.NewReader(`{"job_type":"lua","code":"pending"}`))
	if res.status != http.StatusCreated || res.json(t)["status"] != "pending" {
		t.Fatalf("pending: %d %s", res.status, res.body)
	}

	// No wait, or a zero one, is the plain submission: nothing waits.
	for _, path := range []string{"/api/jobs", "/api/jobs?wait=0", "/api/jobs?wait=", "/api/jobs?wait=0s"} {
		n := len(svc.Waits())
		res := do(t, h, "POST", path, strings.NewReader(lua))
		if res.status != http.StatusCreated || res.json(t)["status"] != "pending" {
			t.Fatalf("%s: %d %s", path, res.status, res.body)
		}
		if len(svc.Waits()) != n {
			t.Errorf("%s waited", path)
		}
	}

	for _, bad := range []string{"-1", "-5s", "soon", "NaN", "Inf", "1x"} {
		n, w := len(svc.Submitted()), len(svc.Waits())
		res := do(t, h, "POST", "/api/jobs?wait="+bad, strings.NewReader(lua))
		if res.status != http.StatusBadRequest || res.json(t)["field"] != "wait" {
			t.Errorf("wait=%s: %d %s", bad, res.status, res.body)
		}
		if len(svc.Submitted()) != n || len(svc.Waits()) != w {
			t.Errorf("wait=%s: submitted or waited", bad)
		}
	}

	// A refused job is refused as without a wait, and not waited for.
	w := len(svc.Waits())
	res = do(t, h, "POST", "/api/jobs?wait=5s", strings.NewReader(`{"job_type":"lua","code":"return 1","timeout_seconds":7200}`))
	if res.status != http.StatusBadRequest || res.json(t)["field"] != "timeout_seconds" {
		t.Errorf("refused job: %d %s", res.status, res.body)
	}
	if len(svc.Waits()) != w {
		t.Error("a refused job was waited for")
	}
	res = do(t, h, "POST", "/api/jobs?wait=5s&include=spec", strings.NewReader(lua))
	if res.status != http.StatusBadRequest || res.json(t)["field"] != "include" {
		t.Errorf("include on POST: %d %s", res.status, res.body)
	}
}

// TestSubmitWaitGivesBackItsBody: a submission that waits holds its body
// only until the job is submitted, not while it waits, so that waiting
// submissions do not fill MaxBodiesInFlight.
func TestSubmitWaitGivesBackItsBody(t *testing.T) {
	svc := &waitingService{Service: apitest.NewService(), waiting: make(chan struct{}, 1), release: make(chan struct{})}
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 1 << 10
	cfg.MaxBodiesInFlight = 1 << 10
	h := handlerOver(t, cfg, svc.Service, svc)
	body := `{"job_type":"lua","code":"return 1","input_data":"` + strings.Repeat("x", 900) + `"}`
	done := make(chan response, 1)
	go func() { done <- do(t, h, "POST", "/api/jobs?wait=30s", strings.NewReader(body)) }()
	<-svc.waiting // the first submission is stored and waits
	res := do(t, h, "POST", "/api/jobs", strings.NewReader(body))
	if res.status != http.StatusCreated {
		t.Errorf("a submission while another waits: %d %s", res.status, res.body)
	}
	close(svc.release)
	if res := <-done; res.status != http.StatusCreated {
		t.Errorf("the waiting submission: %d %s", res.status, res.body)
	}
}

// handlerOver is the API with cfg over base, apitest's Service, whose job
// service is jobs (base itself, or base with some methods changed).
func handlerOver(t *testing.T, cfg Config, base *apitest.Service, jobs interface {
	Service
	admission.Jobs
}) http.Handler {
	t.Helper()
	d := apitest.NewDeps(t, base)
	adm, err := admission.New(admission.DefaultConfig(), admission.Deps{
		Jobs: jobs, Functions: d.Functions, Tokens: apitest.OpenAuth{Service: d.Auth},
		Contexts: d.Contexts, Owners: d.Store, Quotas: base, Logs: base,
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(cfg, adm, jobs, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// waitingService is apitest's Service whose waits block until release is
// closed (or the waiter goes away), saying on waiting that one began.
type waitingService struct {
	*apitest.Service
	waiting chan struct{}
	release chan struct{}
}

func (s *waitingService) WaitVisible(ctx context.Context, id string, wait time.Duration, sees func(string) bool) (*job.Job, error) {
	select {
	case s.waiting <- struct{}{}:
	default:
	}
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return s.Service.Job(ctx, id)
}

// BenchmarkSubmitAndWait is the HTTP cost of a job whose result the
// client wants, over a real connection to the API (the job service is
// apitest's, which ends a job when it is waited for): one request
// (POST /api/jobs?wait=) against two (POST, then GET ?wait=).
func BenchmarkSubmitAndWait(b *testing.B) {
	svc := apitest.NewService()
	svc.OnWait = func(j *job.Job) {
		j.Status = job.StatusCompleted
		j.Result = &job.Result{Status: job.StatusCompleted, Result: json.RawMessage(`2`)}
	}
	srv := httptest.NewServer(openAPI(b, DefaultConfig(), svc, nil, nil))
	b.Cleanup(srv.Close)
	hc := srv.Client()
	body := []byte(`{"job_type":"lua","code":"return INPUT.n + 1","input_data":{"n":1}}`)
	call := func(method, url string, body []byte) View {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, _ := http.NewRequest(method, url, rd)
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var v View
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			b.Fatal(err)
		}
		return v
	}
	b.Run("one-request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if v := call("POST", srv.URL+"/api/jobs?wait=10s", body); v.Status != job.StatusCompleted {
				b.Fatalf("%+v", v)
			}
		}
	})
	b.Run("submit+get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v := call("POST", srv.URL+"/api/jobs", body)
			if v = call("GET", srv.URL+"/api/jobs/"+v.ID+"?wait=10s", nil); v.Status != job.StatusCompleted {
				b.Fatalf("%+v", v)
			}
		}
	})
}

// unstorableService is apitest's Service whose waits fail as the
// orchestrator's do for a waited job it could not store.
type unstorableService struct{ *apitest.Service }

func (s *unstorableService) WaitVisible(ctx context.Context, id string, wait time.Duration, sees func(string) bool) (*job.Job, error) {
	return nil, job.Errorf(job.CodeUnavailable, "job %s could not be stored; it was canceled", id)
}

// TestSubmitWaitNotStored: a submission that waits is marked so (the
// orchestrator may store it late), and when its job could not be stored
// the answer is the error, 503, with no id handed out.
func TestSubmitWaitNotStored(t *testing.T) {
	svc := &unstorableService{Service: apitest.NewService()}
	h := handlerOver(t, DefaultConfig(), svc.Service, svc)
	res := do(t, h, "POST", "/api/jobs?wait=5s", strings.NewReader(`{"job_type":"lua","code":"return 1"}`))
	if res.status != http.StatusServiceUnavailable || res.json(t)["error"] == nil || res.header.Get("Location") != "" {
		t.Fatalf("a waited job not stored: %d %v %s", res.status, res.header, res.body)
	}
	if reqs := svc.Submitted(); len(reqs) != 1 || !reqs[0].Waited {
		t.Fatalf("the submission reached the service as %+v, want one marked Waited", reqs)
	}
	res = do(t, h, "POST", "/api/jobs", strings.NewReader(`{"job_type":"lua","code":"return 1"}`))
	if reqs := svc.Submitted(); res.status != http.StatusCreated || len(reqs) != 2 || reqs[1].Waited {
		t.Fatalf("a submission that does not wait: %d, %+v", res.status, reqs)
	}
}
