package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	jsrt "github.com/zerverless/zerverless/internal/runtime/js"
	wasmrt "github.com/zerverless/zerverless/internal/runtime/wasm"
)

// browserWasmSource is the module the browser tests run: it reads its
// input from stdin, prints it with its arguments and INPUT_DATA, writes to
// stderr, sleeps (poll_oneoff), reads the clocks and random bytes, tries to
// open a host file, and returns a JSON value through zerverless.set_result.
// "loop" spins forever; "exit" exits with code 3.
const browserWasmSource = `package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unsafe"
)

//go:wasmimport zerverless set_result
func setResult(ptr unsafe.Pointer, n uint32)

func main() {
	mode := ""
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "loop":
		for {
		}
	case "exit":
		fmt.Fprintln(os.Stderr, "exiting with 3")
		os.Exit(3)
	}
	in, _ := io.ReadAll(os.Stdin)
	var input struct {
		X int ` + "`json:\"x\"`" + `
	}
	json.Unmarshal(in, &input)
	fmt.Printf("wasm got %s args=%s env=%s\n", in, strings.Join(os.Args, ","), os.Getenv("INPUT_DATA"))
	fmt.Fprintln(os.Stderr, "to stderr")
	start := time.Now()
	time.Sleep(30 * time.Millisecond)
	slept := time.Since(start) >= 30*time.Millisecond
	buf := make([]byte, 32)
	_, err := rand.Read(buf)
	random := err == nil && strings.Trim(string(buf), "\x00") != ""
	_, openErr := os.Open("/etc/passwd")
	out, _ := json.Marshal(map[string]any{
		"double":   input.X * 2,
		"slept":    slept,
		"random":   random,
		"year_ok":  start.Year() >= 2024,
		"no_files": openErr != nil,
		"environ":  len(os.Environ()),
	})
	setResult(unsafe.Pointer(&out[0]), uint32(len(out)))
}
`

// buildWasm compiles a GOOS=wasip1 module from Go source.
func buildWasm(t *testing.T, source string) []byte {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "module.wasm")
	cmd := exec.Command("go", "build", "-o", out, src)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GO111MODULE=off", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build wasm module: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// browserRustSource is a Rust program for wasm32-wasi(p1) that exercises
// what Rust's standard library asks of WASI: arguments, environment,
// stdin, stdout and stderr, clocks, a sleep, random seeds (HashMap), an
// attempt to open a file (preopens), exit codes, and set_result.
const browserRustSource = `use std::io::Read;

#[link(wasm_import_module = "zerverless")]
extern "C" {
    fn set_result(ptr: *const u8, len: u32);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() > 1 && args[1] == "exit" {
        eprintln!("rust exiting with 4");
        std::process::exit(4);
    }
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    println!("rust got {} args={} env={}", input, args.join(","), std::env::var("INPUT_DATA").unwrap_or_default());
    eprintln!("rust stderr");
    let start = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(30));
    let slept = start.elapsed().as_millis() >= 30;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut m = std::collections::HashMap::new();
    m.insert(1u8, 2u8);
    let no_files = std::fs::File::open("/etc/passwd").is_err();
    let out = format!("{{\"slept\":{},\"time_ok\":{},\"no_files\":{},\"map\":{}}}", slept, now > 1700000000, no_files, m.len());
    unsafe { set_result(out.as_ptr(), out.len() as u32) };
}
`

// buildRustWasm compiles source for WASI preview 1 with a rustc that has
// the target: Debian's (rustc and libstd-rust-dev-wasm32, whose target is
// still named wasm32-wasi) or a rustup toolchain with wasm32-wasip1. .ci/run
// installs Debian's; without one the test fails.
func buildRustWasm(t *testing.T, source string) []byte {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.rs")
	if err := os.WriteFile(src, []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "module.wasm")
	var tried []string
	for _, rustc := range []string{"/usr/bin/rustc", "rustc"} {
		for _, target := range []string{"wasm32-wasip1", "wasm32-wasi"} {
			cmd := exec.Command(rustc, "--target", target, "-O", "-C", "strip=debuginfo", "-o", out, src)
			b, err := cmd.CombinedOutput()
			if err == nil {
				mod, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				return mod
			}
			tried = append(tried, fmt.Sprintf("%s --target %s: %v %.300s", rustc, target, err, b))
		}
	}
	t.Fatalf("no rustc builds WASI modules (apt-get install rustc libstd-rust-dev-wasm32 lld; .ci/run does it):\n%s", strings.Join(tried, "\n"))
	return nil
}

// chromiumPath finds Debian's chromium (or another Chrome). The browser
// tests fail without one: .ci/run installs it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: the browser volunteer tests need Debian's chromium (apt-get install chromium; .ci/run does it)")
	return ""
}

// startBrowser starts a headless Chromium with a fresh profile (and the
// flags of extra) and returns the context of its first tab; the browser
// stops when the test ends.
func startBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 1000),
		// The TLS proxy of the tests has a self-signed certificate.
		chromedp.Flag("ignore-certificate-errors", true),
	)
	opts = append(opts, extra...)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browser, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return browser
}

// tab is one open volunteer page.
type tab struct {
	t        *testing.T
	ctx      context.Context
	close    context.CancelFunc
	workerID string
}

// openVolunteer opens url in a new tab and waits until the page has
// registered with the orchestrator.
func openVolunteer(t *testing.T, browser context.Context, url string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	tb := &tab{t: t, ctx: ctx, close: cancel}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			t.Logf("page console: %s", m)
		}
	}()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	eventually(t, 20*time.Second, func() error {
		state := tb.text("state")
		id := tb.text("worker-id")
		if state != "connected" || id == "" || id == "—" {
			return fmt.Errorf("page state %q, worker id %q (%s)", state, id, tb.text("state-detail"))
		}
		tb.workerID = id
		return nil
	})
	return tb
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// text is the textContent of the element with id.
func (tb *tab) text(id string) string {
	tb.t.Helper()
	return eval[string](tb, fmt.Sprintf("document.getElementById(%q).textContent", id))
}

// hitRecorder is an HTTP server that counts the requests it gets by path.
type hitRecorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newHitRecorder(t *testing.T) *hitRecorder {
	h := &hitRecorder{hits: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.hits[r.URL.Path]++
		h.mu.Unlock()
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Cross-Origin-Resource-Policy", "cross-origin")
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, "// reached\n")
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hitRecorder) count(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits[path]
}

func (h *hitRecorder) all() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := make(map[string]int, len(h.hits))
	for k, v := range h.hits {
		m[k] = v
	}
	return m
}

func submitJob(t *testing.T, c *client.Client, r job.Request) string {
	t.Helper()
	v, err := c.Submit(context.Background(), r)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return v.ID
}

// browserRun is one job of the browser tests and the view it ended with.
type browserRun struct {
	name string
	req  job.Request
	id   string
	view api.View
}

// TestBrowserVolunteer runs the volunteer page in a real headless Chromium
// against an in-process orchestrator with no native worker, and checks
// what issue 7 asks of it: it registers with js and wasm; JavaScript and
// WASI jobs give the same output, returned value, status and exit code in
// the browser as in the native runtimes; endless loops end as timeout and
// the page goes on; code that tries the network does not reach it; cancel
// and pause work; its counters match the jobs it ran; closing the tab
// mid-job re-queues the job to another tab with attempt 2; and served over
// https by a TLS reverse proxy it connects over wss (an https page may not
// open ws://) and runs jobs.
func TestBrowserVolunteer(t *testing.T) {
	module := buildWasm(t, browserWasmSource)
	cfg := testServerConfig(t, t.TempDir(), 0)
	// A browser tab on a busy machine can stall for longer than the 600 ms
	// of silence the other tests allow; the page re-registering midway
	// would change its worker id.
	cfg.Orchestrator.HeartbeatInterval = time.Second
	// Browser tabs are anonymous volunteers.
	cfg.Orchestrator.OpenVolunteering = true
	_, c := startServer(t, cfg)
	srvURL := c.BaseURL()
	browser := startBrowser(t)
	pageURL := srvURL + "/volunteer/"
	a := openVolunteer(t, browser, pageURL)
	ctx := context.Background()

	// The page is cross-origin isolated, so Wasm sleeps need not spin.
	if !eval[bool](a, "crossOriginIsolated") {
		t.Error("the volunteer page is not cross-origin isolated")
	}

	var ranOnA []string // jobs that ended on tab a
	track := func(id string, v api.View) {
		if v.WorkerID == a.workerID {
			ranOnA = append(ranOnA, id)
		}
	}

	t.Run("registers with js and wasm", func(t *testing.T) {
		name := eval[string](a, "document.getElementById('name').value")
		eventually(t, 5*time.Second, func() error {
			ws, err := c.Workers(ctx)
			if err != nil {
				return err
			}
			if len(ws) != 1 {
				return fmt.Errorf("%d workers connected, want only the page", len(ws))
			}
			w := ws[0]
			if w.ID != a.workerID || w.Name != name || !slices.Equal(w.Capabilities.Runtimes, []job.Type{job.TypeJS, job.TypeWasm}) ||
				w.Capabilities.Concurrency < 1 || w.Capabilities.Version == "" {
				return fmt.Errorf("worker %+v, want id %s name %s runtimes [js wasm]", w, a.workerID, name)
			}
			return nil
		})
	})

	t.Run("JavaScript jobs match the native runtime", func(t *testing.T) {
		cases := []struct {
			name, code, input string
			timeout           float64
			errHas            string
		}{
			{name: "output and last expression", input: `{"x":41,"name":"browser"}`,
				code: `console.log("hello " + INPUT.name, [1, 2], {a: 1}, null, undefined, 3.5, true);
console.info("info"); console.debug("debug");
console.warn("careful"); console.error(new TypeError("bad"));
({sum: INPUT.x + 1, name: INPUT.name})`},
			{name: "module.exports", input: `[1,2,3]`, code: `module.exports = {via: "exports", n: INPUT.length}; 99`},
			{name: "exports property", code: `exports.partial = true; 5`},
			{name: "no input", code: `typeof INPUT`},
			{name: "no value", code: `var unused = 1;`},
			{name: "promise", input: `21`, code: `Promise.resolve(INPUT).then(function (x) { return x * 2; })`},
			{name: "async function", code: `(async function () { await null; console.log("awaited"); return [1, "two"]; })()`},
			{name: "throw", code: `console.log("before"); throw new Error("boom")`, errHas: "boom"},
			{name: "rejected promise", code: `Promise.reject(new Error("nope"))`, errHas: "nope"},
			{name: "pending promise", code: `new Promise(function () {})`, errHas: "never settled"},
			{name: "syntax error", code: `let x = ;`, errHas: "SyntaxError"},
			{name: "cycle", code: `var o = {}; o.self = o; o`, errHas: "result"},
			{name: "output cap", code: `console.log("x".repeat(1100000)); console.error("e".repeat(1100000)); 1`},
			{name: "no timers or host objects", code: `[typeof setTimeout, typeof require, typeof process, typeof fetch, typeof window, typeof document]`},
		}
		native, err := jsrt.New(jsrt.Config{})
		if err != nil {
			t.Fatal(err)
		}
		runs := make([]browserRun, len(cases))
		for i, tc := range cases {
			req := job.Request{Type: job.TypeJS, Code: tc.code}
			if tc.input != "" {
				req.Input = json.RawMessage(tc.input)
			}
			runs[i] = browserRun{name: tc.name, req: req, id: submitJob(t, c, req)}
		}
		for i, tc := range cases {
			r := &runs[i]
			r.view = waitDone(t, c, r.id, 60*time.Second)
			track(r.id, r.view)
			want, _ := native.Run(ctx, job.Task{JobID: r.id, Type: job.TypeJS, Timeout: 10 * time.Second,
				Spec: job.Spec{Code: tc.code, Input: r.req.Input}, Limits: job.Limits{OutputBytes: 1 << 20}})
			compareRun(t, r, a.workerID, want, tc.errHas)
			if strings.Contains(r.view.Error, "js-worker.js") {
				t.Errorf("%s: the error shows the runner's frames: %q", tc.name, r.view.Error)
			}
		}
		if v := runs[7].view; !strings.HasPrefix(v.Error, "Error: boom\n    at job.js:1:") {
			t.Errorf("thrown error %q, want it located in job.js", v.Error)
		}
		if v := runs[0].view; v.Output != "hello browser [1,2] {\"a\":1} null undefined 3.5 true\ninfo\ndebug\n" ||
			v.Stderr != "careful\nTypeError: bad\n" || string(v.Result) != `{"sum":42,"name":"browser"}` {
			t.Errorf("first job: output %q stderr %q result %s", v.Output, v.Stderr, v.Result)
		}
		if v := runs[12].view; len(v.Output) != 1<<20 || len(v.Stderr) != 1<<20 || !v.Truncated {
			t.Errorf("output cap: %d bytes of stdout, %d of stderr, truncated %v; want 1 MiB each, truncated", len(v.Output), len(v.Stderr), v.Truncated)
		}
	})

	t.Run("Wasm jobs match the native runtime", func(t *testing.T) {
		native, err := wasmrt.New(wasmrt.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer native.Close(ctx)
		cases := []struct {
			name   string
			args   []string
			input  string
			errHas string
		}{
			{name: "input, output, result", args: []string{"a", "b c"}, input: `{"x":21,"big":12345678901234567890,"1":"one","f":1.50}`},
			{name: "no input"},
			{name: "exit code", args: []string{"exit"}, errHas: "code 3"},
		}
		for _, tc := range cases {
			req := job.Request{Type: job.TypeWasm, Wasm: module, Args: tc.args}
			if tc.input != "" {
				req.Input = json.RawMessage(tc.input)
			}
			r := browserRun{name: tc.name, req: req, id: submitJob(t, c, req)}
			r.view = waitDone(t, c, r.id, 60*time.Second)
			track(r.id, r.view)
			want, _ := native.Run(ctx, job.Task{JobID: r.id, Type: job.TypeWasm, Timeout: 10 * time.Second,
				Spec: job.Spec{Wasm: module, Args: tc.args, Input: r.req.Input}, Limits: job.Limits{OutputBytes: 1 << 20}})
			compareRun(t, &r, a.workerID, want, tc.errHas)
			if tc.name == "input, output, result" {
				wantOut := "wasm got " + tc.input + " args=module.wasm,a,b c env=" + tc.input + "\n"
				if r.view.Output != wantOut || r.view.Stderr != "to stderr\n" {
					t.Errorf("wasm output %q stderr %q, want %q", r.view.Output, r.view.Stderr, wantOut)
				}
				wantRes := `{"double":42,"environ":1,"no_files":true,"random":true,"slept":true,"year_ok":true}`
				if string(r.view.Result) != wantRes {
					t.Errorf("wasm result %s, want %s", r.view.Result, wantRes)
				}
			}
		}
	})

	t.Run("Rust Wasm jobs match the native runtime", func(t *testing.T) {
		rust := buildRustWasm(t, browserRustSource)
		native, err := wasmrt.New(wasmrt.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer native.Close(ctx)
		for _, tc := range []struct {
			name, input, errHas string
			args                []string
		}{
			{name: "rust: input, output, result", args: []string{"x y"}, input: `{"x":2}`},
			{name: "rust: exit code", args: []string{"exit"}, errHas: "code 4"},
		} {
			req := job.Request{Type: job.TypeWasm, Wasm: rust, Args: tc.args}
			if tc.input != "" {
				req.Input = json.RawMessage(tc.input)
			}
			r := browserRun{name: tc.name, req: req, id: submitJob(t, c, req)}
			r.view = waitDone(t, c, r.id, 60*time.Second)
			track(r.id, r.view)
			want, _ := native.Run(ctx, job.Task{JobID: r.id, Type: job.TypeWasm, Timeout: 10 * time.Second,
				Spec: job.Spec{Wasm: rust, Args: tc.args, Input: r.req.Input}, Limits: job.Limits{OutputBytes: 1 << 20}})
			compareRun(t, &r, a.workerID, want, tc.errHas)
			if tc.input != "" {
				wantOut := "rust got " + tc.input + " args=module.wasm,x y env=" + tc.input + "\n"
				wantRes := `{"slept":true,"time_ok":true,"no_files":true,"map":1}`
				if r.view.Output != wantOut || r.view.Stderr != "rust stderr\n" || string(r.view.Result) != wantRes {
					t.Errorf("rust module: output %q stderr %q result %s; want %q, %q", r.view.Output, r.view.Stderr, r.view.Result, wantOut, wantRes)
				}
			}
		}
	})

	t.Run("endless loops time out and the page goes on", func(t *testing.T) {
		one := 1.0
		loops := []job.Request{
			{Type: job.TypeJS, Code: `console.log("looping"); while (true) {}`, TimeoutSeconds: &one},
			{Type: job.TypeWasm, Wasm: module, Args: []string{"loop"}, TimeoutSeconds: &one},
		}
		for _, loop := range loops {
			// The follow-up is queued behind the loop: it runs only once
			// the page has stopped the loop.
			loopID := submitJob(t, c, loop)
			next := job.Request{Type: job.TypeJS, Code: `"next"`}
			if loop.Type == job.TypeWasm {
				next = job.Request{Type: job.TypeWasm, Wasm: module, Input: json.RawMessage(`{"x":1}`)}
			}
			nextID := submitJob(t, c, next)
			v := waitDone(t, c, loopID, 30*time.Second)
			track(loopID, v)
			if v.Status != job.StatusTimeout || v.ExitCode != -1 || v.WorkerID != a.workerID {
				t.Errorf("%s loop: status %s exit %d worker %s error %q; want timeout, -1, the page", loop.Type, v.Status, v.ExitCode, v.WorkerID, v.Error)
			}
			if loop.Type == job.TypeJS && v.Output != "looping\n" {
				t.Errorf("js loop output %q: output written before the timeout is lost", v.Output)
			}
			n := waitDone(t, c, nextID, 30*time.Second)
			track(nextID, n)
			if n.Status != job.StatusCompleted || n.WorkerID != a.workerID {
				t.Errorf("%s job after the loop: status %s worker %s error %q", loop.Type, n.Status, n.WorkerID, n.Error)
			}
		}
	})

	rec := newHitRecorder(t)
	t.Run("jobs cannot reach the network", func(t *testing.T) {
		// The browser can reach the recorder: a page of its own does.
		probe, cancel := chromedp.NewContext(browser)
		if err := chromedp.Do(probe, chromedp.Navigate(rec.srv.URL+"/reachable")); err != nil {
			t.Fatalf("open recorder: %v", err)
		}
		cancel()
		if rec.count("/reachable") == 0 {
			t.Fatal("the browser could not reach the recorder, so the test proves nothing")
		}
		input := json.RawMessage(fmt.Sprintf(`{"url":%q}`, rec.srv.URL))
		failing := []struct{ name, code string }{
			{"fetch", `fetch(INPUT.url + "/fetch")`},
			{"importScripts", `importScripts(INPUT.url + "/importScripts")`},
			{"XMLHttpRequest", `var x = new XMLHttpRequest(); x.open("GET", INPUT.url + "/xhr", false); x.send();`},
			{"WebSocket", `new WebSocket(INPUT.url.replace("http", "ws") + "/ws")`},
			{"EventSource", `new EventSource(INPUT.url + "/eventsource")`},
			{"sendBeacon", `navigator.sendBeacon(INPUT.url + "/beacon", "x")`},
			{"nested worker", `new Worker(INPUT.url + "/worker.js")`},
			{"dynamic import", `import(INPUT.url + "/import.js")`},
			{"global scope prototype", `Object.getPrototypeOf(globalThis).fetch(INPUT.url + "/proto")`},
		}
		for _, f := range failing {
			id := submitJob(t, c, job.Request{Type: job.TypeJS, Code: f.code, Input: input})
			v := waitDone(t, c, id, 30*time.Second)
			track(id, v)
			if v.Status != job.StatusFailed || v.WorkerID != a.workerID {
				t.Errorf("%s: status %s worker %s error %q; want failed on the page", f.name, v.Status, v.WorkerID, v.Error)
			}
		}
		// What a job sees of the browser: only ECMAScript and its own
		// globals, and on the global scope's prototypes nothing but
		// constant numbers.
		id := submitJob(t, c, job.Request{Type: job.TypeJS, Input: input, Code: `
var names = ["fetch", "XMLHttpRequest", "WebSocket", "EventSource", "importScripts", "navigator",
  "Worker", "SharedWorker", "postMessage", "self", "location", "indexedDB", "caches",
  "setTimeout", "setInterval", "BroadcastChannel", "MessageChannel", "WebAssembly", "close",
  "Request", "WebTransport", "RTCPeerConnection", "FileReader", "Blob", "URL", "crypto"];
var seen = names.filter(function (n) { return typeof globalThis[n] !== "undefined"; });
for (var p = Object.getPrototypeOf(globalThis); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
  seen = seen.concat(Object.getOwnPropertyNames(p).filter(function (n) {
    var d = Object.getOwnPropertyDescriptor(p, n);
    return d.get || d.set || (d.value !== null && (typeof d.value === "object" || typeof d.value === "function"));
  }));
}
seen`})
		v := waitDone(t, c, id, 30*time.Second)
		track(id, v)
		if v.Status != job.StatusCompleted || string(v.Result) != "[]" {
			t.Errorf("globals visible to a job: status %s result %s error %q; want []", v.Status, v.Result, v.Error)
		}
	})

	t.Run("cancel stops the job", func(t *testing.T) {
		id := submitJob(t, c, job.Request{Type: job.TypeJS, Code: `while (true) {}`})
		eventually(t, 10*time.Second, func() error {
			v, err := c.Job(ctx, id, 0)
			if err != nil {
				return err
			}
			if v.Status != job.StatusRunning {
				return fmt.Errorf("job %s", v.Status)
			}
			return nil
		})
		if _, err := c.Cancel(ctx, id); err != nil {
			t.Fatal(err)
		}
		v := waitDone(t, c, id, 10*time.Second)
		track(id, v)
		if v.Status != job.StatusCanceled {
			t.Errorf("canceled job: %s", v.Status)
		}
		// The page answers the cancel with its result, which frees its slot.
		eventually(t, 10*time.Second, func() error {
			if got := a.text("jobs-canceled"); got != "1" {
				return fmt.Errorf("page shows %s canceled", got)
			}
			return nil
		})
	})

	t.Run("pause and resume", func(t *testing.T) {
		if err := chromedp.Do(a.ctx, chromedp.Click(chromedp.CSS("#pause"))); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, func() error {
			ws, err := c.Workers(ctx)
			if err != nil || len(ws) != 1 {
				return fmt.Errorf("workers %v %v", ws, err)
			}
			if len(ws[0].Capabilities.Runtimes) != 0 || ws[0].Notes["js"] == "" {
				return fmt.Errorf("paused page offers %v (notes %v)", ws[0].Capabilities.Runtimes, ws[0].Notes)
			}
			return nil
		})
		if got := a.text("state"); got != "paused" {
			t.Errorf("paused page shows %q", got)
		}
		id := submitJob(t, c, job.Request{Type: job.TypeJS, Code: `"after pause"`})
		if v, err := c.Job(ctx, id, 300*time.Millisecond); err != nil || v.Status != job.StatusPending {
			t.Fatalf("job while paused: %+v %v", v, err)
		}
		if err := chromedp.Do(a.ctx, chromedp.Click(chromedp.CSS("#pause"))); err != nil {
			t.Fatal(err)
		}
		v := waitDone(t, c, id, 10*time.Second)
		track(id, v)
		if v.Status != job.StatusCompleted || string(v.Result) != `"after pause"` {
			t.Errorf("job after resume: %s %s %q", v.Status, v.Result, v.Error)
		}
	})

	t.Run("concurrency is the person's choice", func(t *testing.T) {
		eval[bool](a, `(function () { var i = document.getElementById('concurrency'); i.value = '2';
			i.dispatchEvent(new Event('change')); return true; })()`)
		eventually(t, 5*time.Second, func() error {
			ws, err := c.Workers(ctx)
			if err != nil || len(ws) != 1 {
				return fmt.Errorf("workers %v %v", ws, err)
			}
			if ws[0].Capabilities.Concurrency != 2 {
				return fmt.Errorf("concurrency %d", ws[0].Capabilities.Concurrency)
			}
			return nil
		})
	})

	t.Run("counters match the jobs the page ran", func(t *testing.T) {
		if id := a.text("worker-id"); id != a.workerID {
			t.Fatalf("the page re-registered midway, as %s (was %s)", id, a.workerID)
		}
		want := map[string]int{}
		var ms int64
		for _, id := range ranOnA {
			v, err := c.Job(ctx, id, 0)
			if err != nil {
				t.Fatal(err)
			}
			want[string(v.Status)]++
			want["done"]++
			ms += v.DurationMS
		}
		for _, k := range []string{"done", "completed", "failed", "timeout", "canceled"} {
			if got := a.text("jobs-" + k); got != fmt.Sprint(want[k]) {
				t.Errorf("page counter %s = %s, want %d", k, got, want[k])
			}
		}
		donated := eval[int64](a, "Number(document.getElementById('time-donated').dataset.ms)")
		if donated+int64(len(ranOnA)) < ms {
			t.Errorf("page shows %d ms donated, the jobs took %d ms", donated, ms)
		}
		if n := eval[int](a, "document.querySelectorAll('#log li').length"); n != min(len(ranOnA), 50) {
			t.Errorf("page lists %d recent jobs, ran %d", n, len(ranOnA))
		}
		shot, err := chromedp.Run(a.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "volunteer.png")
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(shot))
	})

	t.Run("closing the tab re-queues its job", func(t *testing.T) {
		until := time.Now().Add(3 * time.Second).UnixMilli()
		id := submitJob(t, c, job.Request{Type: job.TypeJS, Input: json.RawMessage(fmt.Sprint(until)),
			Code: `while (Date.now() < INPUT) {} "finished"`})
		eventually(t, 10*time.Second, func() error {
			v, err := c.Job(ctx, id, 0)
			if err != nil {
				return err
			}
			if v.Status != job.StatusRunning || v.WorkerID != a.workerID {
				return fmt.Errorf("job %s on %s", v.Status, v.WorkerID)
			}
			return nil
		})
		a.close()
		b := openVolunteer(t, browser, pageURL)
		v := waitDone(t, c, id, 30*time.Second)
		if v.Status != job.StatusCompleted || v.Attempt != 2 || v.WorkerID != b.workerID || string(v.Result) != `"finished"` {
			t.Errorf("re-queued job: status %s attempt %d worker %s (second tab %s) result %s error %q",
				v.Status, v.Attempt, v.WorkerID, b.workerID, v.Result, v.Error)
		}
		b.close()
	})

	t.Run("behind a TLS reverse proxy", func(t *testing.T) {
		target, err := url.Parse(srvURL)
		if err != nil {
			t.Fatal(err)
		}
		proxy := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(target))
		defer proxy.Close()
		p := openVolunteer(t, browser, proxy.URL+"/volunteer/")
		defer p.close()
		if got := eval[string](p, "location.protocol"); got != "https:" {
			t.Fatalf("page over %s", got)
		}
		id := submitJob(t, c, job.Request{Type: job.TypeWasm, Wasm: module, Input: json.RawMessage(`{"x":5}`)})
		v := waitDone(t, c, id, 30*time.Second)
		if v.Status != job.StatusCompleted || v.WorkerID != p.workerID || !strings.Contains(string(v.Result), `"double":10`) {
			t.Errorf("job through the proxy: status %s worker %s (page %s) result %s error %q", v.Status, v.WorkerID, p.workerID, v.Result, v.Error)
		}
	})

	// Checked last, so that a request sent late would have arrived.
	for path, n := range rec.all() {
		if path != "/reachable" && path != "/favicon.ico" {
			t.Errorf("a job reached the network: %d request(s) to %s", n, path)
		}
	}
}

// compareRun checks that a job the page ran ended as the native runtime
// ends the same task: status, stdout, stderr, returned value, exit code
// and truncation. Error texts differ between engines; errHas must be in
// both.
func compareRun(t *testing.T, r *browserRun, workerID string, want job.Result, errHas string) {
	t.Helper()
	v := r.view
	if v.WorkerID != workerID {
		t.Errorf("%s: ran on %s, not on the page (%s)", r.name, v.WorkerID, workerID)
	}
	if v.Status != want.Status || v.Output != want.Output || v.Stderr != want.Stderr ||
		v.ExitCode != want.ExitCode || v.Truncated != want.Truncated || !sameJSON(v.Result, want.Result) {
		t.Errorf("%s: browser and native runtimes differ\nbrowser: status %s exit %d truncated %v result %s output %.200q stderr %.200q error %.300q\nnative:  status %s exit %d truncated %v result %s output %.200q stderr %.200q error %.300q",
			r.name, v.Status, v.ExitCode, v.Truncated, v.Result, v.Output, v.Stderr, v.Error,
			want.Status, want.ExitCode, want.Truncated, want.Result, want.Output, want.Stderr, want.Error)
	}
	if errHas != "" && (!strings.Contains(v.Error, errHas) || !strings.Contains(want.Error, errHas)) {
		t.Errorf("%s: error %q (native %q), want both to contain %q", r.name, v.Error, want.Error, errHas)
	}
	if (v.Error == "") != (want.Error == "") {
		t.Errorf("%s: error %q, native error %q", r.name, v.Error, want.Error)
	}
}

// sameJSON reports whether a and b are the same JSON, byte for byte after
// compacting (both runtimes encode values the same way).
func sameJSON(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}
