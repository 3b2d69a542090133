package apitest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/zerverless/zerverless/internal/admission"
	"github.com/zerverless/zerverless/internal/auth"
	"github.com/zerverless/zerverless/internal/contextstore"
	"github.com/zerverless/zerverless/internal/deploy"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store/sqlite"
)

// OpenPrincipal is who every caller is under OpenAuth.
var OpenPrincipal = job.Principal{Kind: job.TokenAdmin, Name: "open (test policy)"}

// OpenAuth is the explicit open policy of tests that exercise the API
// without tokens: it authenticates every request, with or without a
// token, as OpenPrincipal, an admin. The token and policy routes go to the
// real token service it wraps. Production code never uses it: serve
// passes the token service itself.
type OpenAuth struct{ *auth.Service }

// Authenticate admits every secret, the empty one too, as OpenPrincipal.
func (OpenAuth) Authenticate(ctx context.Context, secret string) (job.Principal, error) {
	return OpenPrincipal, nil
}

// Deps are the real components behind a test API: a SQLite store in a
// temporary directory, the token service over it, the build context store
// and the deployments service, which invokes through the Service.
type Deps struct {
	Store     *sqlite.Store
	Auth      *auth.Service
	Contexts  *contextstore.Store
	Functions *deploy.Service
}

// NewDeps opens the real components for svc in t's temporary directory;
// they are closed when t ends.
func NewDeps(t testing.TB, svc *Service) Deps {
	t.Helper()
	dir := t.TempDir()
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(dir, "zerverless.db")
	st, err := sqlite.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cc := contextstore.DefaultConfig()
	cc.Dir = filepath.Join(dir, "build-contexts")
	cs, err := contextstore.New(cc, st)
	if err != nil {
		t.Fatal(err)
	}
	dc := deploy.DefaultConfig()
	dc.RefreshInterval = -1
	dc.Quotas = svc
	fns := deploy.New(dc, st, svc, nil)
	if err := fns.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fns.Close)
	as, err := auth.New(auth.Config{}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Deps{Store: st, Auth: as, Contexts: cs, Functions: fns}
}

// Admission returns an admission service over svc and d that authenticates
// with tokens: OpenAuth{d.Auth} for the open test policy, or d.Auth for
// the real one.
func Admission(t testing.TB, svc *Service, d Deps, tokens admission.Tokens) *admission.Service {
	t.Helper()
	adm, err := admission.New(admission.DefaultConfig(), admission.Deps{
		Jobs: svc, Functions: d.Functions, Tokens: tokens,
		Contexts: d.Contexts, Owners: d.Store, Quotas: svc, Logs: svc,
	})
	if err != nil {
		t.Fatal(err)
	}
	return adm
}

// OpenAdmission is Admission under the open test policy, over fresh
// components.
func OpenAdmission(t testing.TB, svc *Service) *admission.Service {
	t.Helper()
	d := NewDeps(t, svc)
	return Admission(t, svc, d, OpenAuth{d.Auth})
}
