package api

import (
	"net/http"
	"testing"

	"github.com/zerverless/zerverless/internal/api/apitest"
)

// TestVolunteerRoute checks that Config.Volunteer serves /volunteer/ and
// everything under it, and that without it the path is not routed.
func TestVolunteerRoute(t *testing.T) {
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("page " + r.URL.Path))
	})
	cfg := DefaultConfig()
	cfg.Volunteer = page
	h := openAPI(t, cfg, apitest.NewService(), nil, nil)
	for _, p := range []string{"/volunteer/", "/volunteer/app.js"} {
		if r := do(t, h, http.MethodGet, p, nil); r.status != http.StatusOK || string(r.body) != "page "+p {
			t.Errorf("GET %s: %d %q", p, r.status, r.body)
		}
	}
	if r := do(t, h, http.MethodGet, "/volunteer", nil); (r.status != http.StatusMovedPermanently && r.status != http.StatusTemporaryRedirect) || r.header.Get("Location") != "/volunteer/" {
		t.Errorf("GET /volunteer: %d Location %q, want a redirect to /volunteer/", r.status, r.header.Get("Location"))
	}
	if r := do(t, h, http.MethodPost, "/volunteer/", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /volunteer/: %d, want 405", r.status)
	}
	bare := openAPI(t, DefaultConfig(), apitest.NewService(), nil, nil)
	if r := do(t, bare, http.MethodGet, "/volunteer/", nil); r.status != http.StatusNotFound {
		t.Errorf("GET /volunteer/ without a page: %d, want 404", r.status)
	}
}
