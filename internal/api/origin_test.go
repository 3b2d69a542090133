package api

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestFunctionRoute(t *testing.T) {
	shared := &functions{}
	domain := &functions{fcfg: FunctionsConfig{Domain: "fn.example.com"}}
	both := &functions{fcfg: FunctionsConfig{Domain: "fn.example.com", SharedOrigin: true}}
	for _, tc := range []struct {
		name    string
		f       *functions
		host    string
		path    string
		fn      bool
		ns      string // "" shared origin
		urlPath string
	}{
		{"shared", shared, "example.com", "/alice/hello/x", true, "", "/alice/hello/x"},
		{"shared, cleaned", shared, "example.com", "/alice/a/../hello/", true, "", "/alice/hello/"},
		{"shared, platform page", shared, "example.com", "/volunteer/", false, "", ""},
		{"shared, one segment", shared, "example.com", "/alice", false, "", ""},
		{"shared, any host", shared, "alice.fn.example.com", "/alice/hello", true, "", "/alice/hello"},
		{"namespace host", domain, "alice.fn.example.com", "/hello", true, "alice", "/alice/hello"},
		{"namespace host with port", domain, "alice.fn.example.com:8000", "/hello/x", true, "alice", "/alice/hello/x"},
		{"namespace host, any case, trailing dot", domain, "ALICE.Fn.Example.Com.", "/hello", true, "alice", "/alice/hello"},
		{"namespace host, platform paths are its own", domain, "alice.fn.example.com", "/volunteer/", true, "alice", "/alice/volunteer/"},
		{"namespace host, root", domain, "alice.fn.example.com", "/", true, "alice", "/alice/"},
		{"the domain itself", domain, "fn.example.com", "/alice/hello", true, "", ""},
		{"two labels", domain, "a.alice.fn.example.com", "/hello", true, "", ""},
		{"reserved label", domain, "api.fn.example.com", "/hello", true, "", ""},
		{"invalid label", domain, "al_ice.fn.example.com", "/hello", true, "", ""},
		{"look-alike host", domain, "alicefn.example.com", "/alice/hello", false, "", ""},
		{"platform host, shared off", domain, "example.com", "/alice/hello", false, "", ""},
		{"platform host, shared on", both, "example.com", "/alice/hello", true, "", "/alice/hello"},
		{"namespace host, shared on", both, "alice.fn.example.com", "/hello", true, "alice", "/alice/hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://x"+tc.path, nil)
			r.Host = tc.host
			o, urlPath, fn := tc.f.route(r)
			if fn != tc.fn || o.namespace != tc.ns || urlPath != tc.urlPath {
				t.Errorf("route(%s %s) = %q %q %v, want %q %q %v", tc.host, tc.path, o.namespace, urlPath, fn, tc.ns, tc.urlPath, tc.fn)
			}
		})
	}
}

func TestSharedOriginHeaders(t *testing.T) {
	fn := map[string][]string{
		"Content-Type":            {"text/html"},
		"X-Greeting":              {"hej"},
		"x-lower":                 {"1"},
		"Cache-Control":           {"no-store"},
		"Location":                {"/alice/next"},
		"Content-Security-Policy": {"default-src 'self'"},
		// Each of these acts beyond the answer: dropped.
		"Set-Cookie":                        {"a=1; Path=/"},
		"Service-Worker-Allowed":            {"/"},
		"Origin-Agent-Cluster":              {"?0"},
		"Link":                              {"</x.js>; rel=preload"},
		"Use-As-Dictionary":                 {`match="/*"`},
		"Accept-Ch":                         {"Sec-CH-UA"},
		"Critical-Ch":                       {"Sec-CH-UA"},
		"Nel":                               {"{}"},
		"Report-To":                         {"{}"},
		"Reporting-Endpoints":               {"x=\"https://evil\""},
		"Set-Login":                         {"logged-in"},
		"Speculation-Rules":                 {"\"/rules.json\""},
		"X-Permitted-Cross-Domain-Policies": {"all"},
		"Made-Up-Tomorrow":                  {"x"},
	}
	h := http.Header{}
	functionOrigin{}.writeHeaders(h, fn)
	want := http.Header{
		"Content-Type":            {"text/html"},
		"X-Greeting":              {"hej"},
		"X-Lower":                 {"1"},
		"Cache-Control":           {"no-store"},
		"Location":                {"/alice/next"},
		"Content-Security-Policy": {"default-src 'self'", sharedOriginCSP},
	}
	if len(h) != len(want) {
		t.Errorf("headers %v, want %v", h, want)
	}
	for k, v := range want {
		if !slices.Equal(h[k], v) {
			t.Errorf("%s = %q, want %q", k, h[k], v)
		}
	}

	// On a namespace's own origin everything passes, cookies host-only.
	h = http.Header{}
	functionOrigin{namespace: "alice"}.writeHeaders(h, map[string][]string{
		"Set-Cookie":             {"a=1; Path=/; Domain=fn.example.com; Secure", "b=2;domain=.example.com", "c=3; HttpOnly; DOMAIN = x"},
		"Service-Worker-Allowed": {"/"},
	})
	if got := h["Set-Cookie"]; !slices.Equal(got, []string{"a=1; Path=/; Secure", "b=2", "c=3; HttpOnly"}) {
		t.Errorf("Set-Cookie on a namespace origin: %q", got)
	}
	if h.Get("Service-Worker-Allowed") != "/" || h.Get("Content-Security-Policy") != "" {
		t.Errorf("a namespace origin is restricted: %v", h)
	}
}

func TestFunctionsConfigValidate(t *testing.T) {
	for _, d := range []string{"", "fn.example.com", "fn.test", "a-b.c1.example"} {
		if err := (FunctionsConfig{Domain: d}).Validate(); err != nil {
			t.Errorf("domain %q: %v", d, err)
		}
	}
	for _, d := range []string{"com", "Fn.example.com", ".fn.example.com", "fn.example.com.", "fn.example.com:8000",
		"http://fn.example.com", "*.fn.example.com", "fn..example.com", "-a.example.com"} {
		if err := (FunctionsConfig{Domain: d}).Validate(); err == nil {
			t.Errorf("domain %q accepted", d)
		}
	}
}

// FuzzHostOnlyCookies checks that no Set-Cookie value a function writes
// keeps a Domain attribute, however it is spelled.
func FuzzHostOnlyCookies(f *testing.F) {
	for _, s := range []string{"a=1; Domain=x", "a=1;domain=.x;Path=/", "a=\"x;Domain=y\"", "a=1; \tDOMAIN\t= x ; Secure", "a=1;;Domain"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		out := hostOnlyCookies([]string{v})
		if len(out) != 1 {
			t.Fatalf("%d values out of one", len(out))
		}
		parts := strings.Split(out[0], ";")
		for _, attr := range parts[1:] {
			name, _, _ := strings.Cut(attr, "=")
			if strings.EqualFold(strings.TrimSpace(name), "domain") {
				t.Fatalf("%q kept a Domain attribute: %q", v, out[0])
			}
		}
		if !strings.HasPrefix(v, parts[0]) {
			t.Fatalf("%q lost its name and value: %q", v, out[0])
		}
	})
}
