// Package contextstore keeps uploaded build contexts for the orchestrator:
// each one validated by buildctx while it streams in, stored as a
// normalized tar named by its SHA-256 in a directory, with its record
// (size, file count, last use) in a store.BuildContexts. Contexts unused
// for Config.TTL are removed by Expire, which Run calls periodically.
package contextstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/zerverless/zerverless/internal/buildctx"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// Config configures the context store. DefaultConfig documents defaults.
type Config struct {
	// Dir holds the contexts' tars (required).
	Dir string
	// Limits bound one context (default buildctx.DefaultLimits).
	Limits buildctx.Limits
	// TTL is how long a context stays after its last use — an upload, a
	// job naming it, a worker fetching it (default 24 h).
	TTL time.Duration
	// ExpireInterval is how often Run looks for expired contexts (default
	// 10 minutes).
	ExpireInterval time.Duration
	Logger         *slog.Logger
}

// DefaultConfig returns the documented defaults; Dir is left empty.
func DefaultConfig() Config {
	return Config{Limits: buildctx.DefaultLimits(), TTL: 24 * time.Hour, ExpireInterval: 10 * time.Minute}
}

// Form is how an upload is encoded.
type Form int

const (
	// FormTar is a tar stream, plain or gzip-compressed.
	FormTar Form = iota
	// FormJSON is a buildctx.FilesBody.
	FormJSON
)

// Store keeps build contexts. It is safe for concurrent use.
type Store struct {
	cfg  Config
	meta store.BuildContexts
	now  func() time.Time
}

var idRE = regexp.MustCompile(`^[a-f0-9]{64}$`)

// New returns a store over meta, creating cfg.Dir.
func New(cfg Config, meta store.BuildContexts) (*Store, error) {
	d := DefaultConfig()
	if cfg.TTL <= 0 {
		cfg.TTL = d.TTL
	}
	if cfg.ExpireInterval <= 0 {
		cfg.ExpireInterval = d.ExpireInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir == "" {
		return nil, errors.New("contextstore: no directory")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("contextstore: %w", err)
	}
	return &Store{cfg: cfg, meta: meta, now: time.Now}, nil
}

// Put validates r as it streams in, stores the normalized context and
// returns its record. Refusals are *job.Error (invalid, too_large). The
// context is written to a temporary file first; admit, when not nil, is
// then given the record that would be stored, and when it returns an
// error Put returns it and keeps nothing (a context stored before, by
// anyone, is left as it was). grow, when not nil, is told of every write
// to the temporary file before it is made, with its size; its error stops
// the upload, which Put returns, keeping nothing.
func (s *Store) Put(ctx context.Context, r io.Reader, form Form, grow func(n int64) error, admit func(*store.BuildContext) error) (*store.BuildContext, error) {
	tmp, err := os.CreateTemp(s.cfg.Dir, "upload-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("store build context: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	var out io.Writer = tmp
	if grow != nil {
		out = &growWriter{w: tmp, grow: grow}
	}
	var info buildctx.Info
	switch form {
	case FormJSON:
		info, err = buildctx.FromJSON(r, s.cfg.Limits, out)
	default:
		info, err = buildctx.FromTar(r, s.cfg.Limits, out)
	}
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	rec := &store.BuildContext{ID: info.SHA256, Files: info.Files, Bytes: info.Bytes, TarBytes: info.TarBytes,
		CreatedAt: now, LastUsedAt: now}
	if admit != nil {
		if err := admit(rec); err != nil {
			return nil, err
		}
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("store build context: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path(info.SHA256)); err != nil {
		return nil, fmt.Errorf("store build context: %w", err)
	}
	if err := s.meta.PutBuildContext(ctx, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// growWriter asks grow before each write.
type growWriter struct {
	w    io.Writer
	grow func(n int64) error
}

func (g *growWriter) Write(p []byte) (int, error) {
	if err := g.grow(int64(len(p))); err != nil {
		return 0, err
	}
	return g.w.Write(p)
}

// Open returns the normalized tar of context id and marks it used. The
// caller closes it. An unknown or expired id is not_found.
func (s *Store) Open(ctx context.Context, id string) (io.ReadCloser, *store.BuildContext, error) {
	if !idRE.MatchString(id) {
		return nil, nil, job.ErrNotFound
	}
	rec, err := s.meta.GetBuildContext(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(s.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("build context %s: %w", id, job.ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open build context: %w", err)
	}
	if err := s.meta.TouchBuildContext(ctx, id, s.now().UTC()); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, rec, nil
}

// Touch marks context id used (a job names it); not_found when it is not
// stored.
func (s *Store) Touch(ctx context.Context, id string) error {
	if !idRE.MatchString(id) {
		return job.ErrNotFound
	}
	if _, err := os.Stat(s.path(id)); err != nil {
		return fmt.Errorf("build context %s: %w", id, job.ErrNotFound)
	}
	return s.meta.TouchBuildContext(ctx, id, s.now().UTC())
}

// Expire removes the contexts unused for TTL and returns how many.
func (s *Store) Expire(ctx context.Context) (int, error) {
	ids, err := s.meta.UnusedBuildContexts(ctx, s.now().Add(-s.cfg.TTL))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return n, err
		}
		if err := s.meta.DeleteBuildContext(ctx, id); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Run calls Expire every ExpireInterval until ctx ends.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.ExpireInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.Expire(ctx); err != nil {
			s.cfg.Logger.Warn("expire build contexts", "err", err)
		} else if n > 0 {
			s.cfg.Logger.Info("expired unused build contexts", "count", n)
		}
	}
}

func (s *Store) path(id string) string { return filepath.Join(s.cfg.Dir, id+".tar") }
