package wasm

import (
	"container/list"
	"context"
	"crypto/sha256"
	"sync"

	"github.com/tetratelabs/wazero"
)

// moduleCache keeps the most recently used compiled modules, keyed by the
// SHA-256 of their bytes. It is safe for concurrent use: concurrent runs of
// one module compile it once, and a module evicted while runs still use it
// is closed when the last of them releases it.
type moduleCache struct {
	max int

	mu    sync.Mutex
	order *list.List // of *cachedModule, most recently used first
	byKey map[[sha256.Size]byte]*cachedModule
}

type cachedModule struct {
	key   [sha256.Size]byte
	ready chan struct{} // closed once mod or err is set
	mod   wazero.CompiledModule
	err   error

	// Guarded by moduleCache.mu.
	elem    *list.Element
	refs    int
	evicted bool
}

func newModuleCache(max int) *moduleCache {
	return &moduleCache{max: max, order: list.New(), byKey: make(map[[sha256.Size]byte]*cachedModule)}
}

// acquire returns the compiled module for bin, compiling it with compile
// on a miss. The caller must call release with the returned entry once it
// no longer uses the module. acquire blocks while another caller compiles
// the same bytes, or until ctx is done.
func (c *moduleCache) acquire(ctx context.Context, bin []byte, compile func([]byte) (wazero.CompiledModule, error)) (*cachedModule, error) {
	key := sha256.Sum256(bin)
	c.mu.Lock()
	e, ok := c.byKey[key]
	if ok {
		e.refs++
		c.order.MoveToFront(e.elem)
		c.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			c.release(e)
			return nil, ctx.Err()
		}
		if e.err != nil {
			c.release(e)
			return nil, e.err
		}
		return e, nil
	}
	e = &cachedModule{key: key, ready: make(chan struct{}), refs: 1}
	e.elem = c.order.PushFront(e)
	c.byKey[key] = e
	c.mu.Unlock()

	e.mod, e.err = compile(bin)
	close(e.ready)

	c.mu.Lock()
	if e.err != nil {
		// Do not keep failures: the next attempt compiles again.
		c.remove(e)
	}
	c.evictLocked()
	c.mu.Unlock()
	if e.err != nil {
		c.release(e)
		return nil, e.err
	}
	return e, nil
}

// release gives back an entry returned by acquire.
func (c *moduleCache) release(e *cachedModule) {
	c.mu.Lock()
	e.refs--
	closeNow := e.evicted && e.refs == 0 && e.mod != nil
	c.mu.Unlock()
	if closeNow {
		_ = e.mod.Close(context.Background())
	}
}

// evictLocked drops the least recently used compiled modules beyond max.
func (c *moduleCache) evictLocked() {
	for back := c.order.Back(); c.order.Len() > c.max && back != nil; {
		e := back.Value.(*cachedModule)
		back = back.Prev()
		select {
		case <-e.ready:
		default:
			continue // still compiling
		}
		c.remove(e)
		if e.refs == 0 && e.mod != nil {
			_ = e.mod.Close(context.Background())
		}
	}
}

// remove takes e out of the cache; it is closed when its last user
// releases it.
func (c *moduleCache) remove(e *cachedModule) {
	if e.evicted {
		return
	}
	e.evicted = true
	c.order.Remove(e.elem)
	delete(c.byKey, e.key)
}

// len returns how many modules the cache holds.
func (c *moduleCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// closeAll closes every cached module that no run uses.
func (c *moduleCache) closeAll(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.order.Front(); el != nil; {
		e := el.Value.(*cachedModule)
		el = el.Next()
		select {
		case <-e.ready:
		default:
			continue
		}
		c.remove(e)
		if e.refs == 0 && e.mod != nil {
			_ = e.mod.Close(ctx)
		}
	}
}
