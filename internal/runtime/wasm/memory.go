package wasm

import (
	"sync"

	"github.com/tetratelabs/wazero/experimental"
)

// memoryBudget allocates the linear memories of one run and refuses to grow
// them past limit bytes in total. A refused grow makes the guest's
// memory.grow return -1, which the guest handles as out of memory.
type memoryBudget struct {
	limit uint64

	mu      sync.Mutex
	used    uint64 // bytes of all memories of the run
	peak    uint64
	refused bool
}

var _ experimental.MemoryAllocator = (*memoryBudget)(nil)

// Allocate implements experimental.MemoryAllocator.
func (b *memoryBudget) Allocate(capacity, max uint64) experimental.LinearMemory {
	return &linearMemory{budget: b, max: max}
}

// reserve accounts for grow more bytes, reporting false when that would
// pass the limit.
func (b *memoryBudget) reserve(grow uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+grow > b.limit {
		b.refused = true
		return false
	}
	b.used += grow
	b.peak = max(b.peak, b.used)
	return true
}

func (b *memoryBudget) release(n uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
}

// stats returns the most bytes the run's memories held at once and whether
// a grow was refused.
func (b *memoryBudget) stats() (peak uint64, refused bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak, b.refused
}

// linearMemory is one Wasm memory backed by a Go slice. Wasm memories
// never shrink, so the bytes past len(buf) are always zero.
type linearMemory struct {
	budget *memoryBudget
	max    uint64
	buf    []byte
}

// Reallocate implements experimental.LinearMemory.
func (m *linearMemory) Reallocate(size uint64) []byte {
	cur := uint64(len(m.buf))
	if size <= cur {
		return m.buf[:size]
	}
	if size > m.max || !m.budget.reserve(size-cur) {
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	// Grow the backing array geometrically, within the memory's own
	// maximum and the run's budget, so that a guest growing page by page
	// does not copy its memory quadratically.
	newCap := max(size, min(2*uint64(cap(m.buf)), m.max, size+m.budget.limit-m.budget.usedNow()))
	buf := make([]byte, size, newCap)
	copy(buf, m.buf)
	m.buf = buf
	return m.buf
}

// Free implements experimental.LinearMemory.
func (m *linearMemory) Free() {
	m.budget.release(uint64(len(m.buf)))
	m.buf = nil
}

func (b *memoryBudget) usedNow() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
