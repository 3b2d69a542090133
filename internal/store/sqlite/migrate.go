package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations is the history of the schema. Entry i takes the database from
// version i to version i+1; the version is kept in SQLite's user_version.
// To change the schema, append one entry (its SQL in a constant below);
// never edit, remove or reorder an entry that has shipped.
var migrations = []string{
	schemaJobs,                       // 1: jobs, their specs, counts by status
	schemaDeployments,                // 2: function deployments
	schemaBuildContexts,              // 3: uploaded build contexts
	schemaTenancy,                    // 4: tokens, namespace policies, build context owners
	schemaOwnerIndex,                 // 5: build context owners by namespace, for quotas
	schemaSummaries,                  // 6: results apart, job summaries, storage use, tombstones
	schemaDeploymentAnonymousWorkers, // 7: deployments that anonymous workers may run
	schemaExpiryIndex,                // 8: jobs_expiry's condition without an IN list
	schemaJobLogs,                    // 9: jobs' logs (live output and status changes)
	schemaDeploymentService,          // 10: docker services' configuration
	schemaWriterCounters,             // 11: job_counts and namespace_usage kept by the writer on insert and update
}

// migrate applies, in one transaction, every migration the database has not
// seen yet, and records the new version. It refuses a database whose version
// is newer than the list, written by a newer Zerverless.
func migrate(ctx context.Context, db *sql.DB, list []string) error {
	// The writer's DSN makes this BEGIN IMMEDIATE, so two processes that
	// open one database at once migrate one after the other.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if version > len(list) {
		return fmt.Errorf("migrate: database schema version %d is newer than this program's %d", version, len(list))
	}
	if version == len(list) {
		return nil
	}
	for v := version; v < len(list); v++ {
		if _, err := tx.ExecContext(ctx, list[v]); err != nil {
			return fmt.Errorf("migrate to version %d: %w", v+1, err)
		}
	}
	// PRAGMA takes no bound parameters; len(list) is an int we own.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(list))); err != nil {
		return fmt.Errorf("migrate: record version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// schemaJobs creates the job tables.
//
// jobs holds what changes during a job's life and what is filtered or
// sorted on; times are Unix nanoseconds (UTC), NULL when unset. job_specs
// holds what never changes after creation (spec, input, Wasm module), so
// that the three writes of a job's life never copy a large module again.
// Large columns come last in each row: SQLite reads a row's columns in
// order, so a query that stops before them never reads their overflow pages.
//
// The indexes serve ListJobs for each combination of filters (newest first,
// keyset by created_at then id) and ActiveJobs (status IN pending, running).
// job_counts is kept by triggers, so CountJobs reads a handful of rows
// rather than every job.
const schemaJobs = `
CREATE TABLE jobs (
	seq          INTEGER PRIMARY KEY,
	id           TEXT    NOT NULL UNIQUE,
	namespace    TEXT    NOT NULL,
	job_type     TEXT    NOT NULL,
	status       TEXT    NOT NULL,
	attempt      INTEGER NOT NULL,
	max_attempts INTEGER NOT NULL,
	created_at   INTEGER NOT NULL,
	started_at   INTEGER,
	finished_at  INTEGER,
	worker_id    TEXT    NOT NULL DEFAULT '',
	lease_id     TEXT    NOT NULL DEFAULT '',
	reason       TEXT    NOT NULL DEFAULT '',
	result       TEXT,
	result_value BLOB,
	result_files BLOB
) STRICT;

CREATE INDEX jobs_created ON jobs (created_at, id);
CREATE INDEX jobs_status_created ON jobs (status, created_at, id);
CREATE INDEX jobs_namespace_created ON jobs (namespace, created_at, id);
CREATE INDEX jobs_namespace_status_created ON jobs (namespace, status, created_at, id);

CREATE TABLE job_specs (
	job_seq INTEGER PRIMARY KEY REFERENCES jobs (seq) ON DELETE CASCADE,
	spec    TEXT NOT NULL,
	input   BLOB,
	wasm    BLOB
) STRICT;

CREATE TABLE job_counts (
	status TEXT    PRIMARY KEY,
	n      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
	INSERT INTO job_counts (status, n) VALUES (NEW.status, 1)
		ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_count_update AFTER UPDATE OF status ON jobs
WHEN OLD.status <> NEW.status BEGIN
	UPDATE job_counts SET n = n - 1 WHERE status = OLD.status;
	INSERT INTO job_counts (status, n) VALUES (NEW.status, 1)
		ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN
	UPDATE job_counts SET n = n - 1 WHERE status = OLD.status;
END;
`

// schemaOwnerIndex serves BuildContextBytes: a namespace's contexts are an
// index range.
const schemaOwnerIndex = `
CREATE INDEX build_context_owners_namespace ON build_context_owners (namespace, id);
`
