package lua

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

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

// A libraryPlan is the sandbox's libraries as openSandbox leaves them: their
// tables, the Go functions and the constants in them, and the string
// metatable. It is read once, from a state that never runs code, and every
// state is given its libraries from it: new tables and new function objects
// each time (with the state's globals as their environment), so that a
// guest can change nothing another state sees. Only Go code and immutable
// values (strings, numbers, booleans) are common to states.
//
// Building from the plan skips what opening the libraries one by one costs:
// a protected call per library, the registry's table of loaded modules
// (which no guest can reach: require, module and debug are not opened),
// the lookups of a module's path, and the functions the sandbox then
// removes.
type libraryPlan struct {
	// tables[0] is the globals table.
	tables []tablePlan
	// funcs are the Go functions; a function's upvalues refer only to
	// tables and to functions before it.
	funcs []funcPlan
	// stringMeta is the index in tables of the strings' metatable.
	stringMeta int
	// repTable is the index in tables of the string library. print (in
	// the globals) and string.rep are made for each state.
	repTable int
	// plainFuncs is how many of funcs have no upvalues.
	plainFuncs int
}

type tablePlan struct {
	fields []fieldPlan
	// order is the key order RawSetString gives the fields, copied into
	// each state's table (nil: the fields are set with RawSetString).
	order *tableKeys
}

type fieldPlan struct {
	key string
	ref valueRef
}

// valueRef is a value of the plan: a table (table > 0, its index plus
// one), a function (fn > 0, its index plus one), a function made for each
// state (made: print or string.rep) or an immutable value.
type valueRef struct {
	table, fn int
	made      madeFunc
	value     glua.LValue
}

type madeFunc byte

const (
	notMade madeFunc = iota
	madePrint
	madeRep
)

type funcPlan struct {
	fn       glua.LGFunction
	upvalues []valueRef
}

// sandboxPlan is read once, from a state opened by openSandbox.
var sandboxPlan = sync.OnceValues(func() (*libraryPlan, error) { return newPlan(layoutMatches) })

// newPlan reads the plan of the sandbox's libraries; with copyKeys, its
// tables are given their key order as copies (see tableLayout).
func newPlan(copyKeys bool) (*libraryPlan, error) {
	L := glua.NewState(glua.Options{SkipOpenLibs: true})
	defer L.Close()
	if err := openSandbox(L, io.Discard, 0); err != nil {
		return nil, err
	}
	str, ok := L.GetGlobal(glua.StringLibName).(*glua.LTable)
	if !ok {
		return nil, errors.New("string library missing")
	}
	// Made for each state (open).
	L.SetGlobal("print", glua.LNil)
	str.RawSetString("rep", glua.LNil)
	return readPlan(L, copyKeys)
}

// globalsRoom is the room for more keys that a state's globals are made
// with: a run sets INPUT, and most code a few globals of its own.
const globalsRoom = 8

// planReader walks a state's libraries into a plan.
type planReader struct {
	plan   *libraryPlan
	tables map[*glua.LTable]int
	funcs  map[*glua.LFunction]int
}

// readPlan reads the plan of L's libraries. It refuses what a plan cannot
// copy: a table with a metatable or keys other than strings, a function
// written in Lua, a userdata, a metatable of a type other than string.
func readPlan(L *glua.LState, copyKeys bool) (*libraryPlan, error) {
	r := &planReader{plan: &libraryPlan{}, tables: map[*glua.LTable]int{}, funcs: map[*glua.LFunction]int{}}
	if _, err := r.table(L.G.Global); err != nil {
		return nil, err
	}
	str, ok := L.GetMetatable(glua.LString("")).(*glua.LTable)
	if !ok {
		return nil, errors.New("strings have no metatable")
	}
	i, err := r.table(str)
	if err != nil {
		return nil, err
	}
	r.plan.stringMeta = i
	strLib, ok := L.G.Global.RawGetString(glua.StringLibName).(*glua.LTable)
	if !ok {
		return nil, errors.New("string library missing")
	}
	r.plan.repTable = r.tables[strLib]
	r.plan.tables[0].fields = append(r.plan.tables[0].fields, fieldPlan{"print", valueRef{made: madePrint}})
	rt := &r.plan.tables[r.plan.repTable]
	rt.fields = append(rt.fields, fieldPlan{"rep", valueRef{made: madeRep}})
	if copyKeys {
		for i := range r.plan.tables {
			t := &r.plan.tables[i]
			t.order = keysOf(t.fields)
		}
		r.plan.tables[0].order.room = globalsRoom
	}
	for _, v := range []glua.LValue{glua.LNil, glua.LTrue, glua.LNumber(0), L.NewFunction(printTo(io.Discard)), L.NewTable()} {
		if L.GetMetatable(v) != glua.LNil {
			return nil, fmt.Errorf("%s values have a metatable", v.Type())
		}
	}
	return r.plan, nil
}

func (r *planReader) table(t *glua.LTable) (int, error) {
	if i, ok := r.tables[t]; ok {
		return i, nil
	}
	if t.Metatable != glua.LNil {
		return 0, errors.New("a library table has a metatable")
	}
	i := len(r.plan.tables)
	r.tables[t] = i
	r.plan.tables = append(r.plan.tables, tablePlan{})
	var fields []fieldPlan
	var err error
	t.ForEach(func(k, v glua.LValue) {
		ks, ok := k.(glua.LString)
		if !ok {
			err = errors.Join(err, fmt.Errorf("a library table has a %s key", k.Type()))
			return
		}
		ref, verr := r.value(v)
		err = errors.Join(err, verr)
		fields = append(fields, fieldPlan{key: string(ks), ref: ref})
	})
	if err != nil {
		return 0, err
	}
	r.plan.tables[i].fields = fields
	return i, nil
}

func (r *planReader) value(v glua.LValue) (valueRef, error) {
	switch v := v.(type) {
	case glua.LString, glua.LNumber, glua.LBool:
		return valueRef{value: v}, nil
	case *glua.LTable:
		i, err := r.table(v)
		return valueRef{table: i + 1}, err
	case *glua.LFunction:
		i, err := r.function(v)
		return valueRef{fn: i + 1}, err
	default:
		return valueRef{}, fmt.Errorf("a library holds a %s", v.Type())
	}
}

func (r *planReader) function(f *glua.LFunction) (int, error) {
	if i, ok := r.funcs[f]; ok {
		if i < 0 {
			return 0, errors.New("a library function is its own upvalue")
		}
		return i, nil
	}
	if !f.IsG || f.GFunction == nil {
		return 0, errors.New("a library function is written in Lua")
	}
	r.funcs[f] = -1
	fp := funcPlan{fn: f.GFunction}
	for _, uv := range f.Upvalues {
		if !uv.IsClosed() {
			return 0, errors.New("a library function has an open upvalue")
		}
		ref, err := r.value(uv.Value())
		if err != nil {
			return 0, err
		}
		fp.upvalues = append(fp.upvalues, ref)
	}
	i := len(r.plan.funcs)
	r.funcs[f] = i
	r.plan.funcs = append(r.plan.funcs, fp)
	if len(fp.upvalues) == 0 {
		r.plan.plainFuncs++
	}
	return i, nil
}

// open gives L fresh libraries from the plan, print writing to stdout and
// string.rep being rep.
func (p *libraryPlan) open(L *glua.LState, stdout io.Writer, rep glua.LGFunction) {
	tables := make([]*glua.LTable, len(p.tables))
	tables[0] = L.G.Global
	for i := 1; i < len(tables); i++ {
		tables[i] = L.CreateTable(0, len(p.tables[i].fields))
	}
	funcs := make([]*glua.LFunction, len(p.funcs))
	// The state's Go functions without upvalues, as L.NewFunction makes
	// them, in one allocation.
	plain := make([]glua.LFunction, p.plainFuncs)
	var ups []glua.LValue
	for i, f := range p.funcs {
		if len(f.upvalues) == 0 {
			fn := &plain[0]
			plain = plain[1:]
			*fn = glua.LFunction{IsG: true, Env: L.Env, GFunction: f.fn, Upvalues: []*glua.Upvalue{}}
			funcs[i] = fn
			continue
		}
		ups = ups[:0]
		for _, u := range f.upvalues {
			ups = append(ups, p.resolve(u, tables, funcs, nil, nil))
		}
		funcs[i] = L.NewClosure(f.fn, ups...)
	}
	print, repFn := L.NewFunction(printTo(stdout)), L.NewFunction(rep)
	for i, t := range p.tables {
		tb := tables[i]
		if t.order == nil {
			for _, f := range t.fields {
				tb.RawSetString(f.key, p.resolve(f.ref, tables, funcs, print, repFn))
			}
			continue
		}
		d := strdict(tb, len(t.fields))
		for _, f := range t.fields {
			d[f.key] = p.resolve(f.ref, tables, funcs, print, repFn)
		}
		t.order.set(tb)
	}
	L.SetMetatable(glua.LString(""), tables[p.stringMeta])
}

func (p *libraryPlan) resolve(v valueRef, tables []*glua.LTable, funcs []*glua.LFunction, print, rep *glua.LFunction) glua.LValue {
	switch {
	case v.table > 0:
		return tables[v.table-1]
	case v.fn > 0:
		return funcs[v.fn-1]
	case v.made == madePrint:
		return print
	case v.made == madeRep:
		return rep
	default:
		return v.value
	}
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
	v, err := decodeJSON(L, []byte(L.CheckString(1)))
	if err != nil {
		L.RaiseError("json.decode: %s", err)
	}
	L.Push(v)
	return 1
}
