package worker

import (
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/runtime"
)

func TestConfigValidate(t *testing.T) {
	valid := DefaultConfig()
	valid.URL = "ws://127.0.0.1:8000/ws/volunteer"
	if _, err := New(valid, runtime.Set{}, nil); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	for name, adjust := range map[string]func(*Config){
		"no URL":                  func(c *Config) { c.URL = "" },
		"negative concurrency":    func(c *Config) { c.Concurrency = -1 },
		"huge concurrency":        func(c *Config) { c.Concurrency = 1 << 20 },
		"negative max memory":     func(c *Config) { c.MaxMemoryMB = -5 },
		"negative max streams":    func(c *Config) { c.MaxStreams = -1 },
		"negative output":         func(c *Config) { c.OutputBytes = -1 },
		"negative memory":         func(c *Config) { c.MemoryBytes = -1 },
		"default over the max":    func(c *Config) { c.MaxMemoryMB = 64; c.MemoryBytes = 256 << 20 },
		"negative check interval": func(c *Config) { c.CheckInterval = -time.Second },
		"backoff min over max":    func(c *Config) { c.ReconnectMin, c.ReconnectMax = time.Minute, time.Second },
		"tiny read limit":         func(c *Config) { c.ReadLimit = 100 },
		"bad namespace":           func(c *Config) { c.Namespaces = []string{"Not A Namespace!"} },
	} {
		cfg := valid
		adjust(&cfg)
		if _, err := New(cfg, runtime.Set{}, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
