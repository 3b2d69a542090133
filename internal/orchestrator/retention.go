package orchestrator

import (
	"context"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// RetentionConfig says how long ended jobs are kept. DefaultRetentionConfig
// documents every default.
type RetentionConfig struct {
	// Period is how long a job is kept, with its result, after it ends
	// (completed, failed, timed out or canceled); then it is removed and
	// answers 404 saying it expired (default 7 days).
	Period time.Duration
	// TombstonePeriod is how long the record that a job expired is kept
	// after its removal; later the job's id is simply unknown (default 30
	// days).
	TombstonePeriod time.Duration
	// Interval is how often the sweeper looks for expired jobs (default
	// 1 minute).
	Interval time.Duration
	// BatchJobs and BatchBytes bound one removal, so that the store's
	// writer is never held long: the sweeper removes at most BatchJobs
	// jobs or about BatchBytes bytes at a time, and lets other writes in
	// between (defaults store.DefaultExpireJobs, store.DefaultExpireBytes).
	BatchJobs  int
	BatchBytes int64
}

// DefaultRetentionConfig returns the documented defaults.
func DefaultRetentionConfig() RetentionConfig {
	return RetentionConfig{
		Period:          7 * 24 * time.Hour,
		TombstonePeriod: 30 * 24 * time.Hour,
		Interval:        time.Minute,
		BatchJobs:       store.DefaultExpireJobs,
		BatchBytes:      store.DefaultExpireBytes,
	}
}

// validate refuses settings that would remove jobs at once or never sweep.
func (c RetentionConfig) validate() []error {
	var errs []error
	if c.Period <= 0 {
		errs = append(errs, job.Invalid("Retention.Period", "job retention must be positive (got %s)", c.Period))
	}
	if c.TombstonePeriod <= 0 {
		errs = append(errs, job.Invalid("Retention.TombstonePeriod", "must be positive (got %s)", c.TombstonePeriod))
	}
	if c.Interval <= 0 {
		errs = append(errs, job.Invalid("Retention.Interval", "must be positive (got %s)", c.Interval))
	}
	if c.BatchJobs <= 0 {
		errs = append(errs, job.Invalid("Retention.BatchJobs", "must be positive (got %d)", c.BatchJobs))
	}
	if c.BatchBytes <= 0 {
		errs = append(errs, job.Invalid("Retention.BatchBytes", "must be positive (got %d)", c.BatchBytes))
	}
	return errs
}

// sweepExpired removes the jobs whose retention period has ended, every
// Retention.Interval, until Close. It runs apart from the scheduler and
// takes o.mu only to correct the counts.
func (o *Orchestrator) sweepExpired() {
	defer o.wg.Done()
	t := time.NewTicker(o.cfg.Retention.Interval)
	defer t.Stop()
	for {
		o.expireOnce()
		select {
		case <-o.stop:
			return
		case <-t.C:
		}
	}
}

// expireOnce removes every job due now, one bounded batch at a time, and
// returns how many it removed. A store error ends the round; the next
// round tries again.
func (o *Orchestrator) expireOnce() int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-o.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	c := o.cfg.Retention
	removed := 0
	for ctx.Err() == nil {
		now := o.now().UTC()
		res, err := o.store.ExpireJobs(ctx, store.Expiry{
			FinishedBefore: now.Add(-c.Period),
			Now:            now,
			ForgetBefore:   now.Add(-c.TombstonePeriod),
			MaxJobs:        c.BatchJobs,
			MaxBytes:       c.BatchBytes,
		})
		if err != nil {
			if ctx.Err() == nil {
				o.log.Warn("expire jobs", "err", err)
			}
			break
		}
		if n := res.Total(); n > 0 {
			removed += n
			o.mu.Lock()
			for st, k := range res.Jobs {
				o.counts[st] -= k
			}
			for _, id := range res.IDs {
				o.ended.remove(id)
			}
			o.mu.Unlock()
			o.log.Debug("expired jobs", "jobs", n, "bytes", res.Bytes)
		}
		if !res.More {
			break
		}
	}
	return removed
}
