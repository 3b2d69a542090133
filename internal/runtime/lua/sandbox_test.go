package lua

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	glua "github.com/yuin/gopher-lua"

	"github.com/zerverless/zerverless/internal/job"
)

// TestPlanMatchesOpenSandbox: a state given its libraries from the plan has
// the libraries openSandbox opens, key for key, with the same Go functions
// and constants and the same string metatable; only its own tables and
// function objects, whose environment is its own globals. next walks
// every key of every table. So with the key order copied (the build's
// LTable has tableLayout) and without.
func TestPlanMatchesOpenSandbox(t *testing.T) {
	if !layoutMatches {
		t.Error("gopher-lua's LTable is not tableLayout: library tables are filled key by key")
	}
	ref := glua.NewState(glua.Options{SkipOpenLibs: true})
	defer ref.Close()
	if err := openSandbox(ref, io.Discard, 1<<20); err != nil {
		t.Fatal(err)
	}
	want := describe(ref, ref.G.Global)
	for _, copyKeys := range []bool{false, true} {
		t.Run(fmt.Sprintf("copyKeys=%v", copyKeys), func(t *testing.T) {
			plan, err := newPlan(copyKeys)
			if err != nil {
				t.Fatal(err)
			}
			newState := func() *glua.LState {
				L := glua.NewState(glua.Options{SkipOpenLibs: true})
				t.Cleanup(L.Close)
				plan.open(L, io.Discard, cappedRep(1<<20))
				return L
			}
			a, b := newState(), newState()
			if got := describe(a, a.G.Global); got != want {
				t.Errorf("libraries from the plan:\n%s\nwant (openSandbox):\n%s", got, want)
			}
			if a.GetMetatable(glua.LString("")) != a.GetGlobal("string") {
				t.Error("the string metatable is not the state's own string table")
			}

			// Nothing but immutable values in common between two states.
			seen := map[any]string{}
			collect(a.G.Global, "_G", seen, map[*glua.LTable]bool{})
			shared := map[any]string{}
			collect(b.G.Global, "_G", shared, map[*glua.LTable]bool{})
			for obj, path := range shared {
				if other, ok := seen[obj]; ok {
					t.Errorf("%s of one state is %s of another", path, other)
				}
			}
			for obj, path := range seen {
				switch obj := obj.(type) {
				case *glua.LFunction:
					if obj.Env != a.G.Global {
						t.Errorf("%s's environment is not its state's globals", path)
					}
				case *glua.LTable:
					var walked, all []string
					for k, _ := obj.Next(glua.LNil); k != glua.LNil; k, _ = obj.Next(k) {
						walked = append(walked, k.String())
					}
					obj.ForEach(func(k, _ glua.LValue) { all = append(all, k.String()) })
					sort.Strings(walked)
					sort.Strings(all)
					if !slices.Equal(walked, all) {
						t.Errorf("next walks %s's keys %v, want %v", path, walked, all)
					}
				}
			}
		})
	}
}

// describe lists the tables reachable from t, their keys and what each
// holds: a Go function by its code (and upvalues), a table by its first
// path, a constant by its value.
func describe(L *glua.LState, g *glua.LTable) string {
	var lines []string
	paths := map[*glua.LTable]string{}
	var walk func(t *glua.LTable, path string)
	var show func(v glua.LValue, path string) string
	show = func(v glua.LValue, path string) string {
		switch v := v.(type) {
		case *glua.LTable:
			if p, ok := paths[v]; ok {
				return "table " + p
			}
			walk(v, path)
			return "table " + path
		case *glua.LFunction:
			s := fmt.Sprintf("go function %x", reflect.ValueOf(v.GFunction).Pointer())
			for i, uv := range v.Upvalues {
				s += " up" + fmt.Sprint(i) + "=" + show(uv.Value(), path+"^"+fmt.Sprint(i))
			}
			return s
		default:
			return v.Type().String() + " " + v.String()
		}
	}
	walk = func(t *glua.LTable, path string) {
		paths[t] = path
		if t.Metatable != glua.LNil {
			lines = append(lines, path+" has a metatable")
		}
		var keys []string
		t.ForEach(func(k, _ glua.LValue) { keys = append(keys, k.String()) })
		sort.Strings(keys)
		for _, k := range keys {
			v := t.RawGetString(k)
			if k == "print" || k == "rep" {
				// Made for each state: compare the kind only.
				lines = append(lines, path+"."+k+" = "+v.Type().String())
				continue
			}
			lines = append(lines, path+"."+k+" = "+show(v, path+"."+k))
		}
	}
	walk(g, "_G")
	lines = append(lines, "string metatable = "+show(L.GetMetatable(glua.LString("")), "(string metatable)"))
	return strings.Join(lines, "\n")
}

// collect records every table and function reachable from t.
func collect(t *glua.LTable, path string, into map[any]string, done map[*glua.LTable]bool) {
	if done[t] {
		return
	}
	done[t] = true
	into[t] = path
	t.ForEach(func(k, v glua.LValue) {
		p := path + "." + k.String()
		switch v := v.(type) {
		case *glua.LTable:
			collect(v, p, into, done)
		case *glua.LFunction:
			into[v] = p
			for i, uv := range v.Upvalues {
				if f, ok := uv.Value().(*glua.LFunction); ok {
					into[f] = fmt.Sprintf("%s^%d", p, i)
				}
			}
		}
	})
}

// TestGuestChangesDoNotReachTheNextRun: a run that changes every library it
// can reach (their tables, the string metatable, the globals, their
// metatable, the environment) leaves the next run on the same runtime with
// fresh ones, whether its state was a spare or made for it.
func TestGuestChangesDoNotReachTheNextRun(t *testing.T) {
	const mutate = `
		local g = _G
		local smt = getmetatable("")
		smt.__index = {upper = function() return "owned" end}
		smt.__add = function() return "owned" end
		string.upper = function() return "owned" end
		string.secret = "leaked"
		string.rep = nil
		table.insert = nil
		table.secret = "leaked"
		math.pi = 3
		math.floor = function() return "owned" end
		coroutine.wrap = nil
		json.encode = function() return "owned" end
		print = function() end
		pairs = nil
		secret = "leaked"
		rawset(_G, "secret2", "leaked")
		_G._G = nil
		setmetatable(string, {__index = function() return "owned" end})
		setmetatable(g, {__index = function() return "leaked" end, __newindex = function() end})
		string.len = nil
		local n = 0
		for k in next, string do n = n + 1 end
		for k in next, g do n = n + 1 end
		setfenv(0, {secret = "leaked"})
		return "mutated"`
	const observe = `
		local bad = {}
		local function check(ok, what) if not ok then bad[#bad + 1] = what end end
		check(getmetatable("").__index == string, "string metatable __index")
		check(getmetatable("").__add == nil, "string metatable __add")
		check(("x"):upper() == "X", "method on a string")
		check(string.upper("a") == "A", "string.upper")
		check(string.secret == nil, "string.secret")
		check(string.rep("a", 3) == "aaa", "string.rep")
		check(getmetatable(string) == nil, "string's metatable")
		check(type(table.insert) == "function" and table.secret == nil, "table")
		check(math.pi > 3.14 and math.floor(2.5) == 2, "math")
		check(type(coroutine.wrap) == "function", "coroutine.wrap")
		check(json.encode({1}) == "[1]", "json.encode")
		check(type(print) == "function" and type(pairs) == "function", "print and pairs")
		check(secret == nil and secret2 == nil and rawget(_G, "secret") == nil, "globals")
		check(_G._G == _G and getfenv(0) == _G, "_G and the environment")
		check(getmetatable(_G) == nil, "_G's metatable")
		check(undefined_name == nil, "__index on _G")
		check(type(string.len) == "function", "string.len")
		local keys = {}
		for _, lib in ipairs({_G, string, table, math, coroutine, json}) do
			for k in pairs(lib) do keys[#keys + 1] = k end
		end
		table.sort(keys)
		return {bad = bad, keys = table.concat(keys, " ")}`
	fresh, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := fresh.Run(context.Background(), job.Task{Spec: job.Spec{Code: observe}})
	if err != nil || first.Status != job.StatusCompleted || !strings.HasPrefix(string(first.Result), `{"bad":{},"keys":"_G _GOPHER`) {
		t.Fatalf("observing a fresh state: %+v %v", first, err)
	}
	for name, spares := range map[string]int{"spare states": 1, "no spare states": -1} {
		t.Run(name, func(t *testing.T) {
			r, err := New(Config{SpareStates: spares})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				res, err := r.Run(context.Background(), job.Task{Spec: job.Spec{Code: mutate}})
				if err != nil || res.Status != job.StatusCompleted || string(res.Result) != `"mutated"` {
					t.Fatalf("mutating run %d: %+v %v", i, res, err)
				}
				res, err = r.Run(context.Background(), job.Task{Spec: job.Spec{Code: observe}})
				if err != nil || res.Status != job.StatusCompleted {
					t.Fatalf("observing run %d: %+v %v", i, res, err)
				}
				if string(res.Result) != string(first.Result) {
					t.Fatalf("observing run %d saw the earlier run's changes: %s, want %s", i, res.Result, first.Result)
				}
			}
		})
	}
}

// TestDecodeJSONMatchesUnmarshal: reading JSON straight into Lua values
// gives what json.Unmarshal into an any and toLua give, and the same error
// for input that is not JSON.
func TestDecodeJSONMatchesUnmarshal(t *testing.T) {
	inputs := []string{
		`null`, `true`, `false`, `0`, `-1.5e3`, `1e400`, `-0`, `12345678901234567890`,
		`""`, `"plain"`, `"esc\"aped\\ \/ \n \u00e9 \ud83d\ude00"`, `"\ud800"`, "\"\xff\xfe invalid utf-8\"", `"é"`,
		`[]`, `{}`, ` [ 1 , [ 2 , { } ] , null , "x" ] `, `{"a":1,"a":2}`, `{"a":1,"a":null}`, `[null,null,3]`,
		`{"k\u0000ey":{"nested":[{"deep":[true,false]}]},"":0}`, `{"big":[1e400]}`, "\t\n{ \"s\" : \"v\" }\r\n",
		// Not JSON.
		``, ` `, `{`, `[1,]`, `{"a":1,}`, `nul`, `01`, `"unterminated`, `{"a" 1}`, `[1] [2]`, "\"ctl\x01\"", `NaN`,
	}
	L := glua.NewState(glua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, in := range inputs {
		got, gotErr := decodeJSON(L, []byte(in))
		var v any
		wantErr := json.Unmarshal([]byte(in), &v)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Errorf("%q: error %v, want %v", in, gotErr, wantErr)
			continue
		}
		if wantErr != nil {
			continue
		}
		if g, w := dump(got), dump(toLua(L, v)); g != w {
			t.Errorf("%q: %s, want %s", in, g, w)
		}
	}
}

// dump writes a Lua value with sorted keys and the array part's length.
func dump(v glua.LValue) string {
	t, ok := v.(*glua.LTable)
	if !ok {
		return fmt.Sprintf("%s(%q)", v.Type(), v.String())
	}
	var parts []string
	t.ForEach(func(k, v glua.LValue) { parts = append(parts, fmt.Sprintf("%s(%q)=%s", k.Type(), k.String(), dump(v))) })
	sort.Strings(parts)
	return fmt.Sprintf("{len=%d %s}", t.Len(), strings.Join(parts, " "))
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2,{"b":null}],"c":"d\u00e9"}`, `[1e400]`, `"\ud800"`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	L := glua.NewState(glua.Options{SkipOpenLibs: true})
	defer L.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		got, gotErr := decodeJSON(L, b)
		var v any
		wantErr := json.Unmarshal(b, &v)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("error %v, want %v", gotErr, wantErr)
		}
		if wantErr == nil {
			if g, w := dump(got), dump(toLua(L, v)); g != w {
				t.Fatalf("%s, want %s", g, w)
			}
		}
	})
}

// TestInlinePrepare: with Inline, a run takes the spare state Prepare made
// and leaves making the next to Prepare: no goroutine makes one behind it.
func TestInlinePrepare(t *testing.T) {
	r, err := New(Config{Inline: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Prepare()
	if n := len(r.spare); n != 1 {
		t.Fatalf("%d spare states after Prepare, want 1", n)
	}
	for i := range 3 {
		res, err := r.Run(context.Background(), job.Task{Spec: job.Spec{Code: `x = (x or 0) + 1 return x`}})
		if err != nil || res.Status != job.StatusCompleted || string(res.Result) != "1" {
			t.Fatalf("run %d: %+v %v", i, res, err)
		}
		if n := len(r.spare); n != 0 || r.refilling.Load() {
			t.Fatalf("run %d: %d spare states, refilling %v; want none made behind the run", i, n, r.refilling.Load())
		}
		r.Prepare()
		if n := len(r.spare); n != 1 {
			t.Fatalf("run %d: %d spare states after Prepare, want 1", i, n)
		}
	}
}
