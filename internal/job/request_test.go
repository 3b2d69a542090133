package job

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDecodeRequest(t *testing.T) {
	lim := DefaultRequestLimits()
	tests := []struct {
		body  string
		field string // "" and ok=true for a valid request
		ok    bool
	}{
		{`{"job_type":"lua","code":"return 1"}`, "", true},
		{`{"job_type":"docker","docker_image":"alpine:latest","docker_command":["echo","Hello"],"input_data":{"key":"value"},"timeout_seconds":30}`, "", true},
		{`{"job_type":"lua","code":"x","timeout_seconds":0}`, "timeout_seconds", false},
		{`{"job_type":"lua","code":"x","timeout_seconds":1e9}`, "timeout_seconds", false},
		{`{"job_type":"lua","code":"x","memory_mb":-1}`, "memory_mb", false},
		{`{"job_type":"wasm","wasm":"AGFzbQEAAAA=","code":"x"}`, "code", false},
		{`{"job_type":"lua","code":"x","docker_image":"alpine"}`, "docker_image", false},
		{`{"job_type":"docker","docker_image":"alpine","docker_volumes":{"/etc":"/x"}}`, "docker_volumes", false},
		{`{"job_type":"docker","docker_image":"alpine","docker_volumes":{"data":"/input"}}`, "docker_volumes", false},
		{`{"job_type":"docker","docker_image":"alpine","docker_env":{"1BAD":"x"}}`, "docker_env", false},
		{`{"job_type":"docker","docker_image":"alpine","cap_add":["SYS_ADMIN"]}`, "cap_add", false},
		{`{"job_type":"docker","docker_image":"alpine","network_mode":"host"}`, "network_mode", false},
		{`{"job_type":"docker","docker_image":"alpine@sha256:abc"}`, "docker_image", false},
		{`{"job_type":"docker","docker_image":"alpine","resources":{"memory_mb":2}}`, "resources.memory_mb", false},
	}
	for _, tt := range tests {
		_, err := DecodeRequest([]byte(tt.body), lim)
		if tt.ok {
			if err != nil {
				t.Errorf("%s: %v", tt.body, err)
			}
			continue
		}
		if ErrorCode(err) != CodeInvalid || ErrorField(err) != tt.field {
			t.Errorf("%s: got %v (field %q), want invalid %q", tt.body, err, ErrorField(err), tt.field)
		}
	}
}

// FuzzDecodeRequest: any body either decodes into a request that passes
// its own validation and survives a round trip, or is refused as invalid.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"job_type":"lua","code":"return 1","input_data":{"x":1}}`))
	f.Add([]byte(`{"job_type":"wasm","wasm":"AGFzbQEAAAA=","args":["a"]}`))
	f.Add([]byte(`{"job_type":"docker","docker_image":"alpine","docker_command":["echo"],"resources":{"memory_mb":64}}`))
	f.Add([]byte(`{"job_type":"js","code":"1","timeout_seconds":-1}`))
	lim := DefaultRequestLimits()
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeRequest(body, lim)
		if err != nil {
			if ErrorCode(err) != CodeInvalid {
				t.Fatalf("refusal with code %q: %v", ErrorCode(err), err)
			}
			return
		}
		if err := r.Validate(lim); err != nil {
			t.Fatalf("decoded request fails validation: %v", err)
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeRequest(again, lim); err != nil {
			t.Fatalf("round trip of %s: %v", again, err)
		}
	})
}

// TestNumbersOutOfRange: a number that does not fit a float64 is refused
// wherever it sits, naming its field; numbers that fit pass.
func TestNumbersOutOfRange(t *testing.T) {
	lim := DefaultRequestLimits()
	for body, field := range map[string]string{
		`{"job_type":"lua","code":"x","input_data":1e999999999}`:                       "input_data",
		`{"job_type":"lua","code":"x","input_data":{"a":[1,{"b":-1e400}]}}`:            "input_data.a[1].b",
		`{"job_type":"lua","code":"x","input_data":[0,[1,2],{"c":3},"s",1e308,1e309]}`: "input_data[5]",
		`{"job_type":"lua","code":"x","timeout_seconds":1e999}`:                        "timeout_seconds",
		`{"job_type":"lua","input_data":{"x":{"y":1},"z":2e308},"code":"x"}`:           "input_data.z",
		`{"job_type":"docker","docker_image":"a","resources":{"cpus":1e999}}`:          "resources.cpus",
	} {
		_, err := DecodeRequest([]byte(body), lim)
		if ErrorCode(err) != CodeInvalid || ErrorField(err) != field {
			t.Errorf("%s: %v (field %q), want invalid naming %q", body, err, ErrorField(err), field)
		}
	}
	if _, err := DecodeRequest([]byte(`{"job_type":"lua","code":"x","input_data":{"a":[1.5e308,-4.9e-324,123456789012345678901234567890]}}`), lim); err != nil {
		t.Fatalf("numbers that fit: %v", err)
	}
	if _, err := DecodeDeployRequest([]byte(`{"runtime":"lua","code":"x","timeout_seconds":1e999}`), DefaultDeployLimits()); ErrorField(err) != "timeout_seconds" {
		t.Fatalf("deploy request: %v", err)
	}
}

// TestInputNotUTF8: input_data with bytes that are not UTF-8 (passed
// through as they are, they would end a browser worker's connection and
// every other tenant's job on it) is refused, naming the field.
func TestInputNotUTF8(t *testing.T) {
	for _, body := range []string{
		"{\"job_type\":\"lua\",\"code\":\"x\",\"input_data\":\"\xff\xfe\"}",
		"{\"job_type\":\"lua\",\"code\":\"x\",\"input_data\":{\"a\":[\"ok\",\"\xc3\x28\"]}}",
		"{\"job_type\":\"js\",\"code\":\"x\",\"input_data\":{\"\xed\xa0\x80\":1}}",
	} {
		_, err := DecodeRequest([]byte(body), DefaultRequestLimits())
		if ErrorCode(err) != CodeInvalid || ErrorField(err) != "input_data" {
			t.Errorf("%q: %v (field %q), want invalid naming input_data", body, err, ErrorField(err))
		}
	}
	if _, err := DecodeRequest([]byte(`{"job_type":"lua","code":"x","input_data":{"s":"héllo \ud83d\ude00 😀"}}`), DefaultRequestLimits()); err != nil {
		t.Fatalf("valid UTF-8: %v", err)
	}
}

// FuzzCheckNumbers: any input ends the scan without a panic, a number
// refused is one that does not fit a float64, and what the fast check
// lets through without a scan the scan accepts too.
func FuzzCheckNumbers(f *testing.F) {
	for _, seed := range []string{`{"a":[1,{"b":1e999}]}`, `[[[]]]`, `{"a":{"b":{}},"c":1e-999}`, `]`, `{"a"`, `1e400`,
		`{"a":1.5E+400}`, `{"code":"return 1e400","n":7}`, `[` + strings.Repeat("9", 309) + `]`, `[` + strings.Repeat("9", 308) + `.5]`,
		`{"job_type":"lua","code":"return INPUT.n + 1","input_data":{"n":1}}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckNumbers(data)
		if err != nil && !strings.Contains(err.Error(), "does not fit") {
			t.Fatalf("%q: %v", data, err)
		}
		if scanned := scanNumbers(data); (err == nil) != (scanned == nil) {
			t.Fatalf("%q: CheckNumbers says %v, the full scan %v", data, err, scanned)
		}
	})
}
