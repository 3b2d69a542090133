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

// BenchmarkRunHandler is a small HTTP handler's call, as a function
// invocation runs it: a request table from INPUT, a response table to
// JSON.
func BenchmarkRunHandler(b *testing.B) {
	l, _ := New(Config{SpareStates: -1})
	code := `local __zv = INPUT or {}; ENV = __zv.env or {}; INPUT = __zv.req; __zv = nil; ` +
		`function handle(req) return {status = 200, headers = {["Content-Type"] = "text/plain"}, body = "hello " .. (req.query.name or "world")} end ` +
		`return handle(INPUT)`
	input := `{"req":{"method":"GET","path":"/","query":{"name":"bench"},"query_all":{"name":["bench"]},` +
		`"headers":{"accept":"*/*","accept-encoding":"gzip","host":"127.0.0.1:8080","user-agent":"Go-http-client/1.1",` +
		`"x-forwarded-for":"127.0.0.1"},"body":"","body_base64":false},"env":{}}`
	task := job.Task{Type: job.TypeLua, Spec: job.Spec{Code: code, Input: json.RawMessage(input)},
		Limits: job.Limits{MemoryBytes: 256 << 20, OutputBytes: 1 << 20}}
	b.ReportAllocs()
	for b.Loop() {
		if res, err := l.Run(context.Background(), task); err != nil || res.Status != job.StatusCompleted {
			b.Fatal(res, err)
		}
	}
}
