package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	goruntime "runtime"
)

// write is one queued change. apply runs inside the writer's transaction;
// the caller waits on done, which receives exactly one value after the
// transaction that holds the change has committed or failed.
type write struct {
	ctx   context.Context
	apply func(ctx context.Context, tx *writeTx) error
	done  chan error
}

// The writer's statements, prepared once on its connection. Its
// transactions are statements too: BEGIN and COMMIT prepared once cost a
// step each, where database/sql's BeginTx and Commit parse them anew every
// time and bind every statement to each new transaction.
const (
	stmtBegin = iota
	stmtCommit
	stmtRollback
	stmtInsertJob
	stmtInsertSpec
	stmtPutResult
	stmtJobState
	stmtUpdateJob
	stmtUpdateJobNoResult
	stmtClearResult
	stmtDeleteResult
	stmtAppendLog
	stmtAddCount
	stmtAddUsage
	numWriteStmts
)

var writeSQL = [numWriteStmts]string{
	// IMMEDIATE takes the write lock at once: another process that
	// opened the database waits at BEGIN (busy_timeout), not at a
	// statement halfway through a batch.
	stmtBegin:             "BEGIN IMMEDIATE",
	stmtCommit:            "COMMIT",
	stmtRollback:          "ROLLBACK",
	stmtInsertJob:         insertJobSQL,
	stmtInsertSpec:        insertSpecSQL,
	stmtPutResult:         putResultSQL,
	stmtJobState:          jobStateSQL,
	stmtUpdateJob:         updateJobSQL,
	stmtUpdateJobNoResult: updateJobNoResultSQL,
	stmtClearResult:       clearResultSQL,
	stmtDeleteResult:      deleteResultSQL,
	stmtAppendLog:         appendLogSQL,
	stmtAddCount:          addCountSQL,
	stmtAddUsage:          addUsageSQL,
}

// writeStmts are the writer's prepared statements, by the constants above.
type writeStmts [numWriteStmts]*sql.Stmt

func prepareWriteStmts(ctx context.Context, conn *sql.Conn) (writeStmts, error) {
	var st writeStmts
	for i, q := range writeSQL {
		var err error
		if st[i], err = conn.PrepareContext(ctx, q); err != nil {
			return st, errors.Join(fmt.Errorf("prepare: %w", err), st.close())
		}
	}
	return st, nil
}

func (st writeStmts) close() error {
	var errs []error
	for _, s := range st {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	return errors.Join(errs...)
}

// writeTx is the writer's transaction for one batch, on the writer's
// connection: what runs through tx or stmt runs inside it.
type writeTx struct {
	tx querier
	st *writeStmts
	// counts gathers what the batch changes in job_counts and
	// namespace_usage; runTx writes it before COMMIT. A write records
	// its changes only once its statements succeeded.
	counts counters
	// known is the writer's knowledge of active jobs' rows.
	known *knownJobs
}

// querier runs SQL on the writer's connection (a *sql.Conn).
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// stmt returns the prepared statement i.
func (w *writeTx) stmt(_ context.Context, i int) *sql.Stmt { return w.st[i] }

// enqueue hands apply to the writer and waits until the transaction that
// holds it has committed. It returns nil only when the change is durable
// (see the package comment); an error means the change was not made. A
// ctx that ends before the writer reaches the change stops it; once the
// writer has applied it, enqueue waits for the commit regardless of ctx, so
// a caller never sees an error for a change that was made.
func (s *Store) enqueue(ctx context.Context, apply func(ctx context.Context, tx *writeTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &write{ctx: ctx, apply: apply, done: make(chan error, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return errClosed()
	}
	select {
	case s.writes <- w:
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return ctx.Err()
	}
	s.closeMu.RUnlock()
	return <-w.done
}

// runWriter applies queued writes until the queue is closed and drained.
// Whatever queued while a batch was committing forms the next batch, and
// before it commits the writer yields once to the goroutines ready to run,
// so that those about to queue a write join it: batches grow with load
// (with 16 clients submitting jobs, from about 1.3 writes a commit to about
// 4), and a lone write on an idle process still commits at once.
func (s *Store) runWriter() {
	defer close(s.writerDone)
	batch := make([]*write, 0, s.cfg.MaxBatch)
	commits := 0
	for w := range s.writes {
		batch = s.fill(append(batch[:0], w))
		if len(batch) < s.cfg.MaxBatch {
			// Let the goroutines that are ready to run queue their
			// writes into this batch: under load a commit's cost is
			// shared by more writes, and with nothing else to run it
			// returns at once, so a lone write still commits at once.
			goruntime.Gosched()
			batch = s.fill(batch)
		}
		s.commit(batch)
		clear(batch)
		if commits++; commits%s.cfg.CheckpointCommits == 0 {
			s.kickCheckpoint()
		}
	}
}

// fill appends to batch the writes queued now, up to MaxBatch in all.
func (s *Store) fill(batch []*write) []*write {
	for len(batch) < s.cfg.MaxBatch {
		select {
		case w, ok := <-s.writes:
			if !ok {
				return batch
			}
			batch = append(batch, w)
		default:
			return batch
		}
	}
	return batch
}

// commit applies batch in one transaction and answers every caller. When
// the transaction as a whole fails (not a single write's own error, such as
// not found or a duplicate id), each write is retried in a transaction of
// its own, so that one bad write cannot fail the others.
func (s *Store) commit(batch []*write) {
	errs, err := s.runTx(batch)
	if err == nil {
		for i, w := range batch {
			w.done <- errs[i]
		}
		return
	}
	if len(batch) == 1 {
		batch[0].done <- err
		return
	}
	for _, w := range batch {
		errs, err := s.runTx([]*write{w})
		if err == nil {
			err = errs[0]
		}
		w.done <- err
	}
}

// runTx applies batch in one transaction. It returns each write's own error
// (the write was skipped, the others stand) or, when the transaction failed,
// a nil slice and that error.
func (s *Store) runTx(batch []*write) ([]error, error) {
	// The writer's context is not any caller's: a caller that gives up
	// must not abort the others' transaction.
	ctx := context.Background()
	st := &s.stmts
	if _, err := st[stmtBegin].ExecContext(ctx); err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	s.counts.reset()
	wtx := &writeTx{tx: s.writeConn, st: st, counts: s.counts, known: s.known}
	s.known.begun(s)
	errs := make([]error, len(batch))
	for i, w := range batch {
		if err := w.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if err := w.apply(ctx, wtx); err != nil {
			if !isOwnError(err) {
				st[stmtRollback].ExecContext(ctx) //nolint:errcheck // the transaction failed already
				s.known.drop()
				return nil, err
			}
			errs[i] = err
		}
	}
	if err := s.counts.flush(ctx, wtx); err != nil {
		st[stmtRollback].ExecContext(ctx) //nolint:errcheck // the transaction failed already
		s.known.drop()
		return nil, fmt.Errorf("job counters: %w", err)
	}
	if _, err := st[stmtCommit].ExecContext(ctx); err != nil {
		// A COMMIT that failed (SQLITE_BUSY, a full disk) may leave the
		// transaction open; the next batch must start from none. With
		// none open, ROLLBACK fails harmlessly.
		st[stmtRollback].ExecContext(ctx) //nolint:errcheck // the commit's error is the one to report
		s.known.drop()
		return nil, fmt.Errorf("commit: %w", err)
	}
	s.known.committed(s)
	return errs, nil
}
