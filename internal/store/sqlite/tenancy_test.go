package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/store"
)

// TestBuildContextOwnersFollowDelete proves that removing a build context's
// record (at expiry) forgets which namespaces uploaded it.
func TestBuildContextOwnersFollowDelete(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	if err := s.PutBuildContext(ctx, &store.BuildContext{ID: "c1", CreatedAt: now, LastUsedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddBuildContextOwner(ctx, "c1", "alice"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.BuildContextOwned(ctx, "c1", "alice"); err != nil || !ok {
		t.Fatalf("owned = %v, %v; want true", ok, err)
	}
	if err := s.DeleteBuildContext(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.BuildContextOwned(ctx, "c1", "alice"); err != nil || ok {
		t.Fatalf("owned after delete = %v, %v; want false", ok, err)
	}
}
