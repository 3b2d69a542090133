package lua

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	glua "github.com/yuin/gopher-lua"

	"github.com/zerverless/zerverless/internal/job"
)

// maxDepth bounds the nesting of tables encoded to JSON; deeper tables
// (including cyclic ones) are refused.
const maxDepth = 200

var errDepth = errors.New("table nested too deeply (or cyclic)")

// encodeJSON encodes a Lua value as JSON. A table whose keys are exactly
// the integers 1..n is an array; any other table, including the empty one,
// is an object whose keys are the tables' string or number keys.
func encodeJSON(v glua.LValue) ([]byte, error) {
	e := jsonWriter{}
	if err := e.value(v, 0); err != nil {
		return nil, err
	}
	return e.b, nil
}

// jsonWriter appends JSON to b; entries holds the members of the objects
// being written, innermost last, while they are sorted.
type jsonWriter struct {
	b       []byte
	entries []jsonMember
}

func (e *jsonWriter) value(v glua.LValue, depth int) error {
	switch v := v.(type) {
	case *glua.LNilType:
		e.b = append(e.b, "null"...)
	case glua.LBool:
		e.b = strconv.AppendBool(e.b, bool(v))
	case glua.LNumber:
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("cannot encode %v as JSON", f)
		}
		e.b = strconv.AppendFloat(e.b, f, 'f', -1, 64)
	case glua.LString:
		e.b = job.AppendJSONString(e.b, string(v))
	case *glua.LTable:
		if depth >= maxDepth {
			return errDepth
		}
		return e.table(v, depth+1)
	default:
		return fmt.Errorf("cannot encode a %s as JSON", v.Type())
	}
	return nil
}

func (e *jsonWriter) table(t *glua.LTable, depth int) error {
	mark := len(e.entries)
	defer func() {
		clear(e.entries[mark:])
		e.entries = e.entries[:mark]
	}()
	n := 0
	isArray := true
	var keyErr error
	t.ForEach(func(k, v glua.LValue) {
		n++
		if num, ok := k.(glua.LNumber); !ok || float64(num) != math.Trunc(float64(num)) || num < 1 {
			isArray = false
		}
		switch k := k.(type) {
		case glua.LString:
			e.entries = append(e.entries, jsonMember{string(k), v})
		case glua.LNumber:
			e.entries = append(e.entries, jsonMember{strconv.FormatFloat(float64(k), 'f', -1, 64), v})
		default:
			keyErr = fmt.Errorf("cannot encode a table with a %s key as JSON", k.Type())
		}
	})
	if keyErr != nil {
		return keyErr
	}
	if n > 0 && isArray && t.MaxN() == n {
		e.b = append(e.b, '[')
		for i := 1; i <= n; i++ {
			if i > 1 {
				e.b = append(e.b, ',')
			}
			if err := e.value(t.RawGetInt(i), depth); err != nil {
				return err
			}
		}
		e.b = append(e.b, ']')
		return nil
	}
	entries := e.entries[mark:]
	slices.SortFunc(entries, func(a, b jsonMember) int { return strings.Compare(a.key, b.key) })
	e.b = append(e.b, '{')
	for i := range entries {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		// e.entries may grow under the value: index it afresh.
		m := e.entries[mark+i]
		e.b = job.AppendJSONString(e.b, m.key)
		e.b = append(e.b, ':')
		if err := e.value(m.val, depth); err != nil {
			return err
		}
	}
	e.b = append(e.b, '}')
	return nil
}

// decodeJSON decodes one JSON value into Lua values, as json.Unmarshal
// into an any and then toLua would, with json.Unmarshal's error for input
// that is not JSON.
func decodeJSON(L *glua.LState, b []byte) (glua.LValue, error) {
	if !json.Valid(b) {
		return glua.LNil, jsonError(b)
	}
	return decodeValidJSON(L, b)
}

// decodeValidJSON is decodeJSON for b that json.Valid accepts. It reads b
// straight into Lua values; what the direct reading does not take (a
// number out of float64's range) goes through json.Unmarshal and toLua,
// for the same value or error.
func decodeValidJSON(L *glua.LState, b []byte) (glua.LValue, error) {
	d := jsonReader{L: L, b: b}
	if v, ok := d.value(); ok {
		return v, nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return glua.LNil, err
	}
	return toLua(L, v), nil
}

// jsonError is json.Unmarshal's error for b, which is not valid JSON.
func jsonError(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return errors.New("invalid JSON")
}

// jsonReader reads JSON that json.Valid accepted into Lua values.
type jsonReader struct {
	L *glua.LState
	b []byte
	i int
	// members and elems hold the members of the objects and the elements
	// of the arrays being read, innermost last, until their table is made
	// at its full size.
	members []jsonMember
	elems   []glua.LValue
}

type jsonMember struct {
	key string
	val glua.LValue
}

func (d *jsonReader) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// value reads one value; ok is false when it cannot (see decodeJSON).
func (d *jsonReader) value() (v glua.LValue, ok bool) {
	d.space()
	switch d.b[d.i] {
	case '{':
		d.i++
		mark := len(d.members)
		for {
			d.space()
			if d.b[d.i] == '}' {
				d.i++
				break
			}
			if d.b[d.i] == ',' {
				d.i++
				d.space()
			}
			k, ok := d.string()
			if !ok {
				return nil, false
			}
			d.space()
			d.i++ // ':'
			v, ok := d.value()
			if !ok {
				return nil, false
			}
			d.members = append(d.members, jsonMember{k, v})
			d.space()
		}
		members := d.members[mark:]
		t := d.L.CreateTable(0, len(members))
		setFields(t, members)
		clear(members)
		d.members = d.members[:mark]
		return t, true
	case '[':
		d.i++
		mark := len(d.elems)
		for {
			d.space()
			if d.b[d.i] == ']' {
				d.i++
				break
			}
			if d.b[d.i] == ',' {
				d.i++
			}
			v, ok := d.value()
			if !ok {
				return nil, false
			}
			d.elems = append(d.elems, v)
			d.space()
		}
		elems := d.elems[mark:]
		t := d.L.CreateTable(len(elems), 0)
		for i, e := range elems {
			t.RawSetInt(i+1, e)
		}
		clear(elems)
		d.elems = d.elems[:mark]
		return t, true
	case '"':
		s, ok := d.string()
		return glua.LString(s), ok
	case 't':
		d.i += 4
		return glua.LTrue, true
	case 'f':
		d.i += 5
		return glua.LFalse, true
	case 'n':
		d.i += 4
		return glua.LNil, true
	default:
		start := d.i
		for d.i < len(d.b) && strings.IndexByte("+-.eE0123456789", d.b[d.i]) >= 0 {
			d.i++
		}
		f, err := strconv.ParseFloat(string(d.b[start:d.i]), 64)
		if err != nil {
			return nil, false
		}
		return glua.LNumber(f), true
	}
}

// string reads a string. One without escapes, in valid UTF-8, is taken as
// it is; any other is json.Unmarshal's (which replaces invalid UTF-8).
func (d *jsonReader) string() (string, bool) {
	start := d.i
	d.i++
	plain := true
	for d.b[d.i] != '"' {
		if d.b[d.i] == '\\' {
			plain = false
			d.i++
		}
		d.i++
	}
	d.i++
	raw := d.b[start:d.i]
	if plain && utf8.Valid(raw) {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// toLua converts a value decoded by encoding/json into Lua values: objects
// and arrays become tables (arrays indexed from 1), null becomes nil.
func toLua(L *glua.LState, v any) glua.LValue {
	switch v := v.(type) {
	case nil:
		return glua.LNil
	case bool:
		return glua.LBool(v)
	case float64:
		return glua.LNumber(v)
	case string:
		return glua.LString(v)
	case []any:
		t := L.CreateTable(len(v), 0)
		for i, e := range v {
			t.RawSetInt(i+1, toLua(L, e))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(v))
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	default:
		return glua.LNil
	}
}
