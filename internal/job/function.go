package job

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// FunctionRequest is `req`, the HTTP request a function's handle receives.
// Its JSON field names are the contract of every runtime.
type FunctionRequest struct {
	Method string `json:"method"`
	// Path is the rest of the URL path after the deployment's own
	// (decoded): "/" for the deployment itself, "/a/b" below it.
	Path string `json:"path"`
	// Query has the first value of each query parameter, QueryAll every
	// value.
	Query    map[string]string   `json:"query"`
	QueryAll map[string][]string `json:"query_all"`
	// Headers are the request's headers by lowercase name (repeated
	// headers joined with ", "), without hop-by-hop headers, plus "host".
	Headers map[string]string `json:"headers"`
	// Body is the request body as text, or base64 when BodyBase64 is set
	// (a body that is not valid UTF-8).
	Body       string `json:"body"`
	BodyBase64 bool   `json:"body_base64"`
}

// SetBody stores b as text when it is valid UTF-8, as base64 otherwise.
func (r *FunctionRequest) SetBody(b []byte) {
	if utf8.Valid(b) {
		r.Body, r.BodyBase64 = string(b), false
		return
	}
	r.Body, r.BodyBase64 = base64.StdEncoding.EncodeToString(b), true
}

// FunctionResponse is the HTTP answer a function gave, ready to write.
type FunctionResponse struct {
	Status int
	// Header is keyed by canonical header name; hop-by-hop and
	// origin-wide headers are already dropped (DroppedResponseHeaders).
	Header map[string][]string
	Body   []byte
}

// HopByHopHeaders concern one connection, not the message (RFC 9110
// 7.6.1); they are neither passed to a function nor taken from one.
var HopByHopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// DroppedResponseHeaders are removed from a function's answer: the
// hop-by-hop headers; Content-Length, which the server computes from the
// body; and headers whose effect reaches the whole origin that every
// function and the platform share (Strict-Transport-Security, Alt-Svc,
// Clear-Site-Data, Public-Key-Pins).
var DroppedResponseHeaders = append(slices.Clone(HopByHopHeaders),
	"Content-Length", "Strict-Transport-Security", "Alt-Svc", "Clear-Site-Data",
	"Public-Key-Pins", "Public-Key-Pins-Report-Only")

// responseKeys are the members of a response object.
var responseKeys = []string{"status", "headers", "body", "body_base64"}

// ParseFunctionResponse turns what handle returned (JSON) into an HTTP
// answer:
//
//   - nothing (or null) is 204 No Content;
//   - a response object — an object whose members are only status,
//     headers, body and body_base64, with a numeric status or a body —
//     is that status (default 200), those headers and that body: a string
//     as it is (base64-decoded when body_base64 is true), any other JSON
//     value encoded as JSON;
//   - a string is 200 with the string as text/plain;
//   - any other value is 200 with the value as application/json.
//
// When the function sets no Content-Type, a text body is
// "text/plain; charset=utf-8", a base64 body "application/octet-stream" and
// a JSON body "application/json". A status outside 200-599, a header that
// is not a string, number, boolean or array of strings, a header name or
// value that HTTP cannot carry, or bad base64 is an error (invalid; the
// caller answers 502).
func ParseFunctionResponse(v json.RawMessage) (FunctionResponse, error) {
	v = bytes.TrimSpace(v)
	if resp, ok := parseSimpleResponse(v); ok {
		return resp, nil
	}
	return parseFunctionResponse(v)
}

// parseFunctionResponse is ParseFunctionResponse for any JSON value (v is
// trimmed).
func parseFunctionResponse(v json.RawMessage) (FunctionResponse, error) {
	if len(v) == 0 || string(v) == "null" {
		return FunctionResponse{Status: 204, Header: map[string][]string{}}, nil
	}
	switch v[0] {
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return FunctionResponse{}, Invalid("", "returned value is not JSON: %v", err)
		}
		return FunctionResponse{Status: 200, Body: []byte(s),
			Header: map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}}}, nil
	case '{':
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(v, &obj); err != nil {
			return FunctionResponse{}, Invalid("", "returned value is not JSON: %v", err)
		}
		if isResponseObject(obj) {
			return parseResponseObject(obj)
		}
	}
	if !json.Valid(v) {
		return FunctionResponse{}, Invalid("", "returned value is not JSON")
	}
	return FunctionResponse{Status: 200, Body: slices.Clone(v),
		Header: map[string][]string{"Content-Type": {"application/json"}}}, nil
}

func isResponseObject(obj map[string]json.RawMessage) bool {
	if len(obj) == 0 {
		return false
	}
	for k := range obj {
		if !slices.Contains(responseKeys, k) {
			return false
		}
	}
	st, hasStatus := obj["status"]
	_, hasBody := obj["body"]
	if hasStatus {
		st = bytes.TrimSpace(st)
		if len(st) == 0 || !(st[0] == '-' || st[0] >= '0' && st[0] <= '9') {
			return false
		}
	}
	if h, ok := obj["headers"]; ok {
		h = bytes.TrimSpace(h)
		if len(h) == 0 || h[0] != '{' {
			return false
		}
	}
	return hasStatus || hasBody
}

func parseResponseObject(obj map[string]json.RawMessage) (FunctionResponse, error) {
	resp := FunctionResponse{Status: 200, Header: map[string][]string{}}
	if st, ok := obj["status"]; ok {
		var f float64
		if err := json.Unmarshal(st, &f); err != nil || f != float64(int(f)) || f < 200 || f > 599 {
			return FunctionResponse{}, Invalid("status", "must be an integer HTTP status from 200 to 599, not %s", st)
		}
		resp.Status = int(f)
	}
	if h, ok := obj["headers"]; ok {
		if err := parseResponseHeaders(h, resp.Header); err != nil {
			return FunctionResponse{}, err
		}
	}
	var b64 bool
	if f, ok := obj["body_base64"]; ok && string(f) != "null" {
		if err := json.Unmarshal(f, &b64); err != nil {
			return FunctionResponse{}, Invalid("body_base64", "must be a boolean")
		}
	}
	contentType := ""
	if body, ok := obj["body"]; ok {
		body = bytes.TrimSpace(body)
		switch {
		case string(body) == "null":
		case body[0] == '"':
			var s string
			if err := json.Unmarshal(body, &s); err != nil {
				return FunctionResponse{}, Invalid("body", "is not a JSON string: %v", err)
			}
			if b64 {
				b, err := base64.StdEncoding.DecodeString(s)
				if err != nil {
					return FunctionResponse{}, Invalid("body", "body_base64 is set but body is not base64: %v", err)
				}
				resp.Body, contentType = b, "application/octet-stream"
			} else {
				resp.Body, contentType = []byte(s), "text/plain; charset=utf-8"
			}
		default:
			resp.Body, contentType = slices.Clone(body), "application/json"
		}
	}
	if _, ok := resp.Header["Content-Type"]; !ok && len(resp.Body) > 0 {
		resp.Header["Content-Type"] = []string{contentType}
	}
	return resp, nil
}

// parseResponseHeaders adds the headers object h to dst under canonical
// names, dropping DroppedResponseHeaders.
func parseResponseHeaders(h json.RawMessage, dst map[string][]string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(h, &m); err != nil {
		return Invalid("headers", "must be an object")
	}
	for name, raw := range m {
		if !validHeaderName(name) {
			return Invalid("headers", "%q is not a valid header name", name)
		}
		var values []string
		var one any
		if err := json.Unmarshal(raw, &one); err != nil {
			return Invalid("headers", "%s: %v", name, err)
		}
		switch x := one.(type) {
		case string:
			values = []string{x}
		case float64:
			values = []string{strconv.FormatFloat(x, 'f', -1, 64)}
		case bool:
			values = []string{strconv.FormatBool(x)}
		case []any:
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return Invalid("headers", "%s: an array of values must hold strings", name)
				}
				values = append(values, s)
			}
		case nil:
			continue
		default:
			return Invalid("headers", "%s: a value must be a string, number, boolean or array of strings", name)
		}
		for _, val := range values {
			if strings.ContainsAny(val, "\r\n\x00") {
				return Invalid("headers", "%s: a value must not contain CR, LF or NUL", name)
			}
		}
		key := canonicalHeader(name)
		if slices.Contains(DroppedResponseHeaders, key) {
			continue
		}
		dst[key] = append(dst[key], values...)
	}
	return nil
}

// validHeaderName reports whether s is an HTTP token (RFC 9110 5.6.2).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// canonicalHeader returns the canonical form of a valid header name, as
// net/http's CanonicalHeaderKey does ("content-type" → "Content-Type").
func canonicalHeader(s string) string {
	b := []byte(s)
	upper := true
	for i, c := range b {
		if upper && c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		} else if !upper && c >= 'A' && c <= 'Z' {
			b[i] = c - 'A' + 'a'
		}
		upper = c == '-'
	}
	return string(b)
}

// String describes r for logs.
func (r FunctionResponse) String() string {
	return fmt.Sprintf("%d (%d bytes)", r.Status, len(r.Body))
}
