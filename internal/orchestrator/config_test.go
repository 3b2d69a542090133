package orchestrator

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/store/sqlite"
)

// TestConfigRefusesNonsense: New refuses every setting that would break the
// platform (a heartbeat of zero drops every worker, a queue of zero refuses
// every job), naming the field; the defaults pass.
func TestConfigRefusesNonsense(t *testing.T) {
	scfg := sqlite.DefaultConfig()
	scfg.Path = filepath.Join(t.TempDir(), "jobs.db")
	st, err := sqlite.Open(context.Background(), scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := New(DefaultConfig(), st, nil, nil); err != nil {
		t.Fatalf("the defaults are refused: %v", err)
	}
	cases := []struct {
		field string
		set   func(*Config)
	}{
		{"HeartbeatInterval", func(c *Config) { c.HeartbeatInterval = 0 }},
		{"HeartbeatInterval", func(c *Config) { c.HeartbeatInterval = -time.Second }},
		{"HeartbeatMisses", func(c *Config) { c.HeartbeatMisses = 0 }},
		{"LeaseGrace", func(c *Config) { c.LeaseGrace = 0 }},
		{"RegisterTimeout", func(c *Config) { c.RegisterTimeout = -1 }},
		{"WriteTimeout", func(c *Config) { c.WriteTimeout = 0 }},
		{"TokenRecheckInterval", func(c *Config) { c.TokenRecheckInterval = 0 }},
		{"MaxQueued", func(c *Config) { c.MaxQueued = 0 }},
		{"MaxNamespaceLanes", func(c *Config) { c.MaxNamespaceLanes = 0 }},
		{"MaxReplicas", func(c *Config) { c.MaxReplicas = 0 }},
		{"MaxStrikes", func(c *Config) { c.MaxStrikes = 0 }},
		{"MaxDrops", func(c *Config) { c.MaxDrops = -2 }},
		{"RequestLimits.MaxCodeBytes", func(c *Config) { c.RequestLimits.MaxCodeBytes = 0 }},
		{"RequestLimits.MaxWasmBytes", func(c *Config) { c.RequestLimits.MaxWasmBytes = 0 }},
		{"RequestLimits.MaxInputBytes", func(c *Config) { c.RequestLimits.MaxInputBytes = -1 }},
		{"RequestLimits.DefaultTimeout", func(c *Config) { c.RequestLimits.DefaultTimeout = 0 }},
		{"RequestLimits.MaxTimeout", func(c *Config) { c.RequestLimits.MaxTimeout = time.Second }},
		{"RequestLimits.DefaultMaxAttempts", func(c *Config) { c.RequestLimits.DefaultMaxAttempts = 0 }},
		{"RequestLimits.MaxMaxAttempts", func(c *Config) { c.RequestLimits.MaxMaxAttempts = 2 }},
		{"RequestLimits.MaxMemoryMB", func(c *Config) { c.RequestLimits.MaxMemoryMB = 0 }},
		{"RequestLimits.MaxReplicas", func(c *Config) { c.RequestLimits.MaxReplicas = 0 }},
		{"DefaultQuotas.PendingJobs", func(c *Config) { c.DefaultQuotas.PendingJobs = -1 }},
		{"DefaultQuotas.RunningJobs", func(c *Config) { c.DefaultQuotas.RunningJobs = -1 }},
		{"DefaultQuotas.Deployments", func(c *Config) { c.DefaultQuotas.Deployments = -1 }},
		{"DefaultQuotas.BuildContextMB", func(c *Config) { c.DefaultQuotas.BuildContextMB = -1 }},
		{"DefaultQuotas.SubmitsPerSecond", func(c *Config) { c.DefaultQuotas.SubmitsPerSecond = -0.5 }},
		{"DockerAllowImages", func(c *Config) { c.DockerAllowImages = []string{"busybox", " "} }},
		{"EndedJobs.Jobs", func(c *Config) { c.EndedJobs.Jobs = -1 }},
		{"EndedJobs.Bytes", func(c *Config) { c.EndedJobs.Bytes = -1 }},
	}
	for _, tc := range cases {
		cfg := DefaultConfig()
		tc.set(&cfg)
		o, err := New(cfg, st, nil, nil)
		if err == nil {
			o.Close()
			t.Errorf("%s: a nonsensical value was accepted", tc.field)
			continue
		}
		if !strings.Contains(err.Error(), tc.field+" ") && !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("%s: the error does not name the field: %v", tc.field, err)
		}
	}
	// Zeros that mean something are accepted: a quota of zero is no cap.
	cfg := DefaultConfig()
	cfg.DefaultQuotas.RunningJobs, cfg.DefaultQuotas.SubmitsPerSecond = 0, 0
	cfg.EndedJobs = EndedJobsConfig{} // none kept
	if _, err := New(cfg, st, nil, nil); err != nil {
		t.Fatalf("a quota of zero (no cap) is refused: %v", err)
	}
}
