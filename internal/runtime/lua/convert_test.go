package lua

import (
	"reflect"
	"testing"

	glua "github.com/yuin/gopher-lua"
)

// TestSetFieldsIsRawSetString: a table filled by setFields is the table
// RawSetString makes of the same members, key order included.
func TestSetFieldsIsRawSetString(t *testing.T) {
	if !layoutMatches {
		t.Skip("gopher-lua's LTable is not the layout setFields knows")
	}
	L := glua.NewState(glua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, members := range [][]jsonMember{
		{{"a", glua.LNumber(1)}},
		{{"b", glua.LString("x")}, {"a", glua.LTrue}, {"c", glua.LNumber(2)}},
		{{"a", glua.LNumber(1)}, {"b", glua.LNil}, {"a", glua.LNumber(2)}, {"c", glua.LFalse}},
		{{"n", glua.LNil}},
		{{"a", glua.LNumber(1)}, {"a", glua.LNil}, {"b", glua.LNumber(3)}},
	} {
		want := L.CreateTable(0, len(members))
		for _, m := range members {
			want.RawSetString(m.key, m.val)
		}
		got := L.CreateTable(0, len(members))
		setFields(got, members)
		w, g := layoutOf(want), layoutOf(got)
		if !reflect.DeepEqual(w.strdict, g.strdict) || !reflect.DeepEqual(w.keys, g.keys) || !reflect.DeepEqual(w.k2i, g.k2i) {
			t.Errorf("%v: got %v %v %v, want %v %v %v", members, g.strdict, g.keys, g.k2i, w.strdict, w.keys, w.k2i)
		}
		var wk, gk []glua.LValue
		for k, _ := want.Next(glua.LNil); k != glua.LNil; k, _ = want.Next(k) {
			wk = append(wk, k)
		}
		for k, _ := got.Next(glua.LNil); k != glua.LNil; k, _ = got.Next(k) {
			gk = append(gk, k)
		}
		if !reflect.DeepEqual(wk, gk) {
			t.Errorf("%v: next walks %v, want %v", members, gk, wk)
		}
	}
}
