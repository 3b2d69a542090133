package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api/apitest"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

func do(t *testing.T, h http.Handler, method, path string, body io.Reader) response {
	t.Helper()
	req := httptest.NewRequest(method, path, body)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return response{rec.Code, rec.Header(), rec.Body.Bytes()}
}

func newTestAPI(t *testing.T, cfg Config) (http.Handler, *apitest.Service, *bytes.Buffer) {
	t.Helper()
	svc := apitest.NewService()
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "zerverless_up 1\n")
	})
	return openAPI(t, cfg, svc, log, metrics), svc, logs
}

// openAPI is the API over svc under the explicit open test policy
// (apitest.OpenAuth: every caller is an admin).
func openAPI(t testing.TB, cfg Config, svc *apitest.Service, log *slog.Logger, metrics http.Handler) http.Handler {
	t.Helper()
	h, err := New(cfg, apitest.OpenAdmission(t, svc), svc, log, metrics)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

const wasmHeader = "\x00asm\x01\x00\x00\x00"

func TestSubmitMalformed(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 4096
	h, svc, _ := newTestAPI(t, cfg)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name   string
		body   string
		status int
		field  string
	}{
		{"empty body", ``, 400, ""},
		{"malformed JSON", `{"job_type": "lua", "code": `, 400, ""},
		{"syntax error", `{"job_type": lua}`, 400, ""},
		{"not an object", `[1, 2]`, 400, ""},
		{"trailing data", `{"job_type":"lua","code":"return 1"} {}`, 400, ""},
		{"wrong type string", `{"job_type":"lua","code":42}`, 400, "code"},
		{"wrong type number", `{"job_type":"lua","code":"x","timeout_seconds":"10"}`, 400, "timeout_seconds"},
		{"wrong type nested", `{"job_type":"docker","docker_image":"alpine","resources":{"memory_mb":"lots"}}`, 400, "resources.memory_mb"},
		{"wrong type array", `{"job_type":"docker","docker_image":"alpine","docker_command":"echo hi"}`, 400, "docker_command"},
		{"unknown field", `{"job_type":"lua","code":"x","colour":"red"}`, 400, "colour"},
		{"unknown nested field", `{"job_type":"docker","docker_image":"alpine","resources":{"gpus":1}}`, 400, "resources.gpus"},
		{"wasm not a string", `{"job_type":"wasm","wasm":[0,97,115,109]}`, 400, "wasm"},
		{"negative timeout", `{"job_type":"lua","code":"x","timeout_seconds":-1}`, 400, "timeout_seconds"},
		{"zero timeout", `{"job_type":"lua","code":"x","timeout_seconds":0}`, 400, "timeout_seconds"},
		{"huge timeout", `{"job_type":"lua","code":"x","timeout_seconds":1e400}`, 400, "timeout_seconds"},
		{"input beyond float64", `{"job_type":"lua","code":"x","input_data":1e999999999}`, 400, "input_data"},
		{"nested input beyond float64", `{"job_type":"lua","code":"x","input_data":{"a":[0,-1e309]}}`, 400, "input_data.a[1]"},
		{"invalid base64", `{"job_type":"wasm","wasm":"not base64!!"}`, 400, "wasm"},
		{"non-wasm module", `{"job_type":"wasm","wasm":"` + b64("#!/bin/sh\necho hi") + `"}`, 400, "wasm"},
		{"missing module", `{"job_type":"wasm"}`, 400, "wasm"},
		{"unknown job_type", `{"job_type":"cobol","code":"x"}`, 400, "job_type"},
		{"missing job_type", `{"code":"x"}`, 400, "job_type"},
		{"missing code", `{"job_type":"lua"}`, 400, "code"},
		{"bad namespace", `{"job_type":"lua","code":"x","namespace":"Bad NS"}`, 400, "namespace"},
		{"negative attempts", `{"job_type":"lua","code":"x","max_attempts":-2}`, 400, "max_attempts"},
		{"privileged", `{"job_type":"docker","docker_image":"alpine","privileged":true}`, 400, "privileged"},
		{"bind mount", `{"job_type":"docker","docker_image":"alpine","docker_volumes":{"/etc":"/x"}}`, 400, "docker_volumes"},
		{"null body", `null`, 400, "job_type"},
		{"oversized", `{"job_type":"lua","code":"` + strings.Repeat("x", 5000) + `"}`, 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, h, "POST", "/api/jobs", strings.NewReader(tt.body))
			if res.status != tt.status {
				t.Fatalf("status %d, want %d: %s", res.status, tt.status, res.body)
			}
			if ct := res.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			m := res.json(t)
			if msg, _ := m["error"].(string); msg == "" {
				t.Errorf("no error message: %s", res.body)
			}
			field, present := m["field"]
			if tt.field == "" && present {
				t.Errorf("field %v, want none", field)
			}
			if tt.field != "" && field != tt.field {
				t.Errorf("field %v, want %q (%s)", field, tt.field, res.body)
			}
		})
	}
	if n := len(svc.Submitted()); n != 0 {
		t.Fatalf("Submit called %d times with malformed requests", n)
	}
	// The server is healthy: a valid request still succeeds.
	res := do(t, h, "POST", "/api/jobs", strings.NewReader(`{"job_type":"lua","code":"return 1"}`))
	if res.status != http.StatusCreated {
		t.Fatalf("valid submit after malformed ones: %d %s", res.status, res.body)
	}
	if len(svc.Submitted()) != 1 {
		t.Fatalf("Submit called %d times, want 1", len(svc.Submitted()))
	}
}

// An oversized body without a Content-Length is cut off while it is read.
func TestSubmitOversizedChunked(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 1 << 10
	h, svc, _ := newTestAPI(t, cfg)
	body := io.MultiReader(strings.NewReader(`{"job_type":"lua","code":"`), strings.NewReader(strings.Repeat("x", 1<<20)))
	req := httptest.NewRequest("POST", "/api/jobs", body)
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413: %s", rec.Code, rec.Body)
	}
	if len(svc.Submitted()) != 0 {
		t.Fatal("Submit called")
	}
}

func TestSubmitAndGet(t *testing.T) {
	h, svc, _ := newTestAPI(t, DefaultConfig())
	wasm := base64.StdEncoding.EncodeToString([]byte(wasmHeader + "rest"))
	// Content-Type is not checked: a JSON body is enough.
	req := httptest.NewRequest("POST", "/api/jobs", strings.NewReader(`{"job_type":"wasm","wasm":"`+wasm+`","input_data":{"k":1},"timeout_seconds":5}`))
	req.Header.Set("Content-Type", "text/plain")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		t.Fatalf("submit: %d %s", rec.Code, rec.Body)
	}
	var v View
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if v.ID == "" || v.Status != job.StatusPending || v.Type != job.TypeWasm || v.Namespace != "default" ||
		v.Attempt != 1 || v.MaxAttempts != 3 || v.TimeoutSeconds != 5 {
		t.Fatalf("view %+v", v)
	}
	if loc := rec.Header().Get("Location"); loc != "/api/jobs/"+v.ID {
		t.Errorf("Location %q", loc)
	}
	for _, key := range []string{"wasm", "code", "spec", "input_data", "output", "exit_code"} {
		if bytes.Contains(rec.Body.Bytes(), []byte(`"`+key+`":`)) {
			t.Errorf("pending job view has %q: %s", key, rec.Body)
		}
	}

	res := do(t, h, "GET", "/api/jobs/"+v.ID+"?include=spec", nil)
	if res.status != 200 {
		t.Fatalf("get: %d %s", res.status, res.body)
	}
	var withSpec View
	json.Unmarshal(res.body, &withSpec)
	if withSpec.Spec == nil || !job.IsWasmModule(withSpec.Spec.Wasm) || string(withSpec.Spec.Input) != `{"k":1}` {
		t.Fatalf("include=spec: %s", res.body)
	}
	if got := svc.Submitted()[0].Wasm; !job.IsWasmModule(got) {
		t.Fatalf("submitted module %q", got)
	}
}

func TestWait(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxWait = 10 * time.Second
	h, svc, _ := newTestAPI(t, cfg)
	svc.OnWait = func(j *job.Job) {
		j.Status = job.StatusCompleted
		j.FinishedAt = time.Now()
		j.Result = &job.Result{Status: job.StatusCompleted, Output: "hi\n", Result: json.RawMessage(`{"n":1}`), DurationMS: 3}
	}
	res := do(t, h, "POST", "/api/jobs", strings.NewReader(`{"job_type":"lua","code":"print('hi') return {n=1}"}`))
	id := res.json(t)["id"].(string)

	for _, tt := range []struct {
		wait string
		want time.Duration
	}{
		{"30s", 10 * time.Second},
		{"2", 2 * time.Second},
		{"0.5", 500 * time.Millisecond},
		{"1m", 10 * time.Second},
		{"1e9", 10 * time.Second},
		{"250ms", 250 * time.Millisecond},
	} {
		res := do(t, h, "GET", "/api/jobs/"+id+"?wait="+tt.wait, nil)
		if res.status != 200 {
			t.Fatalf("wait=%s: %d %s", tt.wait, res.status, res.body)
		}
		if got := svc.Waits()[len(svc.Waits())-1]; got != tt.want {
			t.Errorf("wait=%s reached Wait as %v, want %v", tt.wait, got, tt.want)
		}
	}
	m := res.json(t)
	_ = m
	res = do(t, h, "GET", "/api/jobs/"+id, nil)
	m = res.json(t)
	if m["status"] != "completed" || m["output"] != "hi\n" || m["stderr"] != "" || m["exit_code"] != 0.0 ||
		m["duration_ms"] != 3.0 || m["truncated"] != false {
		t.Fatalf("result fields are not flattened: %s", res.body)
	}
	if r, _ := json.Marshal(m["result"]); string(r) != `{"n":1}` {
		t.Fatalf("result %s", r)
	}
	if _, ok := m["finished_at"]; !ok {
		t.Fatalf("no finished_at: %s", res.body)
	}

	for _, bad := range []string{"-1", "-5s", "soon", "NaN", "Inf", "1x"} {
		n := len(svc.Waits())
		res := do(t, h, "GET", "/api/jobs/"+id+"?wait="+bad, nil)
		if res.status != 400 || res.json(t)["field"] != "wait" {
			t.Errorf("wait=%s: %d %s", bad, res.status, res.body)
		}
		if len(svc.Waits()) != n {
			t.Errorf("wait=%s reached Wait", bad)
		}
	}
	res = do(t, h, "GET", "/api/jobs/"+id+"?include=code", nil)
	if res.status != 400 || res.json(t)["field"] != "include" {
		t.Errorf("include=code: %d %s", res.status, res.body)
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	h, _, _ := newTestAPI(t, DefaultConfig())
	for _, path := range []string{"/api/jobs/nope", "/api/jobs/nope?wait=1s"} {
		res := do(t, h, "GET", path, nil)
		if res.status != 404 || !strings.Contains(res.json(t)["error"].(string), "nope") {
			t.Errorf("GET %s: %d %s", path, res.status, res.body)
		}
	}
	res := do(t, h, "DELETE", "/api/jobs/nope", nil)
	if res.status != 404 {
		t.Errorf("DELETE unknown: %d %s", res.status, res.body)
	}
	res = do(t, h, "GET", "/no/such/route", nil)
	if res.status != 404 || res.json(t)["error"] == "" || res.header.Get("Content-Type") != "application/json" {
		t.Errorf("unknown route: %d %s", res.status, res.body)
	}
	res = do(t, h, "PUT", "/api/jobs", nil)
	if res.status != 405 || res.json(t)["error"] == "" {
		t.Fatalf("wrong method: %d %s", res.status, res.body)
	}
	if allow := res.header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Errorf("Allow %q", allow)
	}
	res = do(t, h, "POST", "/health", nil)
	if res.status != 405 || res.header.Get("Allow") == "" {
		t.Errorf("POST /health: %d %v", res.status, res.header)
	}
}

func TestCancel(t *testing.T) {
	h, svc, _ := newTestAPI(t, DefaultConfig())
	res := do(t, h, "POST", "/api/jobs", strings.NewReader(`{"job_type":"js","code":"1+1"}`))
	id := res.json(t)["id"].(string)
	res = do(t, h, "DELETE", "/api/jobs/"+id, nil)
	if res.status != 200 || res.json(t)["status"] != "canceled" {
		t.Fatalf("cancel: %d %s", res.status, res.body)
	}
	res = do(t, h, "DELETE", "/api/jobs/"+id, nil)
	m := res.json(t)
	if res.status != 409 || m["job_status"] != "canceled" || !strings.Contains(m["error"].(string), "canceled") {
		t.Fatalf("cancel twice: %d %s", res.status, res.body)
	}
	_ = svc
}

func TestList(t *testing.T) {
	h, svc, _ := newTestAPI(t, DefaultConfig())
	for _, ns := range []string{"a", "b", "a"} {
		res := do(t, h, "POST", "/api/jobs", strings.NewReader(`{"job_type":"lua","code":"return 1","namespace":"`+ns+`"}`))
		if res.status != 201 {
			t.Fatal(res.status, string(res.body))
		}
	}
	res := do(t, h, "GET", "/api/jobs?namespace=a&status=pending&limit=1", nil)
	var list JobList
	if err := json.Unmarshal(res.body, &list); err != nil || res.status != 200 {
		t.Fatalf("list: %d %s", res.status, res.body)
	}
	if len(list.Jobs) != 1 || list.Jobs[0].ID != "job-3" || list.NextCursor == "" {
		t.Fatalf("list %+v", list)
	}
	f := svc.Filters()[len(svc.Filters())-1]
	if f.Namespace != "a" || f.Status != job.StatusPending || f.Limit != 1 {
		t.Fatalf("filter %+v", f)
	}
	res = do(t, h, "GET", "/api/jobs?status=completed", nil)
	if res.status != 200 || !bytes.Contains(res.body, []byte(`"jobs":[]`)) || !bytes.Contains(res.body, []byte(`"next_cursor":""`)) {
		t.Fatalf("empty list: %s", res.body)
	}

	// Items are summaries: sizes of the result's parts, not their content.
	svc.Finish("job-1", job.Result{Status: job.StatusCompleted, Output: strings.Repeat("o", 5000), Result: json.RawMessage(`"vvvv"`),
		Error: strings.Repeat("e", 5000), Files: map[string][]byte{"f": make([]byte, 300)}})
	res = do(t, h, "GET", "/api/jobs?status=completed", nil)
	if err := json.Unmarshal(res.body, &list); err != nil || len(list.Jobs) != 1 {
		t.Fatalf("list: %d %s", res.status, res.body)
	}
	if s := list.Jobs[0]; s.ResultSummary == nil || s.OutputBytes != 5000 || s.ResultBytes != 6 || s.Files != 1 || s.FilesBytes != 300 ||
		len(s.Error) > job.SummaryTextBytes || bytes.Contains(res.body, []byte("ooooo")) || bytes.Contains(res.body, []byte(`"output"`)) {
		t.Fatalf("listed summary: %s", res.body)
	}

	n := len(svc.Filters())
	for _, tt := range []struct{ query, field string }{
		{"status=done", "status"},
		{"namespace=Not_Valid", "namespace"},
		{"limit=0", "limit"},
		{"limit=-3", "limit"},
		{"limit=ten", "limit"},
		{"limit=100000", "limit"},
		{"cursor=" + strings.Repeat("c", 2000), "cursor"},
		{"include=everything", "include"},
		{"include=spec", "include"},
		{"job_type=docker", "job_type"},
	} {
		res := do(t, h, "GET", "/api/jobs?"+tt.query, nil)
		if res.status != 400 || res.json(t)["field"] != tt.field {
			t.Errorf("%s: %d %s", tt.query, res.status, res.body)
		}
	}
	if len(svc.Filters()) != n {
		t.Fatal("invalid list parameters reached the service")
	}
}

func TestErrorCodes(t *testing.T) {
	for code, status := range map[job.Code]int{
		job.CodeInvalid: 400, job.CodeUnauthorized: 401, job.CodeForbidden: 403, job.CodeNotFound: 404,
		job.CodeConflict: 409, job.CodeTooLarge: 413, job.CodeTooMany: 429, job.CodeUnavailable: 503,
		job.CodeTimeout: 504, job.CodeInternal: 500,
	} {
		if got := StatusCode(code); got != status {
			t.Errorf("StatusCode(%s) = %d, want %d", code, got, status)
		}
		if got := CodeForStatus(status); got != code {
			t.Errorf("CodeForStatus(%d) = %s, want %s", status, got, code)
		}
		h, svc, _ := newTestAPI(t, DefaultConfig())
		svc.Fail = &job.Error{Code: code, Field: "f", Message: "m"}
		res := do(t, h, "POST", "/api/jobs", strings.NewReader(`{"job_type":"lua","code":"x"}`))
		if res.status != status {
			t.Errorf("%s: status %d, want %d", code, res.status, status)
		}
		if status == 503 || status == 429 {
			if res.header.Get("Retry-After") == "" {
				t.Errorf("%s: no Retry-After", code)
			}
		}
	}
}

func TestInternalErrorIsLoggedOnce(t *testing.T) {
	h, svc, logs := newTestAPI(t, DefaultConfig())
	svc.Fail = errors.New("disk on fire at /var/secret")
	res := do(t, h, "GET", "/api/jobs", nil)
	m := res.json(t)
	if res.status != 500 || m["error"] != "internal error" || strings.Contains(string(res.body), "secret") {
		t.Fatalf("internal error: %d %s", res.status, res.body)
	}
	if n := strings.Count(logs.String(), "disk on fire"); n != 1 {
		t.Fatalf("internal error logged %d times:\n%s", n, logs)
	}
}

func TestPanicIsRecovered(t *testing.T) {
	h, svc, logs := newTestAPI(t, DefaultConfig())
	svc.Lock(func() { svc.PanicStats = true })
	res := do(t, h, "GET", "/stats", nil)
	if res.status != 500 || res.json(t)["error"] != "internal error" {
		t.Fatalf("panic: %d %s", res.status, res.body)
	}
	if !strings.Contains(logs.String(), "stats exploded") {
		t.Fatalf("panic not logged:\n%s", logs)
	}
	svc.Lock(func() { svc.PanicStats = false })
	if res := do(t, h, "GET", "/stats", nil); res.status != 200 {
		t.Fatalf("after panic: %d", res.status)
	}
}

func TestInfoEndpoints(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Version = "1.2.3"
	cfg.StartTime = time.Now().Add(-time.Minute)
	h, svc, _ := newTestAPI(t, cfg)
	svc.WorkerList = []job.WorkerInfo{{ID: "w1", Capabilities: job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 2}}}

	res := do(t, h, "GET", "/health", nil)
	if res.status != 200 || res.json(t)["status"] != "ok" {
		t.Fatalf("health: %d %s", res.status, res.body)
	}
	res = do(t, h, "GET", "/info", nil)
	var info Info
	json.Unmarshal(res.body, &info)
	if res.status != 200 || info.Version != "1.2.3" || info.UptimeSeconds < 59 || info.ProtocolVersion != protocol.Version ||
		info.GoVersion == "" || info.StartedAt.IsZero() {
		t.Fatalf("info: %d %s", res.status, res.body)
	}
	res = do(t, h, "GET", "/api/workers", nil)
	if res.status != 200 || !bytes.Contains(res.body, []byte(`"running_jobs":[]`)) || !bytes.Contains(res.body, []byte(`"id":"w1"`)) {
		t.Fatalf("workers: %d %s", res.status, res.body)
	}
	res = do(t, h, "GET", "/stats", nil)
	if res.status != 200 || res.json(t)["workers_connected"] != 1.0 {
		t.Fatalf("stats: %d %s", res.status, res.body)
	}
	res = do(t, h, "GET", "/metrics", nil)
	if res.status != 200 || !strings.Contains(string(res.body), "zerverless_up") {
		t.Fatalf("metrics: %d %s", res.status, res.body)
	}
	// Without a metrics handler the route is absent.
	h2 := openAPI(t, DefaultConfig(), svc, nil, nil)
	if res := do(t, h2, "GET", "/metrics", nil); res.status != 404 {
		t.Fatalf("metrics without handler: %d", res.status)
	}
}

func TestVolunteerWebSocket(t *testing.T) {
	h, svc, _ := newTestAPI(t, DefaultConfig())
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := protocol.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/volunteer", nil, protocol.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if err := conn.Write(ctx, protocol.Message{Type: protocol.TypeRegister, Version: protocol.Version, Name: "n1",
		Capabilities: &job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1}}); err != nil {
		t.Fatal(err)
	}
	m, err := conn.Read(ctx)
	if err != nil || m.Type != protocol.TypeRegistered || m.WorkerID != "w-n1" {
		t.Fatalf("registered: %+v %v", m, err)
	}
	if remote := <-svc.Served; remote == "" {
		t.Fatal("no remote address")
	}
	// A plain GET without an upgrade is refused by the WebSocket layer.
	resp, err := http.Get(srv.URL + "/ws/volunteer")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Fatalf("plain GET on /ws/volunteer: %d", resp.StatusCode)
	}
}

// A client that goes away mid-request is not an internal error to log.
func TestClientGoneIsNotLogged(t *testing.T) {
	h, svc, logs := newTestAPI(t, DefaultConfig())
	svc.Fail = context.Canceled
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, "GET", "/api/jobs/job-1?wait=10s", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code == http.StatusInternalServerError || strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("status %d, logs:\n%s", rec.Code, logs)
	}
}
