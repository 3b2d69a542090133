package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
)

// Echo functions, one per runtime. Each answers 201 with an X-Runtime
// header and a JSON body that repeats what it received; at /bin it answers
// the request body's bytes reversed, as a binary body.
const (
	luaEcho = `function handle(req)
  if req.path == "/bin" then
    return {status = 200, headers = {["Content-Type"] = "application/octet-stream"}, body = base64.decode(req.body):reverse()}
  end
  return {status = 201, headers = {["X-Runtime"] = "lua"}, body = {method = req.method, path = req.path,
    a = req.query.a, all = req.query_all.a, header = req.headers["x-test"], body = req.body,
    b64 = req.body_base64, env = ENV.GREETING}}
end`
	jsEcho = `function handle(req) {
  if (req.path === "/bin") {
    var s = atob(req.body), u = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) u[s.length - 1 - i] = s.charCodeAt(i);
    return {status: 200, headers: {"Content-Type": "application/octet-stream"}, body: u};
  }
  return {status: 201, headers: {"X-Runtime": "js"}, body: {method: req.method, path: req.path,
    a: req.query.a, all: req.query_all.a, header: req.headers["x-test"], body: req.body,
    b64: req.body_base64, env: ENV.GREETING}};
}`
	pythonEcho = `import base64

def handle(req):
    if req["path"] == "/bin":
        return {"status": 200, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64decode(req["body"])[::-1]}
    return {"status": 201, "headers": {"X-Runtime": "python"}, "body": {
        "method": req["method"], "path": req["path"], "a": req["query"].get("a"),
        "all": req["query_all"].get("a"), "header": req["headers"].get("x-test"),
        "body": req["body"], "b64": req["body_base64"], "env": ENV.get("GREETING")}}
`
	wasmEchoFunctionSource = `package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"slices"
)

type request struct {
	Method     string              ` + "`json:\"method\"`" + `
	Path       string              ` + "`json:\"path\"`" + `
	Query      map[string]string   ` + "`json:\"query\"`" + `
	QueryAll   map[string][]string ` + "`json:\"query_all\"`" + `
	Headers    map[string]string   ` + "`json:\"headers\"`" + `
	Body       string              ` + "`json:\"body\"`" + `
	BodyBase64 bool                ` + "`json:\"body_base64\"`" + `
	Env        map[string]string   ` + "`json:\"env\"`" + `
}

func main() {
	in, _ := io.ReadAll(os.Stdin)
	var r request
	if err := json.Unmarshal(in, &r); err != nil {
		panic(err)
	}
	var out any
	if r.Path == "/bin" {
		b, _ := base64.StdEncoding.DecodeString(r.Body)
		slices.Reverse(b)
		out = map[string]any{"status": 200, "headers": map[string]string{"Content-Type": "application/octet-stream"},
			"body": base64.StdEncoding.EncodeToString(b), "body_base64": true}
	} else {
		out = map[string]any{"status": 201, "headers": map[string]string{"X-Runtime": "wasm"}, "body": map[string]any{
			"method": r.Method, "path": r.Path, "a": r.Query["a"], "all": r.QueryAll["a"],
			"header": r.Headers["x-test"], "body": r.Body, "b64": r.BodyBase64, "env": r.Env["GREETING"]}}
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
`
)

var (
	wasmFunctionOnce sync.Once
	wasmFunction     []byte
	wasmFunctionErr  error
)

// wasmEchoFunction builds the Wasm echo function from Go source, once.
func wasmEchoFunction(t *testing.T) []byte {
	t.Helper()
	wasmFunctionOnce.Do(func() {
		dir, err := os.MkdirTemp("", "zerverless-fn-")
		if err != nil {
			wasmFunctionErr = err
			return
		}
		defer os.RemoveAll(dir)
		src := filepath.Join(dir, "main.go")
		if err := os.WriteFile(src, []byte(wasmEchoFunctionSource), 0o644); err != nil {
			wasmFunctionErr = err
			return
		}
		out := filepath.Join(dir, "fn.wasm")
		cmd := exec.Command("go", "build", "-o", out, src)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GO111MODULE=off", "GOFLAGS=")
		if b, err := cmd.CombinedOutput(); err != nil {
			wasmFunctionErr = fmt.Errorf("build wasm function: %v\n%s", err, b)
			return
		}
		wasmFunction, wasmFunctionErr = os.ReadFile(out)
	})
	if wasmFunctionErr != nil {
		t.Fatal(wasmFunctionErr)
	}
	return wasmFunction
}

// httpResult is one answer of a function.
type httpResult struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
}

var fnHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

// call sends one request to the server and reads the whole answer.
func call(t testing.TB, method, url string, header map[string]string, body []byte) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := fnHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return httpResult{status: resp.StatusCode, header: resp.Header, body: b, took: time.Since(start)}
}

func mustDeploy(t testing.TB, c *client.Client, name string, r job.DeployRequest) client.Deployment {
	t.Helper()
	ns, path, _ := strings.Cut(name, "/")
	d, err := c.Deploy(context.Background(), ns, path, r)
	if err != nil {
		t.Fatalf("deploy %s: %v", name, err)
	}
	return d
}

// startFunctionServer starts a server with two embedded workers and waits
// until they are connected; it returns whether python is offered.
func startFunctionServer(t *testing.T, dir string, edit func(*ServerConfig)) (*Server, *client.Client, bool) {
	t.Helper()
	cfg := testServerConfig(t, dir, 2)
	if edit != nil {
		edit(&cfg)
	}
	srv, c := startServer(t, cfg)
	python := false
	eventually(t, 10*time.Second, func() error {
		ws, err := c.Workers(context.Background())
		if err != nil {
			return err
		}
		if len(ws) < cfg.Workers {
			return fmt.Errorf("%d workers connected", len(ws))
		}
		python = slices.Contains(ws[0].Capabilities.Runtimes, job.TypePython)
		return nil
	})
	return srv, c, python
}

func echoRequests(t *testing.T) map[job.Type]job.DeployRequest {
	env := map[string]string{"GREETING": "hej"}
	return map[job.Type]job.DeployRequest{
		job.TypeLua:    {Runtime: job.TypeLua, Code: luaEcho, Env: env},
		job.TypeJS:     {Runtime: job.TypeJS, Code: jsEcho, Env: env},
		job.TypePython: {Runtime: job.TypePython, Code: pythonEcho, Env: env},
		job.TypeWasm:   {Runtime: job.TypeWasm, Wasm: wasmEchoFunction(t), Env: env},
	}
}

// TestFunctionsEveryRuntime deploys an echo function in each runtime and
// checks that the status, a custom header and a JSON body come back, that
// the request's path, query, headers and body reach the handler intact,
// and that binary bodies pass both ways.
func TestFunctionsEveryRuntime(t *testing.T) {
	srv, c, python := startFunctionServer(t, t.TempDir(), nil)
	binary := make([]byte, 3000)
	rand.Read(binary)
	binary[0], binary[1] = 0xff, 0xfe // not UTF-8
	for rt, req := range echoRequests(t) {
		t.Run(string(rt), func(t *testing.T) {
			if rt == job.TypePython && !python {
				t.Skip("the workers do not offer python here (python3 or bubblewrap missing)")
			}
			d := mustDeploy(t, c, "fn/echo-"+string(rt), req)
			if d.Version != 1 || d.URL != "/fn/echo-"+string(rt) || d.Code != "" || d.Wasm != nil {
				t.Fatalf("deploy answered %+v", d)
			}
			body := `{"text": "grüße, \"quoted\"\nline"}`
			r := call(t, "POST", srv.URL()+d.URL+"/sub/dir?a=1&a=2&b=x",
				map[string]string{"X-Test": "hello there", "Content-Type": "application/json"}, []byte(body))
			if r.status != 201 || r.header.Get("X-Runtime") != string(rt) || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("answer %d %v %s", r.status, r.header, r.body)
			}
			var got struct {
				Method, Path, A, Header, Body, Env string
				All                                []string
				B64                                bool
			}
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatalf("body %s: %v", r.body, err)
			}
			want := fmt.Sprintf("%+v", struct {
				Method, Path, A, Header, Body, Env string
				All                                []string
				B64                                bool
			}{"POST", "/sub/dir", "1", "hello there", body, "hej", []string{"1", "2"}, false})
			if fmt.Sprintf("%+v", got) != want {
				t.Fatalf("handler saw %+v\nwant %s", got, want)
			}

			r = call(t, "PUT", srv.URL()+d.URL+"/bin", nil, binary)
			rev := slices.Clone(binary)
			slices.Reverse(rev)
			if r.status != 200 || r.header.Get("Content-Type") != "application/octet-stream" || !bytes.Equal(r.body, rev) {
				t.Fatalf("binary answer %d %v, %d bytes (want %d reversed)", r.status, r.header, len(r.body), len(binary))
			}
		})
	}
}

// TestFunctionsRouting checks longest-prefix matching, plain return values,
// that functions never shadow the platform's routes, and deploy
// validation.
func TestFunctionsRouting(t *testing.T) {
	srv, c, _ := startFunctionServer(t, t.TempDir(), nil)
	mustDeploy(t, c, "r/a", job.DeployRequest{Runtime: job.TypeLua, Code: `function handle(req) return "a:" .. req.path end`})
	mustDeploy(t, c, "r/a/b", job.DeployRequest{Runtime: job.TypeLua, Code: `local function handle(req) return {where = "a/b", path = req.path} end`})
	mustDeploy(t, c, "r/n", job.DeployRequest{Runtime: job.TypeJS, Code: `module.exports = { handle: (req) => null }`})
	for _, tc := range []struct{ path, ctype, body string }{
		{"/r/a", "text/plain; charset=utf-8", "a:/"},
		{"/r/a/", "text/plain; charset=utf-8", "a:/"},
		{"/r/a/c/d", "text/plain; charset=utf-8", "a:/c/d"},
		{"/r/a/bb", "text/plain; charset=utf-8", "a:/bb"},
		{"/r/a/b", "application/json", `{"path":"/","where":"a/b"}`},
		{"/r/a/b/c", "application/json", `{"path":"/c","where":"a/b"}`},
	} {
		r := call(t, "GET", srv.URL()+tc.path, nil, nil)
		if r.status != 200 || r.header.Get("Content-Type") != tc.ctype || string(r.body) != tc.body {
			t.Errorf("GET %s: %d %q %s, want 200 %q %s", tc.path, r.status, r.header.Get("Content-Type"), r.body, tc.ctype, tc.body)
		}
	}
	if r := call(t, "GET", srv.URL()+"/r/n", nil, nil); r.status != 204 || len(r.body) != 0 {
		t.Errorf("a handler returning null: %d %q, want 204", r.status, r.body)
	}
	for _, p := range []string{"/r/x", "/r", "/none/a"} {
		if r := call(t, "GET", srv.URL()+p, nil, nil); r.status != 404 || !json.Valid(r.body) {
			t.Errorf("GET %s: %d %s, want a JSON 404", p, r.status, r.body)
		}
	}
	// The platform's routes stay as they were.
	if r := call(t, "GET", srv.URL()+"/health", nil, nil); r.status != 200 || !strings.Contains(string(r.body), "ok") {
		t.Errorf("/health: %d %s", r.status, r.body)
	}
	if r := call(t, "PUT", srv.URL()+"/api/jobs", nil, nil); r.status != 405 {
		t.Errorf("PUT /api/jobs: %d %s, want 405", r.status, r.body)
	}
	if r := call(t, "GET", srv.URL()+"/api/nothing/here", nil, nil); r.status != 404 {
		t.Errorf("GET /api/nothing/here: %d %s, want 404", r.status, r.body)
	}
	// Bad deployments are refused with the field at fault.
	for _, tc := range []struct {
		name  string
		body  string
		field string
	}{
		{"api/x", `{"runtime":"lua","code":"x"}`, "namespace"},
		{"health/x", `{"runtime":"lua","code":"x"}`, "namespace"},
		{"Upper/x", `{"runtime":"lua","code":"x"}`, "namespace"},
		{"ok/a%2F..%2Fb", `{"runtime":"lua","code":"x"}`, "path"},
		{"ok/a%20b", `{"runtime":"lua","code":"x"}`, "path"},
		{"ok/x", `{"runtime":"docker","code":"x"}`, "code"},
		{"ok/x", `{"runtime":"lua"}`, "code"},
		{"ok/x", `{"runtime":"wasm","wasm":"AAAA"}`, "wasm"},
		{"ok/x", `{"runtime":"lua","code":"x","timeout_seconds":-1}`, "timeout_seconds"},
		{"ok/x", `{"runtime":"lua","code":"x","env":{"1BAD":"x"}}`, "env"},
		{"ok/x", `{"runtime":"lua","code":"x","max_concurrency":-2}`, "max_concurrency"},
		{"ok/x", `{"runtime":"lua","code":"x","surprise":1}`, "surprise"},
	} {
		r := call(t, "POST", srv.URL()+"/api/deploy/"+tc.name, map[string]string{"Authorization": "Bearer " + srv.AdminToken()}, []byte(tc.body))
		var e struct{ Error, Field string }
		json.Unmarshal(r.body, &e)
		if r.status != 400 || e.Field != tc.field {
			t.Errorf("deploy %s %s: %d %s, want 400 naming %s", tc.name, tc.body, r.status, r.body, tc.field)
		}
	}
	list, err := c.Deployments(context.Background(), "", false)
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %v %v", list, err)
	}
	for _, d := range list {
		if d.Code != "" || d.Digest == "" || d.CodeBytes == 0 {
			t.Errorf("listed without code: %+v", d.Deployment)
		}
	}
	list, err = c.Deployments(context.Background(), "r", true)
	if err != nil || len(list) != 3 || list[0].Code == "" {
		t.Fatalf("list with code: %v %v", list, err)
	}
}

// TestFunctionsLifecycle checks redeploy, delete and restart.
func TestFunctionsLifecycle(t *testing.T) {
	dir := t.TempDir()
	srv, c, _ := startFunctionServer(t, dir, nil)
	ctx := context.Background()
	get := func(srv *Server) httpResult { return call(t, "GET", srv.URL()+"/life/fn", nil, nil) }
	mustDeploy(t, c, "life/fn", job.DeployRequest{Runtime: job.TypeLua, Code: `function handle() return "one" end`})
	if r := get(srv); string(r.body) != "one" {
		t.Fatalf("first version answered %d %s", r.status, r.body)
	}
	d := mustDeploy(t, c, "life/fn", job.DeployRequest{Runtime: job.TypeJS, Code: `function handle() { return "two" }`, TimeoutSeconds: ptr(7.0)})
	if d.Version != 2 || d.Runtime != job.TypeJS || d.TimeoutSeconds != 7 {
		t.Fatalf("redeploy answered %+v", d.Deployment)
	}
	if r := get(srv); string(r.body) != "two" {
		t.Fatalf("after redeploy: %d %s", r.status, r.body)
	}
	mustDeploy(t, c, "life/gone", job.DeployRequest{Runtime: job.TypeLua, Code: `function handle() return "x" end`})
	if err := c.Undeploy(ctx, "life", "gone"); err != nil {
		t.Fatal(err)
	}
	if r := call(t, "GET", srv.URL()+"/life/gone", nil, nil); r.status != 404 {
		t.Fatalf("deleted function answered %d %s", r.status, r.body)
	}
	if _, err := c.Deployment(ctx, "life", "gone"); !client.IsNotFound(err) {
		t.Fatalf("GET of a deleted deployment: %v", err)
	}
	if err := c.Undeploy(ctx, "life", "gone"); !client.IsNotFound(err) {
		t.Fatalf("second delete: %v", err)
	}

	// A restart keeps deployments, their versions and code.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv, c, _ = startFunctionServer(t, dir, nil)
	if r := get(srv); r.status != 200 || string(r.body) != "two" {
		t.Fatalf("after restart: %d %s", r.status, r.body)
	}
	got, err := c.Deployment(ctx, "life", "fn")
	if err != nil || got.Version != 2 || got.Code != `function handle() { return "two" }` {
		t.Fatalf("after restart: %+v %v", got, err)
	}
}

// TestFunctionsFailures checks 504, 502 and 503 answers.
func TestFunctionsFailures(t *testing.T) {
	srv, c, python := startFunctionServer(t, t.TempDir(), func(cfg *ServerConfig) {
		cfg.Deploy.QueueWait = time.Second
		// Handlers here spin on a CPU of a shared machine: give heartbeats
		// room.
		cfg.Orchestrator.HeartbeatInterval = time.Second
	})
	t.Run("timeout", func(t *testing.T) {
		for _, rt := range []job.Type{job.TypeLua, job.TypeJS, job.TypePython} {
			if rt == job.TypePython && !python {
				continue
			}
			code := map[job.Type]string{
				job.TypeLua:    `function handle() while true do end end`,
				job.TypeJS:     `function handle() { for (;;) {} }`,
				job.TypePython: "def handle(req):\n    while True:\n        pass\n",
			}[rt]
			mustDeploy(t, c, "fail/slow-"+string(rt), job.DeployRequest{Runtime: rt, Code: code, TimeoutSeconds: ptr(1.0)})
			r := call(t, "GET", srv.URL()+"/fail/slow-"+string(rt), nil, nil)
			if r.status != 504 || !json.Valid(r.body) {
				t.Errorf("%s: slow handler answered %d %s, want 504", rt, r.status, r.body)
			}
			if r.took > 2*time.Second {
				t.Errorf("%s: 504 took %s, more than timeout + 1 s", rt, r.took)
			}
		}
	})
	t.Run("crash", func(t *testing.T) {
		cases := map[string]job.DeployRequest{
			"lua-error":   {Runtime: job.TypeLua, Code: `function handle() error("boom from lua") end`},
			"lua-nohand":  {Runtime: job.TypeLua, Code: `x = 1`},
			"lua-syntax":  {Runtime: job.TypeLua, Code: `function handle(`},
			"lua-status":  {Runtime: job.TypeLua, Code: `function handle() return {status = 99, body = "x"} end`},
			"lua-header":  {Runtime: job.TypeLua, Code: `function handle() return {status = 200, headers = {["X-A"] = "a\r\nb"}} end`},
			"js-throw":    {Runtime: job.TypeJS, Code: `function handle() { throw new Error("boom from js") }`},
			"js-reject":   {Runtime: job.TypeJS, Code: `async function handle() { throw new Error("boom async") }`},
			"wasm-nojson": {Runtime: job.TypeWasm, Wasm: wasmEcho},
		}
		if python {
			cases["py-raise"] = job.DeployRequest{Runtime: job.TypePython, Code: "def handle(req):\n    raise ValueError('boom from python')\n"}
		}
		for name, req := range cases {
			mustDeploy(t, c, "fail/"+name, req)
			r := call(t, "GET", srv.URL()+"/fail/"+name, nil, nil)
			var e struct{ Error string }
			if err := json.Unmarshal(r.body, &e); err != nil || r.status != 502 || e.Error == "" {
				t.Errorf("%s: answered %d %s, want a JSON 502", name, r.status, r.body)
				continue
			}
			if strings.Contains(e.Error, "orchestrator") || strings.Contains(e.Error, "goroutine") {
				t.Errorf("%s: the error shows the platform's internals: %s", name, e.Error)
			}
			if strings.Contains(name, "error") || strings.Contains(name, "throw") || strings.Contains(name, "raise") {
				if !strings.Contains(e.Error, "boom") {
					t.Errorf("%s: the error does not quote the function's: %s", name, e.Error)
				}
			}
		}
	})
	t.Run("max_concurrency", func(t *testing.T) {
		mustDeploy(t, c, "fail/single", job.DeployRequest{Runtime: job.TypeJS, MaxConcurrency: 1,
			Code: `function handle() { var t = Date.now(); while (Date.now() - t < 3000) {} return "done" }`})
		first := make(chan httpResult, 1)
		go func() { first <- call(t, "GET", srv.URL()+"/fail/single", nil, nil) }()
		// The second waits for the slot for the queue wait (1 s), then gives up.
		eventually(t, 5*time.Second, func() error {
			st, err := c.Stats(context.Background())
			if err != nil || st.SlotsBusy == 0 {
				return fmt.Errorf("the first invocation is not running yet (%v)", err)
			}
			return nil
		})
		r := call(t, "GET", srv.URL()+"/fail/single", nil, nil)
		if r.status != 503 || r.header.Get("Retry-After") == "" {
			t.Errorf("over max_concurrency: %d %v %s, want 503 with Retry-After", r.status, r.header, r.body)
		}
		if r := <-first; r.status != 200 || string(r.body) != "done" {
			t.Errorf("first invocation: %d %s", r.status, r.body)
		}
	})
}

// TestFunctionsNoWorker checks that a function whose runtime no worker
// offers answers 503 with Retry-After after the bounded queue wait.
func TestFunctionsNoWorker(t *testing.T) {
	const wait = 400 * time.Millisecond
	srv, c, _ := startFunctionServer(t, t.TempDir(), func(cfg *ServerConfig) {
		cfg.Runtimes.Only = []job.Type{job.TypeLua}
		cfg.Deploy.QueueWait = wait
	})
	mustDeploy(t, c, "nw/js", job.DeployRequest{Runtime: job.TypeJS, Code: `function handle() { return 1 }`})
	r := call(t, "GET", srv.URL()+"/nw/js", nil, nil)
	if r.status != 503 || r.header.Get("Retry-After") == "" || !json.Valid(r.body) {
		t.Fatalf("no worker for js: %d %v %s, want a JSON 503 with Retry-After", r.status, r.header, r.body)
	}
	if r.took < wait {
		t.Errorf("503 after %s, before the queue wait of %s", r.took, wait)
	}
	// The Lua workers still answer, and nothing was left in the queue.
	mustDeploy(t, c, "nw/lua", job.DeployRequest{Runtime: job.TypeLua, Code: `function handle() return 1 end`})
	if r := call(t, "GET", srv.URL()+"/nw/lua", nil, nil); r.status != 200 || string(r.body) != "1" {
		t.Fatalf("lua: %d %s", r.status, r.body)
	}
	st, err := c.Stats(context.Background())
	if err != nil || st.Queued[job.TypeJS] != 0 {
		t.Errorf("queue after the 503: %+v %v", st.Queued, err)
	}
}

// TestFunctionsConcurrent sends 200 invocations of one function at once and
// checks every answer.
func TestFunctionsConcurrent(t *testing.T) {
	srv, c, _ := startFunctionServer(t, t.TempDir(), nil)
	mustDeploy(t, c, "many/fn", job.DeployRequest{Runtime: job.TypeLua,
		Code: `function handle(req) return {status = 200, headers = {["X-Id"] = req.query.id}, body = {id = req.query.id, n = #req.body}} end`})
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint(i)
			r := call(t, "POST", fmt.Sprintf("%s/many/fn?id=%s", srv.URL(), id), nil, bytes.Repeat([]byte("x"), i))
			want := fmt.Sprintf(`{"id":"%s","n":%d}`, id, i)
			if r.status != 200 || r.header.Get("X-Id") != id || string(r.body) != want {
				errs <- fmt.Errorf("invocation %d: %d %v %s, want %s", i, r.status, r.header.Get("X-Id"), r.body, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestFunctionsCLI deploys, lists and removes a function with the client
// commands.
func TestFunctionsCLI(t *testing.T) {
	srv, _, _ := startFunctionServer(t, t.TempDir(), nil)
	file := filepath.Join(t.TempDir(), "hello.lua")
	os.WriteFile(file, []byte(`function handle(req) return "hello " .. ENV.WHO end`), 0o644)
	cli := cliAgainst(srv)
	if code, out, errs := cli("deploy", "cli/hello", "-f", file, "--env", "WHO=cli", "--timeout", "5"); code != 0 || !strings.Contains(out, "version 1 (lua)") {
		t.Fatalf("deploy: %d %q %q", code, out, errs)
	}
	if r := call(t, "GET", srv.URL()+"/cli/hello", nil, nil); string(r.body) != "hello cli" {
		t.Fatalf("invoke: %d %s", r.status, r.body)
	}
	if code, out, errs := cli("deployments"); code != 0 || !strings.Contains(out, "cli/hello") || !strings.Contains(out, "/cli/hello") {
		t.Fatalf("deployments: %d %q %q", code, out, errs)
	}
	if code, _, errs := cli("deploy", "cli/x", "-f", filepath.Join(t.TempDir(), "none.lua")); code == 0 {
		t.Fatalf("deploy of a missing file succeeded: %q", errs)
	}
	if code, _, errs := cli("deploy", "api/x", "-f", file); code == 0 || !strings.Contains(errs, "namespace") {
		t.Fatalf("deploy to a reserved namespace: %d %q", code, errs)
	}
	if code, out, errs := cli("undeploy", "cli/hello"); code != 0 || !strings.Contains(out, "removed") {
		t.Fatalf("undeploy: %d %q %q", code, out, errs)
	}
	if r := call(t, "GET", srv.URL()+"/cli/hello", nil, nil); r.status != 404 {
		t.Fatalf("after undeploy: %d %s", r.status, r.body)
	}
}

// TestDeploymentListBoundsCode: a namespace with 20 functions of 1 MiB of
// code each (within every per-function limit) lists them with
// include=code only while the code fits the list's bound (16 MiB): past
// it the list is refused naming include, and without include=code it is
// answered, small; each function's code is still read on its own.
func TestDeploymentListBoundsCode(t *testing.T) {
	srv, _ := startServer(t, testServerConfig(t, t.TempDir(), 0))
	admin := map[string]string{"Authorization": "Bearer " + srv.AdminToken()}
	code := "function handle(req) return 'hi' end --" + strings.Repeat("x", (1<<20)-64)
	body, _ := json.Marshal(map[string]string{"runtime": "lua", "code": code})
	for i := range 20 {
		if r := call(t, "POST", fmt.Sprintf("%s/api/deploy/big/f%d", srv.URL(), i), admin, body); r.status != 201 {
			t.Fatalf("deploy %d: %d %s", i, r.status, r.body)
		}
	}
	r := call(t, "GET", srv.URL()+"/api/deploy?namespace=big&include=code", admin, nil)
	if r.status != 400 || !strings.Contains(string(r.body), `"field":"include"`) {
		t.Fatalf("include=code over 20 MiB of code: %d, %d bytes %.300s; want 400 naming include", r.status, len(r.body), r.body)
	}
	r = call(t, "GET", srv.URL()+"/api/deploy?namespace=big", admin, nil)
	if r.status != 200 || len(r.body) > 64<<10 {
		t.Fatalf("the list without code: %d, %d bytes", r.status, len(r.body))
	}
	r = call(t, "GET", srv.URL()+"/api/deploy/big/f3", admin, nil)
	if r.status != 200 || !strings.Contains(string(r.body), "xxxx") {
		t.Fatalf("one function with its code: %d %.200s", r.status, r.body)
	}
	for i := 1; i < 20; i++ {
		call(t, "DELETE", fmt.Sprintf("%s/api/deploy/big/f%d", srv.URL(), i), admin, nil)
	}
	r = call(t, "GET", srv.URL()+"/api/deploy?namespace=big&include=code", admin, nil)
	if r.status != 200 || !strings.Contains(string(r.body), "xxxx") {
		t.Fatalf("include=code of one function: %d %.200s", r.status, r.body)
	}
}
