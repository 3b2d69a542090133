// Package sqlite is the embedded job store: one SQLite database file,
// through the pure-Go modernc.org/sqlite driver (no cgo).
//
// # Connections
//
// Writes go through one writer connection owned by one goroutine, which
// applies queued writes in batches, one transaction per batch (group commit),
// and releases each caller only after its batch has committed. Reads use a
// separate pool of read-only connections; in WAL mode they never wait for the
// writer and always see committed data. A third connection checkpoints the
// write-ahead log in the background (see Config.CheckpointInterval), so
// that commits do not stop to copy the log into the database.
//
// # Durability
//
// The database runs in WAL mode. By default it uses synchronous=NORMAL: a
// commit is appended to the write-ahead log with write(2) but not fsync'd;
// the log is fsync'd when it is checkpointed into the database. A write that
// returned nil therefore survives a crash or kill of the orchestrator process
// (the log is in the operating system's page cache and is replayed on the
// next open), but the last commits before an operating-system crash or a
// power loss may be lost. The database itself is never corrupted by either.
// Config.FullSync selects synchronous=FULL, which fsyncs the log at every
// commit; group commit makes that one fsync per batch, not per write.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

var _ store.Store = (*Store)(nil)

// Config says where the database lives and how it is run. Zero fields take
// the values of DefaultConfig, except Path, which is required.
type Config struct {
	// Path is the database file. It and its directory are created when
	// absent. SQLite keeps Path+"-wal" and Path+"-shm" next to it.
	Path string
	// BusyTimeout is how long a connection waits for a lock held by
	// another process before failing (default 5 s).
	BusyTimeout time.Duration
	// ReadConns is the size of the read pool (default 4).
	ReadConns int
	// MaxBatch caps how many writes share one transaction (default 256).
	MaxBatch int
	// QueueSize is how many writes may wait for the writer before callers
	// block (default 1024).
	QueueSize int
	// CacheKiB is the page cache of each connection in KiB (default 8192).
	CacheKiB int
	// CheckpointInterval is how often the write-ahead log is copied into
	// the database by a background checkpointer (default 1 s), which keeps
	// that work and its fsyncs out of the writer's way. It also runs after
	// every CheckpointCommits commits (default 256).
	CheckpointInterval time.Duration
	CheckpointCommits  int
	// Logger receives what the store cannot return to a caller (a failed
	// background checkpoint). Nil discards it.
	Logger *slog.Logger
	// FullSync fsyncs the write-ahead log at every commit
	// (synchronous=FULL), so that a write survives a power loss as well as
	// a process crash. Off by default; see the package comment.
	FullSync bool
}

// DefaultConfig returns the documented defaults, with no Path.
func DefaultConfig() Config {
	return Config{
		BusyTimeout: 5 * time.Second,
		ReadConns:   4,
		MaxBatch:    256,
		QueueSize:   1024,
		CacheKiB:    8192,

		CheckpointInterval: time.Second,
		CheckpointCommits:  256,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.BusyTimeout <= 0 {
		c.BusyTimeout = d.BusyTimeout
	}
	if c.ReadConns <= 0 {
		c.ReadConns = d.ReadConns
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = d.MaxBatch
	}
	if c.QueueSize <= 0 {
		c.QueueSize = d.QueueSize
	}
	if c.CacheKiB <= 0 {
		c.CacheKiB = d.CacheKiB
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = d.CheckpointInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.CheckpointCommits <= 0 {
		c.CheckpointCommits = d.CheckpointCommits
	}
	return c
}

// Store is a job store in one SQLite database. Every method is safe for
// concurrent use.
type Store struct {
	cfg     Config
	writeDB *sql.DB
	// writeConn is writeDB's connection that the writer goroutine alone
	// uses, for its whole life, with its prepared statements (stmts).
	writeConn *sql.Conn
	readDB    *sql.DB
	// On readDB, prepared once per read connection.
	getJob, logState, logLastStatus *sql.Stmt
	ckptDB                          *sql.DB // one connection, used only by the checkpointer
	stmts                           writeStmts
	counts                          counters   // the writer's, for its transaction
	known                           *knownJobs // the writer's, see knownJobs

	// closeMu guards closed and the send side of writes: a write is
	// queued under the read lock, Close takes the write lock to close the
	// channel, so no send can race with it.
	closeMu    sync.RWMutex
	closed     bool
	isClosed   atomic.Bool // closed, for readers that take no lock
	writes     chan *write
	writerDone chan struct{}

	ckptKick chan struct{} // capacity 1: a checkpoint is wanted
	ckptStop chan struct{}
	ckptDone chan struct{}
}

// errClosed is returned by every call after Close.
func errClosed() error { return job.Errorf(job.CodeUnavailable, "job store is closed") }

// Open opens (creating when absent) the database at cfg.Path, brings its
// schema up to date and starts the writer. The caller must Close the store.
// ctx bounds the opening and the migrations only.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if cfg.Path == "" || cfg.Path == ":memory:" || strings.HasPrefix(cfg.Path, "file:") {
		return nil, job.Invalid("path", "the store needs a database file path, got %q", cfg.Path)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o750); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{
		cfg:        cfg,
		writes:     make(chan *write, cfg.QueueSize),
		writerDone: make(chan struct{}),
		ckptKick:   make(chan struct{}, 1),
		ckptStop:   make(chan struct{}),
		ckptDone:   make(chan struct{}),
		counts:     newCounters(),
		known:      newKnownJobs(),
	}
	if err := s.open(ctx); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("open store %s: %w", cfg.Path, err)
	}
	go s.runWriter()
	go s.runCheckpointer()
	return s, nil
}

func (s *Store) open(ctx context.Context) error {
	syncMode := "NORMAL"
	if s.cfg.FullSync {
		syncMode = "FULL"
	}
	var err error
	s.writeDB, err = sql.Open("sqlite", dsn(s.cfg.Path, []string{
		fmt.Sprintf("busy_timeout(%d)", s.cfg.BusyTimeout.Milliseconds()),
		"journal_mode(WAL)",
		"synchronous(" + syncMode + ")",
		"foreign_keys(1)",
		fmt.Sprintf("cache_size(%d)", -s.cfg.CacheKiB),
		"temp_store(MEMORY)",
		// The checkpointer copies the log into the database; commits
		// never stop to do it.
		"wal_autocheckpoint(0)",
		// When the log starts over, its file is cut back to this size.
		fmt.Sprintf("journal_size_limit(%d)", walSizeLimit),
	}, "immediate"))
	if err != nil {
		return err
	}
	// The writer goroutine holds one connection of this pool (writeConn)
	// with its prepared statements; nothing else writes through the pool
	// once it is open (tests may read through it).
	s.writeDB.SetMaxOpenConns(2)
	s.writeDB.SetMaxIdleConns(1)
	s.writeDB.SetConnMaxLifetime(0)
	s.writeDB.SetConnMaxIdleTime(0)
	if err := s.writeDB.PingContext(ctx); err != nil {
		return err
	}
	var mode string
	if err := s.writeDB.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal", mode)
	}
	if err := migrate(ctx, s.writeDB, migrations); err != nil {
		return err
	}
	if s.writeConn, err = s.writeDB.Conn(ctx); err != nil {
		return err
	}
	if s.stmts, err = prepareWriteStmts(ctx, s.writeConn); err != nil {
		return err
	}

	s.readDB, err = sql.Open("sqlite", dsn(s.cfg.Path, []string{
		fmt.Sprintf("busy_timeout(%d)", s.cfg.BusyTimeout.Milliseconds()),
		fmt.Sprintf("cache_size(%d)", -s.cfg.CacheKiB),
		"temp_store(MEMORY)",
		"query_only(1)",
	}, ""))
	if err != nil {
		return err
	}
	s.readDB.SetMaxOpenConns(s.cfg.ReadConns)
	s.readDB.SetMaxIdleConns(s.cfg.ReadConns)
	s.readDB.SetConnMaxLifetime(0)
	s.readDB.SetConnMaxIdleTime(0)
	if err := s.readDB.PingContext(ctx); err != nil {
		return err
	}
	for _, p := range []struct {
		st  **sql.Stmt
		sql string
	}{{&s.getJob, getJobSQL}, {&s.logState, logStateSQL}, {&s.logLastStatus, logLastStatusSQL}} {
		if *p.st, err = s.readDB.PrepareContext(ctx, p.sql); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
	}

	s.ckptDB, err = sql.Open("sqlite", dsn(s.cfg.Path, []string{
		fmt.Sprintf("busy_timeout(%d)", s.cfg.BusyTimeout.Milliseconds()),
		"synchronous(" + syncMode + ")",
		fmt.Sprintf("journal_size_limit(%d)", walSizeLimit),
	}, ""))
	if err != nil {
		return err
	}
	s.ckptDB.SetMaxOpenConns(1)
	s.ckptDB.SetMaxIdleConns(1)
	s.ckptDB.SetConnMaxLifetime(0)
	s.ckptDB.SetConnMaxIdleTime(0)
	return s.ckptDB.PingContext(ctx)
}

// dsn builds a modernc.org/sqlite data source name: a file: URI whose path
// is escaped so that '?', '#' and '%' in a file name stay part of it.
func dsn(path string, pragmas []string, txlock string) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	if txlock != "" {
		q.Set("_txlock", txlock)
	}
	return "file:" + esc + "?" + q.Encode()
}

// Close waits for every queued write to commit, stops the writer and closes
// the database. Calls made after Close return an error with code
// unavailable; closing again returns nil.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.isClosed.Store(true)
	close(s.writes)
	s.closeMu.Unlock()
	<-s.writerDone
	close(s.ckptStop)
	<-s.ckptDone
	if err := s.closeDBs(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

func (s *Store) closeDBs() error {
	var errs []error
	errs = append(errs, s.stmts.close())
	for _, st := range []*sql.Stmt{s.getJob, s.logState, s.logLastStatus} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.readDB != nil {
		errs = append(errs, s.readDB.Close())
	}
	if s.ckptDB != nil {
		errs = append(errs, s.ckptDB.Close())
	}
	if s.writeConn != nil {
		errs = append(errs, s.writeConn.Close())
	}
	if s.writeDB != nil {
		errs = append(errs, s.writeDB.Close())
	}
	return errors.Join(errs...)
}
