package lua

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/zerverless/zerverless/internal/job"
)

func BenchmarkNewState(b *testing.B) {
	l, _ := New(Config{})
	for b.Loop() {
		st, err := l.newState()
		if err != nil {
			b.Fatal(err)
		}
		st.L.Close()
	}
}

func BenchmarkRunTrivial(b *testing.B) {
	l, _ := New(Config{SpareStates: -1})
	task := job.Task{Type: job.TypeLua, Spec: job.Spec{Code: `return INPUT.n + 1`, Input: json.RawMessage(`{"n":1}`)},
		Limits: job.Limits{MemoryBytes: 256 << 20, OutputBytes: 1 << 20}}
	b.ReportAllocs()
	for b.Loop() {
		if res, err := l.Run(context.Background(), task); err != nil || res.Status != job.StatusCompleted {
			b.Fatal(res, err)
		}
	}
}
