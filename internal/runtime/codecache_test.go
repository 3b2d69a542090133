package runtime

import (
	"errors"
	"fmt"
	"testing"
)

func TestCodeCache(t *testing.T) {
	c := NewCodeCache[string](2)
	compiles := 0
	compile := func(src string) (string, error) {
		compiles++
		if src == "bad" {
			return "", errors.New("syntax error")
		}
		return "compiled " + src, nil
	}
	for _, src := range []string{"a", "b", "a", "b", "a"} {
		if v, err := c.Get(src, compile); err != nil || v != "compiled "+src {
			t.Fatalf("Get(%s) = %q, %v", src, v, err)
		}
	}
	if compiles != 2 {
		t.Fatalf("%d compiles for two sources, want 2", compiles)
	}
	// "c" evicts the least recently used, "b".
	c.Get("c", compile)
	c.Get("a", compile)
	if compiles != 3 {
		t.Fatalf("%d compiles, want 3 (a was kept)", compiles)
	}
	c.Get("b", compile)
	if compiles != 4 || c.Len() != 2 {
		t.Fatalf("%d compiles, %d entries; want b compiled again and 2 entries", compiles, c.Len())
	}
	// Errors are returned and not cached.
	for range 2 {
		if _, err := c.Get("bad", compile); err == nil {
			t.Fatal("no error for bad source")
		}
	}
	if compiles != 6 {
		t.Fatalf("%d compiles: an error was cached", compiles)
	}
	// A nil cache compiles every time.
	var none *CodeCache[string]
	if NewCodeCache[string](0) != nil {
		t.Fatal("a cache of size 0 is not nil")
	}
	v, err := none.Get("x", func(s string) (string, error) { return fmt.Sprint(len(s)), nil })
	if v != "1" || err != nil || none.Len() != 0 {
		t.Fatalf("nil cache: %q %v", v, err)
	}
}
