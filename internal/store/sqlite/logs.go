package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

var _ store.JobLogs = (*Store)(nil)

// schemaJobLogs keeps each job's log: one row an event, the event as JSON
// with its output's size apart (to sum), keyed by job and sequence so that
// reading a job's log from a point is one index range. A trigger removes a
// job's log with the job, so that expiry needs no change.
const schemaJobLogs = `
CREATE TABLE job_logs (
	job_id TEXT    NOT NULL,
	seq    INTEGER NOT NULL,
	stream TEXT    NOT NULL,
	bytes  INTEGER NOT NULL,
	event  TEXT    NOT NULL,
	PRIMARY KEY (job_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER jobs_logs_delete AFTER DELETE ON jobs BEGIN
	DELETE FROM job_logs WHERE job_id = OLD.id;
END;
`

const (
	appendLogSQL     = `INSERT INTO job_logs (job_id, seq, stream, bytes, event) VALUES (?, ?, ?, ?, ?)`
	logStateSQL      = `SELECT MAX(seq), COUNT(*), COALESCE(SUM(bytes), 0) FROM job_logs WHERE job_id = ?`
	logLastStatusSQL = `SELECT event FROM job_logs WHERE job_id = ? AND stream = 'status' ORDER BY seq DESC LIMIT 1`
)

// AppendJobLog stores ev as an event of job id.
func (s *Store) AppendJobLog(ctx context.Context, id string, ev job.LogEvent) error {
	apply, err := appendJobLog(id, &ev)
	if err != nil {
		return err
	}
	if err := s.enqueue(ctx, apply); err != nil {
		return fmt.Errorf("append log of job %s: %w", id, err)
	}
	return nil
}

// UpdateJobWithLog is UpdateJob(j) and AppendJobLog(j.ID, ev) in one
// transaction: it returns once both are durable, and on an error neither
// was made. The orchestrator stores a job's new state and the status event
// it adds to the job's log so, in one queued write.
func (s *Store) UpdateJobWithLog(ctx context.Context, j *job.Job, ev job.LogEvent) error {
	update, err := updateJob(j)
	if err != nil {
		return err
	}
	appendLog, err := appendJobLog(j.ID, &ev)
	if err != nil {
		return err
	}
	// The update's only error of its own (not found) comes before it
	// changed anything; an error of the append fails the transaction,
	// which the writer then retries without the other writes of its
	// batch: either way, the two are made together or not at all.
	err = s.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
		if err := update(ctx, tx); err != nil {
			return err
		}
		return appendLog(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("update job %s with its log: %w", j.ID, err)
	}
	return nil
}

// CreateJobWithLog is CreateJob(j) and AppendJobLog(j.ID, ev) in one
// transaction, as UpdateJobWithLog is for an update: the orchestrator
// stores a job submitted with Request.Waited, first written when it ends,
// and the status event that ends its log so.
func (s *Store) CreateJobWithLog(ctx context.Context, j *job.Job, ev job.LogEvent) error {
	create, err := createJob(j)
	if err != nil {
		return err
	}
	appendLog, err := appendJobLog(j.ID, &ev)
	if err != nil {
		return err
	}
	// As in UpdateJobWithLog: the create's own error (conflict) comes
	// before it changed anything, the append's fails the transaction.
	err = s.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
		if err := create(ctx, tx); err != nil {
			return err
		}
		return appendLog(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("create job %s with its log: %w", j.ID, err)
	}
	return nil
}

// appendJobLog returns the writer's change of AppendJobLog(id, ev).
func appendJobLog(id string, ev *job.LogEvent) (func(ctx context.Context, tx *writeTx) error, error) {
	if id == "" || ev.Seq == 0 || !ev.Stream.Known() {
		return nil, job.Invalid("event", "a log event needs a job id, a sequence number and a known stream")
	}
	b, err := marshalLogEvent(ev)
	if err != nil {
		return nil, fmt.Errorf("encode log event: %w", err)
	}
	seq, stream, bytes, event := int64(ev.Seq), string(ev.Stream), len(ev.Text), string(b)
	return func(ctx context.Context, tx *writeTx) error {
		_, err := tx.stmt(ctx, stmtAppendLog).ExecContext(ctx, id, seq, stream, bytes, event)
		return err
	}, nil
}

// JobLog returns up to limit events of job id after seq after.
func (s *Store) JobLog(ctx context.Context, id string, after uint64, limit int) ([]job.LogEvent, error) {
	if s.isClosed.Load() {
		return nil, errClosed()
	}
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT event FROM job_logs WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?`, id, int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("read log of job %s: %w", id, err)
	}
	defer rows.Close()
	var out []job.LogEvent
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, fmt.Errorf("read log of job %s: %w", id, err)
		}
		var ev job.LogEvent
		if err := json.Unmarshal([]byte(raw), &ev); err != nil {
			return nil, fmt.Errorf("decode log of job %s: %w", id, err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read log of job %s: %w", id, err)
	}
	return out, nil
}

// JobLogState sums up job id's stored log.
func (s *Store) JobLogState(ctx context.Context, id string) (store.LogState, error) {
	var st store.LogState
	if s.isClosed.Load() {
		return st, errClosed()
	}
	var last sql.NullInt64
	err := s.logState.QueryRowContext(ctx, id).
		Scan(&last, &st.Events, &st.OutputBytes)
	if err != nil {
		return st, fmt.Errorf("read log state of job %s: %w", id, err)
	}
	st.LastSeq = uint64(last.Int64)
	var raw string
	err = s.logLastStatus.QueryRowContext(ctx, id).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read log state of job %s: %w", id, err)
	}
	var ev job.LogEvent
	if err := json.Unmarshal([]byte(raw), &ev); err != nil {
		return st, fmt.Errorf("decode log of job %s: %w", id, err)
	}
	st.LastStatus = &ev
	return st, nil
}
