package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/zerverless/zerverless/internal/api/apitest"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// openRoutes are the only routes that need no token: they act for no
// tenant. A new route is guarded unless it is added here on purpose.
var openRoutes = []string{
	"GET /health",
	"GET /ws/volunteer",
	"GET /api/build-contexts/{id}/archive",
	"GET /volunteer/",
	"GET /dashboard/",
	"GET /api/openapi.json",
	// Authenticated by the stream key of a worker session, not a token.
	"GET /ws/streams",
}

// closedAPI is the API with the real token service: no open policy.
func closedAPI(t *testing.T) (platform *server, fns *functions, svc *apitest.Service, d apitest.Deps) {
	t.Helper()
	svc = apitest.NewService()
	d = apitest.NewDeps(t, svc)
	adm := apitest.Admission(t, svc, d, d.Auth)
	cfg := DefaultConfig()
	cfg.Volunteer = http.NotFoundHandler()
	cfg.Dashboard = http.NotFoundHandler()
	cfg.Streams = refuseStreams{}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("zerverless_up 1\n")) })
	h, err := New(cfg, adm, svc, nil, metrics)
	if err != nil {
		t.Fatal(err)
	}
	fh, err := NewFunctions(cfg, DefaultFunctionsConfig(), adm, nil, h)
	if err != nil {
		t.Fatal(err)
	}
	return h.(*server), fh.(*functions), svc, d
}

// refuseStreams knows no stream key.
type refuseStreams struct{}

func (refuseStreams) AcceptStreams(key, remote string) (func(net.Conn), error) {
	return nil, errors.New("unknown stream key")
}

// concrete returns a path that pattern matches.
func concrete(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	r := strings.NewReplacer("{id}", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"{namespace}", "alice", "{path...}", "fn/x")
	return method, r.Replace(path)
}

// TestNoOpenMode: the API cannot be built without admission, and
// admission cannot be built without its token service (or any other
// dependency); there is no configuration in which a request is admitted
// without a principal.
func TestNoOpenMode(t *testing.T) {
	svc := apitest.NewService()
	if _, err := New(DefaultConfig(), nil, svc, nil, nil); err == nil {
		t.Fatal("New without admission built an API")
	}
	if _, err := NewFunctions(DefaultConfig(), DefaultFunctionsConfig(), nil, nil, http.NotFoundHandler()); err == nil {
		t.Fatal("NewFunctions without admission built a handler")
	}
	if _, err := New(DefaultConfig(), apitest.OpenAdmission(t, svc), nil, nil, nil); err == nil {
		t.Fatal("New without the worker service built an API")
	}
}

// TestEveryRouteRefusesWithoutAToken walks every route that the API and
// the function routes register, with the real token service: without a
// token each answers 401, with a join token 403, and nothing reaches the
// services. Only the routes in openRoutes are open.
func TestEveryRouteRefusesWithoutAToken(t *testing.T) {
	platform, fns, svc, d := closedAPI(t)
	_, join, err := d.Auth.Create(context.Background(), job.TokenWorker, "", "laptop")
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	routes := append(slices.Clone(platform.routes), fns.routes...)
	if len(routes) < 23 {
		t.Fatalf("only %d routes registered", len(routes))
	}
	for _, rt := range routes {
		if rt.open {
			open = append(open, rt.pattern)
			continue
		}
		method, path := concrete(rt.pattern)
		for token, want := range map[string]int{"": 401, "zv_" + strings.Repeat("A", 43): 401, join: 403} {
			req := httptest.NewRequest(method, path, strings.NewReader(`{"job_type":"lua","code":"return 1","runtime":"lua"}`))
			req.Header.Set("Content-Type", "application/json")
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			rec := httptest.NewRecorder()
			fns.ServeHTTP(rec, req)
			if rec.Code != want {
				t.Errorf("%s (token %v): %d %s, want %d", rt.pattern, token != "", rec.Code, rec.Body, want)
			}
		}
	}
	slices.Sort(open)
	want := slices.Sorted(slices.Values(openRoutes))
	if !slices.Equal(open, want) {
		t.Errorf("open routes %v, want exactly %v", open, want)
	}
	if n := len(svc.Submitted()); n != 0 {
		t.Errorf("%d jobs reached the orchestrator", n)
	}
	if list, _ := d.Store.ListDeployments(context.Background(), store.DeploymentFilter{}); len(list) != 0 {
		t.Errorf("%d functions were deployed", len(list))
	}
}

// TestUnknownQueryParameter: a query parameter that the route does not
// read is refused with 400 naming it, on every route, instead of being
// ignored.
func TestUnknownQueryParameter(t *testing.T) {
	h, _, _ := newTestAPI(t, DefaultConfig())
	for _, c := range []struct{ method, path, field string }{
		{"GET", "/api/jobs?job_type=docker", "job_type"},
		{"GET", "/api/jobs?status=pending&namespce=alice", "namespce"},
		{"GET", "/api/jobs/x?wiat=5", "wiat"},
		{"GET", "/api/workers?namespaces=bob", "namespaces"},
		{"GET", "/health?verbose=1", "verbose"},
		{"GET", "/stats?x", "x"},
		{"POST", "/api/jobs?dry_run=1", "dry_run"},
	} {
		res := do(t, h, c.method, c.path, strings.NewReader(`{"job_type":"lua","code":"return 1"}`))
		if res.status != 400 || res.json(t)["field"] != c.field {
			t.Errorf("%s %s: %d %s, want 400 naming %s", c.method, c.path, res.status, res.body, c.field)
		}
	}
	if res := do(t, h, "GET", "/api/jobs?status=pending&limit=5", nil); res.status != 200 {
		t.Errorf("known parameters: %d %s", res.status, res.body)
	}
}

// TestConfigValidate: nonsense is refused by New, naming the setting.
func TestConfigValidate(t *testing.T) {
	svc := apitest.NewService()
	adm := apitest.OpenAdmission(t, svc)
	for name, set := range map[string]func(*Config){
		"MaxBodyBytes":    func(c *Config) { c.MaxBodyBytes = -1 },
		"MaxWait":         func(c *Config) { c.MaxWait = -1 },
		"WorkerReadLimit": func(c *Config) { c.WorkerReadLimit = 100 },
		"MaxContextBytes": func(c *Config) { c.MaxContextBytes = -5 },
		"MaxMaxAttempts":  func(c *Config) { c.RequestLimits.MaxMaxAttempts = 0 },
		"MaxTimeout":      func(c *Config) { c.RequestLimits.DefaultTimeout = 2 * c.RequestLimits.MaxTimeout },
	} {
		cfg := DefaultConfig()
		set(&cfg)
		if _, err := New(cfg, adm, svc, nil, nil); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want an error naming it", name, err)
		}
	}
	if _, err := New(Config{}, adm, svc, nil, nil); err != nil {
		t.Errorf("the zero config takes the defaults: %v", err)
	}
}
