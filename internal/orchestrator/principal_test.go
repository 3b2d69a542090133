package orchestrator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol/protocoltest"
)

// testBuildKey keys the harness's build source keys.
var testBuildKey = []byte(strings.Repeat("t", job.MinBuildKeyBytes))

// tenantCtx is the context of a call made for an admin: the tests act for
// every namespace.
func tenantCtx() context.Context {
	return job.WithPrincipal(context.Background(), job.Principal{Kind: job.TokenAdmin, Name: "orchestrator test"})
}

// TestEntryPointsNeedAPrincipal: Submit, Invoke and Cancel do nothing for
// a context that carries no principal, for a join token, or for a token of
// another namespace; the job they would act on is untouched.
func TestEntryPointsNeedAPrincipal(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	alice := job.WithPrincipal(context.Background(), job.Principal{Kind: job.TokenNamespace, Namespace: "alice"})
	bob := job.WithPrincipal(context.Background(), job.Principal{Kind: job.TokenNamespace, Namespace: "bob"})
	worker := job.WithPrincipal(context.Background(), job.Principal{Kind: job.TokenWorker, Name: "laptop"})
	req := job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "alice"}
	for name, c := range map[string]struct {
		ctx  context.Context
		code job.Code
	}{
		"no principal": {context.Background(), job.CodeUnauthorized},
		"empty":        {job.WithPrincipal(context.Background(), job.Principal{}), job.CodeUnauthorized},
		"join token":   {worker, job.CodeForbidden},
		"other ns":     {bob, job.CodeForbidden},
	} {
		if j, err := h.o.Submit(c.ctx, req); job.ErrorCode(err) != c.code || j != nil {
			t.Errorf("Submit, %s: %v %v, want %s", name, j, err, c.code)
		}
		if j, err := h.o.Invoke(c.ctx, req, 100*time.Millisecond); job.ErrorCode(err) != c.code || j != nil {
			t.Errorf("Invoke, %s: %v %v, want %s", name, j, err, c.code)
		}
	}
	mine, err := h.o.Submit(alice, req)
	if err != nil {
		t.Fatal(err)
	}
	for name, ctx := range map[string]context.Context{"no principal": context.Background(), "other ns": bob} {
		if j, err := h.o.Cancel(ctx, mine.ID); err == nil || j != nil {
			t.Errorf("Cancel, %s: %v %v", name, j, err)
		}
	}
	if j, _ := h.o.Job(context.Background(), mine.ID); j.Status != job.StatusPending {
		t.Fatalf("the job after refused cancels: %s", j.Status)
	}
	if _, err := h.o.Cancel(alice, mine.ID); err != nil {
		t.Fatalf("alice cancels her own job: %v", err)
	}
}

// TestNoAuthAdmitsNoWorker: an orchestrator built without a token service
// (Config.Auth nil) trusts no join token: a worker presenting one is
// refused, with open volunteering off and on alike (it is not let in as an
// anonymous volunteer either), and without open volunteering a worker
// presenting nothing is refused too. Only the embedded workers' own
// secret is accepted.
func TestNoAuthAdmitsNoWorker(t *testing.T) {
	caps := luaCaps(1)
	for _, open := range []bool{false, true} {
		cfg := testConfig()
		cfg.Auth = nil
		cfg.OpenVolunteering = open
		h := newHarness(t, t.TempDir(), cfg)
		for _, token := range []string{"zv_" + strings.Repeat("A", 43), "laptop", harnessSecret + "x"} {
			if m := protocoltest.Refused(t, h.url(), token, caps); !strings.Contains(m.Error, "invalid join token") {
				t.Errorf("open volunteering %v, token %q: %+v", open, token, m)
			}
		}
		if !open {
			if m := protocoltest.Refused(t, h.url(), "", caps); !strings.Contains(m.Error, "join token") {
				t.Errorf("no token without open volunteering: %+v", m)
			}
		}
		w := protocoltest.Register(t, h.url(), harnessSecret, caps)
		w.KeepAlive()
		if !w.Trusted {
			t.Errorf("the embedded workers' secret is not trusted")
		}
		eventually(t, 5*time.Second, func() error {
			if ws := h.o.Workers(); len(ws) != 1 || ws[0].ID != w.ID {
				return fmt.Errorf("open volunteering %v: %d workers registered, want the embedded one alone", open, len(ws))
			}
			return nil
		})
	}
}
