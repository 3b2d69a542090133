package runtime

import (
	"container/list"
	"crypto/sha256"
	"sync"
)

// CodeCache keeps compiled code by the SHA-256 of its source, up to a
// number of entries, least recently used out first. The Lua and
// JavaScript runtimes keep their compiled chunks and programs in one, so
// that a function invoked again and again is compiled once. It is safe for
// concurrent use; a nil *CodeCache caches nothing.
type CodeCache[V any] struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *cacheEntry[V], most recent first
	byKey map[[sha256.Size]byte]*list.Element
}

type cacheEntry[V any] struct {
	key   [sha256.Size]byte
	value V
}

// NewCodeCache returns a cache of at most max entries; max <= 0 returns
// nil, which caches nothing.
func NewCodeCache[V any](max int) *CodeCache[V] {
	if max <= 0 {
		return nil
	}
	return &CodeCache[V]{max: max, order: list.New(), byKey: make(map[[sha256.Size]byte]*list.Element)}
}

// Get returns the value cached for source, compiling it with compile on a
// miss. A compile error is returned and not cached. Two concurrent misses
// of one source may both compile; the last one is kept.
func (c *CodeCache[V]) Get(source string, compile func(string) (V, error)) (V, error) {
	if c == nil {
		return compile(source)
	}
	key := sha256.Sum256([]byte(source))
	c.mu.Lock()
	if el, ok := c.byKey[key]; ok {
		c.order.MoveToFront(el)
		v := el.Value.(*cacheEntry[V]).value
		c.mu.Unlock()
		return v, nil
	}
	c.mu.Unlock()
	v, err := compile(source)
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		el.Value.(*cacheEntry[V]).value = v
		c.order.MoveToFront(el)
		return v, nil
	}
	c.byKey[key] = c.order.PushFront(&cacheEntry[V]{key: key, value: v})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*cacheEntry[V]).key)
	}
	return v, nil
}

// Len returns the number of cached entries.
func (c *CodeCache[V]) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
