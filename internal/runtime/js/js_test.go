package js_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime/js"
	"github.com/zerverless/zerverless/internal/runtime/runtimetest"
)

func TestConformance(t *testing.T) {
	runtimetest.Run(t, mustNew(js.DefaultConfig()), runtimetest.Programs{
		Success: job.Spec{Code: `
			console.log("hello from js");
			INPUT.x * 2;`},
		Error:     job.Spec{Code: `throw new Error("boom: something broke")`},
		ErrorText: "boom: something broke",
		Loop:      job.Spec{Code: `for (;;) {}`},
		Flood: job.Spec{Code: `
			const line = "x".repeat(1023);
			for (let i = 0; i < 2048; i++) console.log(line);`},
		Invalid: job.Spec{Code: `function (`},
		Live:    job.Spec{Code: `console.log("first"); for (;;) {}`},
	})
}

// run runs code with input under a 5 s deadline.
func run(t *testing.T, code, input string) job.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	spec := job.Spec{Code: code}
	if input != "" {
		spec.Input = json.RawMessage(input)
	}
	res, err := mustNew(js.Config{}).Run(ctx, job.Task{Spec: spec})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func TestNoHostAccess(t *testing.T) {
	cases := map[string]string{
		"require":        `require("fs")`,
		"process":        `process.exit(1)`,
		"fetch":          `fetch("http://example.com")`,
		"XMLHttpRequest": `new XMLHttpRequest()`,
		"setTimeout":     `setTimeout(() => {}, 1)`,
		"setInterval":    `setInterval(() => {}, 1)`,
		"Deno":           `Deno.readTextFile("/etc/passwd")`,
		"Bun":            `Bun.file("/etc/passwd")`,
		"import":         `import("fs")`,
		"global this":    `Function("return this")().process.env`,
		"globalThis":     `globalThis.require("child_process")`,
		"constructor":    `(function(){}).constructor("return process")().exit()`,
		"console escape": `console.log.constructor("return require")()("fs")`,
	}
	for name, code := range cases {
		t.Run(name, func(t *testing.T) {
			res := run(t, code, "")
			if res.Status != job.StatusFailed {
				t.Errorf("Status = %s, want failed", res.Status)
			}
		})
	}
}

func TestGlobalsAreOnlyTheStandardOnes(t *testing.T) {
	// Every global besides the ECMAScript ones and INPUT, console, module
	// and exports would be host access.
	res := run(t, `Object.getOwnPropertyNames(globalThis).filter(n => !/^[A-Z]/.test(n) && !/^(globalThis|isNaN|isFinite|parseInt|parseFloat|decodeURI|decodeURIComponent|encodeURI|encodeURIComponent|escape|unescape|eval|undefined|console|module|exports)$/.test(n))`, "")
	if res.Status != job.StatusCompleted {
		t.Fatalf("Status = %s (%s)", res.Status, res.Error)
	}
	if got := string(res.Result); got != `["INPUT"]` && got != `[]` {
		t.Errorf("unexpected globals: %s", got)
	}
}

func TestConsole(t *testing.T) {
	res := run(t, `
		console.log("a", 1, true, null, undefined, {b: [1, "c"]}, [2]);
		console.info("info");
		console.debug("debug");
		console.warn("warn", new Error("bad"));
		console.error("error", function f() {});
		const cyc = {}; cyc.self = cyc; console.log(cyc);`, "")
	if res.Status != job.StatusCompleted {
		t.Fatalf("Status = %s (%s)", res.Status, res.Error)
	}
	wantOut := "a 1 true null undefined {\"b\":[1,\"c\"]} [2]\ninfo\ndebug\n[object Object]\n"
	if res.Output != wantOut {
		t.Errorf("Output = %q, want %q", res.Output, wantOut)
	}
	if !strings.HasPrefix(res.Stderr, "warn Error: bad\nerror function f() {}\n") {
		t.Errorf("Stderr = %q", res.Stderr)
	}
}

func TestReturnedValue(t *testing.T) {
	cases := []struct {
		name, code, input, want string
	}{
		{"last expression", `const a = 20; a + 22`, "", `42`},
		{"object", `({a: [1, {b: null}]})`, "", `{"a":[1,{"b":null}]}`},
		{"input round trip", `INPUT`, `{"k":[true,"v",1.5]}`, `{"k":[true,"v",1.5]}`},
		{"no input", `typeof INPUT`, "", `"undefined"`},
		{"undefined", `undefined`, "", ``},
		{"function", `(function () {})`, "", ``},
		{"module.exports replaced", `module.exports = {r: 1}; 99`, "", `{"r":1}`},
		{"exports filled", `exports.r = 2; 99`, "", `{"r":2}`},
		{"module.exports scalar", `module.exports = 7; "ignored"`, "", `7`},
		{"resolved promise", `(async () => INPUT.x + 1)()`, `{"x":1}`, `2`},
		{"stringify overridden", `JSON.stringify = () => "nope"; [1]`, "", `[1]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := run(t, c.code, c.input)
			if res.Status != job.StatusCompleted {
				t.Fatalf("Status = %s (%s)", res.Status, res.Error)
			}
			if string(res.Result) != c.want {
				t.Errorf("Result = %s, want %s", res.Result, c.want)
			}
		})
	}
}

func TestFailures(t *testing.T) {
	cases := []struct {
		name, code, want string
	}{
		{"exception with stack", "function f() { throw new TypeError('nope') }\nf()", "at f"},
		{"thrown string", `throw "plain"`, "plain"},
		{"syntax error", `let = ;`, "job.js"},
		{"rejected promise", `Promise.reject(new Error("rejected"))`, "rejected"},
		{"pending promise", `new Promise(() => {})`, "never settled"},
		{"cyclic result", `const o = {}; o.o = o; o`, "result"},
		{"bigint result", `10n`, "result"},
		{"stack overflow", `function f() { return f() + 1 } f()`, "stack"},
		{"repeat bomb", `"x".repeat(1e12)`, "RangeError"},
		{"padStart bomb", `"x".padStart(1e12)`, "RangeError"},
		{"repeat invalid", `"x".repeat(-1)`, "RangeError"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := run(t, c.code, "")
			if res.Status != job.StatusFailed {
				t.Fatalf("Status = %s, want failed", res.Status)
			}
			if !strings.Contains(res.Error, c.want) {
				t.Errorf("Error = %q, want it to contain %q", res.Error, c.want)
			}
		})
	}
}

func TestCappedStringMethodsStillWork(t *testing.T) {
	res := run(t, `["ab".repeat(3), "5".padStart(3, "0"), "5".padEnd(2, "!")]`, "")
	if res.Status != job.StatusCompleted {
		t.Fatalf("Status = %s (%s)", res.Status, res.Error)
	}
	if got, want := string(res.Result), `["ababab","005","5!"]`; got != want {
		t.Errorf("Result = %s, want %s", got, want)
	}
}

func TestCatchableRangeError(t *testing.T) {
	res := run(t, `try { "x".repeat(1e12) } catch (e) { e instanceof RangeError }`, "")
	if string(res.Result) != "true" {
		t.Errorf("Result = %s (%s %s), want true", res.Result, res.Status, res.Error)
	}
}

func TestTimeoutCannotBeCaught(t *testing.T) {
	cases := map[string]string{
		"loop in callback": `[1].map(() => { for (;;) {} })`,
		"try/catch":        `for (;;) { try { for (;;) {} } catch (e) {} }`,
		"finally":          `for (;;) { try { for (;;) {} } finally { for (;;) {} } }`,
		"promise job":      `Promise.resolve().then(() => { for (;;) {} }); 1`,
	}
	for name, code := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			rt := mustNew(js.Config{StopGrace: 5 * time.Second})
			start := time.Now()
			res, err := rt.Run(ctx, job.Task{Spec: job.Spec{Code: code}})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != job.StatusTimeout {
				t.Errorf("Status = %s (%s), want timeout", res.Status, res.Error)
			}
			// With a long StopGrace, a prompt return proves the guest
			// itself stopped rather than being abandoned.
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("returned after %v", el)
			}
		})
	}
}

// mustNew is js.New for a configuration that is valid.
func mustNew(cfg js.Config) *js.JS {
	rt, err := js.New(cfg)
	if err != nil {
		panic(err)
	}
	return rt
}

func TestConfigValidate(t *testing.T) {
	for name, cfg := range map[string]js.Config{
		"negative output":     {OutputBytes: -1},
		"negative call stack": {MaxCallStackSize: -1},
		"negative string":     {MaxStringBytes: -1},
		"negative grace":      {StopGrace: -time.Second},
	} {
		if _, err := js.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
