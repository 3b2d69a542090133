package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/zerverless/zerverless/internal/api/apitest"
	"github.com/zerverless/zerverless/internal/job"
)

// FuzzSubmit drives POST /api/jobs end to end with arbitrary bodies: it
// never answers 5xx or panics, every refusal is a JSON error, and the
// Service sees only requests that validate.
func FuzzSubmit(f *testing.F) {
	for _, seed := range []string{
		`{"job_type":"lua","code":"return 1"}`,
		`{"job_type":"js","code":"1+1","input_data":{"a":[1,2,{"b":null}]},"timeout_seconds":2.5,"namespace":"team-a","max_attempts":2}`,
		`{"job_type":"wasm","wasm":"AGFzbQEAAAA=","args":["a","b"],"memory_mb":64}`,
		`{"job_type":"wasm","wasm":"AGFzbQEAAA"}`,
		`{"job_type":"docker","docker_image":"alpine:3.20","docker_command":["echo","hi"],"docker_env":{"A":"1"},"resources":{"memory_mb":64,"cpus":0.5,"pids":64}}`,
		`{"job_type":"docker","docker_image":"x@sha256:` + strings.Repeat("a", 64) + `","docker_volumes":{"scratch":"/data"}}`,
		`{"job_type":"lua","code":"x","timeout_seconds":-1}`,
		`{"job_type":"lua","code":"x","unknown":1}`,
		`{"job_type":1}`,
		`{"job_type":"lua","code":"x"}{"job_type":"lua"}`,
		`[]`, `null`, `"str"`, `{`, ``, "\xff\xfe",
		`{"job_type":"lua","code":"x","resources":{}}`,
		`{"job_type":"docker","docker_image":"a","privileged":false,"network_mode":"none"}`,
	} {
		f.Add([]byte(seed))
	}
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 1 << 16
	// The store and the other components behind admission are opened
	// once; the job service is fresh each time, which keeps memory flat
	// over long runs.
	deps := apitest.NewDeps(f, apitest.NewService())
	f.Fuzz(func(t *testing.T, body []byte) {
		svc := apitest.NewService()
		h, err := New(cfg, apitest.Admission(t, svc, deps, apitest.OpenAuth{Service: deps.Auth}), svc, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		before := 0
		req := httptest.NewRequest("POST", "/api/jobs", strings.NewReader(string(body)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		after := len(svc.Submitted())
		switch {
		case rec.Code == http.StatusCreated:
			if after != before+1 {
				t.Fatalf("201 but Submit called %d times", after-before)
			}
			var v View
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || v.ID == "" {
				t.Fatalf("201 with body %q: %v", rec.Body, err)
			}
		case rec.Code >= 400 && rec.Code < 500:
			if after != before {
				t.Fatalf("%d but Submit was called", rec.Code)
			}
			var e ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%d with body %q: %v", rec.Code, rec.Body, err)
			}
		default:
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body)
		}
	})
}

// The decoder's answer and the handler's agree: a body the decoder accepts
// is submitted, one it refuses is a 400 naming the same field.
func TestSubmitMatchesDecoder(t *testing.T) {
	h, _, _ := newTestAPI(t, DefaultConfig())
	for _, body := range []string{
		`{"job_type":"lua","code":"return 1"}`,
		`{"job_type":"lua","code":"x","docker_image":"alpine"}`,
		`{"job_type":"docker","docker_image":"bad image"}`,
	} {
		_, derr := job.DecodeRequest([]byte(body), job.DefaultRequestLimits())
		res := do(t, h, "POST", "/api/jobs", strings.NewReader(body))
		if derr == nil && res.status != 201 || derr != nil && (res.status != 400 || res.json(t)["field"] != job.ErrorField(derr)) {
			t.Errorf("%s: decoder %v, handler %d %s", body, derr, res.status, res.body)
		}
	}
}
