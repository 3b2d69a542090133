// Package testutil holds helpers that Zerverless's tests share. It is
// imported only by tests.
package testutil

import (
	"testing"
	"time"
)

// Eventually polls f every 20 ms until it returns nil, and fails t with
// f's last error when d passes first.
func Eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %s: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
