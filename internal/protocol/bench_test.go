package protocol

import (
	"os"
	"testing"
)

// The messages of a Lua function call as the orchestrator and its worker
// exchange them: the assign carries the function's wrapped source and its
// request, the result the function's answer.
var benchMessages = []struct{ name, file string }{
	{"assign", "testdata/assign_function.json"},
	{"result", "testdata/result_function.json"},
}

func BenchmarkDecode(b *testing.B) {
	for _, bm := range benchMessages {
		data, err := os.ReadFile(bm.file)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, bm := range benchMessages {
		data, err := os.ReadFile(bm.file)
		if err != nil {
			b.Fatal(err)
		}
		m, err := Decode(data)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				buf := getBuffer()
				if err := encode(buf, &m); err != nil {
					b.Fatal(err)
				}
				putBuffer(buf)
			}
		})
	}
}
