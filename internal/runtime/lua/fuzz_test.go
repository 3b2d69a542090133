package lua_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime/lua"
)

// FuzzRun checks that no code or input makes Run panic or return without a
// terminal status.
func FuzzRun(f *testing.F) {
	f.Add(`return INPUT`, `{"a":[1,2]}`)
	f.Add(`return json.decode(INPUT.s)`, `{"s":"[1,{\"b\":null}]"}`)
	f.Add(`error({})`, ``)
	f.Add(`return setmetatable({}, {__tostring = function() error("x") end})`, `null`)
	f.Add(`print(setmetatable({}, {__tostring = function() return 1 end}))`, `1`)
	rt := mustNew(lua.Config{OutputBytes: 4096})
	f.Fuzz(func(t *testing.T, code, input string) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		res, err := rt.Run(ctx, job.Task{Spec: job.Spec{Code: code, Input: json.RawMessage(input)}})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if !res.Status.Terminal() {
			t.Fatalf("Status = %q", res.Status)
		}
		if len(res.Result) > 0 && !json.Valid(res.Result) {
			t.Fatalf("Result is not JSON: %q", res.Result)
		}
	})
}
