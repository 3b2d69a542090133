package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"

	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
)

// The functions of an attacker, as the attack on the shared origin was
// made: originSW answers a service worker script that takes over every page
// in its scope, with Service-Worker-Allowed: / so that it may be
// registered for the whole origin; originPage is a page that registers it
// with scope /, sets cookies for / and the parent domain (by Set-Cookie and
// from script), reads and writes localStorage, sessionStorage and
// IndexedDB, fetches its namespace's recording function and starts a
// worker, and shows what worked as JSON in #out (title "done" when
// finished). It also tries to loosen the platform's sandbox with a
// Content-Security-Policy of its own and sends origin-wide headers.
// originRec answers the Cookie header it got, with ENV.WHO.
const (
	originSW = `function handle(req) {
  return {status: 200, headers: {"Content-Type": "text/javascript", "Service-Worker-Allowed": "/"}, body:
    "self.addEventListener('install', function (e) { self.skipWaiting(); });\n" +
    "self.addEventListener('activate', function (e) { e.waitUntil(self.clients.claim()); });\n" +
    "self.addEventListener('fetch', function (e) { e.respondWith(new Response('<title>pwned</title><p id=pwned>taken over by mallory</p>', " +
    "{headers: {'Content-Type': 'text/html'}})); });\n"};
}`
	originPageHTML = `<!doctype html><title>mallory</title><pre id=out></pre>
<script>
(async function () {
  var r = {};
  function attempt(name, f) { try { r[name] = String(f()); } catch (e) { r[name] = "error:" + e.name; } }
  attempt("origin", function () { return self.origin; });
  attempt("cookie", function () {
    document.cookie = "jscookie=1; path=/";
    return document.cookie;
  });
  attempt("local", function () {
    var o = {};
    for (var i = 0; i < localStorage.length; i++) { var k = localStorage.key(i); o[k] = localStorage.getItem(k); }
    localStorage.setItem("written-by", location.host);
    return JSON.stringify(o);
  });
  attempt("session", function () { return sessionStorage.length; });
  attempt("idb", function () { indexedDB.open("x"); return "opened"; });
  try { var res = await fetch("rec"); r.own_rec = await res.text(); } catch (e) { r.own_rec = "error:" + e.name; }
  try { new Worker("sw"); r.worker = "started"; } catch (e) { r.worker = "error:" + e.name; }
  try {
    var reg = await navigator.serviceWorker.register("sw", {scope: "/"});
    await navigator.serviceWorker.ready;
    r.sw = "registered:" + reg.scope;
  } catch (e) { r.sw = "error:" + e.name; }
  document.getElementById("out").textContent = JSON.stringify(r);
  document.title = "done";
})();
</script>`
	originRec = `function handle(req) {
  return {status: 200, headers: {"Content-Type": "text/html"},
    body: "<title>" + ENV.WHO + "</title><pre id=rec>" + JSON.stringify({who: ENV.WHO, cookie: req.headers.cookie || ""}) + "</pre>"};
}`
)

// originPage is the attacker's page function: originPageHTML with the
// cookies and headers that try to reach beyond it.
func originPage() string {
	page, _ := json.Marshal(originPageHTML)
	return `var PAGE = ` + string(page) + `;
function handle(req) {
  var host = req.headers.host.replace(/:\d+$/, "");
  var parent = /^[0-9.]+$/.test(host) ? host : host.slice(host.indexOf(".") + 1);
  return {status: 200, headers: {
    "Content-Type": "text/html; charset=utf-8",
    "Set-Cookie": ["stolen=1; Path=/", "dom=1; Path=/; Domain=" + parent],
    "Content-Security-Policy": "sandbox allow-scripts allow-same-origin",
    "Service-Worker-Allowed": "/",
    "Origin-Agent-Cluster": "?0",
    "Link": "<sw>; rel=serviceworker",
    "Accept-CH": "Sec-CH-UA-Full-Version-List",
    "NEL": "{\"report_to\":\"x\",\"max_age\":86400}",
    "X-Frame-Options": "DENY"
  }, body: PAGE};
}`
}

// deployOriginAttack deploys the attacker's functions in namespace mallory
// and a recording function in mallory and in bob.
func deployOriginAttack(t *testing.T, c *client.Client) {
	t.Helper()
	mustDeploy(t, c, "mallory/sw", job.DeployRequest{Runtime: job.TypeJS, Code: originSW})
	mustDeploy(t, c, "mallory/page", job.DeployRequest{Runtime: job.TypeJS, Code: originPage()})
	mustDeploy(t, c, "mallory/rec", job.DeployRequest{Runtime: job.TypeJS, Code: originRec, Env: map[string]string{"WHO": "mallory-real"}})
	mustDeploy(t, c, "bob/rec", job.DeployRequest{Runtime: job.TypeJS, Code: originRec, Env: map[string]string{"WHO": "bob-real"}})
	mustDeploy(t, c, "bob/page", job.DeployRequest{Runtime: job.TypeJS, Code: originPage()})
}

// openPage opens url in a new tab of browser and waits until its title is
// title (the page has finished what it does).
func openPage(t *testing.T, browser context.Context, url, title string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	tb := &tab{t: t, ctx: ctx, close: cancel}
	tb.navigate(url, title)
	return tb
}

// on returns the tab for use in the (sub)test t.
func (tb *tab) on(t *testing.T) *tab {
	c := *tb
	c.t = t
	return &c
}

// navigate loads url in the tab and waits until its title is title.
func (tb *tab) navigate(url, title string) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, chromedp.Navigate(url)); err != nil {
		tb.t.Fatalf("open %s: %v", url, err)
	}
	eventually(tb.t, 20*time.Second, func() error {
		if got := eval[string](tb, "document.title"); got != title {
			return fmt.Errorf("%s: title %q, want %q", url, got, title)
		}
		return nil
	})
}

// attackResult is what the attacker's page reports.
type attackResult struct {
	Origin, Cookie, Local, Session, IDB, Worker, SW string
	OwnRec                                          string `json:"own_rec"`
}

func (tb *tab) attackResult() attackResult {
	tb.t.Helper()
	var r attackResult
	out := tb.text("out")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		tb.t.Fatalf("page result %q: %v", out, err)
	}
	return r
}

// recorded is what a recording function saw, as the tab shows it.
func (tb *tab) recorded() (who, cookie string) {
	tb.t.Helper()
	var r struct{ Who, Cookie string }
	out := tb.text("rec")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		tb.t.Fatalf("recording %q: %v", out, err)
	}
	return r.Who, r.Cookie
}

// browserCookies lists every cookie the browser holds.
func browserCookies(t *testing.T, tb *tab) []*network.Cookie {
	t.Helper()
	res, err := chromedp.Run(tb.ctx, func(ctx context.Context, target *chromedp.Target) (storage.GetCookiesResult, error) {
		return cdp.Call(ctx, target, storage.GetCookies, storage.GetCookiesParams{})
	})
	if err != nil {
		t.Fatalf("list cookies: %v", err)
	}
	return res.Cookies
}

// TestFunctionsSharedOriginBrowser replays, in headless Chromium, the
// takeover of the shared origin: namespace mallory's function answers a
// service worker script with Service-Worker-Allowed: /, its page registers
// it with scope / and sets cookies for Path=/. On the shared origin every
// step fails: the page runs sandboxed in an opaque origin (no service
// worker, no worker, no cookies, no localStorage, sessionStorage or
// IndexedDB of the platform's origin), even a platform page cannot
// register the script (the worker script fetch is refused), Set-Cookie and
// the other origin-wide headers are dropped; afterwards /volunteer/, bob's
// and mallory's own functions still answer with their real content, and
// no function gets a cookie, not even one the platform's page holds.
func TestFunctionsSharedOriginBrowser(t *testing.T) {
	srv, c, _ := startFunctionServer(t, t.TempDir(), nil)
	deployOriginAttack(t, c)
	base := srv.URL()

	t.Run("headers", func(t *testing.T) {
		r := call(t, "GET", base+"/mallory/page", nil, nil)
		if r.status != 200 {
			t.Fatalf("page: %d %s", r.status, r.body)
		}
		for _, h := range []string{"Set-Cookie", "Service-Worker-Allowed", "Origin-Agent-Cluster", "Link", "Accept-Ch", "Nel"} {
			if v, ok := r.header[h]; ok {
				t.Errorf("the page's %s reached the browser: %q", h, v)
			}
		}
		if got := r.header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("X-Frame-Options %q: a header about the answer alone must pass", got)
		}
		csp := r.header.Values("Content-Security-Policy")
		if !slices.Contains(csp, "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads") ||
			!slices.Contains(csp, "sandbox allow-scripts allow-same-origin") {
			t.Errorf("Content-Security-Policy %q: want the platform's sandbox beside the function's own", csp)
		}
		for _, h := range []map[string]string{{"Service-Worker": "script"}, {"Sec-Fetch-Dest": "serviceworker"},
			{"Sec-Fetch-Dest": "sharedworker"}, {"Sec-Fetch-Dest": "worker"}} {
			r := call(t, "GET", base+"/mallory/sw", h, nil)
			var e struct{ Error string }
			if json.Unmarshal(r.body, &e); r.status != 403 || e.Error == "" || r.header.Get("Clear-Site-Data") != `"storage"` {
				t.Errorf("worker script fetch %v: %d %v %s, want a JSON 403 that clears the origin's storage", h, r.status, r.header, r.body)
			}
		}
		// Errors the platform answers on a function's path are sandboxed too.
		if r := call(t, "GET", base+"/mallory/none", nil, nil); r.status != 404 ||
			!slices.Contains(r.header.Values("Content-Security-Policy"), "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads") {
			t.Errorf("404 on a function path: %d %v", r.status, r.header)
		}
		if r := call(t, "GET", base+"/bob/rec", map[string]string{"Cookie": "platform_session=s3cret"}, nil); !strings.Contains(string(r.body), `"cookie":""`) {
			t.Errorf("a caller's Cookie reached a function on the shared origin: %s", r.body)
		}
	})

	browser := startBrowser(t)
	// The platform's page keeps a setting in localStorage and a session
	// cookie (as a dashboard would).
	platform := openPage(t, browser, base+"/volunteer/", "Zerverless volunteer")
	eval[bool](platform, `localStorage.setItem("zerverless.secret", "platform-secret"); sessionStorage.setItem("s", "1");
		document.cookie = "platform_session=s3cret; path=/"; true`)

	t.Run("the attacker's page is sandboxed", func(t *testing.T) {
		m := openPage(t, browser, base+"/mallory/page", "done")
		r := m.attackResult()
		t.Logf("attacker's page on the shared origin: %+v", r)
		if r.Origin != "null" {
			t.Errorf("the page runs in origin %q, want an opaque one (null)", r.Origin)
		}
		for name, v := range map[string]string{"service worker": r.SW, "worker": r.Worker, "cookie": r.Cookie,
			"localStorage": r.Local, "sessionStorage": r.Session, "IndexedDB": r.IDB, "fetch with cookies": r.OwnRec} {
			if !strings.HasPrefix(v, "error:") {
				t.Errorf("%s on the shared origin: %q, want refused", name, v)
			}
		}
		if got := eval[string](platform.on(t), `localStorage.getItem("zerverless.secret") + " " + localStorage.getItem("written-by")`); got != "platform-secret null" {
			t.Errorf("the platform's localStorage: %q", got)
		}
	})

	// Should a platform page itself try (it never does, short of being
	// taken over), the script's fetch is refused and the origin's storage
	// cleared.
	t.Run("a platform page cannot register the script", func(t *testing.T) {
		platform := platform.on(t)
		for _, scope := range []string{"/", "/mallory/"} {
			got, err := chromedp.Run(platform.ctx, chromedp.Evaluate[string](fmt.Sprintf(
				`navigator.serviceWorker.register("/mallory/sw", {scope: %q}).then(function (r) { return "registered:" + r.scope; }, function (e) { return "error:" + e.name; })`, scope),
				chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, "error:") {
				t.Errorf("register /mallory/sw with scope %s from /volunteer/: %s", scope, got)
			}
		}
	})

	t.Run("the platform and other functions keep their content", func(t *testing.T) {
		platform := platform.on(t)
		platform.navigate(base+"/volunteer/", "Zerverless volunteer")
		if n := eval[int](platform, `document.querySelectorAll("#state").length`); n != 1 {
			t.Errorf("/volunteer/ is not the volunteer page")
		}
		regs, err := chromedp.Run(platform.ctx, chromedp.Evaluate[int](
			`navigator.serviceWorker.getRegistrations().then(function (rs) { return rs.length; })`, chromedp.EvalAwaitPromise))
		if err != nil || regs != 0 || eval[bool](platform, "navigator.serviceWorker.controller !== null") {
			t.Errorf("service workers on the platform's origin: %d registered (%v)", regs, err)
		}
		for _, fn := range []struct{ path, who string }{{"/bob/rec", "bob-real"}, {"/mallory/rec", "mallory-real"}} {
			platform.navigate(base+fn.path, fn.who)
			if who, cookie := platform.recorded(); who != fn.who || cookie != "" {
				t.Errorf("%s saw who %q cookie %q, want %s and no cookie", fn.path, who, cookie, fn.who)
			}
		}
		for _, ck := range browserCookies(t, platform) {
			if ck.Name != "platform_session" {
				t.Errorf("a function's cookie is in the browser: %s=%s (domain %s, path %s)", ck.Name, ck.Value, ck.Domain, ck.Path)
			}
		}
	})
}

// TestFunctionsDomainBrowser runs serve with a functions domain (fn.test,
// which Chromium resolves to the test server) and the same attack: there
// namespace mallory's page is on mallory.fn.test, its own origin, where it
// may set cookies (their Domain attribute removed, so they stay on
// mallory's host), use localStorage and register its service worker for /;
// that worker then answers every page of mallory's origin and nothing
// else: bob.fn.test is another origin, whose functions see none of
// mallory's cookies or storage, and the platform's host serves its own
// pages and no function at all.
func TestFunctionsDomainBrowser(t *testing.T) {
	srv, c, _ := startFunctionServer(t, t.TempDir(), func(cfg *ServerConfig) {
		cfg.Functions.Domain = "fn.test"
	})
	deployOriginAttack(t, c)
	base := srv.URL()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	mallory := "http://mallory.fn.test:" + port
	bob := "http://bob.fn.test:" + port

	t.Run("routing by host", func(t *testing.T) {
		d, err := c.Deployment(context.Background(), "mallory", "page")
		if err != nil || d.URL != "//mallory.fn.test:"+port+"/page" {
			t.Errorf("deployment URL %q (%v), want //mallory.fn.test:%s/page", d.URL, err, port)
		}
		get := func(host, path string) httpResult {
			req, err := http.NewRequest("GET", base+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = host
			resp, err := fnHTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			return httpResult{status: resp.StatusCode, header: resp.Header, body: b}
		}
		if r := get("bob.fn.test:"+port, "/rec"); r.status != 200 || !strings.Contains(string(r.body), "bob-real") {
			t.Errorf("bob.fn.test/rec: %d %s", r.status, r.body)
		}
		if r := get("BOB.fn.test.", "/rec"); r.status != 200 || !strings.Contains(string(r.body), "bob-real") {
			t.Errorf("BOB.fn.test./rec: %d %s", r.status, r.body)
		}
		r := get("bob.fn.test", "/page")
		if slices.Contains(r.header.Values("Content-Security-Policy"), "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads") ||
			r.header.Get("Service-Worker-Allowed") != "/" || r.header.Get("Origin-Agent-Cluster") != "?0" {
			t.Errorf("a function on its own origin is restricted: %v", r.header)
		}
		if got := r.header.Values("Set-Cookie"); !slices.Equal(got, []string{"stolen=1; Path=/", "dom=1; Path=/"}) {
			t.Errorf("Set-Cookie on its own origin: %q, want both cookies without their Domain", got)
		}
		if r := get("bob.fn.test", "/sw"); r.status != 404 {
			t.Errorf("bob.fn.test/sw: %d %s, want 404: mallory's function is not bob's", r.status, r.body)
		}
		if r := get("mallory.fn.test", "/sw"); r.status != 200 || r.header.Get("Service-Worker-Allowed") != "/" {
			t.Errorf("mallory.fn.test/sw: %d %v", r.status, r.header)
		}
		// Nothing of the platform answers under the functions domain.
		for _, host := range []string{"mallory.fn.test", "fn.test", "x.mallory.fn.test", "api.fn.test"} {
			for _, path := range []string{"/volunteer/", "/health", "/api/deploy", "/api/jobs", "/mallory/rec"} {
				if r := get(host, path); r.status != 404 || strings.Contains(string(r.body), "Zerverless volunteer") || strings.Contains(string(r.body), `"status":"ok"`) {
					t.Errorf("%s%s: %d %s, want a 404 of functions", host, path, r.status, r.body)
				}
			}
		}
		// And the platform's host serves no function.
		if r := call(t, "GET", base+"/bob/rec", nil, nil); r.status != 404 || strings.Contains(string(r.body), "bob-real") {
			t.Errorf("the platform's host answered /bob/rec: %d %s", r.status, r.body)
		}
		if r := call(t, "GET", base+"/health", nil, nil); r.status != 200 {
			t.Errorf("/health: %d", r.status)
		}
	})

	browser := startBrowser(t,
		chromedp.Flag("host-resolver-rules", "MAP *.fn.test 127.0.0.1"),
		// Service workers need a secure context: plain http counts as one
		// only on loopback names, so these origins are declared secure, as
		// https would make them.
		chromedp.Flag("unsafely-treat-insecure-origin-as-secure", mallory+","+bob),
	)
	platform := openPage(t, browser, base+"/volunteer/", "Zerverless volunteer")
	eval[bool](platform, `localStorage.setItem("zerverless.secret", "platform-secret"); true`)

	t.Run("a function owns its origin", func(t *testing.T) {
		m := openPage(t, browser, mallory+"/page", "done")
		r := m.attackResult()
		t.Logf("attacker's page on its own origin: %+v", r)
		if r.Origin != mallory || r.SW != "registered:"+mallory+"/" || r.Local != "{}" || r.Session != "0" {
			t.Errorf("on its own origin the page got %+v, want origin %s, a service worker for %s/, its own empty storage", r, mallory, mallory)
		}
		if !strings.Contains(r.Cookie, "stolen=1") || !strings.Contains(r.Cookie, "dom=1") || !strings.Contains(r.Cookie, "jscookie=1") ||
			!strings.Contains(r.OwnRec, "mallory-real") || !strings.Contains(r.OwnRec, "stolen=1") {
			t.Errorf("cookies on its own origin: document.cookie %q, its function saw %q", r.Cookie, r.OwnRec)
		}
		// Its service worker now answers every page of its origin.
		m.navigate(mallory+"/rec", "pwned")
		for _, ck := range browserCookies(t, m) {
			if ck.Domain != "mallory.fn.test" {
				t.Errorf("cookie %s=%s has domain %q, want only mallory.fn.test (host-only)", ck.Name, ck.Value, ck.Domain)
			}
		}
	})

	t.Run("another namespace is another origin", func(t *testing.T) {
		platform := platform.on(t)
		b := openPage(t, browser, bob+"/rec", "bob-real")
		if who, cookie := b.recorded(); who != "bob-real" || cookie != "" {
			t.Errorf("bob.fn.test/rec saw who %q cookie %q, want bob-real and no cookie", who, cookie)
		}
		b.navigate(bob+"/page", "done")
		if r := b.attackResult(); r.Origin != bob || r.Local != "{}" || strings.HasPrefix(r.SW, "registered") {
			t.Errorf("bob's page sees mallory's storage or service worker: %+v", r)
		}
		platform.navigate(base+"/volunteer/", "Zerverless volunteer")
		if got := eval[string](platform, `localStorage.getItem("zerverless.secret") + " " + localStorage.getItem("written-by")`); got != "platform-secret null" {
			t.Errorf("the platform's localStorage: %q", got)
		}
		if eval[bool](platform, "navigator.serviceWorker.controller !== null") {
			t.Error("a service worker controls the platform's page")
		}
	})
}

// TestFunctionsSharedOriginFreesTakenOverBrowser takes over the shared
// origin of a browser with a server that answers as functions did before
// the origin rules (the service worker script with Service-Worker-Allowed:
// /), then starts the real server on the same address: within a few
// visits the browser checks the worker's script for an update, is refused
// with Clear-Site-Data, drops the worker, and /volunteer/ is the real page
// again.
func TestFunctionsSharedOriginFreesTakenOverBrowser(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	base := "http://" + addr
	before := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/mallory/sw":
			w.Header().Set("Content-Type", "text/javascript")
			w.Header().Set("Service-Worker-Allowed", "/")
			fmt.Fprint(w, `self.addEventListener('install', function (e) { self.skipWaiting(); });
self.addEventListener('activate', function (e) { e.waitUntil(self.clients.claim()); });
self.addEventListener('fetch', function (e) { e.respondWith(new Response('<title>pwned</title>', {headers: {'Content-Type': 'text/html'}})); });`)
		case "/mallory/page":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, `<!doctype html><title>taking over</title><script>
navigator.serviceWorker.register("/mallory/sw", {scope: "/"}).then(function () { return navigator.serviceWorker.ready; })
  .then(function () { document.title = "taken over"; }, function (e) { document.title = "failed: " + e; });
</script>`)
		default:
			http.NotFound(w, r)
		}
	})}
	go before.Serve(ln)
	browser := startBrowser(t)
	tb := openPage(t, browser, base+"/mallory/page", "taken over")
	tb.navigate(base+"/volunteer/", "pwned")
	before.Close()

	cfg := testServerConfig(t, t.TempDir(), 2)
	cfg.Addr = addr
	_, c := startServer(t, cfg)
	mustDeploy(t, c, "mallory/sw", job.DeployRequest{Runtime: job.TypeJS, Code: originSW})
	// A visit: the browser checks the worker's script for an update soon
	// after (not at once: each navigation postpones the check).
	tb.navigate(base+"/volunteer/", "pwned")
	eventually(t, 30*time.Second, func() error {
		regs, err := chromedp.Run(tb.ctx, chromedp.Evaluate[int](
			`navigator.serviceWorker.getRegistrations().then(function (rs) { return rs.length; })`, chromedp.EvalAwaitPromise))
		if err != nil || regs != 0 {
			return fmt.Errorf("%d service workers still registered (%v)", regs, err)
		}
		return nil
	})
	tb.navigate(base+"/volunteer/", "Zerverless volunteer")
}

// TestFunctionsDomainKeepsSharedOrigin checks serve --functions-domain
// with --functions-shared-origin: a function answers on its namespace's
// host as it may there, and on the platform's host as the shared origin
// allows (sandboxed, no cookies).
func TestFunctionsDomainKeepsSharedOrigin(t *testing.T) {
	srv, c, _ := startFunctionServer(t, t.TempDir(), func(cfg *ServerConfig) {
		cfg.Functions.Domain = "fn.test"
		cfg.Functions.SharedOrigin = true
	})
	mustDeploy(t, c, "bob/page", job.DeployRequest{Runtime: job.TypeJS, Code: originPage()})
	shared := call(t, "GET", srv.URL()+"/bob/page", nil, nil)
	if shared.status != 200 || shared.header.Get("Set-Cookie") != "" ||
		!slices.Contains(shared.header.Values("Content-Security-Policy"), "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads") {
		t.Errorf("on the platform's host: %d %v", shared.status, shared.header)
	}
	req, err := http.NewRequest("GET", srv.URL()+"/page", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "bob.fn.test"
	resp, err := fnHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(resp.Header.Values("Set-Cookie")) != 2 || resp.Header.Get("Service-Worker-Allowed") != "/" {
		t.Errorf("on bob.fn.test: %d %v", resp.StatusCode, resp.Header)
	}
}
