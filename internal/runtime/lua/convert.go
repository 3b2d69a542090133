package lua

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"

	glua "github.com/yuin/gopher-lua"
)

// maxDepth bounds the nesting of tables encoded to JSON; deeper tables
// (including cyclic ones) are refused.
const maxDepth = 200

var errDepth = errors.New("table nested too deeply (or cyclic)")

// encodeJSON encodes a Lua value as JSON. A table whose keys are exactly
// the integers 1..n is an array; any other table, including the empty one,
// is an object whose keys are the tables' string or number keys.
func encodeJSON(v glua.LValue) ([]byte, error) {
	var buf bytes.Buffer
	if err := encodeValue(&buf, v, 0); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func encodeValue(buf *bytes.Buffer, v glua.LValue, depth int) error {
	switch v := v.(type) {
	case *glua.LNilType:
		buf.WriteString("null")
	case glua.LBool:
		buf.WriteString(strconv.FormatBool(bool(v)))
	case glua.LNumber:
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("cannot encode %v as JSON", f)
		}
		buf.WriteString(strconv.FormatFloat(f, 'f', -1, 64))
	case glua.LString:
		b, _ := json.Marshal(string(v))
		buf.Write(b)
	case *glua.LTable:
		if depth >= maxDepth {
			return errDepth
		}
		return encodeTable(buf, v, depth+1)
	default:
		return fmt.Errorf("cannot encode a %s as JSON", v.Type())
	}
	return nil
}

func encodeTable(buf *bytes.Buffer, t *glua.LTable, depth int) error {
	type entry struct {
		key string
		val glua.LValue
	}
	var entries []entry
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
			entries = append(entries, entry{string(k), v})
		case glua.LNumber:
			entries = append(entries, entry{strconv.FormatFloat(float64(k), 'f', -1, 64), v})
		default:
			keyErr = fmt.Errorf("cannot encode a table with a %s key as JSON", k.Type())
		}
	})
	if keyErr != nil {
		return keyErr
	}
	if n > 0 && isArray && t.MaxN() == n {
		buf.WriteByte('[')
		for i := 1; i <= n; i++ {
			if i > 1 {
				buf.WriteByte(',')
			}
			if err := encodeValue(buf, t.RawGetInt(i), depth); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].key < entries[j].key })
	buf.WriteByte('{')
	for i, e := range entries {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(e.key)
		buf.Write(k)
		buf.WriteByte(':')
		if err := encodeValue(buf, e.val, depth); err != nil {
			return err
		}
	}
	buf.WriteByte('}')
	return nil
}

// decodeJSON decodes one JSON value into Lua values.
func decodeJSON(L *glua.LState, s string) (glua.LValue, error) {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return glua.LNil, err
	}
	return toLua(L, v), nil
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
