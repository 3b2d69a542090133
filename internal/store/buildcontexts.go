package store

import (
	"context"
	"time"
)

// BuildContext is the record of an uploaded build context. Its content,
// a normalized tar, is kept outside the store, named by ID.
type BuildContext struct {
	// ID is the hex SHA-256 of the normalized tar.
	ID       string
	Files    int
	Bytes    int64
	TarBytes int64
	// CreatedAt is the first upload; LastUsedAt the last upload, job
	// submission or worker fetch that named it.
	CreatedAt  time.Time
	LastUsedAt time.Time
}

// BuildContexts keeps the records of uploaded build contexts. Every method
// is safe for concurrent use.
type BuildContexts interface {
	// PutBuildContext records c, or marks an existing record with the same
	// ID used at c.LastUsedAt.
	PutBuildContext(ctx context.Context, c *BuildContext) error
	// GetBuildContext returns the record with id, or an error with code
	// not_found.
	GetBuildContext(ctx context.Context, id string) (*BuildContext, error)
	// TouchBuildContext marks the record with id used at t; not_found when
	// there is none.
	TouchBuildContext(ctx context.Context, id string, t time.Time) error
	// UnusedBuildContexts returns the ids of records last used before t.
	UnusedBuildContexts(ctx context.Context, before time.Time) ([]string, error)
	// DeleteBuildContext removes the record with id, if there is one.
	DeleteBuildContext(ctx context.Context, id string) error
}
