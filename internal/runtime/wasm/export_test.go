package wasm

// CachedModules returns how many compiled modules r keeps.
func CachedModules(r *Wasm) int { return r.modules.len() }
