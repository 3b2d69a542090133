package lua

import (
	"context"
	"testing"

	"github.com/zerverless/zerverless/internal/job"
)

// TestCachedChunkSharesNoState runs one chunk several times: the compiled
// chunk is cached, but each run starts from fresh globals.
func TestCachedChunkSharesNoState(t *testing.T) {
	r, _ := New(Config{})
	task := job.Task{Type: job.TypeLua, Spec: job.Spec{Code: `counter = (counter or 0) + 1 return counter + INPUT`}}
	for i, in := range []string{"1", "2", "3"} {
		task.Spec.Input = []byte(in)
		res, err := r.Run(context.Background(), task)
		if err != nil || res.Status != job.StatusCompleted || string(res.Result) != []string{"2", "3", "4"}[i] {
			t.Fatalf("run %d: %+v %v", i, res, err)
		}
	}
	if n := r.protos.Len(); n != 1 {
		t.Fatalf("%d cached chunks, want 1", n)
	}
	// A syntax error is reported as before and not cached.
	res, _ := r.Run(context.Background(), job.Task{Spec: job.Spec{Code: "return ("}})
	if res.Status != job.StatusFailed || res.Error == "" || r.protos.Len() != 1 {
		t.Fatalf("syntax error: %+v, %d cached", res, r.protos.Len())
	}
}

// TestChunkIsTheCodes: codes of one length that differ in one byte, run
// in turn and again, each run their own chunk (the last chunk is taken
// only for the same code).
func TestChunkIsTheCodes(t *testing.T) {
	for _, cfg := range []Config{{}, {CachedChunks: -1}} {
		r, _ := New(cfg)
		for _, want := range []string{"1", "2", "2", "1", "1", "3", "2"} {
			res, err := r.Run(context.Background(), job.Task{Type: job.TypeLua, Spec: job.Spec{Code: `return ` + want}})
			if err != nil || res.Status != job.StatusCompleted || string(res.Result) != want {
				t.Fatalf("%+v: return %s: %+v %v", cfg, want, res, err)
			}
		}
	}
}
