package job

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseFunctionResponse(t *testing.T) {
	text := map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}}
	js := map[string][]string{"Content-Type": {"application/json"}}
	for _, tc := range []struct {
		in     string
		status int
		header map[string][]string
		body   string
		err    string
	}{
		{in: ``, status: 204, header: map[string][]string{}},
		{in: `null`, status: 204, header: map[string][]string{}},
		{in: `"hi"`, status: 200, header: text, body: "hi"},
		{in: `42`, status: 200, header: js, body: "42"},
		{in: `[1,2]`, status: 200, header: js, body: "[1,2]"},
		{in: `{}`, status: 200, header: js, body: "{}"},
		// Plain objects that only look like responses stay values.
		{in: `{"status":"ok","count":2}`, status: 200, header: js, body: `{"status":"ok","count":2}`},
		{in: `{"status":"ok"}`, status: 200, header: js, body: `{"status":"ok"}`},
		{in: `{"headers":{}}`, status: 200, header: js, body: `{"headers":{}}`},
		{in: `{"body":"x","extra":1}`, status: 200, header: js, body: `{"body":"x","extra":1}`},
		// Response objects.
		{in: `{"status":201}`, status: 201, header: map[string][]string{}},
		{in: `{"body":"x"}`, status: 200, header: text, body: "x"},
		{in: `{"status":404,"body":{"a":1}}`, status: 404, header: js, body: `{"a":1}`},
		{in: `{"status":200,"body":"aGk=","body_base64":true}`, status: 200,
			header: map[string][]string{"Content-Type": {"application/octet-stream"}}, body: "hi"},
		{in: `{"status":200,"headers":{"content-type":"text/html","x-n":3,"x-b":true,"set-cookie":["a=1","b=2"],"X-Nil":null},"body":"<p>"}`,
			status: 200, body: "<p>", header: map[string][]string{"Content-Type": {"text/html"}, "X-N": {"3"}, "X-B": {"true"}, "Set-Cookie": {"a=1", "b=2"}}},
		{in: `{"status":200,"headers":{"Connection":"close","Transfer-Encoding":"chunked","Content-Length":"9","Strict-Transport-Security":"max-age=1","X-Ok":"1"}}`,
			status: 200, header: map[string][]string{"X-Ok": {"1"}}},
		// Errors.
		{in: `{"status":99}`, err: "status"},
		{in: `{"status":600}`, err: "status"},
		{in: `{"status":200.5}`, err: "status"},
		{in: `{"status":200,"headers":{"bad name":"x"}}`, err: "header name"},
		{in: `{"status":200,"headers":{"x":"a\r\nb"}}`, err: "CR"},
		{in: `{"status":200,"headers":{"x":{"y":1}}}`, err: "string, number"},
		{in: `{"status":200,"headers":{"x":[1]}}`, err: "strings"},
		{in: `{"body":"!!","body_base64":true}`, err: "base64"},
		{in: `{"body":"x","body_base64":"yes"}`, err: "boolean"},
		{in: `wasm got nothing`, err: "not JSON"},
		{in: `{"status":`, err: "not JSON"},
	} {
		got, err := ParseFunctionResponse(json.RawMessage(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || ErrorCode(err) != CodeInvalid {
				t.Errorf("%s: error %v, want one about %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got.Status != tc.status || string(got.Body) != tc.body || !reflect.DeepEqual(got.Header, tc.header) {
			t.Errorf("%s:\n got  %d %v %q\n want %d %v %q", tc.in, got.Status, got.Header, got.Body, tc.status, tc.header, tc.body)
		}
	}
}

func TestFunctionRequestBody(t *testing.T) {
	var r FunctionRequest
	r.SetBody([]byte("grüße"))
	if r.Body != "grüße" || r.BodyBase64 {
		t.Errorf("text body: %+v", r)
	}
	r.SetBody([]byte{0xff, 0x00})
	if r.Body != "/wA=" || !r.BodyBase64 {
		t.Errorf("binary body: %+v", r)
	}
}

func TestValidateFunctionName(t *testing.T) {
	for _, tc := range []struct {
		ns, path, field string
	}{
		{"demo", "hello", ""},
		{"demo", "a/b.c/d_e/~f-g", ""},
		{"demo", strings.Repeat("a/", 15) + "a", ""},
		{"api", "x", "namespace"},
		{"metrics", "x", "namespace"},
		{"Demo", "x", "namespace"},
		{"", "x", "namespace"},
		{"demo", "", "path"},
		{"demo", "/x", "path"},
		{"demo", "x/", "path"},
		{"demo", "a//b", "path"},
		{"demo", "a/../b", "path"},
		{"demo", ".", "path"},
		{"demo", "a b", "path"},
		{"demo", "a%2Fb", "path"},
		{"demo", strings.Repeat("a/", 16) + "a", "path"},
		{"demo", strings.Repeat("a", 65), "path"},
	} {
		err := ValidateFunctionName(tc.ns, tc.path)
		if got := ErrorField(err); got != tc.field || (tc.field == "") != (err == nil) {
			t.Errorf("%s/%s: error %v, want field %q", tc.ns, tc.path, err, tc.field)
		}
	}
}

func TestDecodeDeployRequest(t *testing.T) {
	lim := DefaultDeployLimits()
	for _, tc := range []struct{ body, field string }{
		{`{"runtime":"lua","code":"x"}`, ""},
		{`{"runtime":"wasm","wasm":"AGFzbQEAAAA="}`, ""},
		{`{"runtime":"python","code":"x","env":{"A_1":"v"},"timeout_seconds":300,"memory_mb":64,"max_concurrency":5}`, ""},
		{`{"code":"x"}`, "runtime"},
		{`{"runtime":"docker","code":"x"}`, "code"},
		{`{"runtime":"lua"}`, "code"},
		{`{"runtime":"lua","code":"x","wasm":"AGFzbQEAAAA="}`, "wasm"},
		{`{"runtime":"wasm","code":"x"}`, "code"},
		{`{"runtime":"wasm","wasm":"AAAA"}`, "wasm"},
		{`{"runtime":"wasm","wasm":1}`, "wasm"},
		{`{"runtime":"lua","code":"x","timeout_seconds":301}`, "timeout_seconds"},
		{`{"runtime":"lua","code":"x","timeout_seconds":0}`, "timeout_seconds"},
		{`{"runtime":"lua","code":"x","memory_mb":-1}`, "memory_mb"},
		{`{"runtime":"lua","code":"x","max_concurrency":10001}`, "max_concurrency"},
		{`{"runtime":"lua","code":"x","env":{"A-B":"v"}}`, "env"},
		{`{"runtime":"lua","code":"x","env":{"A":"v\u0000"}}`, "env"},
		{`{"runtime":"lua","code":"x","public":false}`, ""},
		{`{"runtime":"lua","code":"x","public":"no"}`, "public"},
		{`{"runtime":"lua","code":"x","private":true}`, "private"},
		{`{"runtime":"lua","code":"x"} {}`, ""},
	} {
		_, err := DecodeDeployRequest([]byte(tc.body), lim)
		if tc.body == `{"runtime":"lua","code":"x"} {}` {
			if err == nil {
				t.Errorf("%s: accepted trailing data", tc.body)
			}
			continue
		}
		if got := ErrorField(err); got != tc.field || (tc.field == "") != (err == nil) {
			t.Errorf("%s: error %v, want field %q", tc.body, err, tc.field)
		}
	}
}

// FuzzParseFunctionResponse checks that whatever a function returns is
// either refused as invalid or parsed into an answer HTTP can carry.
func FuzzParseFunctionResponse(f *testing.F) {
	for _, s := range []string{`"x"`, `{"status":201,"headers":{"a":"b"},"body":"x"}`, `{"body":"aGk=","body_base64":true}`, `[1]`, `null`, `{"status":200,"headers":{"x":["a","b"]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseFunctionResponse(b)
		if err != nil {
			if ErrorCode(err) != CodeInvalid {
				t.Fatalf("error without code invalid: %v", err)
			}
			return
		}
		if r.Status < 200 || r.Status > 599 {
			t.Fatalf("status %d", r.Status)
		}
		for k, vs := range r.Header {
			if !validHeaderName(k) || canonicalHeader(k) != k {
				t.Fatalf("header name %q", k)
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("header value %q", v)
				}
			}
		}
	})
}

// FuzzDecodeDeployRequest checks that a decoded request always validates.
func FuzzDecodeDeployRequest(f *testing.F) {
	f.Add([]byte(`{"runtime":"lua","code":"function handle() end","env":{"A":"b"},"timeout_seconds":1}`))
	f.Add([]byte(`{"runtime":"wasm","wasm":"AGFzbQEAAAA="}`))
	lim := DefaultDeployLimits()
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeDeployRequest(b, lim)
		if err != nil {
			if ErrorCode(err) != CodeInvalid {
				t.Fatalf("error without code invalid: %v", err)
			}
			return
		}
		if err := r.Validate(lim); err != nil {
			t.Fatalf("decoded request does not validate: %v", err)
		}
	})
}

// FuzzSimpleResponse checks that the one-pass parser of common answers
// agrees with the general one whenever it accepts an answer.
func FuzzSimpleResponse(f *testing.F) {
	for _, s := range []string{`{"status":201,"headers":{"a":"b"},"body":"x"}`, `{"body":"aGk=","body_base64":true}`,
		`{"status":200,"headers":{"content-type":"text/html","x-b":true,"Connection":"close"},"body":"<p>grüße</p>"}`,
		` { "status" : 404 , "body" : "" } `, `{"status":200,"body":"x","body":"y"}`, `{"status":200,"headers":{"a":"1","a":"2"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		b = bytes.TrimSpace(b)
		fast, ok := parseSimpleResponse(b)
		if !ok {
			return
		}
		slow, err := parseFunctionResponse(b)
		if err != nil {
			t.Fatalf("%s: the one-pass parser accepted what the general one refuses: %v", b, err)
		}
		if fast.Status != slow.Status || !bytes.Equal(fast.Body, slow.Body) || !reflect.DeepEqual(fast.Header, slow.Header) {
			t.Fatalf("%s:\n one-pass %d %v %q\n general  %d %v %q", b, fast.Status, fast.Header, fast.Body, slow.Status, slow.Header, slow.Body)
		}
	})
}

func BenchmarkParseFunctionResponse(b *testing.B) {
	v := json.RawMessage(`{"body":"hello bench","headers":{"Content-Type":"text/plain"},"status":200}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseFunctionResponse(v); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAppendInput(t *testing.T) {
	type script struct {
		Req *FunctionRequest  `json:"req"`
		Env map[string]string `json:"env"`
	}
	type wasm struct {
		*FunctionRequest
		Env map[string]string `json:"env"`
	}
	for _, tc := range []struct {
		req FunctionRequest
		env map[string]string
	}{
		{req: FunctionRequest{Method: "GET", Path: "/"}, env: map[string]string{}},
		{req: FunctionRequest{Method: "GET", Path: "/", Query: map[string]string{}, QueryAll: map[string][]string{}, Headers: map[string]string{}}},
		{req: FunctionRequest{Method: "POST", Path: "/a/b",
			Query:    map[string]string{"name": "bench", "z": "<&>", "a": "grüße\u2028\x00\"\\"},
			QueryAll: map[string][]string{"name": {"bench", "x"}, "z": {"<&>"}, "a": {}, "n": nil},
			Headers:  map[string]string{"host": "example.com", "user-agent": "Go-http-client/1.1", "cookie": "a=1; b=2", "x-bad": "\xff\xfe"},
			Body:     "/wA=", BodyBase64: true},
			env: map[string]string{"B": "2", "A": "1", "KEY": "line\nbreak\t"}},
	} {
		r := tc.req
		want, err := json.Marshal(script{Req: &r, Env: tc.env})
		if err != nil {
			t.Fatal(err)
		}
		if got := r.AppendInput(nil, tc.env, false); string(got) != string(want) {
			t.Errorf("script input:\n got  %s\n want %s", got, want)
		}
		want, err = json.Marshal(wasm{FunctionRequest: &r, Env: tc.env})
		if err != nil {
			t.Fatal(err)
		}
		if got := r.AppendInput(nil, tc.env, true); string(got) != string(want) {
			t.Errorf("wasm input:\n got  %s\n want %s", got, want)
		}
	}
}

func BenchmarkAppendInput(b *testing.B) {
	r := FunctionRequest{Method: "GET", Path: "/", Query: map[string]string{"name": "bench"},
		QueryAll: map[string][]string{"name": {"bench"}},
		Headers:  map[string]string{"host": "127.0.0.1:1234", "user-agent": "Go-http-client/1.1", "accept-encoding": "gzip"}}
	env := map[string]string{}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendInput(buf[:0], env, false)
	}
}
