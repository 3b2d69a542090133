package auth

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store/sqlite"
)

func openStore(t *testing.T, dir string) *sqlite.Store {
	t.Helper()
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(dir, "zerverless.db")
	st, err := sqlite.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newService(t *testing.T) (*Service, string) {
	t.Helper()
	dir := t.TempDir()
	st := openStore(t, dir)
	t.Cleanup(func() { st.Close() })
	return mustNew(t, st), dir
}

func mustNew(t *testing.T, st Store) *Service {
	t.Helper()
	s, err := New(Config{}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConfigValidate: negative settings are refused, naming the field, and
// a service needs its store.
func TestConfigValidate(t *testing.T) {
	st := openStore(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	for name, cfg := range map[string]Config{"CacheSize": {CacheSize: -1}, "CacheTTL": {CacheTTL: -time.Second}} {
		if _, err := New(cfg, st, nil); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := New(Config{}, nil, nil); err == nil {
		t.Error("a service without a store")
	}
}

func TestCreateAuthenticateRevoke(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	tok, secret, err := s.Create(ctx, job.TokenNamespace, "alice", "alice's laptop")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, SecretPrefix) || len(secret) != secretLen || len(secret) < 40 {
		t.Fatalf("secret %q: want %q and 32 random bytes in base64url", secret, SecretPrefix)
	}
	p, err := s.Authenticate(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	want := job.Principal{TokenID: tok.ID, Kind: job.TokenNamespace, Namespace: "alice", Name: "alice's laptop"}
	if p != want {
		t.Fatalf("principal = %+v, want %+v", p, want)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != tok.ID {
		t.Fatalf("List = %+v, %v", list, err)
	}
	// The principal is cached now; a revocation must still take effect at
	// once.
	if _, err := s.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, secret); job.ErrorCode(err) != job.CodeUnauthorized {
		t.Fatalf("Authenticate(revoked) = %v, want unauthorized", err)
	}
	if list, _ := s.List(ctx); len(list) != 0 {
		t.Fatalf("List after revoke = %+v, want none", list)
	}
	if _, err := s.Revoke(ctx, tok.ID); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	if _, err := s.Revoke(ctx, "unknown"); job.ErrorCode(err) != job.CodeNotFound {
		t.Fatalf("Revoke(unknown) = %v, want not_found", err)
	}
}

func TestAuthenticateRefuses(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	_, good, err := s.Create(ctx, job.TokenAdmin, "", "")
	if err != nil {
		t.Fatal(err)
	}
	last := byte('A')
	if good[len(good)-1] == 'A' {
		last = 'B'
	}
	forged := good[:len(good)-1] + string(last)
	for _, secret := range []string{"", "zv_", "Bearer " + good, good + "x", strings.ToUpper(good), forged, "xx" + good[2:]} {
		if _, err := s.Authenticate(ctx, secret); job.ErrorCode(err) != job.CodeUnauthorized {
			t.Errorf("Authenticate(%q) = %v, want unauthorized", secret, err)
		}
	}
}

func TestCreateValidates(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	for _, tc := range []struct {
		kind      job.TokenKind
		ns, name  string
		wantField string
	}{
		{"root", "", "", "kind"},
		{job.TokenNamespace, "", "", "namespace"},
		{job.TokenNamespace, "Not_Valid", "", "namespace"},
		{job.TokenAdmin, "alice", "", "namespace"},
		{job.TokenWorker, "alice", "", "namespace"},
		{job.TokenWorker, "", "bad\nname", "name"},
		{job.TokenWorker, "", strings.Repeat("n", MaxNameBytes+1), "name"},
	} {
		_, _, err := s.Create(ctx, tc.kind, tc.ns, tc.name)
		if job.ErrorCode(err) != job.CodeInvalid || job.ErrorField(err) != tc.wantField {
			t.Errorf("Create(%q, %q, %q) = %v, want invalid %s", tc.kind, tc.ns, tc.name, err, tc.wantField)
		}
	}
	tok, secret, err := s.Create(ctx, job.TokenWorker, "", "laptop-1")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.Authenticate(ctx, secret); err != nil || p.Kind != job.TokenWorker || p.TokenID != tok.ID || p.Sees("default") {
		t.Fatalf("join token principal = %+v, %v", p, err)
	}
}

func TestSecretsAreNotStored(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	s := mustNew(t, st)
	ctx := context.Background()
	var secrets []string
	for _, kind := range []job.TokenKind{job.TokenAdmin, job.TokenNamespace, job.TokenWorker} {
		ns := ""
		if kind == job.TokenNamespace {
			ns = "alice"
		}
		_, secret, err := s.Create(ctx, kind, ns, "n")
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, secret)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "zerverless.db*"))
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range secrets {
			if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte(secret[len(SecretPrefix):])) {
				t.Fatalf("%s holds a secret in clear", f)
			}
		}
		if !bytes.Contains(b, []byte(hashSecret(secrets[0]))) && filepath.Base(f) == "zerverless.db" {
			t.Logf("%s does not hold the hash yet (still in the log)", f)
		}
	}
}

func TestBootstrap(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st := openStore(t, dir)
	s := mustNew(t, st)
	secret, created, err := s.Bootstrap(ctx, dir)
	if err != nil || !created {
		t.Fatalf("first Bootstrap = %v, %v; want a new token", created, err)
	}
	path := filepath.Join(dir, AdminTokenFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != secret {
		t.Fatalf("%s holds %q, want the secret", path, b)
	}
	if p, err := s.Authenticate(ctx, secret); err != nil || !p.Admin() {
		t.Fatalf("bootstrap token = %+v, %v; want admin", p, err)
	}
	st.Close()

	// A restart reuses the token and does not make another; a loose mode
	// is tightened.
	os.Chmod(path, 0o644)
	st = openStore(t, dir)
	s = mustNew(t, st)
	again, created, err := s.Bootstrap(ctx, dir)
	if err != nil || created || again != secret {
		t.Fatalf("second Bootstrap = %v, %v (same secret: %v); want the same token", created, err, again == secret)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode after restart %v, want 0600", fi.Mode().Perm())
	}
	if list, _ := s.List(ctx); len(list) != 1 {
		t.Fatalf("tokens after restart: %+v, want one", list)
	}

	// A revoked bootstrap token is replaced.
	p, _ := s.Authenticate(ctx, secret)
	if _, err := s.Revoke(ctx, p.TokenID); err != nil {
		t.Fatal(err)
	}
	fresh, created, err := s.Bootstrap(ctx, dir)
	if err != nil || !created || fresh == secret {
		t.Fatalf("Bootstrap after revoking = %v, %v; want a new token", created, err)
	}
	st.Close()
}

func TestPolicies(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	p, err := s.NamespacePolicy(ctx, "alice")
	if err != nil || !p.Equal(job.NamespacePolicy{Namespace: "alice"}) {
		t.Fatalf("unset policy = %+v, %v; want the zero policy", p, err)
	}
	set := job.NamespacePolicy{Namespace: "alice", RequireTrustedWorkers: true, Quotas: job.Quotas{PendingJobs: 3}}
	if err := s.PutPolicy(ctx, set); err != nil {
		t.Fatal(err)
	}
	// The cached zero policy is replaced at once.
	if p, err := s.NamespacePolicy(ctx, "alice"); err != nil || !p.Equal(set) {
		t.Fatalf("policy = %+v, %v; want %+v", p, err, set)
	}
	if list, err := s.Policies(ctx); err != nil || len(list) != 1 || !list[0].Equal(set) {
		t.Fatalf("Policies = %+v, %v", list, err)
	}
	if err := s.PutPolicy(ctx, job.NamespacePolicy{Namespace: "-x"}); job.ErrorCode(err) != job.CodeInvalid {
		t.Fatalf("PutPolicy(bad namespace) = %v, want invalid", err)
	}
}

func TestCacheExpires(t *testing.T) {
	s, _ := newService(t)
	now := time.Now()
	s.now = func() time.Time { return now }
	ctx := context.Background()
	_, secret, err := s.Create(ctx, job.TokenAdmin, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	// A revocation made behind the service's back (by another
	// orchestrator) is seen once the cache entry expires.
	p, _ := s.Authenticate(ctx, secret)
	if _, err := s.st.RevokeToken(ctx, p.TokenID, now); err != nil {
		t.Fatal(err)
	}
	now = now.Add(s.cfg.CacheTTL + time.Second)
	if _, err := s.Authenticate(ctx, secret); job.ErrorCode(err) != job.CodeUnauthorized {
		t.Fatalf("Authenticate after expiry = %v, want unauthorized", err)
	}
}
