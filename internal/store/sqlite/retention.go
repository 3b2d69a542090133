package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// schemaSummaries moves results out of jobs and gives each job what lists,
// retention and storage quotas read, so that none of them touches a large
// value.
//
// Results (output, stderr, returned value, files) move to job_results.
// SQLite walks a row's overflow pages to reach a column stored after a
// large one, and ALTER TABLE appends columns at the end of a row; with the
// results out of jobs, a jobs row is small and every column of it is
// cheap. The old result columns of jobs stay, always NULL.
//
// The new columns of jobs: timeout_seconds, replicas and quorum copied from
// the spec (lists would otherwise read the spec and its code); summary, the
// JSON of the result's job.ResultSummary; spec_bytes and result_bytes, what
// the job's spec and result take. namespace_usage sums those per namespace
// for the storage quota, kept by triggers. job_tombstones remembers the
// jobs ExpireJobs removed; jobs_expiry serves ExpireJobs.
//
// Rows written before this version get their summary, sizes and spec
// fields computed here, once.
const schemaSummaries = `
CREATE TABLE job_results (
	job_seq      INTEGER PRIMARY KEY REFERENCES jobs (seq) ON DELETE CASCADE,
	result       TEXT NOT NULL,
	result_value BLOB,
	result_files BLOB
) STRICT;

INSERT INTO job_results (job_seq, result, result_value, result_files)
	SELECT seq, result, result_value, result_files FROM jobs WHERE result IS NOT NULL;

ALTER TABLE jobs ADD COLUMN timeout_seconds REAL    NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN replicas        INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN quorum          INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN spec_bytes      INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN result_bytes    INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN summary         TEXT;

UPDATE jobs SET
	timeout_seconds = coalesce((SELECT json_extract(s.spec, '$.timeout_seconds') FROM job_specs s WHERE s.job_seq = jobs.seq), 0),
	replicas = coalesce((SELECT json_extract(s.spec, '$.replicas') FROM job_specs s WHERE s.job_seq = jobs.seq), 0),
	quorum = coalesce((SELECT json_extract(s.spec, '$.quorum') FROM job_specs s WHERE s.job_seq = jobs.seq), 0),
	spec_bytes = coalesce((SELECT length(CAST(s.spec AS BLOB)) + coalesce(length(s.input), 0) + coalesce(length(s.wasm), 0)
		FROM job_specs s WHERE s.job_seq = jobs.seq), 0);

UPDATE jobs SET
	result_bytes = length(CAST(result AS BLOB)) + coalesce(length(result_value), 0) + coalesce(length(result_files), 0),
	summary = json_object(
		'error', substr(coalesce(json_extract(result, '$.error'), ''), 1, 1000),
		'exit_code', coalesce(json_extract(result, '$.exit_code'), 0),
		'duration_ms', coalesce(json_extract(result, '$.duration_ms'), 0),
		'truncated', json(CASE WHEN json_extract(result, '$.truncated') THEN 'true' ELSE 'false' END),
		'oom_killed', json(CASE WHEN json_extract(result, '$.oom_killed') THEN 'true' ELSE 'false' END),
		'peak_memory_bytes', coalesce(json_extract(result, '$.peak_memory_bytes'), 0),
		'cpu_time_ms', coalesce(json_extract(result, '$.cpu_time_ms'), 0),
		'output_bytes', length(CAST(coalesce(json_extract(result, '$.output'), '') AS BLOB)),
		'stderr_bytes', length(CAST(coalesce(json_extract(result, '$.stderr'), '') AS BLOB)),
		'result_bytes', coalesce(length(result_value), 0),
		'files', coalesce((SELECT count(*) FROM json_each(result_files)), 0),
		'files_bytes', coalesce((SELECT sum(length(value) * 3 / 4) FROM json_each(result_files)), 0))
	WHERE result IS NOT NULL;

UPDATE jobs SET result = NULL, result_value = NULL, result_files = NULL WHERE result IS NOT NULL;

CREATE TABLE namespace_usage (
	namespace TEXT    PRIMARY KEY,
	bytes     INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO namespace_usage (namespace, bytes)
	SELECT namespace, sum(spec_bytes + result_bytes) FROM jobs GROUP BY namespace;

CREATE TRIGGER jobs_usage_insert AFTER INSERT ON jobs BEGIN
	INSERT INTO namespace_usage (namespace, bytes) VALUES (NEW.namespace, NEW.spec_bytes + NEW.result_bytes)
		ON CONFLICT (namespace) DO UPDATE SET bytes = bytes + excluded.bytes;
END;

CREATE TRIGGER jobs_usage_update AFTER UPDATE OF result_bytes ON jobs
WHEN OLD.result_bytes <> NEW.result_bytes BEGIN
	UPDATE namespace_usage SET bytes = bytes + NEW.result_bytes - OLD.result_bytes WHERE namespace = NEW.namespace;
END;

CREATE TRIGGER jobs_usage_delete AFTER DELETE ON jobs BEGIN
	UPDATE namespace_usage SET bytes = bytes - OLD.spec_bytes - OLD.result_bytes WHERE namespace = OLD.namespace;
END;

CREATE INDEX jobs_expiry ON jobs (finished_at)
	WHERE status IN ('completed', 'failed', 'timeout', 'canceled');

CREATE TABLE job_tombstones (
	id         TEXT    PRIMARY KEY,
	namespace  TEXT    NOT NULL,
	expired_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX job_tombstones_expired ON job_tombstones (expired_at);
`

// schemaExpiryIndex states jobs_expiry's condition as comparisons. Every
// insert and update of a job evaluates a partial index's condition (for
// the old row and the new), and SQLite evaluates an IN list of more than
// two values by building a temporary b-tree of them, once per statement:
// with the IN list of version 6 that was one or two temporary b-trees for
// every write of a job.
const schemaExpiryIndex = `
DROP INDEX jobs_expiry;
CREATE INDEX jobs_expiry ON jobs (finished_at) WHERE ` + expiryCondition + `;
`

// expiryCondition is the condition of jobs_expiry: a job that ended.
const expiryCondition = `(status = 'completed' OR status = 'failed' OR status = 'timeout' OR status = 'canceled')`

const (
	// expiredJobsSQL picks the next jobs ExpireJobs removes, oldest
	// first, through jobs_expiry (its WHERE repeats the index's; without
	// statistics the planner would rather take the status index and sort).
	expiredJobsSQL = `SELECT seq, id, namespace, status, spec_bytes + result_bytes FROM jobs INDEXED BY jobs_expiry
		WHERE ` + expiryCondition + ` AND finished_at < ?
		ORDER BY finished_at LIMIT ?`
	forgetTombstonesSQL = `DELETE FROM job_tombstones WHERE id IN
		(SELECT id FROM job_tombstones WHERE expired_at < ? ORDER BY expired_at LIMIT ?)`
	tombstoneSQL = `SELECT namespace, expired_at FROM job_tombstones WHERE id = ?`
)

// ExpireJobs removes jobs that finished before e.FinishedBefore, leaving
// tombstones, and forgets tombstones older than e.ForgetBefore, in one
// write of the writer, bounded by e.MaxJobs and e.MaxBytes.
func (s *Store) ExpireJobs(ctx context.Context, e store.Expiry) (store.Expired, error) {
	maxJobs := cmpOr(e.MaxJobs, store.DefaultExpireJobs)
	maxBytes := cmpOr(e.MaxBytes, store.DefaultExpireBytes)
	before, err := encodeTime("finished_before", e.FinishedBefore)
	if err != nil {
		return store.Expired{}, err
	}
	now, err := encodeTime("now", e.Now)
	if err != nil {
		return store.Expired{}, err
	}
	var forget int64
	if !e.ForgetBefore.IsZero() {
		if forget, err = encodeTime("forget_before", e.ForgetBefore); err != nil {
			return store.Expired{}, err
		}
	}
	var out store.Expired
	err = s.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
		out = store.Expired{Jobs: map[job.Status]int{}}
		rows, err := tx.tx.QueryContext(ctx, expiredJobsSQL, before, maxJobs+1)
		if err != nil {
			return err
		}
		type victim struct {
			seq           int64
			id, ns, state string
		}
		var victims []victim
		for rows.Next() {
			var v victim
			var size int64
			if err := rows.Scan(&v.seq, &v.id, &v.ns, &v.state, &size); err != nil {
				rows.Close()
				return err
			}
			if len(victims) == maxJobs || len(victims) > 0 && out.Bytes+size > maxBytes {
				out.More = true
				break
			}
			out.Bytes += size
			victims = append(victims, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		// The delete triggers subtract from the rows of job_counts and
		// namespace_usage, which the writer creates only when it writes
		// the batch's counters, at its end: a job that reached its status,
		// or the first job of its namespace, earlier in this batch would
		// have no row yet, and its subtraction would be lost. What the
		// batch counted so far is written first.
		if len(victims) > 0 {
			if err := tx.counts.flush(ctx, tx); err != nil {
				return err
			}
			tx.counts.reset()
		}
		for _, v := range victims {
			if _, err := tx.tx.ExecContext(ctx, `DELETE FROM jobs WHERE seq = ?`, v.seq); err != nil {
				return err
			}
			tx.known.forget(v.id)
			if _, err := tx.tx.ExecContext(ctx, `INSERT INTO job_tombstones (id, namespace, expired_at) VALUES (?, ?, ?)
				ON CONFLICT (id) DO UPDATE SET expired_at = excluded.expired_at`, v.id, v.ns, now); err != nil {
				return err
			}
			out.Jobs[job.Status(v.state)]++
			out.IDs = append(out.IDs, v.id)
		}
		if e.ForgetBefore.IsZero() {
			return nil
		}
		res, err := tx.tx.ExecContext(ctx, forgetTombstonesSQL, forget, maxJobs)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		out.Tombstones = int(n)
		if n == int64(maxJobs) {
			out.More = true
		}
		return nil
	})
	if err != nil {
		return store.Expired{}, fmt.Errorf("expire jobs: %w", err)
	}
	return out, nil
}

// JobBytes returns what ns's stored jobs take, from namespace_usage.
func (s *Store) JobBytes(ctx context.Context, ns string) (int64, error) {
	if s.isClosed.Load() {
		return 0, errClosed()
	}
	var n int64
	err := s.readDB.QueryRowContext(ctx, `SELECT bytes FROM namespace_usage WHERE namespace = ?`, ns).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("job bytes of %s: %w", ns, err)
	}
	return n, nil
}

// notFound returns the error of GetJob for an id it did not find: a
// *job.ExpiredError when a tombstone says the job expired, else
// job.ErrNotFound.
func (s *Store) notFound(ctx context.Context, id string) error {
	var ns string
	var at int64
	err := s.readDB.QueryRowContext(ctx, tombstoneSQL, id).Scan(&ns, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("get job %s: %w", id, job.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("get job %s: %w", id, err)
	}
	return &job.ExpiredError{ID: id, Namespace: ns, ExpiredAt: time.Unix(0, at).UTC()}
}

func cmpOr[T int | int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
