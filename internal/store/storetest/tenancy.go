package storetest

import (
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// tenancyCases are the suite's checks of tokens, namespace policies and
// build context owners.
var tenancyCases = []struct {
	name string
	fn   func(t *testing.T, h harness)
}{
	{"TokenRoundTrip", testTokenRoundTrip},
	{"TokenDuplicates", testTokenDuplicates},
	{"TokenRevoke", testTokenRevoke},
	{"TokenPersistence", testTokenPersistence},
	{"NamespacePolicies", testNamespacePolicies},
	{"BuildContextOwners", testBuildContextOwners},
}

func newToken(id string, kind job.TokenKind, ns string, offset time.Duration) *store.TokenRecord {
	return &store.TokenRecord{ID: id, Kind: kind, Namespace: ns, Name: "name of " + id,
		Hash: "hash-of-" + id, CreatedAt: base.Add(offset)}
}

func equalToken(t *testing.T, got, want *store.TokenRecord) {
	t.Helper()
	if got.ID != want.ID || got.Kind != want.Kind || got.Namespace != want.Namespace ||
		got.Name != want.Name || got.Hash != want.Hash ||
		!sameTime(got.CreatedAt, want.CreatedAt) || !sameTime(got.RevokedAt, want.RevokedAt) {
		t.Fatalf("token:\n got  %+v\n want %+v", got, want)
	}
}

func testTokenRoundTrip(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	a := newToken("a", job.TokenNamespace, "alice", 0)
	b := newToken("b", job.TokenAdmin, "", time.Second)
	w := newToken("w", job.TokenWorker, "", 2*time.Second)
	for _, tok := range []*store.TokenRecord{b, a, w} {
		if err := s.CreateToken(ctx, tok); err != nil {
			t.Fatalf("CreateToken(%s): %v", tok.ID, err)
		}
	}
	got, err := s.TokenByHash(ctx, a.Hash)
	if err != nil {
		t.Fatal(err)
	}
	equalToken(t, got, a)
	if got.Revoked() {
		t.Fatal("a new token is revoked")
	}
	if _, err := s.TokenByHash(ctx, "no such hash"); job.ErrorCode(err) != job.CodeNotFound {
		t.Fatalf("TokenByHash(unknown) = %v, want not_found", err)
	}
	list, err := s.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("ListTokens returned %d tokens, want 3", len(list))
	}
	for i, want := range []*store.TokenRecord{a, b, w} {
		equalToken(t, list[i], want)
	}
	if err := s.CreateToken(ctx, &store.TokenRecord{ID: "x", Kind: "root", Hash: "h", CreatedAt: base}); job.ErrorCode(err) != job.CodeInvalid {
		t.Fatalf("CreateToken of an unknown kind = %v, want invalid", err)
	}
}

func testTokenDuplicates(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	a := newToken("a", job.TokenNamespace, "alice", 0)
	if err := s.CreateToken(ctx, a); err != nil {
		t.Fatal(err)
	}
	sameID := newToken("a", job.TokenNamespace, "bob", 0)
	wantCode(t, "CreateToken with a duplicate id", s.CreateToken(ctx, sameID), job.CodeConflict)
	sameHash := newToken("b", job.TokenNamespace, "bob", 0)
	sameHash.Hash = a.Hash
	wantCode(t, "CreateToken with a duplicate hash", s.CreateToken(ctx, sameHash), job.CodeConflict)
}

func testTokenRevoke(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	a := newToken("a", job.TokenNamespace, "alice", 0)
	if err := s.CreateToken(ctx, a); err != nil {
		t.Fatal(err)
	}
	at := base.Add(time.Hour)
	got, err := s.RevokeToken(ctx, "a", at)
	if err != nil {
		t.Fatal(err)
	}
	a.RevokedAt = at
	equalToken(t, got, a)
	again, err := s.RevokeToken(ctx, "a", at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	equalToken(t, again, a) // the first revocation stands
	stored, err := s.TokenByHash(ctx, a.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if !stored.Revoked() {
		t.Fatal("a revoked token reads back as valid")
	}
	_, err = s.RevokeToken(ctx, "nope", at)
	wantCode(t, "RevokeToken(unknown)", err, job.CodeNotFound)
}

func testTokenPersistence(t *testing.T, h harness) {
	s := h.open(t)
	ctx := ctxFor(t)
	a := newToken("a", job.TokenWorker, "", 0)
	if err := s.CreateToken(ctx, a); err != nil {
		t.Fatal(err)
	}
	p := job.NamespacePolicy{Namespace: "alice", RequireTrustedWorkers: true}
	if err := s.PutNamespacePolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = h.store(t)
	got, err := s.TokenByHash(ctx, a.Hash)
	if err != nil {
		t.Fatal(err)
	}
	equalToken(t, got, a)
	gp, err := s.GetNamespacePolicy(ctx, "alice")
	if err != nil || !gp.Equal(p) {
		t.Fatalf("policy after reopening = %+v, %v; want %+v", gp, err, p)
	}
}

func testNamespacePolicies(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	_, err := s.GetNamespacePolicy(ctx, "alice")
	wantCode(t, "GetNamespacePolicy(unset)", err, job.CodeNotFound)
	bob := job.NamespacePolicy{Namespace: "bob", Quotas: job.Quotas{PendingJobs: 5, SubmitsPerSecond: 2.5, RunningJobs: -1}}
	alice := job.NamespacePolicy{Namespace: "alice", RequireTrustedWorkers: true}
	for _, p := range []job.NamespacePolicy{bob, alice} {
		if err := s.PutNamespacePolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetNamespacePolicy(ctx, "bob")
	if err != nil || !got.Equal(bob) {
		t.Fatalf("GetNamespacePolicy(bob) = %+v, %v; want %+v", got, err, bob)
	}
	alice.Quotas.Deployments = 3
	alice.RequireTrustedWorkers = false
	if err := s.PutNamespacePolicy(ctx, alice); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListNamespacePolicies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || !list[0].Equal(alice) || !list[1].Equal(bob) {
		t.Fatalf("ListNamespacePolicies = %+v, want [%+v %+v]", list, alice, bob)
	}
	err = s.PutNamespacePolicy(ctx, job.NamespacePolicy{Namespace: "Not Valid"})
	wantCode(t, "PutNamespacePolicy(invalid namespace)", err, job.CodeInvalid)
}

func testBuildContextOwners(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	for _, ns := range []string{"alice", "alice", "bob"} {
		if err := s.AddBuildContextOwner(ctx, "ctx1", ns); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		id, ns string
		want   bool
	}{{"ctx1", "alice", true}, {"ctx1", "bob", true}, {"ctx1", "carol", false}, {"ctx2", "alice", false}} {
		got, err := s.BuildContextOwned(ctx, tc.id, tc.ns)
		if err != nil || got != tc.want {
			t.Fatalf("BuildContextOwned(%s, %s) = %v, %v; want %v", tc.id, tc.ns, got, err, tc.want)
		}
	}
}
