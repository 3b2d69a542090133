package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

// TestVolunteerServesThePage checks the page, its assets and the headers
// that confine them.
func TestVolunteerServesThePage(t *testing.T) {
	h := Volunteer()
	for _, tc := range []struct {
		path, ctype, csp string
	}{
		{"/volunteer/", "text/html", pageCSP},
		{"/volunteer/index.html", "text/html", pageCSP},
		{"/volunteer/app.js", "text/javascript", pageCSP},
		{"/volunteer/style.css", "text/css", pageCSP},
		{"/volunteer/js-worker.js", "text/javascript", jsWorkerCSP},
		{"/volunteer/wasm-worker.js", "text/javascript", wasmWorkerCSP},
		{"/volunteer/timer-worker.js", "text/javascript", timerWorkerCSP},
	} {
		rec := get(t, h, tc.path)
		if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
			t.Errorf("%s: %d, %d bytes", tc.path, rec.Code, rec.Body.Len())
			continue
		}
		hd := rec.Header()
		if !strings.HasPrefix(hd.Get("Content-Type"), tc.ctype) {
			t.Errorf("%s: Content-Type %q", tc.path, hd.Get("Content-Type"))
		}
		if hd.Get("Content-Security-Policy") != tc.csp {
			t.Errorf("%s: Content-Security-Policy %q, want %q", tc.path, hd.Get("Content-Security-Policy"), tc.csp)
		}
		for k, want := range map[string]string{
			"Cross-Origin-Opener-Policy":   "same-origin",
			"Cross-Origin-Embedder-Policy": "require-corp",
			"X-Content-Type-Options":       "nosniff",
		} {
			if hd.Get(k) != want {
				t.Errorf("%s: %s %q, want %q", tc.path, k, hd.Get(k), want)
			}
		}
	}
}

// TestWorkerPoliciesAllowNoRequest checks that the job workers' policies
// name no source a request could go to.
func TestWorkerPoliciesAllowNoRequest(t *testing.T) {
	for name, csp := range workerCSP {
		if !strings.HasPrefix(csp, "default-src 'none'") {
			t.Errorf("%s: policy %q does not start from default-src 'none'", name, csp)
		}
		for _, d := range []string{"connect-src", "worker-src", "child-src", "'self'", "http", "ws:", "data:", "blob:", "*"} {
			if strings.Contains(csp, d) {
				t.Errorf("%s: policy %q allows %s", name, csp, d)
			}
		}
	}
}

func TestVolunteerRefusesOtherPaths(t *testing.T) {
	h := Volunteer()
	for _, p := range []string{"/volunteer/missing.js", "/volunteer/../web.go", "/volunteer/a/b", "/other/", "/volunteer/web.go"} {
		if rec := get(t, h, p); rec.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, rec.Code)
		}
	}
}

// TestDashboardServesThePage: the page's script and style sheet carry the
// nonce of its policy, a new one at every answer; the assets are served
// with a policy that allows nothing, and nothing else is served.
func TestDashboardServesThePage(t *testing.T) {
	h := Dashboard()
	a, b := get(t, h, "/dashboard/"), get(t, h, "/dashboard/")
	csp := a.Header().Get("Content-Security-Policy")
	_, nonce, ok := strings.Cut(csp, "script-src 'nonce-")
	nonce, _, _ = strings.Cut(nonce, "'")
	if a.Code != 200 || !ok || nonce == "" {
		t.Fatalf("/dashboard/: %d, policy %q", a.Code, csp)
	}
	if body := a.Body.String(); strings.Count(body, `nonce="`+nonce+`"`) != 2 || strings.Contains(body, nonceMark) {
		t.Errorf("the page does not carry its nonce on its script and style sheet:\n%s", body)
	}
	if b.Header().Get("Content-Security-Policy") == csp {
		t.Error("two answers share a nonce")
	}
	for _, p := range []string{"/dashboard/app.js", "/dashboard/style.css"} {
		rec := get(t, h, p)
		if rec.Code != 200 || rec.Header().Get("Content-Security-Policy") != assetCSP || rec.Header().Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: %d %v", p, rec.Code, rec.Header())
		}
	}
	for _, p := range []string{"/dashboard/nope.js", "/dashboard/a/app.js", "/volunteer/app.js"} {
		if rec := get(t, h, p); rec.Code != 404 {
			t.Errorf("%s: %d, want 404", p, rec.Code)
		}
	}
}
