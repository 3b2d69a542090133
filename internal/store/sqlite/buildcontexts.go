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

var _ store.BuildContexts = (*Store)(nil)

// schemaBuildContexts records uploaded build contexts; their content is a
// file named by id in the orchestrator's data directory.
const schemaBuildContexts = `
CREATE TABLE build_contexts (
	id           TEXT    PRIMARY KEY,
	files        INTEGER NOT NULL,
	bytes        INTEGER NOT NULL,
	tar_bytes    INTEGER NOT NULL,
	created_at   INTEGER NOT NULL,
	last_used_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX build_contexts_last_used ON build_contexts (last_used_at);
`

// PutBuildContext inserts c or refreshes the last use of the existing record.
func (s *Store) PutBuildContext(ctx context.Context, c *store.BuildContext) error {
	created, err := encodeTime("created_at", c.CreatedAt)
	if err != nil {
		return err
	}
	used, err := encodeTime("last_used_at", c.LastUsedAt)
	if err != nil {
		return err
	}
	r := *c
	err = s.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
		_, err := tx.tx.ExecContext(ctx, `INSERT INTO build_contexts (id, files, bytes, tar_bytes, created_at, last_used_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET last_used_at = max(last_used_at, excluded.last_used_at)`,
			r.ID, r.Files, r.Bytes, r.TarBytes, created, used)
		return err
	})
	if err != nil {
		return fmt.Errorf("put build context %s: %w", c.ID, err)
	}
	return nil
}

// GetBuildContext returns the record with id.
func (s *Store) GetBuildContext(ctx context.Context, id string) (*store.BuildContext, error) {
	if s.isClosed.Load() {
		return nil, errClosed()
	}
	var c store.BuildContext
	var created, used int64
	err := s.readDB.QueryRowContext(ctx, `SELECT id, files, bytes, tar_bytes, created_at, last_used_at
		FROM build_contexts WHERE id = ?`, id).Scan(&c.ID, &c.Files, &c.Bytes, &c.TarBytes, &created, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("build context %s: %w", id, job.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get build context %s: %w", id, err)
	}
	c.CreatedAt = decodeTime(sql.NullInt64{Int64: created, Valid: true})
	c.LastUsedAt = decodeTime(sql.NullInt64{Int64: used, Valid: true})
	return &c, nil
}

// TouchBuildContext marks the record with id used at t.
func (s *Store) TouchBuildContext(ctx context.Context, id string, t time.Time) error {
	used, err := encodeTime("last_used_at", t)
	if err != nil {
		return err
	}
	var n int64
	err = s.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
		res, err := tx.tx.ExecContext(ctx, `UPDATE build_contexts SET last_used_at = max(last_used_at, ?) WHERE id = ?`, used, id)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("touch build context %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("build context %s: %w", id, job.ErrNotFound)
	}
	return nil
}

// UnusedBuildContexts returns the ids of records last used before t.
func (s *Store) UnusedBuildContexts(ctx context.Context, before time.Time) ([]string, error) {
	if s.isClosed.Load() {
		return nil, errClosed()
	}
	t, err := encodeTime("before", before)
	if err != nil {
		return nil, err
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT id FROM build_contexts WHERE last_used_at < ? ORDER BY last_used_at LIMIT 1000`, t)
	if err != nil {
		return nil, fmt.Errorf("list unused build contexts: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// DeleteBuildContext removes the record with id.
func (s *Store) DeleteBuildContext(ctx context.Context, id string) error {
	return s.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
		_, err := tx.tx.ExecContext(ctx, `DELETE FROM build_contexts WHERE id = ?`, id)
		return err
	})
}
