package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/web"
)

// dashboardTitle is the title of the dashboard page.
const dashboardTitle = "Zerverless dashboard"

// screenshot saves the tab as name.png in the test's artifact directory
// (kept with go test -artifacts).
func screenshot(t *testing.T, tb *tab, name string) {
	t.Helper()
	png, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(t.ArtifactDir(), name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

// waitText waits until the element with id exists and its text holds want.
func waitText(tb *tab, id, want string) {
	tb.t.Helper()
	eventually(tb.t, 20*time.Second, func() error {
		got := eval[string](tb, fmt.Sprintf(`(function () { var e = document.getElementById(%q); return e ? e.textContent : "<no #%s>"; })()`, id, id))
		if !strings.Contains(got, want) {
			return fmt.Errorf("#%s holds %q, want %q (page error %q)", id, got, want, eval[string](tb, `(document.getElementById("view-error") || {}).textContent || ""`))
		}
		return nil
	})
}

// go opens the dashboard's view at fragment (#/jobs, ...) in tb.
func (tb *tab) goTo(fragment string) {
	tb.t.Helper()
	eval[bool](tb, fmt.Sprintf(`location.hash = %q; true`, fragment))
}

// TestDashboardBrowser signs in to the dashboard in headless Chromium by
// pasting the admin token, watches a submitted job go from pending (no
// worker runs it yet) to completed with its output, opens the worker that
// ran it and a deployment, and then signs in with a namespace token given
// in the URL fragment: the token leaves the address at once, and the
// namespace's jobs and functions are all it sees.
func TestDashboardBrowser(t *testing.T) {
	srv, c := startServer(t, testServerConfig(t, t.TempDir(), 0))
	ctx := context.Background()
	alice, err := c.CreateToken(ctx, api.TokenRequest{Namespace: "alice", Name: "alice laptop"})
	if err != nil {
		t.Fatal(err)
	}
	mustDeploy(t, c, "alice/hello", job.DeployRequest{Runtime: job.TypeLua,
		Code: "function handle(req)\n  return {body = ENV.GREETING}\nend", Env: map[string]string{"GREETING": "hej"}})
	mustDeploy(t, c, "bob/secret", job.DeployRequest{Runtime: job.TypeLua, Code: "function handle(req) return 'bob' end"})
	bobJob := submitJob(t, c, job.Request{Type: job.TypeLua, Namespace: "bob", Code: `print("bob's output") return 1`})
	aliceJob := submitJob(t, c, job.Request{Type: job.TypeLua, Namespace: "alice",
		Code: `print("hello from " .. INPUT.who) return {answer = 42}`, Input: json.RawMessage(`{"who":"the dashboard"}`)})

	browser := startBrowser(t)
	outer := t
	tb := openPage(t, browser, srv.URL()+"/dashboard/", dashboardTitle)
	t.Run("sign in", func(t *testing.T) {
		tb := tb.on(t)
		if err := chromedp.Do(tb.ctx, chromedp.SendKeys(chromedp.ID("token-input"), srv.AdminToken()),
			chromedp.Click(chromedp.ID("sign-in-button"))); err != nil {
			t.Fatal(err)
		}
		waitText(tb, "who", "admin")
		waitText(tb, "jobs", aliceJob)
		if got := eval[string](tb, `sessionStorage.getItem("zerverless.dashboard.token")`); got != srv.AdminToken() {
			t.Errorf("sessionStorage holds %q, want the admin token", got)
		}
		if eval[bool](tb, `document.querySelector('a[data-view="tokens"]').hidden`) {
			t.Error("an admin does not see the tokens view")
		}
	})

	t.Run("a job from pending to completed", func(t *testing.T) {
		tb := tb.on(t)
		tb.goTo("#/job/" + aliceJob)
		waitText(tb, "job-status", "pending")
		waitText(tb, "job-head", "no connected worker")
		screenshot(t, tb, "job-pending")
		startWorker(outer, srv.WorkerURL(), "dash-worker", job.TypeLua)
		waitText(tb, "job-status", "completed")
		waitText(tb, "job-output", "hello from the dashboard")
		waitText(tb, "job-value", `"answer": 42`)
		waitText(tb, "job-log", "hello from the dashboard")
		screenshot(t, tb, "job-completed")
		tb.goTo("#/jobs")
		waitText(tb, "jobs", "completed")
		screenshot(t, tb, "jobs")
	})

	t.Run("a worker", func(t *testing.T) {
		tb := tb.on(t)
		tb.goTo("#/workers")
		waitText(tb, "workers", "dash-worker")
		if err := chromedp.Do(tb.ctx, chromedp.Click(chromedp.CSS(`#workers a[href^="#/worker/"]`))); err != nil {
			t.Fatal(err)
		}
		waitText(tb, "worker-name", "dash-worker")
		waitText(tb, "worker", "lua")
		waitText(tb, "worker-load", "/ 2")
		screenshot(t, tb, "worker")
	})

	t.Run("a deployment", func(t *testing.T) {
		tb := tb.on(t)
		tb.goTo("#/deployments")
		waitText(tb, "deployments", "bob/secret")
		if err := chromedp.Do(tb.ctx, chromedp.Click(chromedp.CSS(`#deployments a[href="#/deployment/alice/hello"]`))); err != nil {
			t.Fatal(err)
		}
		waitText(tb, "deployment-name", "alice/hello")
		waitText(tb, "deployment-code", "ENV.GREETING")
		waitText(tb, "deployment", "GREETING")
		if strings.Contains(tb.text("deployment"), "hej") {
			t.Error("the environment's values are shown before they are asked for")
		}
		screenshot(t, tb, "deployment")
	})

	t.Run("admin views", func(t *testing.T) {
		tb := tb.on(t)
		tb.goTo("#/tokens")
		waitText(tb, "tokens", "alice laptop")
		screenshot(t, tb, "tokens")
		tb.goTo("#/namespaces")
		waitText(tb, "namespaces", "policy of its own")
	})

	t.Run("a namespace token sees only its namespace", func(t *testing.T) {
		ns := openPage(t, browser, srv.URL()+"/dashboard/#token="+alice.Token, dashboardTitle)
		waitText(ns, "who", "namespace token")
		if h := eval[string](ns, "location.href"); strings.Contains(h, alice.Token) {
			t.Errorf("the token stays in the address: %s", h)
		}
		waitText(ns, "jobs", aliceJob)
		if jobs := ns.text("jobs"); strings.Contains(jobs, bobJob) || strings.Contains(jobs, "bob") {
			t.Errorf("alice's dashboard lists bob's jobs: %s", jobs)
		}
		for _, v := range []string{"tokens", "namespaces"} {
			if !eval[bool](ns, fmt.Sprintf(`document.querySelector('a[data-view=%q]').hidden`, v)) {
				t.Errorf("a namespace token is shown the %s view", v)
			}
		}
		ns.goTo("#/job/" + bobJob)
		waitText(ns, "view-error", "not found")
		if strings.Contains(ns.text("view"), "bob's output") {
			t.Error("alice's dashboard shows bob's job")
		}
		ns.goTo("#/jobs?namespace=bob")
		waitText(ns, "view-error", "namespace alice")
		ns.goTo("#/deployments")
		waitText(ns, "deployments", "alice/hello")
		if strings.Contains(ns.text("deployments"), "bob/secret") {
			t.Error("alice's dashboard lists bob's functions")
		}
		ns.goTo("#/workers")
		waitText(ns, "workers", "dash-worker")
		screenshot(t, ns, "namespace-workers")
	})

	// A link with another token does not silently replace the tab's own.
	t.Run("a link with another token asks first", func(t *testing.T) {
		tb := tb.on(t)
		tb.navigate(srv.URL()+"/dashboard/#token="+alice.Token, dashboardTitle)
		eventually(t, 10*time.Second, func() error {
			if eval[bool](tb, `document.getElementById("confirm-token").hidden`) {
				return fmt.Errorf("no confirmation shown")
			}
			return nil
		})
		if err := chromedp.Do(tb.ctx, chromedp.Click(chromedp.ID("confirm-keep"))); err != nil {
			t.Fatal(err)
		}
		waitText(tb, "who", "admin")
		if got := eval[string](tb, `sessionStorage.getItem("zerverless.dashboard.token")`); got != srv.AdminToken() {
			t.Errorf("the tab's token was replaced by the link's")
		}
	})
}

// TestDashboardHeaders: the page carries a strict policy of its own (a
// nonce for its one script and style sheet, new at every answer, no
// 'self' or inline script, no framing), and with a functions domain it is
// not served on a namespace's host.
func TestDashboardHeaders(t *testing.T) {
	srv, _, _ := startFunctionServer(t, t.TempDir(), func(cfg *ServerConfig) { cfg.Functions.Domain = "fn.test" })
	a := call(t, "GET", srv.URL()+"/dashboard/", nil, nil)
	b := call(t, "GET", srv.URL()+"/dashboard/", nil, nil)
	csp := a.header.Get("Content-Security-Policy")
	if a.status != 200 || !strings.Contains(string(a.body), "<title>"+dashboardTitle) {
		t.Fatalf("/dashboard/: %d %.200s", a.status, a.body)
	}
	for _, want := range []string{"frame-ancestors 'none'", "script-src 'nonce-", "default-src 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	for _, bad := range []string{"'self' 'unsafe", "unsafe-inline", "unsafe-eval", "script-src 'self'", "*"} {
		if strings.Contains(csp, bad) {
			t.Errorf("Content-Security-Policy %q holds %q", csp, bad)
		}
	}
	if csp == b.header.Get("Content-Security-Policy") {
		t.Error("two answers have the same nonce")
	}
	for h, want := range map[string]string{"X-Frame-Options": "DENY", "Cross-Origin-Opener-Policy": "same-origin",
		"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"} {
		if got := a.header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	for _, host := range []string{"mallory.fn.test", "fn.test"} {
		req, err := http.NewRequest("GET", srv.URL()+"/dashboard/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := fnHTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("%s/dashboard/: %d, want 404: nothing of the platform answers on a functions host", host, resp.StatusCode)
		}
	}
}

// stealPageHTML is a tenant's page that tries to read the dashboard's
// token from the shared origin: the storage of its own tab, a frame of the
// dashboard, a window it opens on the dashboard, and the API.
const stealPageHTML = `<!doctype html><title>stealing</title><pre id=out></pre>
<script>
(async function () {
  var KEY = "zerverless.dashboard.token", r = {};
  function attempt(name, f) { try { r[name] = String(f()); } catch (e) { r[name] = "error:" + e.name; } }
  // Tries f for about two seconds (a frame or window loads meanwhile) and
  // keeps the first answer that is not an error.
  async function keepTrying(name, f) {
    for (var i = 0; i < 20; i++) {
      attempt(name, f);
      if (r[name].indexOf("error:") !== 0 && r[name] !== "null" && r[name] !== "undefined") return;
      await new Promise(function (ok) { setTimeout(ok, 100); });
    }
  }
  attempt("origin", function () { return self.origin; });
  attempt("session", function () { return sessionStorage.getItem(KEY); });
  attempt("local", function () { return JSON.stringify(Object.assign({}, localStorage)); });
  var f = document.createElement("iframe");
  f.src = "/dashboard/";
  document.body.appendChild(f);
  await keepTrying("frame", function () { return f.contentWindow.sessionStorage.getItem(KEY); });
  await keepTrying("frame_doc", function () { return f.contentDocument.body.textContent; });
  var w = window.open("/dashboard/", "dash");
  await keepTrying("popup", function () { return w.sessionStorage.getItem(KEY); });
  await keepTrying("popup_doc", function () { return w.document.documentElement.outerHTML; });
  try { var res = await fetch("/api/tokens"); r.api = res.status + " " + (await res.text()); } catch (e) { r.api = "error:" + e.name; }
  try { var res2 = await fetch("/dashboard/"); r.fetch_page = String(res2.status); } catch (e) { r.fetch_page = "error:" + e.name; }
  document.getElementById("out").textContent = JSON.stringify(r);
  document.title = "done";
})();
</script>`

// TestDashboardTokenOutOfFunctionsReach signs in to the dashboard on the
// shared origin, then has the same tab open a tenant's function page
// there that tries every way it has to the token: sessionStorage of the
// tab (the origin's own, holding the token), a frame and a window of the
// dashboard, the API. Each fails: the page is sandboxed in an opaque
// origin, the dashboard refuses to be framed and runs in no sandbox; and
// back on the dashboard the tab is still signed in, so the token was
// there all along.
func TestDashboardTokenOutOfFunctionsReach(t *testing.T) {
	srv, c, _ := startFunctionServer(t, t.TempDir(), nil)
	page, _ := json.Marshal(stealPageHTML)
	mustDeploy(t, c, "mallory/steal", job.DeployRequest{Runtime: job.TypeJS, Code: `var PAGE = ` + string(page) + `;
function handle(req) { return {status: 200, headers: {"Content-Type": "text/html; charset=utf-8"}, body: PAGE}; }`})
	browser := startBrowser(t)
	tb := openPage(t, browser, srv.URL()+"/dashboard/#token="+srv.AdminToken(), dashboardTitle)
	waitText(tb, "who", "admin")
	token := srv.AdminToken()

	tb.navigate(srv.URL()+"/mallory/steal", "done")
	var r map[string]string
	if out := tb.text("out"); json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("the page's report: %q", out)
	}
	t.Logf("the tenant's page got: %v", r)
	if r["origin"] != "null" {
		t.Errorf("the page runs in origin %q, want an opaque one", r["origin"])
	}
	for k, v := range r {
		if strings.Contains(v, token) {
			t.Errorf("%s: the tenant's page read the token: %q", k, v)
		}
	}
	for _, k := range []string{"session", "local", "frame", "frame_doc", "popup", "popup_doc"} {
		if v := r[k]; !strings.HasPrefix(v, "error:") && v != "null" {
			t.Errorf("%s: %q, want refused", k, v)
		}
	}
	if !strings.HasPrefix(r["api"], "401") && !strings.HasPrefix(r["api"], "error:") {
		t.Errorf("the API answered the page: %q", r["api"])
	}

	tb.navigate(srv.URL()+"/dashboard/", dashboardTitle)
	waitText(tb, "who", "admin")
}

// TestDashboardFollowsLiveLog runs the dashboard against an API that
// streams a job's log as the logs route does (GET
// /api/jobs/{id}/logs?follow=true, Server-Sent Events stdout, stderr and
// status): each chunk shows in the job's live log as it is sent, while
// the job still runs, and the end of the stream shows the job ended. The
// token goes only in the Authorization header, never in a URL.
func TestDashboardFollowsLiveLog(t *testing.T) {
	const token = "zv_dashboard-test-token"
	next := make(chan struct{})
	var mu sync.Mutex
	status := "running"
	var urls []string
	mux := http.NewServeMux()
	mux.Handle("GET /dashboard/", web.Dashboard())
	authed := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			urls = append(urls, r.URL.String())
			mu.Unlock()
			if r.Header.Get("Authorization") != "Bearer "+token {
				w.WriteHeader(401)
				fmt.Fprint(w, `{"error":"no token"}`)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			h(w, r)
		}
	}
	mux.HandleFunc("GET /info", authed(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"version":"test"}`) }))
	mux.HandleFunc("GET /api/tokens", authed(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"tokens":[]}`) }))
	mux.HandleFunc("GET /api/jobs/j1", authed(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		st := status
		mu.Unlock()
		v := map[string]any{"id": "j1", "namespace": "default", "job_type": "python", "status": st, "attempt": 1, "max_attempts": 3,
			"created_at": "2026-12-01T12:00:00Z", "timeout_seconds": 30}
		if st == "completed" {
			v["output"], v["stderr"], v["exit_code"], v["duration_ms"] = "line 1\nline 2\n", "warning\n", 0, 5000
		}
		json.NewEncoder(w).Encode(v)
	}))
	mux.HandleFunc("GET /api/jobs/j1/logs", authed(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("follow") != "true" {
			w.WriteHeader(400)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		flush := func(s string) {
			fmt.Fprint(w, s)
			w.(http.Flusher).Flush()
		}
		flush("event: status\nid: 1\ndata: {\"status\":\"running\",\"attempt\":1}\n\n")
		flush("event: stdout\nid: 2\ndata: line 1\ndata: \n\n")
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		flush("event: stdout\nid: 3\ndata: line 2\ndata: \n\n")
		flush("event: stderr\nid: 4\ndata: warning\ndata: \n\n")
		mu.Lock()
		status = "completed"
		mu.Unlock()
		flush("event: status\nid: 5\ndata: {\"status\":\"completed\"}\n\n")
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	browser := startBrowser(t)
	tb := openPage(t, browser, srv.URL+"/dashboard/#token="+token, dashboardTitle)
	waitText(tb, "who", "admin")
	tb.goTo("#/job/j1")
	waitText(tb, "job-log", "line 1")
	waitText(tb, "job-status", "running")
	if log := tb.text("job-log"); strings.Contains(log, "line 2") {
		t.Fatalf("the log shows what was not sent yet: %q", log)
	}
	screenshot(t, tb, "live-log")
	close(next)
	waitText(tb, "job-log", "line 2")
	waitText(tb, "job-log", "warning")
	waitText(tb, "job-status", "completed")
	waitText(tb, "job-output", "line 2")
	if n := eval[int](tb, `document.querySelectorAll("#job-log .stderr").length`); n != 1 {
		t.Errorf("%d stderr chunks in the log, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, u := range urls {
		if strings.Contains(u, token) {
			t.Errorf("the token is in a URL: %s", u)
		}
	}
}
