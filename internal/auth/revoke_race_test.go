package auth

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// pausingStore holds TokenByHash, once armed, after it has read the record
// and before it returns, until released.
type pausingStore struct {
	Store
	armed   atomic.Bool
	reading chan struct{}
	release chan struct{}
}

func (p *pausingStore) TokenByHash(ctx context.Context, hash string) (*store.TokenRecord, error) {
	rec, err := p.Store.TokenByHash(ctx, hash)
	if p.armed.CompareAndSwap(true, false) {
		p.reading <- struct{}{}
		<-p.release
	}
	return rec, err
}

// TestRevokeDuringAuthenticate: an authentication that read the token
// before a revocation and finishes after it does not cache the token as
// valid, or the revoked token (a worker's session, an API caller) would be
// accepted for the cache's lifetime.
func TestRevokeDuringAuthenticate(t *testing.T) {
	st := openStore(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	p := &pausingStore{Store: st, reading: make(chan struct{}), release: make(chan struct{})}
	s := mustNew(t, p)
	ctx := context.Background()
	tok, secret, err := s.Create(ctx, job.TokenWorker, "", "laptop")
	if err != nil {
		t.Fatal(err)
	}
	p.armed.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := s.Authenticate(ctx, secret)
		done <- err
	}()
	<-p.reading
	if _, err := s.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	close(p.release)
	<-done
	if _, err := s.Authenticate(ctx, secret); job.ErrorCode(err) != job.CodeUnauthorized {
		t.Fatalf("the revoked token authenticates: %v", err)
	}
}

func (p *pausingStore) GetNamespacePolicy(ctx context.Context, ns string) (job.NamespacePolicy, error) {
	pol, err := p.Store.GetNamespacePolicy(ctx, ns)
	if p.armed.CompareAndSwap(true, false) {
		p.reading <- struct{}{}
		<-p.release
	}
	return pol, err
}

// TestPolicyChangeDuringRead: a policy read that started before a change
// (such as requiring trusted workers) and ends after it does not cache the
// old policy.
func TestPolicyChangeDuringRead(t *testing.T) {
	st := openStore(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	p := &pausingStore{Store: st, reading: make(chan struct{}), release: make(chan struct{})}
	s := mustNew(t, p)
	ctx := context.Background()
	p.armed.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := s.NamespacePolicy(ctx, "bob")
		done <- err
	}()
	<-p.reading
	if err := s.PutPolicy(ctx, job.NamespacePolicy{Namespace: "bob", RequireTrustedWorkers: true}); err != nil {
		t.Fatal(err)
	}
	close(p.release)
	<-done
	if pol, err := s.NamespacePolicy(ctx, "bob"); err != nil || !pol.RequireTrustedWorkers {
		t.Fatalf("policy after the change: %+v %v", pol, err)
	}
}
