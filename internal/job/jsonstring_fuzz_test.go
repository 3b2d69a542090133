package job

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzAppendJSONString: any string is quoted as encoding/json quotes it.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", trickyText, "</script>", "\u2028\u2029", "\xed\xa0\x80", "\x00", "\xf4\x90\x80\x80", "\xef\xbf\xbd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendJSONString([]byte("x"), s); !bytes.Equal(got[1:], want) {
			t.Fatalf("AppendJSONString(%q) = %s, want %s", s, got[1:], want)
		}
	})
}

// FuzzAppendInput: a function's input is written as encoding/json writes
// it, whatever the request's strings hold.
func FuzzAppendInput(f *testing.F) {
	f.Add("GET", "/", "k", "v", "host", "</script>\u2028", "body", "E", "\xff", false)
	f.Fuzz(func(t *testing.T, method, path, qk, qv, hk, hv, body, ek, ev string, b64 bool) {
		r := FunctionRequest{Method: method, Path: path,
			Query: map[string]string{qk: qv, qv: qk}, QueryAll: map[string][]string{qk: {qv, hv}, hk: nil},
			Headers: map[string]string{hk: hv}, Body: body, BodyBase64: b64}
		env := map[string]string{ek: ev, ev: ek}
		want, err := json.Marshal(struct {
			Req *FunctionRequest  `json:"req"`
			Env map[string]string `json:"env"`
		}{&r, env})
		if err != nil {
			t.Fatal(err)
		}
		if got := r.AppendInput(nil, env, false); !bytes.Equal(got, want) {
			t.Fatalf("script input:\n got  %s\n want %s", got, want)
		}
		want, err = json.Marshal(struct {
			*FunctionRequest
			Env map[string]string `json:"env"`
		}{&r, env})
		if err != nil {
			t.Fatal(err)
		}
		if got := r.AppendInput(nil, env, true); !bytes.Equal(got, want) {
			t.Fatalf("wasm input:\n got  %s\n want %s", got, want)
		}
	})
}
