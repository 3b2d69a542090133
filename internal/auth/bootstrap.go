package auth

import (
	"context"
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
	f, err := os.CreateTemp(filepath.Dir(path), ".admin.token-*")
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
