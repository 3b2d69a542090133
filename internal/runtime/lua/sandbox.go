package lua

import (
	"fmt"
	"io"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// removedBase are the base functions a job must not reach: they read files,
// load modules or print to the host's stdout.
var removedBase = []string{"dofile", "loadfile", "require", "module", "_printregs"}

// openSandbox opens the safe libraries in L and installs print, json and
// the capped string.rep.
func openSandbox(L *glua.LState, stdout io.Writer, maxString int) error {
	libs := []struct {
		name string
		open glua.LGFunction
	}{
		{glua.BaseLibName, glua.OpenBase},
		{glua.TabLibName, glua.OpenTable},
		{glua.StringLibName, glua.OpenString},
		{glua.MathLibName, glua.OpenMath},
		{glua.CoroutineLibName, glua.OpenCoroutine},
	}
	for _, lib := range libs {
		if err := L.CallByParam(glua.P{Fn: L.NewFunction(lib.open), NRet: 0, Protect: true}, glua.LString(lib.name)); err != nil {
			return fmt.Errorf("%s: %w", lib.name, err)
		}
	}
	for _, name := range removedBase {
		L.SetGlobal(name, glua.LNil)
	}
	L.SetGlobal("print", L.NewFunction(printTo(stdout)))

	str, ok := L.GetGlobal(glua.StringLibName).(*glua.LTable)
	if !ok {
		return fmt.Errorf("string library missing")
	}
	str.RawSetString("dump", glua.LNil)
	str.RawSetString("rep", L.NewFunction(cappedRep(maxString)))

	jsonLib := L.NewTable()
	L.SetFuncs(jsonLib, map[string]glua.LGFunction{
		"encode": jsonEncode,
		"decode": jsonDecode,
	})
	L.SetGlobal("json", jsonLib)
	return nil
}

// printTo returns Lua's print writing to w.
func printTo(w io.Writer) glua.LGFunction {
	return func(L *glua.LState) int {
		var b strings.Builder
		for i := 1; i <= L.GetTop(); i++ {
			if i > 1 {
				b.WriteByte('\t')
			}
			b.WriteString(L.ToStringMeta(L.Get(i)).String())
		}
		b.WriteByte('\n')
		_, _ = io.WriteString(w, b.String())
		return 0
	}
}

// cappedRep is string.rep refusing results longer than max bytes, so that
// one call cannot exhaust the worker's memory.
func cappedRep(max int) glua.LGFunction {
	return func(L *glua.LState) int {
		s := L.CheckString(1)
		n := L.CheckInt(2)
		if n <= 0 || s == "" {
			L.Push(glua.LString(""))
			return 1
		}
		if n > max/len(s) {
			L.RaiseError("string.rep: result longer than %d bytes", max)
		}
		L.Push(glua.LString(strings.Repeat(s, n)))
		return 1
	}
}

func jsonEncode(L *glua.LState) int {
	b, err := encodeJSON(L.CheckAny(1))
	if err != nil {
		L.RaiseError("json.encode: %s", err)
	}
	L.Push(glua.LString(b))
	return 1
}

func jsonDecode(L *glua.LState) int {
	v, err := decodeJSON(L, L.CheckString(1))
	if err != nil {
		L.RaiseError("json.decode: %s", err)
	}
	L.Push(v)
	return 1
}
