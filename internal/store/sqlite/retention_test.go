package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// TestMigrateResultsOut opens a database of schema version 5, whose jobs
// hold their results, and checks that version 6 moves them out with their
// summaries and sizes computed.
func TestMigrateResultsOut(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "zerverless.db")
	db, err := sql.Open("sqlite", dsn(path, []string{"foreign_keys(1)"}, "immediate"))
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, db, migrations[:5]); err != nil {
		t.Fatal(err)
	}
	output := strings.Repeat("o", 5000)
	_, err = db.Exec(`INSERT INTO jobs (seq, id, namespace, job_type, status, attempt, max_attempts, created_at, finished_at,
		reason, result, result_value, result_files) VALUES (1, 'old', 'team-a', 'lua', 'failed', 1, 3, 10, 20, 'why',
		json_object('status', 'failed', 'output', ?, 'stderr', 'err', 'error', 'boom', 'exit_code', 2, 'duration_ms', 7,
		'truncated', json('true'), 'oom_killed', json('false'), 'attempt', 1), CAST('[1,2]' AS BLOB), CAST('{"a":"aGk="}' AS BLOB))`, output)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO job_specs (job_seq, spec, input) VALUES (1, '{"code":"return 1","timeout_seconds":9,"replicas":3}', CAST('{"n":1}' AS BLOB))`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	cfg := DefaultConfig()
	cfg.Path = path
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	j, err := s.GetJob(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if j.Result == nil || j.Result.Output != output || string(j.Result.Result) != "[1,2]" || string(j.Result.Files["a"]) != "hi" || j.Spec.TimeoutSeconds != 9 {
		t.Fatalf("migrated job = %+v, result %+v", j, j.Result)
	}
	page, _, err := s.ListJobs(ctx, store.JobFilter{})
	if err != nil || len(page) != 1 {
		t.Fatalf("ListJobs = %v, %v", page, err)
	}
	got := page[0]
	want := job.ResultSummary{Error: "boom", ExitCode: 2, DurationMS: 7, Truncated: true, OutputBytes: 5000, StderrBytes: 3, ResultBytes: 5, Files: 1, FilesBytes: 3}
	if got.Result == nil || *got.Result != want || got.TimeoutSeconds != 9 || got.Replicas != 3 || got.Reason != "why" {
		t.Errorf("migrated summary = %+v, result %+v; want %+v", got, got.Result, want)
	}
	n, err := s.JobBytes(ctx, "team-a")
	if err != nil || n < 5000 {
		t.Errorf("JobBytes after migration = %d, %v", n, err)
	}
	var left int
	if err := s.readDB.QueryRow(`SELECT count(*) FROM jobs WHERE result IS NOT NULL OR result_value IS NOT NULL`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d jobs rows still hold a result (%v)", left, err)
	}
	// The migrated job expires like any other.
	e, err := s.ExpireJobs(ctx, store.Expiry{FinishedBefore: time.Unix(0, 21), Now: time.Now()})
	if err != nil || e.Total() != 1 {
		t.Errorf("ExpireJobs of the migrated job = %+v, %v", e, err)
	}
	if n, _ := s.JobBytes(ctx, "team-a"); n != 0 {
		t.Errorf("JobBytes after expiry = %d", n)
	}
}

func TestExpiryQueryPlans(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	plan := queryPlan(t, s.readDB, expiredJobsSQL, 1, 10)
	checkIndexed(t, "ExpireJobs", plan, true)
	if !strings.Contains(plan, "jobs_expiry") {
		t.Errorf("ExpireJobs does not use jobs_expiry:\n%s", plan)
	}
	checkIndexed(t, "forget tombstones", queryPlan(t, s.readDB, `SELECT id FROM job_tombstones WHERE expired_at < ? ORDER BY expired_at LIMIT ?`, 1, 10), true)
}

// TestMigrateWriterCounters opens a database of schema version 10, whose
// triggers kept job_counts and namespace_usage, and checks that after
// version 11 the counters go on from what they held, through creates,
// updates with and without results, and expiry.
func TestMigrateWriterCounters(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "zerverless.db")
	db, err := sql.Open("sqlite", dsn(path, []string{"foreign_keys(1)"}, "immediate"))
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, db, migrations[:10]); err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`INSERT INTO jobs (seq, id, namespace, job_type, status, attempt, max_attempts, created_at, finished_at, spec_bytes, result_bytes)
		VALUES (1, 'old-done', 'team-a', 'lua', 'completed', 1, 3, 10, 20, 30, 7),
		       (2, 'old-pending', 'team-a', 'lua', 'pending', 1, 3, 11, NULL, 40, 0)`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO job_specs (job_seq, spec) VALUES (1, '{}'), (2, '{}')`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO job_results (job_seq, result) VALUES (1, '{"status":"x"}')`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	cfg := DefaultConfig()
	cfg.Path = path
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check := func(when string, want map[job.Status]int) {
		t.Helper()
		counts, err := s.CountJobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for st, n := range want {
			if counts[st] != n {
				t.Errorf("%s: %d jobs %s, want %d (%v)", when, counts[st], st, n, counts)
			}
		}
		var sum int64
		if err := s.readDB.QueryRow(`SELECT coalesce(sum(spec_bytes + result_bytes), 0) FROM jobs WHERE namespace = 'team-a'`).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		if n, err := s.JobBytes(ctx, "team-a"); err != nil || n != sum {
			t.Errorf("%s: JobBytes = %d, %v; the jobs take %d", when, n, err, sum)
		}
	}
	check("after migration", map[job.Status]int{job.StatusCompleted: 1, job.StatusPending: 1})

	now := time.Now()
	j := &job.Job{ID: "new", Namespace: "team-a", Status: job.StatusPending, CreatedAt: now, Spec: job.Spec{Code: "return 1"}}
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	check("after create", map[job.Status]int{job.StatusCompleted: 1, job.StatusPending: 2})
	j.Status, j.StartedAt = job.StatusRunning, now
	if err := s.UpdateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	j.Status, j.FinishedAt = job.StatusCompleted, now
	j.Result = &job.Result{Status: job.StatusCompleted, Output: "hello", Result: json.RawMessage(`[1]`)}
	if err := s.UpdateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	check("after completion", map[job.Status]int{job.StatusCompleted: 2, job.StatusPending: 1, job.StatusRunning: 0})
	// A retry drops the stored result of the old job.
	old, err := s.GetJob(ctx, "old-done")
	if err != nil {
		t.Fatal(err)
	}
	if old.Result == nil || old.Result.Status != "x" {
		t.Fatalf("result of a job stored before the migration = %+v", old.Result)
	}
	old.Status, old.Result, old.FinishedAt = job.StatusPending, nil, time.Time{}
	if err := s.UpdateJob(ctx, old); err != nil {
		t.Fatal(err)
	}
	check("after retry", map[job.Status]int{job.StatusCompleted: 1, job.StatusPending: 2})
	if err := s.UpdateJob(ctx, &job.Job{ID: "missing", Status: job.StatusFailed, CreatedAt: now}); !errors.Is(err, job.ErrNotFound) {
		t.Errorf("UpdateJob of an unknown job = %v", err)
	}
	if err := s.CreateJob(ctx, j); job.ErrorCode(err) != job.CodeConflict {
		t.Errorf("CreateJob again = %v", err)
	}
	check("after failed writes", map[job.Status]int{job.StatusCompleted: 1, job.StatusPending: 2, job.StatusFailed: 0})
	e, err := s.ExpireJobs(ctx, store.Expiry{FinishedBefore: now.Add(time.Second), Now: now})
	if err != nil || e.Total() != 1 {
		t.Errorf("ExpireJobs = %+v, %v", e, err)
	}
	check("after expiry", map[job.Status]int{job.StatusCompleted: 0, job.StatusPending: 2})
}
