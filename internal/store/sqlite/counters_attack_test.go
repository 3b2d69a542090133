package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// TestCountersUnderHostileBatches: two tenants write at once — each job
// created, updated twice in quick succession (so often twice in one
// batch), its result moved from the jobs row to job_results and back and
// dropped — while writes that fail their transaction make the writer
// retry batches one write at a time, and expiry removes ended jobs. After
// all of it, job_counts matches the jobs by status and namespace_usage
// matches each tenant's stored jobs: no tenant is charged for another's
// bytes, and no quota drifts.
func TestCountersUnderHostileBatches(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	boom := errors.New("the disk is on fire")
	old := time.Now().Add(-time.Hour)
	large := strings.Repeat("x", 3*inlineResultBytes)
	var wg sync.WaitGroup
	for _, ns := range []string{"alice", "bob"} {
		for g := range 4 {
			wg.Go(func() {
				for i := range 25 {
					id := fmt.Sprintf("%s-%d-%d", ns, g, i)
					j := &job.Job{ID: id, Namespace: ns, Status: job.StatusPending, CreatedAt: old,
						Spec: job.Spec{Code: strings.Repeat("c", i*40)}}
					if err := s.CreateJob(ctx, j); err != nil {
						t.Error(err)
						return
					}
					j.Status, j.StartedAt = job.StatusRunning, old
					if err := s.UpdateJob(ctx, j); err != nil {
						t.Error(err)
					}
					steps := []*job.Result{
						{Status: job.StatusCompleted, Output: "small"},
						{Status: job.StatusCompleted, Output: large},
						{Status: job.StatusCompleted, Result: []byte("1")},
						nil,
						{Status: job.StatusFailed, Error: large},
					}
					for k, r := range steps[:1+i%len(steps)] {
						j.Result = r
						j.Status, j.FinishedAt = job.StatusCompleted, old.Add(time.Duration(k))
						if r == nil {
							j.Status, j.FinishedAt = job.StatusPending, time.Time{}
						}
						if err := s.UpdateJob(ctx, j); errors.Is(err, job.ErrNotFound) {
							break // expired meanwhile
						} else if err != nil {
							t.Error(err)
						}
					}
				}
			})
		}
	}
	for range 30 {
		wg.Go(func() {
			err := s.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
				tx.counts.job("alice", "", string(job.StatusCompleted), 1<<30) // a write that fails after counting
				return boom
			})
			if !errors.Is(err, boom) {
				t.Errorf("the failing write: %v", err)
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			if _, err := s.ExpireJobs(ctx, store.Expiry{FinishedBefore: old.Add(time.Second), Now: time.Now(), MaxJobs: 7}); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()

	checkCounts(t, s)
	for _, ns := range []string{"alice", "bob"} {
		var sum int64
		if err := s.readDB.QueryRowContext(ctx, `SELECT coalesce(sum(spec_bytes + result_bytes), 0) FROM jobs WHERE namespace = ?`, ns).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		if n, err := s.JobBytes(ctx, ns); err != nil || n != sum {
			t.Errorf("%s: JobBytes = %d, %v; its jobs take %d", ns, n, err, sum)
		}
	}
}

// TestExpiryInTheBatchOfAFirstStatus: a job that reaches a status no job
// had before, or a namespace's first job, and is expired in the same
// batch is counted out: the delete triggers' subtraction finds the rows
// the writer had not written yet. The writer is held by a slow write, so
// that the update and the expiry queue into one batch.
func TestExpiryInTheBatchOfAFirstStatus(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	old := time.Now().Add(-time.Hour)
	j := &job.Job{ID: "x", Namespace: "carol", Status: job.StatusRunning, CreatedAt: old, StartedAt: old}
	release := make(chan struct{})
	held := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = s.enqueue(ctx, func(context.Context, *writeTx) error {
			close(held)
			<-release
			return nil
		})
	})
	<-held
	queued := func(n int) {
		for len(s.writes) < n {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Go(func() {
		if err := s.CreateJob(ctx, j); err != nil {
			t.Error(err)
		}
	})
	queued(1)
	done := *j
	done.Status, done.FinishedAt = job.StatusTimeout, old
	done.Result = &job.Result{Status: job.StatusTimeout, Error: "too slow"}
	wg.Go(func() {
		if err := s.UpdateJob(ctx, &done); err != nil {
			t.Error(err)
		}
	})
	queued(2)
	wg.Go(func() {
		if e, err := s.ExpireJobs(ctx, store.Expiry{FinishedBefore: old.Add(time.Second), Now: time.Now()}); err != nil || e.Total() != 1 {
			t.Errorf("ExpireJobs = %+v, %v", e, err)
		}
	})
	queued(3)
	close(release)
	wg.Wait()
	counts, err := s.CountJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for st, n := range counts {
		if n != 0 {
			t.Errorf("no job is stored, job_counts says %d %s", n, st)
		}
	}
	if n, err := s.JobBytes(ctx, "carol"); err != nil || n != 0 {
		t.Errorf("carol stores no job, JobBytes = %d, %v", n, err)
	}
}
