package sqlite

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// checkCounts fails unless CountJobs, and the bytes namespace_usage holds
// for each namespace, agree with the jobs rows.
func checkCounts(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	counts, err := s.CountJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT status, count(*) FROM jobs GROUP BY status`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := map[job.Status]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			t.Fatal(err)
		}
		want[job.Status(st)] = n
	}
	for _, st := range job.Statuses {
		if counts[st] != want[st] {
			t.Errorf("%s: %d counted, %d stored", st, counts[st], want[st])
		}
	}
	counted, stored := map[string]int64{}, map[string]int64{}
	for q, m := range map[string]map[string]int64{
		`SELECT namespace, bytes FROM namespace_usage`:                                  counted,
		`SELECT namespace, SUM(spec_bytes + result_bytes) FROM jobs GROUP BY namespace`: stored,
	} {
		rows, err := s.readDB.QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var ns string
			var n int64
			if err := rows.Scan(&ns, &n); err != nil {
				t.Fatal(err)
			}
			m[ns] = n
		}
		rows.Close()
	}
	for _, m := range []map[string]int64{counted, stored} {
		for ns := range m {
			if counted[ns] != stored[ns] {
				t.Errorf("namespace %s: %d bytes counted, %d stored", ns, counted[ns], stored[ns])
			}
		}
	}
}

// TestKnownJobsFollowOtherWriters: the writer's knowledge of active jobs'
// rows gives way to what another connection (another process) committed,
// and to a rolled-back transaction, so that the counters stay exact.
func TestKnownJobsFollowOtherWriters(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := openTest(t, dir)
	defer a.Close()
	b := openTest(t, dir)
	defer b.Close()
	j := &job.Job{ID: "j1", Namespace: "default", Type: job.TypeLua, Status: job.StatusPending, Attempt: 1, MaxAttempts: 3, CreatedAt: time.Unix(0, 10)}
	if err := a.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	j.Status, j.StartedAt = job.StatusRunning, time.Unix(0, 11)
	if err := a.UpdateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	// The other process ends the job with a large result, then puts it
	// back to pending: a knows it as running, without a result.
	other := *j
	other.Status, other.FinishedAt = job.StatusCompleted, time.Unix(0, 12)
	other.Result = &job.Result{Status: job.StatusCompleted, Output: string(make([]byte, 4000)), Attempt: 1}
	if err := b.UpdateJob(ctx, &other); err != nil {
		t.Fatal(err)
	}
	other.Status, other.Attempt = job.StatusPending, 2
	if err := b.UpdateJob(ctx, &other); err != nil {
		t.Fatal(err)
	}
	j.Status, j.Attempt, j.FinishedAt = job.StatusFailed, 2, time.Unix(0, 13)
	j.Result = &job.Result{Status: job.StatusFailed, Error: "boom", Attempt: 2}
	if err := a.UpdateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, a)
	var n int
	if err := a.readDB.QueryRowContext(ctx, `SELECT count(*) FROM job_results`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d job_results rows left (%v)", n, err)
	}

	// A transaction that is rolled back after a job's update leaves no
	// trace of it in what the writer knows.
	k := &job.Job{ID: "j2", Namespace: "other", Type: job.TypeLua, Status: job.StatusPending, Attempt: 1, MaxAttempts: 3, CreatedAt: time.Unix(0, 20)}
	if err := a.CreateJob(ctx, k); err != nil {
		t.Fatal(err)
	}
	run := *k
	run.Status, run.StartedAt = job.StatusRunning, time.Unix(0, 21)
	update, err := updateJob(&run)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("the disk is on fire")
	if err := a.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
		if err := update(ctx, tx); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("the failing write: %v", err)
	}
	k.Status, k.FinishedAt = job.StatusCanceled, time.Unix(0, 22)
	if err := a.UpdateJob(ctx, k); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, a)
	if got, err := a.GetJob(ctx, k.ID); err != nil || got.Status != job.StatusCanceled {
		t.Errorf("j2 is %+v (%v)", got, err)
	}
}
