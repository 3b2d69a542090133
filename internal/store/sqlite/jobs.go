package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	sqlitedrv "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

const (
	insertJobSQL = `INSERT INTO jobs (id, namespace, job_type, status, attempt, max_attempts,
	created_at, started_at, finished_at, worker_id, lease_id, reason,
	timeout_seconds, replicas, quorum, spec_bytes, result_bytes, summary,
	result, result_value, result_files, spec, input)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// A spec with no Wasm module whose JSON and input take up to
	// inlineSpecBytes is kept in the jobs row (spec not NULL), any other
	// in job_specs.
	insertSpecSQL = `INSERT INTO job_specs (job_seq, spec, input, wasm) VALUES (?, ?, ?, ?)`
	// A result of up to inlineResultBytes is kept in the jobs row's result
	// columns (result not NULL), a larger one in job_results; a job has a
	// result exactly when its result_bytes is above 0 (the JSON of a result
	// is never empty).
	//
	// An update reads the job's state by id (jobStateSQL: its seq, and
	// its status, namespace, stored result size and whether that result
	// is in the row, for the writer's counters and for job_results), then
	// updates its row by seq: with a result, the row and its result
	// (updateJobSQL), and a large result's job_results row
	// (putResultSQL); without one, only what changes when no result was
	// stored either (updateJobNoResultSQL: result_bytes and summary stay
	// 0 and NULL), and only a job whose stored result goes away clears it
	// (clearResultSQL, and deleteResultSQL for a job_results row).
	jobStateSQL  = `SELECT seq, status, namespace, result_bytes, result IS NOT NULL FROM jobs WHERE id = ?`
	updateJobSQL = `UPDATE jobs SET status = ?, attempt = ?, started_at = ?, finished_at = ?,
	worker_id = ?, lease_id = ?, reason = ?, result_bytes = ?, summary = ?,
	result = ?, result_value = ?, result_files = ?
	WHERE seq = ?`
	updateJobNoResultSQL = `UPDATE jobs SET status = ?, attempt = ?, started_at = ?, finished_at = ?,
	worker_id = ?, lease_id = ?, reason = ?
	WHERE seq = ?`
	clearResultSQL = `UPDATE jobs SET status = ?, attempt = ?, started_at = ?, finished_at = ?,
	worker_id = ?, lease_id = ?, reason = ?, result_bytes = 0, summary = NULL,
	result = NULL, result_value = NULL, result_files = NULL
	WHERE seq = ?`
	deleteResultSQL = `DELETE FROM job_results WHERE job_seq = ?`
	// putResultSQL writes a result kept in job_results.
	putResultSQL = `INSERT INTO job_results (job_seq, result, result_value, result_files) VALUES (?, ?, ?, ?)
	ON CONFLICT (job_seq) DO UPDATE SET result = excluded.result,
	result_value = excluded.result_value, result_files = excluded.result_files`

	// summaryColumns are what ListJobs reads: jobs columns only, none of
	// them large (the reason is cut, as the summary's error already is).
	summaryColumns = `j.id, j.namespace, j.job_type, j.status, j.attempt, j.max_attempts,
	j.created_at, j.started_at, j.finished_at, j.worker_id,
	substr(j.reason, 1, ` + reasonChars + `), j.timeout_seconds, j.replicas, j.quorum, j.summary`
	// reasonChars is one more than job.SummaryTextBytes, so that a reason
	// longer than that is seen to be cut.
	reasonChars = "1025"
	// fullColumns are a whole job: its row, spec and result.
	fullColumns = `j.id, j.namespace, j.job_type, j.status, j.attempt, j.max_attempts,
	j.created_at, j.started_at, j.finished_at, j.worker_id, j.lease_id, j.reason,
	CASE WHEN j.spec IS NULL THEN s.spec ELSE j.spec END,
	CASE WHEN j.spec IS NULL THEN s.input ELSE j.input END, s.wasm,
	CASE WHEN j.result IS NULL THEN r.result ELSE j.result END,
	CASE WHEN j.result IS NULL THEN r.result_value ELSE j.result_value END,
	CASE WHEN j.result IS NULL THEN r.result_files ELSE j.result_files END`
	// LEFT JOIN keeps jobs as the outer loop in SQLite's planner, so the
	// jobs indexes drive every query and job_specs is looked up by key.
	fromJobs      = ` FROM jobs j LEFT JOIN job_specs s ON s.job_seq = j.seq LEFT JOIN job_results r ON r.job_seq = j.seq`
	fromSummary   = ` FROM jobs j`
	getJobSQL     = `SELECT ` + fullColumns + fromJobs + ` WHERE j.id = ?`
	activeJobsSQL = `SELECT ` + fullColumns + fromJobs +
		` WHERE j.status IN ('pending', 'running') ORDER BY j.created_at, j.id`
	countJobsSQL = `SELECT status, n FROM job_counts`
)

// Times are stored as Unix nanoseconds, which cover 1678 to 2262.
var (
	minTime = time.Unix(0, -1<<63).UTC()
	maxTime = time.Unix(0, 1<<63-1).UTC()
)

// CreateJob stores j and returns once it is durable. j.ID and j.CreatedAt
// are required (code invalid); an id already stored fails with code
// conflict. Times keep nanosecond precision and come back in UTC.
func (s *Store) CreateJob(ctx context.Context, j *job.Job) error {
	apply, err := createJob(j)
	if err != nil {
		return err
	}
	if err := s.enqueue(ctx, apply); err != nil {
		return fmt.Errorf("create job %s: %w", j.ID, err)
	}
	return nil
}

// createJob returns the writer's change of CreateJob(j).
func createJob(j *job.Job) (func(ctx context.Context, tx *writeTx) error, error) {
	if j == nil || j.ID == "" {
		return nil, job.Invalid("id", "a job needs an id")
	}
	if j.CreatedAt.IsZero() {
		return nil, job.Invalid("created_at", "a job needs a creation time")
	}
	row, err := encodeJob(j)
	if err != nil {
		return nil, err
	}
	spec, err := encodeSpec(j.Spec)
	if err != nil {
		return nil, err
	}
	c := *j // the writer reads a copy, not the caller's job
	id := c.ID
	return func(ctx context.Context, tx *writeTx) error {
		res, err := tx.stmt(ctx, stmtInsertJob).ExecContext(ctx,
			id, c.Namespace, string(c.Type), row.status, c.Attempt, c.MaxAttempts,
			row.created, row.started, row.finished, c.WorkerID, c.LeaseID, c.Reason,
			c.Spec.TimeoutSeconds, c.Spec.Replicas, c.Spec.Quorum, spec.bytes, row.resultBytes, row.summary,
			row.inlineResult(), row.inlineValue(), row.inlineFiles(), spec.inlineSpec(), spec.inlineInput())
		if err != nil {
			if isUniqueViolation(err) {
				return job.Errorf(job.CodeConflict, "job %s already exists", id)
			}
			return err
		}
		seq, err := res.LastInsertId()
		if err != nil {
			return err
		}
		if !spec.inline() {
			if _, err = tx.stmt(ctx, stmtInsertSpec).ExecContext(ctx,
				seq, spec.spec, spec.input, spec.wasm); err != nil {
				return err
			}
		}
		if row.hasResult && !row.inline() {
			if _, err = tx.stmt(ctx, stmtPutResult).ExecContext(ctx, seq, row.result, row.resultValue, row.resultFiles); err != nil {
				return err
			}
		}
		tx.counts.job(c.Namespace, "", row.status, spec.bytes+row.resultBytes)
		tx.known.put(id, knownJob{seq: seq, status: row.status, ns: c.Namespace, bytes: row.resultBytes, inline: row.inline()})
		return nil
	}, nil
}

// UpdateJob replaces the stored status, attempt, worker, lease, start and
// finish times, reason and result of the job with j.ID, and returns once
// that is durable. The id, namespace, type, spec, max attempts and creation
// time stay as created. An unknown id fails with job.ErrNotFound.
func (s *Store) UpdateJob(ctx context.Context, j *job.Job) error {
	apply, err := updateJob(j)
	if err != nil {
		return err
	}
	if err := s.enqueue(ctx, apply); err != nil {
		return fmt.Errorf("update job %s: %w", j.ID, err)
	}
	return nil
}

// updateJob returns the writer's change of UpdateJob(j).
func updateJob(j *job.Job) (func(ctx context.Context, tx *writeTx) error, error) {
	if j == nil || j.ID == "" {
		return nil, job.Invalid("id", "a job needs an id")
	}
	row, err := encodeJob(j)
	if err != nil {
		return nil, err
	}
	c := *j // the writer reads a copy, not the caller's job
	id := c.ID
	return func(ctx context.Context, tx *writeTx) error {
		var (
			seq, oldBytes int64
			oldStatus, ns string
			oldInline     bool
		)
		if st, ok := tx.known.get(id); ok {
			seq, oldStatus, ns, oldBytes, oldInline = st.seq, st.status, st.ns, st.bytes, st.inline
		} else {
			err := tx.stmt(ctx, stmtJobState).QueryRowContext(ctx, id).Scan(&seq, &oldStatus, &ns, &oldBytes, &oldInline)
			if errors.Is(err, sql.ErrNoRows) {
				return job.ErrNotFound
			}
			if err != nil {
				return err
			}
		}
		switch {
		case row.hasResult:
			if _, err := tx.stmt(ctx, stmtUpdateJob).ExecContext(ctx,
				row.status, c.Attempt, row.started, row.finished, c.WorkerID, c.LeaseID, c.Reason,
				row.resultBytes, row.summary, row.inlineResult(), row.inlineValue(), row.inlineFiles(), seq); err != nil {
				return err
			}
			if !row.inline() {
				if _, err := tx.stmt(ctx, stmtPutResult).ExecContext(ctx, seq, row.result, row.resultValue, row.resultFiles); err != nil {
					return err
				}
			} else if oldBytes > 0 && !oldInline {
				if _, err := tx.stmt(ctx, stmtDeleteResult).ExecContext(ctx, seq); err != nil {
					return err
				}
			}
		case oldBytes > 0:
			if _, err := tx.stmt(ctx, stmtClearResult).ExecContext(ctx,
				row.status, c.Attempt, row.started, row.finished, c.WorkerID, c.LeaseID, c.Reason, seq); err != nil {
				return err
			}
			if !oldInline {
				if _, err := tx.stmt(ctx, stmtDeleteResult).ExecContext(ctx, seq); err != nil {
					return err
				}
			}
		default:
			if _, err := tx.stmt(ctx, stmtUpdateJobNoResult).ExecContext(ctx,
				row.status, c.Attempt, row.started, row.finished, c.WorkerID, c.LeaseID, c.Reason, seq); err != nil {
				return err
			}
		}
		tx.counts.job(ns, oldStatus, row.status, row.resultBytes-oldBytes)
		tx.known.put(id, knownJob{seq: seq, status: row.status, ns: ns, bytes: row.resultBytes, inline: row.inline()})
		return nil
	}, nil
}

// GetJob returns the job with id, in full, or an error with code not_found
// (a *job.ExpiredError for a job ExpireJobs removed).
func (s *Store) GetJob(ctx context.Context, id string) (*job.Job, error) {
	if s.isClosed.Load() {
		return nil, errClosed()
	}
	j, err := scanJob(s.getJob.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, s.notFound(ctx, id)
	}
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	return j, nil
}

// ListJobs returns the summaries of up to f.Limit jobs matching f, newest
// first (by creation time, then id), and the cursor of the next page, ""
// after the last. It reads jobs rows only, never a spec or a result. An
// unknown status or a malformed cursor fails with code invalid. Every
// combination of filters is an index range.
func (s *Store) ListJobs(ctx context.Context, f store.JobFilter) ([]*job.Summary, string, error) {
	if s.isClosed.Load() {
		return nil, "", errClosed()
	}
	query, args, limit, err := listQuery(f)
	if err != nil {
		return nil, "", err
	}
	rows, err := s.readDB.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	jobs, err := scanSummaries(rows)
	if err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	next := ""
	if len(jobs) > limit {
		jobs = jobs[:limit]
		last := jobs[limit-1]
		next = encodeCursor(last.CreatedAt.UnixNano(), last.ID)
	}
	return jobs, next, nil
}

// listQuery builds the ListJobs query for f. It asks for one row more than
// the page, to know whether a next page exists.
func listQuery(f store.JobFilter) (query string, args []any, limit int, err error) {
	limit = f.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	limit = min(limit, store.MaxListLimit)
	var where []string
	if f.Status != "" {
		if !f.Status.Known() {
			return "", nil, 0, job.Invalid("status", "unknown status %q", f.Status)
		}
		where = append(where, "j.status = ?")
		args = append(args, string(f.Status))
	}
	if f.Namespace != "" {
		where = append(where, "j.namespace = ?")
		args = append(args, f.Namespace)
	}
	if f.Cursor != "" {
		created, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return "", nil, 0, err
		}
		// The first term bounds the index range; the second skips the
		// rows of the cursor's own creation time up to its id.
		where = append(where, "j.created_at <= ? AND (j.created_at < ? OR j.id < ?)")
		args = append(args, created, created, id)
	}
	var b strings.Builder
	b.WriteString("SELECT " + summaryColumns + fromSummary)
	if len(where) > 0 {
		b.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	b.WriteString(" ORDER BY j.created_at DESC, j.id DESC LIMIT ?")
	args = append(args, limit+1)
	return b.String(), args, limit, nil
}

// ActiveJobs returns every pending or running job, in full, oldest first.
// It reads the two status ranges of the status index and sorts only them.
func (s *Store) ActiveJobs(ctx context.Context) ([]*job.Job, error) {
	if s.isClosed.Load() {
		return nil, errClosed()
	}
	rows, err := s.readDB.QueryContext(ctx, activeJobsSQL)
	if err != nil {
		return nil, fmt.Errorf("active jobs: %w", err)
	}
	jobs, err := scanJobs(rows)
	if err != nil {
		return nil, fmt.Errorf("active jobs: %w", err)
	}
	return jobs, nil
}

// CountJobs returns how many jobs are in each status; every known status
// is present, with 0 when no job has it. It reads counters that the writer
// keeps up to date in the transaction of each write, not the jobs.
func (s *Store) CountJobs(ctx context.Context) (map[job.Status]int, error) {
	if s.isClosed.Load() {
		return nil, errClosed()
	}
	rows, err := s.readDB.QueryContext(ctx, countJobsSQL)
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	defer rows.Close()
	counts := make(map[job.Status]int, len(job.Statuses))
	for _, st := range job.Statuses {
		counts[st] = 0
	}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count jobs: %w", err)
		}
		counts[job.Status(st)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	return counts, nil
}

// jobRow is the encoded form of a job's mutable columns.
type jobRow struct {
	status            string
	created           int64
	started, finished any // int64, or nil for an unset time
	summary           any // string (the result's summary), or nil
	resultBytes       int64
	// result, resultValue and resultFiles are the stored result, set
	// when the job has a result: in the jobs row when inline, else in
	// job_results.
	result      string
	resultValue any // []byte, or nil
	resultFiles any // []byte, or nil
	hasResult   bool
}

// inlineResultBytes is the largest result (its JSON, value and files) kept
// in the jobs row: a trivial job's result, which then costs its writes no
// job_results row, while a row stays small for lists.
const inlineResultBytes = 512

// inline reports whether r's result is kept in the jobs row.
func (r *jobRow) inline() bool { return r.hasResult && r.resultBytes <= inlineResultBytes }

// inlineResult, inlineValue and inlineFiles are the jobs row's result
// columns: the result when inline, else NULL.
func (r *jobRow) inlineResult() any {
	if !r.inline() {
		return nil
	}
	return r.result
}

func (r *jobRow) inlineValue() any {
	if !r.inline() {
		return nil
	}
	return r.resultValue
}

func (r *jobRow) inlineFiles() any {
	if !r.inline() {
		return nil
	}
	return r.resultFiles
}

// isTerminal reports whether a stored status is a terminal one.
func isTerminal(status string) bool { return job.Status(status).Terminal() }

func encodeJob(j *job.Job) (jobRow, error) {
	if !j.Status.Known() {
		return jobRow{}, job.Invalid("status", "unknown status %q", j.Status)
	}
	r := jobRow{status: string(j.Status)}
	var err error
	if r.created, err = encodeTime("created_at", j.CreatedAt); err != nil {
		return r, err
	}
	if r.started, err = encodeOptTime("started_at", j.StartedAt); err != nil {
		return r, err
	}
	if r.finished, err = encodeOptTime("finished_at", j.FinishedAt); err != nil {
		return r, err
	}
	if j.Result == nil {
		return r, nil
	}
	r.hasResult = true
	b, err := marshalResultRow(j.Result)
	if err != nil {
		return r, fmt.Errorf("encode result: %w", err)
	}
	r.result = string(b)
	r.resultBytes = int64(len(b))
	if len(j.Result.Result) > 0 {
		r.resultValue = []byte(j.Result.Result)
		r.resultBytes += int64(len(j.Result.Result))
	}
	if j.Result.Files != nil {
		files, err := json.Marshal(j.Result.Files)
		if err != nil {
			return r, fmt.Errorf("encode result files: %w", err)
		}
		r.resultFiles = files
		r.resultBytes += int64(len(files))
	}
	r.summary = string(marshalResultSummary(j.Result.Summary()))
	return r, nil
}

// specRow is the encoded form of a job's spec. Input and Wasm are kept as
// given, byte for byte, outside the JSON.
type specRow struct {
	spec  string
	input any // []byte, or nil
	wasm  any // []byte, or nil
	bytes int64
}

// inlineSpecBytes is the largest spec (its JSON and input) kept in the
// jobs row, when it has no Wasm module: a small job's create then writes
// no job_specs row, while a row stays small for lists.
const inlineSpecBytes = 512

// inline reports whether r is kept in the jobs row.
func (r *specRow) inline() bool { return r.wasm == nil && r.bytes <= inlineSpecBytes }

// inlineSpec and inlineInput are the jobs row's spec columns: the spec
// when inline, else NULL.
func (r *specRow) inlineSpec() any {
	if !r.inline() {
		return nil
	}
	return r.spec
}

func (r *specRow) inlineInput() any {
	if !r.inline() {
		return nil
	}
	return r.input
}

func encodeSpec(sp job.Spec) (specRow, error) {
	var r specRow
	if len(sp.Input) > 0 {
		r.input = []byte(sp.Input)
	}
	if sp.Wasm != nil {
		r.wasm = sp.Wasm
	}
	specBytes := len(sp.Input) + len(sp.Wasm)
	sp.Input, sp.Wasm = nil, nil
	b, err := json.Marshal(sp)
	if err != nil {
		return r, fmt.Errorf("encode spec: %w", err)
	}
	r.spec = string(b)
	r.bytes = int64(len(b) + specBytes)
	return r, nil
}

func encodeTime(field string, t time.Time) (int64, error) {
	if t.Before(minTime) || t.After(maxTime) {
		return 0, job.Invalid(field, "time %s is out of range", t)
	}
	return t.UnixNano(), nil
}

func encodeOptTime(field string, t time.Time) (any, error) {
	if t.IsZero() {
		return nil, nil
	}
	return encodeTime(field, t)
}

func decodeTime(ns sql.NullInt64) time.Time {
	if !ns.Valid {
		return time.Time{}
	}
	return time.Unix(0, ns.Int64).UTC()
}

type scanner interface{ Scan(dest ...any) error }

// scanJob reads one row of fullColumns.
func scanJob(sc scanner) (*job.Job, error) {
	var (
		j                  job.Job
		jobType, status    string
		created            int64
		started, finished  sql.NullInt64
		result             sql.NullString
		resultValue, input []byte
		spec               string
		wasm, resultFiles  []byte
	)
	if err := sc.Scan(&j.ID, &j.Namespace, &jobType, &status, &j.Attempt, &j.MaxAttempts,
		&created, &started, &finished, &j.WorkerID, &j.LeaseID, &j.Reason,
		&spec, &input, &wasm, &result, &resultValue, &resultFiles); err != nil {
		return nil, err
	}
	j.Type, j.Status = job.Type(jobType), job.Status(status)
	j.CreatedAt = time.Unix(0, created).UTC()
	j.StartedAt, j.FinishedAt = decodeTime(started), decodeTime(finished)
	if err := json.Unmarshal([]byte(spec), &j.Spec); err != nil {
		return nil, fmt.Errorf("decode spec of job %s: %w", j.ID, err)
	}
	if input != nil {
		j.Spec.Input = json.RawMessage(input)
	}
	if wasm != nil {
		j.Spec.Wasm = wasm
	}
	if result.Valid {
		j.Result = new(job.Result)
		if err := json.Unmarshal([]byte(result.String), j.Result); err != nil {
			return nil, fmt.Errorf("decode result of job %s: %w", j.ID, err)
		}
		if resultValue != nil {
			j.Result.Result = json.RawMessage(resultValue)
		}
		if resultFiles != nil {
			if err := json.Unmarshal(resultFiles, &j.Result.Files); err != nil {
				return nil, fmt.Errorf("decode result files of job %s: %w", j.ID, err)
			}
		}
	}
	return &j, nil
}

func scanJobs(rows *sql.Rows) ([]*job.Job, error) {
	defer rows.Close()
	var jobs []*job.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, rows.Err()
}

// scanSummaries reads rows of summaryColumns.
func scanSummaries(rows *sql.Rows) ([]*job.Summary, error) {
	defer rows.Close()
	var out []*job.Summary
	for rows.Next() {
		var (
			j                 job.Summary
			jobType, status   string
			created           int64
			started, finished sql.NullInt64
			summary           sql.NullString
		)
		if err := rows.Scan(&j.ID, &j.Namespace, &jobType, &status, &j.Attempt, &j.MaxAttempts,
			&created, &started, &finished, &j.WorkerID, &j.Reason,
			&j.TimeoutSeconds, &j.Replicas, &j.Quorum, &summary); err != nil {
			return nil, err
		}
		j.Type, j.Status = job.Type(jobType), job.Status(status)
		j.CreatedAt = time.Unix(0, created).UTC()
		j.StartedAt, j.FinishedAt = decodeTime(started), decodeTime(finished)
		j.Reason = job.CutText(j.Reason, job.SummaryTextBytes)
		if summary.Valid {
			j.Result = new(job.ResultSummary)
			if err := json.Unmarshal([]byte(summary.String), j.Result); err != nil {
				return nil, fmt.Errorf("decode summary of job %s: %w", j.ID, err)
			}
			j.Result.Error = job.CutText(j.Result.Error, job.SummaryTextBytes)
		}
		out = append(out, &j)
	}
	return out, rows.Err()
}

// A cursor is the creation time and id of the last job of a page, which the
// next page starts after. Clients see it as an opaque string.
func encodeCursor(created int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(created, 10) + ":" + id))
}

func decodeCursor(c string) (int64, string, error) {
	bad := job.Invalid("cursor", "malformed cursor")
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", bad
	}
	ts, id, ok := strings.Cut(string(b), ":")
	if !ok || id == "" {
		return 0, "", bad
	}
	created, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, "", bad
	}
	return created, id, nil
}

// isOwnError reports whether err concerns one write only (bad input, not
// found, conflict), which leaves the transaction usable for the others.
func isOwnError(err error) bool {
	var e *job.Error
	return errors.As(err, &e)
}

func isUniqueViolation(err error) bool {
	var e *sqlitedrv.Error
	if !errors.As(err, &e) {
		return false
	}
	c := e.Code()
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}
