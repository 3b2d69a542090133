package wasm

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// HostModule is the name of the module whose functions a guest may import
// to talk to Zerverless beyond WASI.
const HostModule = "zerverless"

// resultSink receives the value a guest sets with zerverless.set_result.
type resultSink struct {
	limit int

	mu    sync.Mutex
	value []byte
	err   error
}

type sinkKey struct{}

func (s *resultSink) set(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(b) > s.limit:
		s.value, s.err = nil, s.tooLarge(len(b))
	case !json.Valid(b):
		s.value, s.err = nil, fmt.Errorf("result is not valid JSON")
	default:
		s.value, s.err = b, nil
	}
}

func (s *resultSink) tooLarge(n int) error {
	return fmt.Errorf("result is %d bytes of JSON, more than the limit of %d", n, s.limit)
}

func (s *resultSink) setTooLarge(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.value, s.err = nil, s.tooLarge(n)
}

func (s *resultSink) get() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.value, s.err
}

// instantiateHost adds the zerverless host module to r. Its one function,
//
//	set_result(ptr i32, len i32)
//
// sets the job's returned value to the JSON in guest memory at
// [ptr, ptr+len); the last call wins.
func instantiateHost(ctx context.Context, r wazero.Runtime) error {
	_, err := r.NewHostModuleBuilder(HostModule).
		NewFunctionBuilder().
		WithFunc(func(ctx context.Context, m api.Module, ptr, n uint32) {
			sink, _ := ctx.Value(sinkKey{}).(*resultSink)
			if sink == nil {
				return
			}
			if int64(n) > int64(sink.limit) {
				sink.setTooLarge(int(n))
				return
			}
			b, ok := m.Memory().Read(ptr, n)
			if !ok {
				panic(fmt.Errorf("set_result: [%d, %d) is out of memory range", ptr, uint64(ptr)+uint64(n)))
			}
			sink.set(append([]byte(nil), b...))
		}).
		WithParameterNames("ptr", "len").
		Export("set_result").
		Instantiate(ctx)
	return err
}
