package js

import (
	"context"
	"testing"

	"github.com/zerverless/zerverless/internal/job"
)

// TestCachedProgramSharesNoState runs one script several times: the
// compiled program is cached, but each run starts from fresh globals.
func TestCachedProgramSharesNoState(t *testing.T) {
	r, _ := New(Config{})
	task := job.Task{Type: job.TypeJS, Spec: job.Spec{Code: `var counter = (globalThis.counter || 0) + 1; counter + INPUT`}}
	for i, in := range []string{"1", "2", "3"} {
		task.Spec.Input = []byte(in)
		res, err := r.Run(context.Background(), task)
		if err != nil || res.Status != job.StatusCompleted || string(res.Result) != []string{"2", "3", "4"}[i] {
			t.Fatalf("run %d: %+v %v", i, res, err)
		}
	}
	if n := r.programs.Len(); n != 1 {
		t.Fatalf("%d cached programs, want 1", n)
	}
}
