package lua

import (
	"maps"
	"reflect"
	"unsafe"

	glua "github.com/yuin/gopher-lua"
)

// tableLayout is gopher-lua's LTable, field for field (v1.1.2): its string
// keys are in strdict, and in keys and k2i, which give next (pairs) its
// order. LTable.RawSetString grows keys and k2i one key at a time; a
// library table of the plan is given copies of them made once instead,
// which hold only the keys (strings, immutable). layoutMatches says
// whether the build's LTable is this; when it is not, tables are filled
// with RawSetString.
type tableLayout struct {
	Metatable glua.LValue
	array     []glua.LValue
	dict      map[glua.LValue]glua.LValue
	strdict   map[string]glua.LValue
	keys      []glua.LValue
	k2i       map[glua.LValue]int
}

// layoutMatches is whether glua.LTable has tableLayout's fields: the same
// names, types and offsets, and the same size.
var layoutMatches = func() bool {
	want, got := reflect.TypeFor[tableLayout](), reflect.TypeFor[glua.LTable]()
	if want.Size() != got.Size() || want.NumField() != got.NumField() {
		return false
	}
	for i := range want.NumField() {
		w, g := want.Field(i), got.Field(i)
		if w.Name != g.Name || w.Type != g.Type || w.Offset != g.Offset {
			return false
		}
	}
	return true
}()

func layoutOf(t *glua.LTable) *tableLayout { return (*tableLayout)(unsafe.Pointer(t)) }

// tableKeys is the key order of a library table: its keys as next walks
// them, and their positions.
type tableKeys struct {
	keys []glua.LValue
	k2i  map[glua.LValue]int
	// room is the room for more keys a copy of keys is given (the
	// globals': every run sets a few).
	room int
}

// keysOf returns the key order a table filled with fields by RawSetString
// has.
func keysOf(fields []fieldPlan) *tableKeys {
	t := glua.LTable{Metatable: glua.LNil}
	for _, f := range fields {
		t.RawSetString(f.key, glua.LTrue)
	}
	l := layoutOf(&t)
	return &tableKeys{keys: l.keys, k2i: l.k2i}
}

// set sets t's key order to a copy of k's; t's strdict must hold the
// fields keysOf was given, and only them.
func (k *tableKeys) set(t *glua.LTable) {
	l := layoutOf(t)
	l.keys = append(make([]glua.LValue, 0, len(k.keys)+k.room), k.keys...)
	l.k2i = maps.Clone(k.k2i)
}

// strdict is t's map of string keys, made for n keys if t has none.
func strdict(t *glua.LTable, n int) map[string]glua.LValue {
	l := layoutOf(t)
	if l.strdict == nil {
		l.strdict = make(map[string]glua.LValue, n)
	}
	return l.strdict
}

// setFields sets t's fields to members, one by one, as RawSetString would:
// a later member of a key replaces an earlier one and keeps its place in
// the order, nil members are not set. t must be new, made by CreateTable
// with room for members. The key order is made at its full size, not
// grown a key at a time.
func setFields(t *glua.LTable, members []jsonMember) {
	if !layoutMatches || len(members) == 0 {
		for _, m := range members {
			t.RawSetString(m.key, m.val)
		}
		return
	}
	l := layoutOf(t)
	if l.strdict == nil {
		l.strdict = make(map[string]glua.LValue, len(members))
	}
	l.keys = make([]glua.LValue, 0, len(members))
	l.k2i = make(map[glua.LValue]int, len(members))
	for _, m := range members {
		if m.val == glua.LNil {
			delete(l.strdict, m.key)
			continue
		}
		l.strdict[m.key] = m.val
		k := glua.LValue(glua.LString(m.key))
		if _, ok := l.k2i[k]; !ok {
			l.k2i[k] = len(l.keys)
			l.keys = append(l.keys, k)
		}
	}
}
