package sqlite

import "context"

// schemaWriterCounters hands the upkeep of job_counts and namespace_usage on
// inserts and updates of jobs to the writer. Their triggers ran for every
// create and every update of a job, each a sub-program of two b-tree writes,
// and made SQLite open a statement journal (a copy of every page the
// statement changed) for each of those statements inside the writer's
// transaction. The writer now adds up what a batch changes, per status and
// per namespace, and writes it in the same transaction before COMMIT: one
// upsert per status and per namespace a batch touched, not two per write.
// Deleting a job (expiry) still goes through the delete triggers.
//
// From this version on, a small result (see inlineResultBytes) is kept in
// the result columns of its jobs row, which version 6 left NULL, rather
// than in job_results, and a small spec without a Wasm module (see
// inlineSpecBytes) in the new spec and input columns of its jobs row
// rather than in job_specs. A program of an older version must not read
// such a database, hence the version.
const schemaWriterCounters = `
DROP TRIGGER jobs_count_insert;
DROP TRIGGER jobs_count_update;
DROP TRIGGER jobs_usage_insert;
DROP TRIGGER jobs_usage_update;

ALTER TABLE jobs ADD COLUMN spec  TEXT;
ALTER TABLE jobs ADD COLUMN input BLOB;
`

const (
	addCountSQL = `INSERT INTO job_counts (status, n) VALUES (?, ?)
	ON CONFLICT (status) DO UPDATE SET n = n + excluded.n`
	addUsageSQL = `INSERT INTO namespace_usage (namespace, bytes) VALUES (?, ?)
	ON CONFLICT (namespace) DO UPDATE SET bytes = bytes + excluded.bytes`
)

// counters are the changes a transaction of the writer made to job_counts
// (jobs by status) and namespace_usage (bytes by namespace).
type counters struct {
	jobs  map[string]int64
	bytes map[string]int64
}

func newCounters() counters {
	return counters{jobs: map[string]int64{}, bytes: map[string]int64{}}
}

// job records that a job of namespace ns went from status from (none when
// "") to status to, and that its stored size changed by bytes.
func (c counters) job(ns, from, to string, bytes int64) {
	if from != to {
		if from != "" {
			c.jobs[from]--
		}
		c.jobs[to]++
	}
	if bytes != 0 {
		c.bytes[ns] += bytes
	}
}

func (c counters) reset() {
	clear(c.jobs)
	clear(c.bytes)
}

// flush writes the recorded changes through tx.
func (c counters) flush(ctx context.Context, tx *writeTx) error {
	for st, n := range c.jobs {
		if n == 0 {
			continue
		}
		if _, err := tx.stmt(ctx, stmtAddCount).ExecContext(ctx, st, n); err != nil {
			return err
		}
	}
	for ns, n := range c.bytes {
		if n == 0 {
			continue
		}
		if _, err := tx.stmt(ctx, stmtAddUsage).ExecContext(ctx, ns, n); err != nil {
			return err
		}
	}
	return nil
}
