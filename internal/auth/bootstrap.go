package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/zerverless/zerverless/internal/job"
)

// AdminTokenFile is the name, in the data directory, of the file that
// holds the admin token made on first start.
const AdminTokenFile = "admin.token"

// AdminTokenPath returns where the admin token of dataDir is kept.
func AdminTokenPath(dataDir string) string { return filepath.Join(dataDir, AdminTokenFile) }

// Bootstrap returns the admin token kept in dataDir, making it first when
// there is none. When the file is absent, or holds a token the store does
// not accept (the database was replaced, or the token was revoked), it
// makes a new admin token and writes it to the file with mode 0600,
// atomically, and created is true: the caller shows the secret once. On
// later starts the file's token is returned with created false, and the
// file's mode is tightened to 0600 if it was looser.
func (s *Service) Bootstrap(ctx context.Context, dataDir string) (secret string, created bool, err error) {
	path := AdminTokenPath(dataDir)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		sec := strings.TrimSpace(string(b))
		p, aerr := s.Authenticate(ctx, sec)
		if aerr == nil && p.Admin() {
			if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() != 0o600 {
				if err := os.Chmod(path, 0o600); err != nil {
					return "", false, fmt.Errorf("tighten %s: %w", path, err)
				}
			}
			return sec, false, nil
		}
		if aerr != nil && !IsUnauthorized(aerr) {
			return "", false, aerr
		}
		s.log.Warn("the admin token file holds no valid admin token; making a new one", "path", path, "reason", reason(aerr, p))
	case errors.Is(err, fs.ErrNotExist):
	default:
		return "", false, fmt.Errorf("read %s: %w", path, err)
	}
	tok, sec, err := s.Create(ctx, job.TokenAdmin, "", "bootstrap")
	if err != nil {
		return "", false, fmt.Errorf("make the admin token: %w", err)
	}
	if err := writeSecret(path, sec); err != nil {
		return "", false, err
	}
	s.log.Info("admin token created", "token_id", tok.ID, "path", path)
	return sec, true, nil
}

func reason(err error, p job.Principal) string {
	if err != nil {
		return err.Error()
	}
	return "a " + string(p.Kind) + " token"
}

// writeSecret writes secret to path with mode 0600, replacing the file
// atomically.
func writeSecret(path, secret string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write admin token: %w", err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("write admin token: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write admin token: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	return nil
}

// BuildKeyFile is the name, in the data directory, of the file that holds
// the orchestrator's build key (see job.BuildSpec.SourceKey).
const BuildKeyFile = "build.key"

// BuildKey returns the build key kept in dataDir, making it first (32
// random bytes, hex, mode 0600, written atomically) when there is none.
// A file that holds no valid key is an error: a key that changes behind
// the operator's back would orphan every worker's build cache silently.
func BuildKey(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, BuildKeyFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, derr := hex.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(key) < job.MinBuildKeyBytes {
			return nil, fmt.Errorf("%s holds no build key of %d hex-encoded bytes; remove it to make a new one", path, job.MinBuildKeyBytes)
		}
		return key, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	key := make([]byte, job.MinBuildKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("make the build key: %w", err)
	}
	if err := writeSecret(path, hex.EncodeToString(key)); err != nil {
		return nil, fmt.Errorf("build key: %w", err)
	}
	return key, nil
}
