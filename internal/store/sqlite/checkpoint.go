package sqlite

import (
	"context"
	"time"
)

// runCheckpointer copies the write-ahead log into the database every
// CheckpointInterval, and sooner when the writer asks, until Close. It runs
// passive checkpoints on a connection of its own: they never block the
// writer or the readers, and the writer's commits never wait for them.
// A checkpoint that fails is retried at the next turn; the log then grows
// but nothing is lost.
func (s *Store) runCheckpointer() {
	defer close(s.ckptDone)
	tick := time.NewTicker(s.cfg.CheckpointInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.ckptStop:
			return
		case <-tick.C:
		case <-s.ckptKick:
		}
		s.checkpoint()
	}
}

// walRestartFrames is the log length (in pages) past which a checkpoint
// restarts the log. Passive checkpoints never stop the writer, so under
// unbroken load they may never catch up with it, and SQLite starts the log
// over only once a checkpoint has caught up. A restarting checkpoint makes
// new commits wait while it copies what is left and while readers finish
// (reads are short: a page of a list, one job), and then the log starts
// again from its beginning. 16384 pages of 4 KiB are 64 MiB.
const walRestartFrames = 16384

// walSizeLimit is the size the log file is cut back to when it starts over.
const walSizeLimit = 64 << 20

func (s *Store) checkpoint() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mode := "PASSIVE"
	for range 2 {
		var busy, logFrames, copied int
		err := s.ckptDB.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &logFrames, &copied)
		if err != nil {
			s.cfg.Logger.Warn("job store checkpoint failed", "path", s.cfg.Path, "mode", mode, "err", err)
			return
		}
		if mode == "RESTART" {
			s.cfg.Logger.Debug("job store log restarted", "path", s.cfg.Path, "busy", busy == 1, "frames", logFrames)
			return
		}
		if logFrames < walRestartFrames {
			return
		}
		mode = "RESTART"
	}
}

// kickCheckpoint asks the checkpointer for a checkpoint without waiting.
func (s *Store) kickCheckpoint() {
	select {
	case s.ckptKick <- struct{}{}:
	default:
	}
}
