package lua_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime/lua"
	"github.com/zerverless/zerverless/internal/runtime/runtimetest"
)

func TestConformance(t *testing.T) {
	inline := lua.DefaultConfig()
	inline.Inline = true
	for name, cfg := range map[string]lua.Config{"aside": lua.DefaultConfig(), "inline": inline} {
		t.Run(name, func(t *testing.T) { conformance(t, mustNew(cfg)) })
	}
}

func conformance(t *testing.T, rt *lua.Lua) {
	runtimetest.Run(t, rt, runtimetest.Programs{
		Success: job.Spec{Code: `
			print("hello from lua")
			return INPUT.x * 2`},
		Error:     job.Spec{Code: `error("boom: something broke")`},
		ErrorText: "boom: something broke",
		Loop:      job.Spec{Code: `while true do end`},
		Flood: job.Spec{Code: `
			local line = string.rep("x", 1023)
			for i = 1, 2048 do print(line) end`},
		Invalid: job.Spec{Code: `this is not lua (`},
		Live:    job.Spec{Code: `print("first") while true do end`},
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
	res, err := mustNew(lua.Config{}).Run(ctx, job.Task{Spec: spec})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func TestSandbox(t *testing.T) {
	cases := map[string]string{
		"os.execute":      `os.execute("touch /tmp/zerverless-pwned")`,
		"io.open":         `io.open("/etc/passwd")`,
		"require":         `require("os")`,
		"dofile":          `dofile("/etc/passwd")`,
		"loadfile":        `loadfile("/etc/passwd")`,
		"debug":           `debug.getinfo(1)`,
		"package.loadlib": `package.loadlib("libc.so.6", "system")`,
		"load bytecode":   `assert(loadstring("\27Lua\81\0\1\4\8\4\8\0"))()`,
		"string.dump":     `string.dump(function() end)`,
		"string.rep bomb": `string.rep("x", 1e12)`,
		"module":          `module("x")`,
		"_printregs":      `_printregs()`,
		"channel":         `channel.make()`,
		"global via _G":   `_G.os.execute("id")`,
		"getfenv reach":   `getfenv(0).io.open("/etc/passwd")`,
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

func TestSafeLibrariesWork(t *testing.T) {
	res := run(t, `
		local words = {}
		for w in string.gmatch("b a c", "%a") do table.insert(words, w) end
		table.sort(words)
		local co = coroutine.wrap(function() coroutine.yield(math.floor(2.7)) end)
		local f = loadstring("return 1 + 1")
		return {table.concat(words, ","), co(), f(), (pcall(error, "x")), select(2, pcall(error, "y", 0))}`, "")
	if res.Status != job.StatusCompleted {
		t.Fatalf("Status = %s (%s)", res.Status, res.Error)
	}
	if got, want := string(res.Result), `["a,b,c",2,2,false,"y"]`; got != want {
		t.Errorf("Result = %s, want %s", got, want)
	}
}

func TestJSON(t *testing.T) {
	cases := []struct {
		name, code, input, want string
	}{
		{"input round trip", `return INPUT`, `{"a":[1,2,{"b":null}],"c":"d","e":true}`, `{"a":[1,2,{}],"c":"d","e":true}`},
		{"nil input", `return INPUT == nil`, "", `true`},
		{"empty table", `return {}`, "", `{}`},
		{"mixed table", `return {1, 2, k = "v"}`, "", `{"1":1,"2":2,"k":"v"}`},
		{"sparse array", `return {[1] = 1, [3] = 3}`, "", `{"1":1,"3":3}`},
		{"float", `return 0.5`, "", `0.5`},
		{"string escapes", `return "a\"b\n"`, "", `"a\"b\n"`},
		{"encode", `return json.encode({x = {1, 2}})`, "", `"{\"x\":[1,2]}"`},
		{"decode", `return json.decode('{"y":[true]}').y[1]`, "", `true`},
		{"no return", `local x = 1`, "", ``},
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

func TestUnencodableResultFails(t *testing.T) {
	cases := map[string]string{
		"function":    `return function() end`,
		"cycle":       `local t = {} t.t = t return t`,
		"nan":         `return 0/0`,
		"decode junk": `return json.decode("{")`,
	}
	for name, code := range cases {
		t.Run(name, func(t *testing.T) {
			res := run(t, code, "")
			if res.Status != job.StatusFailed || res.Error == "" {
				t.Errorf("Status = %s, Error = %q; want failed with a message", res.Status, res.Error)
			}
		})
	}
}

func TestStackLimits(t *testing.T) {
	cases := map[string]string{
		"recursion":              `local function f(n) return 1 + f(n + 1) end return f(1)`,
		"huge table constructor": `return select("#", unpack((function() local t = {} for i = 1, 1e6 do t[i] = i end return t end)()))`,
	}
	for name, code := range cases {
		t.Run(name, func(t *testing.T) {
			res := run(t, code, "")
			if res.Status != job.StatusFailed {
				t.Errorf("Status = %s, want failed", res.Status)
			}
			if !strings.Contains(res.Error, "overflow") {
				t.Errorf("Error = %q, want a stack overflow", firstLine(res.Error))
			}
		})
	}
}

func TestErrorCarriesTraceback(t *testing.T) {
	res := run(t, "local function f()\n error('deep') \nend\nf()", "")
	if res.Status != job.StatusFailed {
		t.Fatalf("Status = %s", res.Status)
	}
	if !strings.Contains(res.Error, "deep") || !strings.Contains(res.Error, "traceback") {
		t.Errorf("Error = %q, want the message and a traceback", res.Error)
	}
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

func TestTimeoutCannotBeCaught(t *testing.T) {
	cases := map[string]string{
		"pcall":     `while true do pcall(function() while true do end end) end`,
		"xpcall":    `while true do xpcall(function() while true do end end, function(e) return e end) end`,
		"coroutine": `local co = coroutine.wrap(function() while true do end end) co()`,
		"in sort":   `local t = {3, 2, 1} table.sort(t, function(a, b) while true do end end)`,
	}
	for name, code := range cases {
		for _, inline := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/inline=%v", name, inline), func(t *testing.T) {
				timeoutCannotBeCaught(t, code, inline)
			})
		}
	}
}

func timeoutCannotBeCaught(t *testing.T, code string, inline bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	rt := mustNew(lua.Config{StopGrace: 5 * time.Second, Inline: inline})
	start := time.Now()
	res, err := rt.Run(ctx, job.Task{Spec: job.Spec{Code: code}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != job.StatusTimeout {
		t.Errorf("Status = %s (%s), want timeout", res.Status, res.Error)
	}
	// With a long StopGrace, a prompt return proves the guest itself
	// stopped rather than being abandoned.
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("returned after %v", el)
	}
}

// mustNew is lua.New for a configuration that is valid.
func mustNew(cfg lua.Config) *lua.Lua {
	rt, err := lua.New(cfg)
	if err != nil {
		panic(err)
	}
	return rt
}

func TestConfigValidate(t *testing.T) {
	for name, cfg := range map[string]lua.Config{
		"negative output":     {OutputBytes: -1},
		"negative call stack": {CallStackSize: -1},
		"negative registry":   {RegistryMaxSize: -1},
		"negative string":     {MaxStringBytes: -1},
		"negative grace":      {StopGrace: -time.Second},
	} {
		if _, err := lua.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
