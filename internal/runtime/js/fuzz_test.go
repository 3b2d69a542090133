package js_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime/js"
)

// FuzzRun checks that no code or input makes Run panic or return without a
// terminal status.
func FuzzRun(f *testing.F) {
	f.Add(`INPUT`, `{"a":[1,2]}`)
	f.Add(`console.log({toJSON() { throw 1 }}); 1`, ``)
	f.Add(`({get x() { throw new Error("getter") }})`, `null`)
	f.Add(`module.exports = {toJSON: () => undefined}`, `1`)
	f.Add(`throw {toString() { return {} }}`, `"s"`)
	rt := mustNew(js.Config{OutputBytes: 4096})
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
