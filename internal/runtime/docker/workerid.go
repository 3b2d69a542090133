package docker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Worker ids kept in a data directory.
//
// A worker's id labels its containers, volumes and built images, and a
// restarted worker sweeps what carries its id: so the id must be the same
// across restarts of one worker and never shared by two workers that run
// at once on one engine. ClaimWorkerID keeps ids in slots of a directory
// (DIR/docker-worker/0, 1, …), each a file holding one id and locked with
// flock(2) while its worker runs. A worker takes the first slot no live
// process holds: the lock proves that whoever used that id before is gone,
// so sweeping what carries it removes only a dead worker's leftovers. Two
// workers started from one directory get two slots and two ids; the kernel
// drops a lock when its process dies, so kill -9 frees the slot too.

// maxWorkerSlots bounds the slots of one directory.
const maxWorkerSlots = 64

// WorkerIDClaim is a worker id held for one process. Release frees it.
type WorkerIDClaim struct {
	ID   string
	Path string
	f    *os.File
}

// Release unlocks the slot; the id stays in it for the next worker.
func (c *WorkerIDClaim) Release() error {
	if c == nil || c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	return err
}

// ClaimWorkerID returns a worker id held under dir for this process: the
// id kept in the first slot no running process holds, or a new one,
// "<prefix><host>-<random>", written into a new slot. It creates dir (mode
// 0700) as needed. It fails when every slot is held or dir cannot be
// written. The caller releases the claim when its worker stops.
func ClaimWorkerID(dir, prefix string) (*WorkerIDClaim, error) {
	sdir := filepath.Join(dir, "docker-worker")
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		return nil, fmt.Errorf("worker id: %w", err)
	}
	for i := range maxWorkerSlots {
		p := filepath.Join(sdir, fmt.Sprint(i))
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("worker id: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue // a live worker holds it
			}
			return nil, fmt.Errorf("worker id: lock %s: %w", p, err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("worker id: %w", err)
		}
		id := strings.TrimSpace(string(b))
		if !labelValueRE.MatchString(id) {
			id = newWorkerID(prefix)
			if err := f.Truncate(0); err == nil {
				_, err = f.WriteAt([]byte(id+"\n"), 0)
			}
			if err == nil {
				err = f.Sync()
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("worker id: write %s: %w", p, err)
			}
		}
		return &WorkerIDClaim{ID: id, Path: p, f: f}, nil
	}
	return nil, fmt.Errorf("worker id: all %d slots of %s are held by running workers", maxWorkerSlots, sdir)
}

// newWorkerID returns "<prefix><host>-<8 hex digits>" in label characters.
func newWorkerID(prefix string) string {
	host, _ := os.Hostname()
	s := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '-'
	}, prefix+host)
	if len(s) > 100 {
		s = s[:100]
	}
	if s == "" || !labelValueRE.MatchString(s+"-x") {
		s = "worker"
	}
	return s + "-" + randomHex(4)
}
