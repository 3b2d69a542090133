package admission_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/admission"
	"github.com/zerverless/zerverless/internal/api/apitest"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/orchestrator"
	"github.com/zerverless/zerverless/internal/store/sqlite"
	"github.com/zerverless/zerverless/internal/testutil"
)

// realJobs is an admission service over a real orchestrator and store with
// cfg; the job service's other dependencies are the test API's.
func realJobs(t *testing.T, cfg orchestrator.Config) *admission.Service {
	t.Helper()
	scfg := sqlite.DefaultConfig()
	scfg.Path = filepath.Join(t.TempDir(), "jobs.db")
	st, err := sqlite.Open(context.Background(), scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.BuildKey = []byte("admission test build key, 32 bytes or more")
	o, err := orchestrator.New(cfg, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	svc := apitest.NewService()
	d := apitest.NewDeps(t, svc)
	adm, err := admission.New(admission.DefaultConfig(), admission.Deps{
		Jobs: o, Functions: d.Functions, Tokens: d.Auth,
		Contexts: d.Contexts, Owners: d.Store, Quotas: o, Logs: o,
	})
	if err != nil {
		t.Fatal(err)
	}
	return adm
}

var (
	alice = job.WithPrincipal(context.Background(), job.Principal{Kind: job.TokenNamespace, Namespace: "alice"})
	bob   = job.WithPrincipal(context.Background(), job.Principal{Kind: job.TokenNamespace, Namespace: "bob"})
	admin = job.WithPrincipal(context.Background(), job.Principal{Kind: job.TokenAdmin, Name: "test"})
)

// TestEndedJobTenancy: a job that just ended, answered from the
// orchestrator's memory, is seen by its namespace and an admin, and is
// not_found to another namespace's token, by Job and by Wait (which does
// not wait for it: the hour asked would hang the test); a pending job is
// not waited on for another namespace either.
func TestEndedJobTenancy(t *testing.T) {
	adm := realJobs(t, orchestrator.DefaultConfig())
	pending, err := adm.Submit(alice, job.Request{Type: job.TypeLua, Code: "return 1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.Wait(bob, pending.ID, time.Hour); !errors.Is(err, job.ErrNotFound) {
		t.Errorf("bob waits on alice's pending job: %v", err)
	}
	ended, err := adm.Submit(alice, job.Request{Type: job.TypeLua, Code: "return 2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.Cancel(alice, ended.ID); err != nil {
		t.Fatal(err)
	}
	for name, ctx := range map[string]context.Context{"alice": alice, "admin": admin} {
		for read, f := range map[string]func() (*job.Job, error){
			"Job":  func() (*job.Job, error) { return adm.Job(ctx, ended.ID) },
			"Wait": func() (*job.Job, error) { return adm.Wait(ctx, ended.ID, time.Hour) },
		} {
			if got, err := f(); err != nil || got.Status != job.StatusCanceled || got.Namespace != "alice" {
				t.Errorf("%s of alice's ended job by %s: %+v, %v", read, name, got, err)
			}
		}
	}
	for read, f := range map[string]func() (*job.Job, error){
		"Job":  func() (*job.Job, error) { return adm.Job(bob, ended.ID) },
		"Wait": func() (*job.Job, error) { return adm.Wait(bob, ended.ID, time.Hour) },
	} {
		if got, err := f(); !errors.Is(err, job.ErrNotFound) || got != nil {
			t.Errorf("%s of alice's ended job by bob: %+v, %v", read, got, err)
		}
	}
}

// TestExpiredJobTenancy: once a job's retention is over it answers that it
// expired, with its namespace, to its own namespace, and plain not_found,
// saying nothing of it, to another's.
func TestExpiredJobTenancy(t *testing.T) {
	cfg := orchestrator.DefaultConfig()
	cfg.Retention.Period = time.Nanosecond
	cfg.Retention.Interval = 10 * time.Millisecond
	adm := realJobs(t, cfg)
	j, err := adm.Submit(alice, job.Request{Type: job.TypeLua, Code: "return 1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.Cancel(alice, j.ID); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		_, err := adm.Wait(alice, j.ID, time.Second)
		var exp *job.ExpiredError
		if !errors.As(err, &exp) || exp.Namespace != "alice" {
			return errors.New("not expired yet: " + errString(err))
		}
		return nil
	})
	for read, f := range map[string]func() (*job.Job, error){
		"Job":  func() (*job.Job, error) { return adm.Job(bob, j.ID) },
		"Wait": func() (*job.Job, error) { return adm.Wait(bob, j.ID, time.Hour) },
	} {
		_, err := f()
		var exp *job.ExpiredError
		if !errors.Is(err, job.ErrNotFound) || errors.As(err, &exp) {
			t.Errorf("%s of alice's expired job by bob: %v", read, err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
