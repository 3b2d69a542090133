package job

import (
	"encoding/base64"
	"slices"
	"strconv"
	"unicode/utf8"
)

// parseSimpleResponse parses, in one pass and without reflection, the
// answer most functions give: a response object whose status is a
// three-digit integer, whose headers are strings or booleans, whose body
// is a string, and whose strings hold no escapes, no control characters
// and only valid UTF-8, each member at most once. It returns exactly what
// parseFunctionResponse returns for such an answer; ok is false for
// anything else (including anything invalid), which parseFunctionResponse
// then handles. v is trimmed.
func parseSimpleResponse(v []byte) (resp FunctionResponse, ok bool) {
	p := simpleParser{b: v}
	if !p.byte('{') {
		return FunctionResponse{}, false
	}
	resp = FunctionResponse{Status: 200}
	var (
		seen               [4]bool // status, headers, body, body_base64
		body               []byte
		hasBody, hasStatus bool
		b64                bool
		headers            []byte // the headers object, read once it is known valid
	)
	if p.byte('}') {
		return FunctionResponse{}, false // {} is a value, not a response
	}
	for {
		key, ok := p.str()
		if !ok || !p.byte(':') {
			return FunctionResponse{}, false
		}
		idx := slices.Index(responseKeys, string(key))
		if idx < 0 || seen[idx] {
			return FunctionResponse{}, false
		}
		seen[idx] = true
		switch idx {
		case 0: // status
			st, ok := p.status()
			if !ok {
				return FunctionResponse{}, false
			}
			resp.Status, hasStatus = st, true
		case 1: // headers
			p.space()
			start := p.i
			if !p.headers(nil) {
				return FunctionResponse{}, false
			}
			headers = v[start:p.i]
		case 2: // body
			s, ok := p.str()
			if !ok {
				return FunctionResponse{}, false
			}
			body, hasBody = s, true
		case 3: // body_base64
			f, ok := p.boolean()
			if !ok {
				return FunctionResponse{}, false
			}
			b64 = f
		}
		if p.byte(',') {
			continue
		}
		if !p.byte('}') {
			return FunctionResponse{}, false
		}
		break
	}
	p.space()
	if p.i != len(p.b) || !hasStatus && !hasBody {
		return FunctionResponse{}, false
	}
	resp.Header = map[string][]string{}
	if headers != nil {
		hp := simpleParser{b: headers}
		if !hp.headers(resp.Header) {
			return FunctionResponse{}, false
		}
	}
	contentType := ""
	if hasBody {
		if b64 {
			out := make([]byte, base64.StdEncoding.DecodedLen(len(body)))
			n, err := base64.StdEncoding.Decode(out, body)
			if err != nil {
				return FunctionResponse{}, false // the general parser says why
			}
			resp.Body, contentType = out[:n], "application/octet-stream"
		} else {
			resp.Body, contentType = slices.Clone(body), "text/plain; charset=utf-8"
		}
	}
	if _, ok := resp.Header["Content-Type"]; !ok && len(resp.Body) > 0 {
		resp.Header["Content-Type"] = []string{contentType}
	}
	return resp, true
}

// simpleParser reads the JSON subset that parseSimpleResponse accepts.
type simpleParser struct {
	b []byte
	i int
}

func (p *simpleParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c (after whitespace) if it comes next.
func (p *simpleParser) byte(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string without escapes or control characters, of valid
// UTF-8, and returns its contents (a slice of p.b).
func (p *simpleParser) str() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	ascii := true
	for ; p.i < len(p.b); p.i++ {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, false
}

// status reads an integer from 200 to 599 written as three digits.
func (p *simpleParser) status() (int, bool) {
	p.space()
	if p.i+3 > len(p.b) {
		return 0, false
	}
	d := p.b[p.i : p.i+3]
	if d[0] < '2' || d[0] > '5' || d[1] < '0' || d[1] > '9' || d[2] < '0' || d[2] > '9' {
		return 0, false
	}
	p.i += 3
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case ',', '}', ' ', '\t', '\n', '\r':
		default:
			return 0, false // 200.5, 2000, 200e0
		}
	}
	return int(d[0]-'0')*100 + int(d[1]-'0')*10 + int(d[2]-'0'), true
}

func (p *simpleParser) boolean() (bool, bool) {
	p.space()
	switch {
	case len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "true":
		p.i += 4
		return true, true
	case len(p.b)-p.i >= 5 && string(p.b[p.i:p.i+5]) == "false":
		p.i += 5
		return false, true
	}
	return false, false
}

// headers reads {"name": "value" | true | false, ...} with valid header
// names, each once, and values HTTP can carry; into dst when it is not
// nil, under canonical names, without DroppedResponseHeaders.
func (p *simpleParser) headers(dst map[string][]string) bool {
	if !p.byte('{') {
		return false
	}
	if p.byte('}') {
		return true
	}
	var names [16][]byte
	n := 0
	for {
		name, ok := p.str()
		if !ok || !validHeaderName(string(name)) || !p.byte(':') {
			return false
		}
		for _, prev := range names[:min(n, len(names))] {
			if string(prev) == string(name) {
				return false
			}
		}
		if n >= len(names) {
			return false // many headers: the general parser
		}
		names[n] = name
		n++
		var value string
		p.space()
		if p.i < len(p.b) && p.b[p.i] == '"' {
			s, ok := p.str()
			if !ok {
				return false
			}
			if dst != nil {
				value = string(s)
			}
		} else {
			f, ok := p.boolean()
			if !ok {
				return false
			}
			value = "false"
			if f {
				value = "true"
			}
		}
		if dst != nil {
			key := canonicalHeader(string(name))
			if !slices.Contains(DroppedResponseHeaders, key) {
				dst[key] = append(dst[key], value)
			}
		}
		if p.byte(',') {
			continue
		}
		return p.byte('}')
	}
}

// AppendInput appends to b the JSON input of an invocation with request r
// and the deployment's env: {"req": r, "env": env}, or, when envBeside is
// set (Wasm), r's members with "env" beside them. It writes what
// encoding/json would (keys sorted, the same escapes), in one pass.
func (r *FunctionRequest) AppendInput(b []byte, env map[string]string, envBeside bool) []byte {
	if !envBeside {
		b = append(b, `{"req":`...)
	}
	b = append(b, `{"method":`...)
	b = AppendJSONString(b, r.Method)
	b = append(b, `,"path":`...)
	b = AppendJSONString(b, r.Path)
	b = append(b, `,"query":`...)
	b = appendStringMap(b, r.Query)
	b = append(b, `,"query_all":`...)
	if r.QueryAll == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		var small [16]string
		for i, k := range sortedKeys(small[:0], r.QueryAll) {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendJSONString(b, k)
			b = append(b, ':')
			vs := r.QueryAll[k]
			if vs == nil {
				b = append(b, "null"...)
				continue
			}
			b = append(b, '[')
			for j, v := range vs {
				if j > 0 {
					b = append(b, ',')
				}
				b = AppendJSONString(b, v)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `,"headers":`...)
	b = appendStringMap(b, r.Headers)
	b = append(b, `,"body":`...)
	b = AppendJSONString(b, r.Body)
	b = append(b, `,"body_base64":`...)
	b = strconv.AppendBool(b, r.BodyBase64)
	if envBeside {
		b = append(b, `,"env":`...)
	} else {
		b = append(b, `},"env":`...)
	}
	b = appendStringMap(b, env)
	return append(b, '}')
}

func appendStringMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	var small [16]string
	for i, k := range sortedKeys(small[:0], m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, k)
		b = append(b, ':')
		b = AppendJSONString(b, m[k])
	}
	return append(b, '}')
}

// sortedKeys appends m's keys to keys, sorted.
func sortedKeys[V any](keys []string, m map[string]V) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
