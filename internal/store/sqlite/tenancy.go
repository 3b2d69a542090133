package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

var _ store.Tenancy = (*Store)(nil)

// schemaTenancy creates the tables of multi-tenancy.
//
// tokens keeps API and join tokens: only the hex SHA-256 of each secret,
// never the secret. namespace_policies keeps each namespace's policy as
// JSON. build_context_owners records which namespaces uploaded each build
// context (a context is named by its content, so several namespaces may
// upload the same one); a trigger forgets the owners of a deleted context.
//
// Functions deployed before this version answered anyone; they stay public.
const schemaTenancy = `
CREATE TABLE tokens (
	id         TEXT    PRIMARY KEY,
	kind       TEXT    NOT NULL,
	namespace  TEXT    NOT NULL DEFAULT '',
	name       TEXT    NOT NULL DEFAULT '',
	hash       TEXT    NOT NULL UNIQUE,
	created_at INTEGER NOT NULL,
	revoked_at INTEGER
) STRICT;

CREATE TABLE namespace_policies (
	namespace TEXT PRIMARY KEY,
	policy    TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE build_context_owners (
	id        TEXT NOT NULL,
	namespace TEXT NOT NULL,
	PRIMARY KEY (id, namespace)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER build_context_owners_delete AFTER DELETE ON build_contexts BEGIN
	DELETE FROM build_context_owners WHERE id = OLD.id;
END;

UPDATE deployments SET public = 1;
`

const tokenColumns = `id, kind, namespace, name, hash, created_at, revoked_at`

// CreateToken stores a new token.
func (s *Store) CreateToken(ctx context.Context, t *store.TokenRecord) error {
	if t == nil || t.ID == "" || t.Hash == "" || !t.Kind.Known() {
		return job.Invalid("token", "a token needs an id, a known kind and a hash")
	}
	created, err := encodeTime("created_at", t.CreatedAt)
	if err != nil {
		return err
	}
	revoked, err := encodeOptTime("revoked_at", t.RevokedAt)
	if err != nil {
		return err
	}
	r := *t
	err = s.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
		_, err := tx.tx.ExecContext(ctx, `INSERT INTO tokens (`+tokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			r.ID, string(r.Kind), r.Namespace, r.Name, r.Hash, created, revoked)
		if isUniqueViolation(err) {
			return job.Errorf(job.CodeConflict, "token %s already exists", r.ID)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return nil
}

// TokenByHash returns the token whose secret hashes to hash.
func (s *Store) TokenByHash(ctx context.Context, hash string) (*store.TokenRecord, error) {
	if s.isClosed.Load() {
		return nil, errClosed()
	}
	t, err := scanToken(s.readDB.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("token: %w", job.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get token: %w", err)
	}
	return t, nil
}

// ListTokens returns every token, oldest first.
func (s *Store) ListTokens(ctx context.Context) ([]*store.TokenRecord, error) {
	if s.isClosed.Load() {
		return nil, errClosed()
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	out := []*store.TokenRecord{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// RevokeToken marks the token with id revoked at t.
func (s *Store) RevokeToken(ctx context.Context, id string, t time.Time) (*store.TokenRecord, error) {
	at, err := encodeTime("revoked_at", t)
	if err != nil {
		return nil, err
	}
	var rec *store.TokenRecord
	err = s.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
		r, err := scanToken(tx.tx.QueryRowContext(ctx, `UPDATE tokens SET revoked_at = coalesce(revoked_at, ?)
			WHERE id = ? RETURNING `+tokenColumns, at, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("token %s: %w", id, job.ErrNotFound)
		}
		rec = r
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("revoke token %s: %w", id, err)
	}
	return rec, nil
}

func scanToken(sc scanner) (*store.TokenRecord, error) {
	var (
		t       store.TokenRecord
		kind    string
		created int64
		revoked sql.NullInt64
	)
	if err := sc.Scan(&t.ID, &kind, &t.Namespace, &t.Name, &t.Hash, &created, &revoked); err != nil {
		return nil, err
	}
	t.Kind = job.TokenKind(kind)
	t.CreatedAt = decodeTime(sql.NullInt64{Int64: created, Valid: true})
	t.RevokedAt = decodeTime(revoked)
	return &t, nil
}

// PutNamespacePolicy creates or replaces the policy of p.Namespace.
func (s *Store) PutNamespacePolicy(ctx context.Context, p job.NamespacePolicy) error {
	if !job.ValidNamespace(p.Namespace) {
		return job.Invalid("namespace", "must be 1-63 lowercase letters, digits or inner dashes")
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode policy of %s: %w", p.Namespace, err)
	}
	err = s.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
		_, err := tx.tx.ExecContext(ctx, `INSERT INTO namespace_policies (namespace, policy) VALUES (?, ?)
			ON CONFLICT (namespace) DO UPDATE SET policy = excluded.policy`, p.Namespace, string(b))
		return err
	})
	if err != nil {
		return fmt.Errorf("put policy of %s: %w", p.Namespace, err)
	}
	return nil
}

// GetNamespacePolicy returns the policy of ns.
func (s *Store) GetNamespacePolicy(ctx context.Context, ns string) (job.NamespacePolicy, error) {
	if s.isClosed.Load() {
		return job.NamespacePolicy{}, errClosed()
	}
	var raw string
	err := s.readDB.QueryRowContext(ctx, `SELECT policy FROM namespace_policies WHERE namespace = ?`, ns).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return job.NamespacePolicy{}, fmt.Errorf("policy of %s: %w", ns, job.ErrNotFound)
	}
	if err != nil {
		return job.NamespacePolicy{}, fmt.Errorf("get policy of %s: %w", ns, err)
	}
	return decodePolicy(ns, raw)
}

// ListNamespacePolicies returns every policy, by namespace.
func (s *Store) ListNamespacePolicies(ctx context.Context) ([]job.NamespacePolicy, error) {
	if s.isClosed.Load() {
		return nil, errClosed()
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT namespace, policy FROM namespace_policies ORDER BY namespace`)
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	defer rows.Close()
	out := []job.NamespacePolicy{}
	for rows.Next() {
		var ns, raw string
		if err := rows.Scan(&ns, &raw); err != nil {
			return nil, fmt.Errorf("list policies: %w", err)
		}
		p, err := decodePolicy(ns, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	return out, nil
}

func decodePolicy(ns, raw string) (job.NamespacePolicy, error) {
	var p job.NamespacePolicy
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return job.NamespacePolicy{}, fmt.Errorf("decode policy of %s: %w", ns, err)
	}
	p.Namespace = ns
	return p, nil
}

// AddBuildContextOwner records that ns uploaded the context with id.
func (s *Store) AddBuildContextOwner(ctx context.Context, id, ns string) error {
	err := s.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
		_, err := tx.tx.ExecContext(ctx, `INSERT INTO build_context_owners (id, namespace) VALUES (?, ?)
			ON CONFLICT DO NOTHING`, id, ns)
		return err
	})
	if err != nil {
		return fmt.Errorf("add owner %s of build context %s: %w", ns, id, err)
	}
	return nil
}

// BuildContextOwned reports whether ns uploaded the context with id.
func (s *Store) BuildContextOwned(ctx context.Context, id, ns string) (bool, error) {
	if s.isClosed.Load() {
		return false, errClosed()
	}
	var one int
	err := s.readDB.QueryRowContext(ctx, `SELECT 1 FROM build_context_owners WHERE id = ? AND namespace = ?`, id, ns).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("owner of build context %s: %w", id, err)
	}
	return true, nil
}

// BuildContextBytes sums the stored tar size of the contexts ns owns.
func (s *Store) BuildContextBytes(ctx context.Context, ns string) (int64, error) {
	if s.isClosed.Load() {
		return 0, errClosed()
	}
	var n int64
	err := s.readDB.QueryRowContext(ctx, `SELECT COALESCE(SUM(c.tar_bytes), 0)
		FROM build_context_owners o JOIN build_contexts c ON c.id = o.id
		WHERE o.namespace = ?`, ns).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("build context bytes of %s: %w", ns, err)
	}
	return n, nil
}
