package orchestrator

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// TestRetentionConfigRefused: settings that would remove jobs at once or
// never sweep are refused by New.
func TestRetentionConfigRefused(t *testing.T) {
	for _, adjust := range []func(*RetentionConfig){
		func(c *RetentionConfig) { c.Period = 0 },
		func(c *RetentionConfig) { c.Period = -time.Hour },
		func(c *RetentionConfig) { c.TombstonePeriod = 0 },
		func(c *RetentionConfig) { c.Interval = 0 },
		func(c *RetentionConfig) { c.BatchJobs = 0 },
		func(c *RetentionConfig) { c.BatchBytes = -1 },
	} {
		cfg := testConfig()
		adjust(&cfg.Retention)
		if _, err := New(cfg, nil, nil, nil); err == nil {
			t.Errorf("New accepted retention %+v", cfg.Retention)
		}
	}
}

// TestExpiryAndStorageQuota: an expired job leaves the counts and answers
// an expired error; a namespace over its storage quota may not submit jobs
// but may still invoke functions, which are never stored.
func TestExpiryAndStorageQuota(t *testing.T) {
	cfg := testConfig()
	cfg.Retention.Period = time.Nanosecond
	cfg.Retention.Interval = time.Hour // swept by hand below
	cfg.DefaultQuotas.JobStorageMB = 1
	// A 2 MiB result on a busy machine: a longer heartbeat than the
	// harness's tells a slow raw worker from a lost one.
	cfg.HeartbeatInterval = time.Second
	h := newHarness(t, t.TempDir(), cfg)
	ctx := tenantCtx()
	w := h.dial(luaCaps(64))
	w.keepAlive()

	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	task := w.next(5 * time.Second)
	m := resultMessage(task, job.StatusCompleted)
	m.Result.Output = strings.Repeat("o", 2<<20)
	w.send(m)
	if got, err := h.o.Wait(ctx, j.ID, 5*time.Second); err != nil || got.Status != job.StatusCompleted {
		t.Fatalf("job: %+v, %v", got, err)
	}

	eventually(t, 5*time.Second, func() error {
		_, err := h.o.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 2"})
		if job.ErrorCode(err) != job.CodeTooMany {
			return errorf("submit over the storage quota: %v", err)
		}
		return nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := h.o.Invoke(ctx, job.Request{Type: job.TypeLua, Code: "return 3"}, 5*time.Second)
		done <- err
	}()
	// Jobs accepted before the quota was seen run too; answer every task.
	for {
		ti := w.next(5 * time.Second)
		w.send(resultMessage(ti, job.StatusCompleted))
		if ti.Spec.Code == "return 3" {
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("invocation over the storage quota: %v", err)
	}

	// Every job is removed once its final state is stored, and leaves
	// the counts.
	eventually(t, 5*time.Second, func() error {
		h.o.expireOnce()
		st, err := h.o.Stats(ctx)
		if err != nil {
			return err
		}
		for s, n := range st.Jobs {
			if n != 0 {
				return errorf("%d jobs %s after expiry", n, s)
			}
		}
		return nil
	})
	var err error
	_, err = h.o.Job(ctx, j.ID)
	var exp *job.ExpiredError
	if !errors.As(err, &exp) || exp.Namespace != job.DefaultNamespace {
		t.Errorf("expired job: %v", err)
	}
	// With its storage freed, the namespace may submit again.
	eventually(t, 5*time.Second, func() error {
		_, err := h.o.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 4"})
		return err
	})
}
