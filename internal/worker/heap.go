package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/metrics"
	"slices"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// errHeap is the cause of a task stopped by the heap guard.
var errHeap = errors.New("the worker's heap limit was exceeded")

const heapMetric = "/memory/classes/heap/objects:bytes"

// heapBytes returns the bytes of the Go heap in live and not yet swept
// objects.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: heapMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// guardHeap protects the worker from runtimes that run guests inside its
// own process and cannot bound a guest's heap (Lua, JavaScript). Every
// HeapCheckInterval it reads the heap; past HeapLimitBytes it collects
// garbage, and if the heap is still over the limit it stops every running
// task of a guarded runtime, whose results then say the job ran out of
// memory. It returns when ctx is done.
func (s *session) guardHeap(ctx context.Context) {
	limit := s.w.cfg.HeapLimitBytes
	if limit <= 0 {
		return
	}
	t := time.NewTicker(s.w.cfg.HeapCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if heapBytes() < uint64(limit) {
			continue
		}
		runtime.GC()
		used := heapBytes()
		if used < uint64(limit) {
			continue
		}
		s.mu.Lock()
		n := 0
		for _, rt := range s.tasks {
			if slices.Contains(s.w.cfg.HeapGuarded, rt.typ) {
				rt.cancel(errHeap)
				n++
			}
		}
		s.mu.Unlock()
		if n > 0 {
			s.log.Warn("heap limit exceeded; stopped in-process tasks", "heap_bytes", used, "limit_bytes", limit, "tasks", n)
		}
	}
}

// heapResult turns the result of a task stopped by the heap guard into a
// failed, out-of-memory result.
func (w *Worker) heapResult(res job.Result) job.Result {
	res.Status = job.StatusFailed
	res.OOMKilled = true
	res.Error = fmt.Sprintf("out of memory: the job's heap went past this worker's limit of %d MiB", w.cfg.HeapLimitBytes>>20)
	return res
}
