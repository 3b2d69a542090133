package docker

import (
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// poolModes runs body with a cold runtime (pools on, every job missing
// its pool, so they grow and are refilled while jobs run on containers
// made for them) and a warm one (every job runs in a prewarmed container),
// and says which each result should be.
func poolModes(t *testing.T, tweak func(*Config), body func(t *testing.T, d *Docker)) {
	t.Helper()
	for _, warm := range []bool{false, true} {
		name := "cold"
		if warm {
			name = "warm"
		}
		t.Run(name, func(t *testing.T) {
			d := newTestRuntime(t, func(c *Config) {
				agentConfig(t)(c)
				if tweak != nil {
					tweak(c)
				}
			})
			d.poolSync = warm
			d.skipPools = !warm
			body(t, d)
		})
	}
}

// wantWarm fails unless res says it ran warm exactly when d runs warm.
func wantWarm(t *testing.T, d *Docker, res job.Result) {
	t.Helper()
	if res.WarmStart != d.poolSync {
		t.Errorf("WarmStart = %v in a %s runtime", res.WarmStart, map[bool]string{true: "warm", false: "cold"}[d.poolSync])
	}
}

func TestPoolSmoke(t *testing.T) {
	poolModes(t, nil, func(t *testing.T, d *Docker) {
		res := sh(t, d, "echo hi; id -u; env")
		wantStatus(t, res, job.StatusCompleted)
		wantWarm(t, d, res)
		t.Logf("%+v", res)
	})
}

func TestPoolSequence(t *testing.T) {
	d := newTestRuntime(t, agentConfig(t))
	warm := 0
	for i := range 6 {
		res := sh(t, d, "echo hi")
		if res.Status != job.StatusCompleted {
			t.Fatalf("run %d: %+v", i, res)
		}
		if res.WarmStart {
			warm++
		}
		time.Sleep(time.Second)
	}
	t.Logf("%d warm", warm)
}
