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

// schemaDeploymentAnonymousWorkers adds whether a function's invocations
// may run on anonymous volunteers' workers; existing functions keep to
// trusted workers.
const schemaDeploymentAnonymousWorkers = `
ALTER TABLE deployments ADD COLUMN anonymous_workers INTEGER NOT NULL DEFAULT 0;
`

// schemaDeploymentService adds a docker service's configuration (JSON of
// job.ServiceConfig; NULL for functions).
const schemaDeploymentService = `
ALTER TABLE deployments ADD COLUMN service TEXT;
`

// schemaDeployments creates the table of function deployments, one row per
// (namespace, path). The code and module come last in the row, so that
// listing without code never reads their overflow pages.
const schemaDeployments = `
CREATE TABLE deployments (
	id              INTEGER PRIMARY KEY,
	namespace       TEXT    NOT NULL,
	path            TEXT    NOT NULL,
	runtime         TEXT    NOT NULL,
	version         INTEGER NOT NULL,
	digest          TEXT    NOT NULL,
	code_bytes      INTEGER NOT NULL,
	env             TEXT,
	timeout_seconds REAL    NOT NULL,
	memory_mb       INTEGER NOT NULL,
	max_concurrency INTEGER NOT NULL,
	public          INTEGER NOT NULL DEFAULT 0,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL,
	code            TEXT    NOT NULL DEFAULT '',
	wasm            BLOB,
	UNIQUE (namespace, path)
) STRICT;
`

const (
	deploymentColumns = `namespace, path, runtime, version, digest, code_bytes, env,
	timeout_seconds, memory_mb, max_concurrency, public, created_at, updated_at,
	anonymous_workers, service`
	putDeploymentSQL = `INSERT INTO deployments (` + deploymentColumns + `, code, wasm)
	VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (namespace, path) DO UPDATE SET
		runtime = excluded.runtime, version = deployments.version + 1,
		digest = excluded.digest, code_bytes = excluded.code_bytes, env = excluded.env,
		timeout_seconds = excluded.timeout_seconds, memory_mb = excluded.memory_mb,
		max_concurrency = excluded.max_concurrency, public = excluded.public,
		anonymous_workers = excluded.anonymous_workers, service = excluded.service, updated_at = excluded.updated_at, code = excluded.code, wasm = excluded.wasm
	RETURNING version, created_at`
	getDeploymentSQL = `SELECT ` + deploymentColumns + `, code, wasm FROM deployments
	WHERE namespace = ? AND path = ?`
	deleteDeploymentSQL = `DELETE FROM deployments WHERE namespace = ? AND path = ?`
)

// PutDeployment creates or replaces the deployment at d's namespace and
// path in one statement, so that concurrent redeploys each get their own
// version. It sets d.Version and d.CreatedAt.
func (s *Store) PutDeployment(ctx context.Context, d *job.Deployment) error {
	if d == nil || d.Namespace == "" || d.Path == "" {
		return job.Invalid("path", "a deployment needs a namespace and a path")
	}
	if d.UpdatedAt.IsZero() {
		return job.Invalid("updated_at", "a deployment needs an update time")
	}
	updated, err := encodeTime("updated_at", d.UpdatedAt)
	if err != nil {
		return err
	}
	created := updated
	if !d.CreatedAt.IsZero() {
		if created, err = encodeTime("created_at", d.CreatedAt); err != nil {
			return err
		}
	}
	var env any
	if len(d.Env) > 0 {
		b, err := json.Marshal(d.Env)
		if err != nil {
			return fmt.Errorf("encode env: %w", err)
		}
		env = string(b)
	}
	var service any
	if d.Service != nil {
		b, err := json.Marshal(d.Service)
		if err != nil {
			return fmt.Errorf("encode service: %w", err)
		}
		service = string(b)
	}
	var wasm any
	if d.Wasm != nil {
		wasm = d.Wasm
	}
	c := *d // the writer reads a copy, not the caller's deployment
	var version, createdAt int64
	err = s.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
		return tx.tx.QueryRowContext(ctx, putDeploymentSQL,
			c.Namespace, c.Path, string(c.Runtime), c.Digest, c.CodeBytes, env,
			c.TimeoutSeconds, c.MemoryMB, c.MaxConcurrency, c.Public, created, updated,
			c.AnonymousWorkers, service, c.Code, wasm).Scan(&version, &createdAt)
	})
	if err != nil {
		return fmt.Errorf("put deployment %s: %w", d.Name(), err)
	}
	d.Version = version
	d.CreatedAt = decodeTime(sql.NullInt64{Int64: createdAt, Valid: true})
	d.UpdatedAt = decodeTime(sql.NullInt64{Int64: updated, Valid: true})
	return nil
}

// GetDeployment returns the deployment at namespace/path with its code.
func (s *Store) GetDeployment(ctx context.Context, namespace, path string) (*job.Deployment, error) {
	if s.isClosed.Load() {
		return nil, errClosed()
	}
	d, err := scanDeployment(s.readDB.QueryRowContext(ctx, getDeploymentSQL, namespace, path), true)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("get deployment %s/%s: %w", namespace, path, job.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get deployment %s/%s: %w", namespace, path, err)
	}
	return d, nil
}

// ListDeployments returns the deployments matching f by namespace, then
// path.
func (s *Store) ListDeployments(ctx context.Context, f store.DeploymentFilter) ([]*job.Deployment, error) {
	if s.isClosed.Load() {
		return nil, errClosed()
	}
	cols := deploymentColumns
	if f.WithCode {
		cols += ", code, wasm"
	}
	query := `SELECT ` + cols + ` FROM deployments`
	var args []any
	if f.Namespace != "" {
		query += ` WHERE namespace = ?`
		args = append(args, f.Namespace)
	}
	query += ` ORDER BY namespace, path`
	rows, err := s.readDB.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	defer rows.Close()
	out := []*job.Deployment{}
	for rows.Next() {
		d, err := scanDeployment(rows, f.WithCode)
		if err != nil {
			return nil, fmt.Errorf("list deployments: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return out, nil
}

// DeleteDeployment removes the deployment at namespace/path.
func (s *Store) DeleteDeployment(ctx context.Context, namespace, path string) error {
	err := s.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
		res, err := tx.tx.ExecContext(ctx, deleteDeploymentSQL, namespace, path)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return job.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete deployment %s/%s: %w", namespace, path, err)
	}
	return nil
}

// scanDeployment reads one row of deploymentColumns, followed by code and
// wasm when withCode.
func scanDeployment(sc scanner, withCode bool) (*job.Deployment, error) {
	var (
		d                job.Deployment
		runtime          string
		env, service     sql.NullString
		created, updated int64
		wasm             []byte
	)
	dest := []any{&d.Namespace, &d.Path, &runtime, &d.Version, &d.Digest, &d.CodeBytes, &env,
		&d.TimeoutSeconds, &d.MemoryMB, &d.MaxConcurrency, &d.Public, &created, &updated,
		&d.AnonymousWorkers, &service}
	if withCode {
		dest = append(dest, &d.Code, &wasm)
	}
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	d.Runtime = job.Type(runtime)
	if env.Valid {
		if err := json.Unmarshal([]byte(env.String), &d.Env); err != nil {
			return nil, fmt.Errorf("decode env of %s/%s: %w", d.Namespace, d.Path, err)
		}
	}
	if service.Valid {
		if err := json.Unmarshal([]byte(service.String), &d.Service); err != nil {
			return nil, fmt.Errorf("decode service of %s/%s: %w", d.Namespace, d.Path, err)
		}
	}
	if len(wasm) > 0 {
		d.Wasm = wasm
	}
	d.CreatedAt = decodeTime(sql.NullInt64{Int64: created, Valid: true})
	d.UpdatedAt = decodeTime(sql.NullInt64{Int64: updated, Valid: true})
	return &d, nil
}
