package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/api/apitest"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

func newTestClient(t *testing.T) (*Client, *apitest.Service) {
	t.Helper()
	svc := apitest.NewService()
	h, err := api.New(api.DefaultConfig(), apitest.OpenAdmission(t, svc), svc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return New(srv.URL+"/", nil), svc
}

func TestClientJobs(t *testing.T) {
	c, svc := newTestClient(t)
	ctx := context.Background()
	svc.OnWait = func(j *job.Job) {
		j.Status = job.StatusCompleted
		j.Result = &job.Result{Status: job.StatusCompleted, Output: "hello\n"}
	}
	timeout := 5.0
	v, err := c.Submit(ctx, job.Request{Type: job.TypeLua, Code: `print("hello")`, Namespace: "team", TimeoutSeconds: &timeout})
	if err != nil {
		t.Fatal(err)
	}
	if v.ID == "" || v.Status != job.StatusPending || v.Namespace != "team" || v.ResultView != nil {
		t.Fatalf("submitted %+v", v)
	}
	got, err := c.Job(ctx, v.ID, 0)
	if err != nil || got.ID != v.ID || got.Status != job.StatusPending {
		t.Fatalf("job: %+v %v", got, err)
	}
	done, err := c.Await(ctx, v.ID, 2*time.Second)
	if err != nil || done.Status != job.StatusCompleted || done.ResultView == nil || done.Output != "hello\n" {
		t.Fatalf("await: %+v %v", done, err)
	}
	if w := svc.Waits(); len(w) != 1 || w[0] != 2*time.Second {
		t.Fatalf("waits %v", w)
	}
	spec, err := c.JobWithSpec(ctx, v.ID)
	if err != nil || spec.Spec == nil || spec.Spec.Code != `print("hello")` {
		t.Fatalf("spec: %+v %v", spec, err)
	}

	for range 2 {
		if _, err := c.Submit(ctx, job.Request{Type: job.TypeJS, Code: "1"}); err != nil {
			t.Fatal(err)
		}
	}
	jobs, next, err := c.Jobs(ctx, store.JobFilter{Limit: 2})
	if err != nil || len(jobs) != 2 || next == "" {
		t.Fatalf("jobs: %d %q %v", len(jobs), next, err)
	}
	rest, next, err := c.Jobs(ctx, store.JobFilter{Limit: 2, Cursor: next})
	if err != nil || len(rest) != 1 || rest[0].ID != v.ID || next != "" {
		t.Fatalf("page 2: %+v %q %v", rest, next, err)
	}
	jobs, _, err = c.Jobs(ctx, store.JobFilter{Namespace: "team", Status: job.StatusCompleted})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("filtered: %d %v", len(jobs), err)
	}

	canceled, err := c.Cancel(ctx, jobs[0].ID)
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 409 || apiErr.JobStatus != job.StatusCompleted || canceled.ID != "" {
		t.Fatalf("cancel a completed job: %+v %v", canceled, err)
	}
	if job.ErrorCode(err) != job.CodeConflict {
		t.Fatalf("code %q", job.ErrorCode(err))
	}
	canceled, err = c.Cancel(ctx, rest[0].ID)
	_ = canceled
	if err == nil {
		t.Fatal("canceling a completed job succeeded")
	}
	pending, _, _ := c.Jobs(ctx, store.JobFilter{Status: job.StatusPending, Limit: 1})
	canceled, err = c.Cancel(ctx, pending[0].ID)
	if err != nil || canceled.Status != job.StatusCanceled {
		t.Fatalf("cancel: %+v %v", canceled, err)
	}
}

func TestClientErrors(t *testing.T) {
	c, _ := newTestClient(t)
	ctx := context.Background()
	_, err := c.Submit(ctx, job.Request{Type: "cobol", Code: "x"})
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Field != "job_type" || apiErr.Message == "" {
		t.Fatalf("submit cobol: %v", err)
	}
	if job.ErrorCode(err) != job.CodeInvalid || job.ErrorField(err) != "job_type" {
		t.Fatalf("code %q field %q", job.ErrorCode(err), job.ErrorField(err))
	}
	if !strings.Contains(err.Error(), `field "job_type"`) || !strings.Contains(err.Error(), "HTTP 400") {
		t.Fatalf("message %q", err)
	}
	_, err = c.Job(ctx, "missing", 0)
	if !IsNotFound(err) || job.ErrorCode(err) != job.CodeNotFound {
		t.Fatalf("missing job: %v", err)
	}
	_, _, err = c.Jobs(ctx, store.JobFilter{Limit: -1})
	if job.ErrorField(err) != "limit" {
		t.Fatalf("bad limit: %v", err)
	}
}

func TestClientInfo(t *testing.T) {
	c, svc := newTestClient(t)
	ctx := context.Background()
	svc.WorkerList = []job.WorkerInfo{{ID: "w1"}}
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	ws, err := c.Workers(ctx)
	if err != nil || len(ws) != 1 || ws[0].ID != "w1" {
		t.Fatalf("workers %+v %v", ws, err)
	}
	st, err := c.Stats(ctx)
	if err != nil || st.WorkersConnected != 1 {
		t.Fatalf("stats %+v %v", st, err)
	}
	info, err := c.Info(ctx)
	if err != nil || info.Version == "" {
		t.Fatalf("info %+v %v", info, err)
	}
}

// An answer that is not the API's JSON still becomes an *Error.
func TestClientForeignError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
	}))
	defer srv.Close()
	err := New(srv.URL, nil).Health(context.Background())
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 502 || !strings.Contains(apiErr.Message, "bad gateway") {
		t.Fatalf("err %v", err)
	}
	// Nothing listens: a transport error, not an *Error.
	srv.Close()
	err = New(srv.URL, nil).Health(context.Background())
	if err == nil || errors.As(err, &apiErr) {
		t.Fatalf("closed server: %v", err)
	}
}

// TestClientRun: Run submits and waits in one request, and answers the job
// as it is after the wait; with no wait it is Submit; a refused job is an
// *Error.
func TestClientRun(t *testing.T) {
	c, svc := newTestClient(t)
	ctx := context.Background()
	svc.OnWait = func(j *job.Job) {
		if j.Spec.Code == "stays" {
			return
		}
		j.Status = job.StatusCompleted
		j.Result = &job.Result{Status: job.StatusCompleted, Output: "hello\n"}
	}
	v, err := c.Run(ctx, job.Request{Type: job.TypeLua, Code: `print("hello")`}, 1500*time.Millisecond)
	if err != nil || v.ID == "" || v.Status != job.StatusCompleted || v.ResultView == nil || v.Output != "hello\n" {
		t.Fatalf("run: %+v %v", v, err)
	}
	if w := svc.Waits(); len(w) != 1 || w[0] != 1500*time.Millisecond {
		t.Fatalf("waits %v", w)
	}
	v, err = c.Run(ctx, job.Request{Type: job.TypeLua, Code: "stays"}, time.Second)
	if err != nil || v.Status != job.StatusPending || v.ResultView != nil {
		t.Fatalf("run a job that does not end: %+v %v", v, err)
	}
	v, err = c.Run(ctx, job.Request{Type: job.TypeLua, Code: "return 1"}, 0)
	if err != nil || v.Status != job.StatusPending || len(svc.Waits()) != 2 {
		t.Fatalf("run without a wait: %+v %v (waits %v)", v, err, svc.Waits())
	}
	_, err = c.Run(ctx, job.Request{Type: "cobol", Code: "x"}, time.Second)
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Field != "job_type" || len(svc.Waits()) != 2 {
		t.Fatalf("run cobol: %v", err)
	}
}
