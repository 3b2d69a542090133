//go:build !linux

package isolate

// limitAddressSpace does nothing where RLIMIT_AS is not Linux's.
func limitAddressSpace(room int64) {}
