package admission_test

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/zerverless/zerverless/internal/admission"
	"github.com/zerverless/zerverless/internal/api/apitest"
	"github.com/zerverless/zerverless/internal/contextstore"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// TestEveryDependencyIsRequired: New refuses each missing dependency by
// name; there is no open mode to fall into.
func TestEveryDependencyIsRequired(t *testing.T) {
	svc := apitest.NewService()
	d := apitest.NewDeps(t, svc)
	full := admission.Deps{Jobs: svc, Functions: d.Functions, Tokens: d.Auth, Contexts: d.Contexts, Owners: d.Store, Quotas: svc, Logs: svc}
	if _, err := admission.New(admission.DefaultConfig(), full); err != nil {
		t.Fatal(err)
	}
	for name, drop := range map[string]func(*admission.Deps){
		"Jobs":      func(x *admission.Deps) { x.Jobs = nil },
		"Functions": func(x *admission.Deps) { x.Functions = nil },
		"Tokens":    func(x *admission.Deps) { x.Tokens = nil },
		"Contexts":  func(x *admission.Deps) { x.Contexts = nil },
		"Owners":    func(x *admission.Deps) { x.Owners = nil },
		"Quotas":    func(x *admission.Deps) { x.Quotas = nil },
		"Logs":      func(x *admission.Deps) { x.Logs = nil },
	} {
		deps := full
		drop(&deps)
		if s, err := admission.New(admission.DefaultConfig(), deps); err == nil || s != nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s: %v %v", name, s, err)
		}
	}
	if _, err := admission.New(admission.Config{}, full); err != nil {
		t.Errorf("the zero config takes the defaults: %v", err)
	}
	if _, err := admission.New(admission.Config{MaxDockerfileBytes: -1}, full); err == nil || !strings.Contains(err.Error(), "MaxDockerfileBytes") {
		t.Errorf("a negative MaxDockerfileBytes: %v", err)
	}
}

// TestNothingWithoutAPrincipal calls every method that acts for a tenant
// with a context that carries no principal, then with a join token's:
// each refuses (unauthorized, then forbidden) and nothing reaches the
// services behind.
func TestNothingWithoutAPrincipal(t *testing.T) {
	svc := apitest.NewService()
	d := apitest.NewDeps(t, svc)
	adm := apitest.Admission(t, svc, d, d.Auth)
	id := strings.Repeat("a", 64)
	calls := map[string]func(ctx context.Context) error{
		"Submit": func(ctx context.Context) error {
			_, err := adm.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1"})
			return err
		},
		"Job":    func(ctx context.Context) error { _, err := adm.Job(ctx, "job-1"); return err },
		"Wait":   func(ctx context.Context) error { _, err := adm.Wait(ctx, "job-1", 1); return err },
		"Jobs":   func(ctx context.Context) error { _, _, err := adm.Jobs(ctx, store.JobFilter{}); return err },
		"Cancel": func(ctx context.Context) error { _, err := adm.Cancel(ctx, "job-1"); return err },
		"JobLog": func(ctx context.Context) error { _, _, err := adm.JobLog(ctx, "job-1", 0, 10); return err },
		"FollowJobLog": func(ctx context.Context) error {
			return adm.FollowJobLog(ctx, "job-1", 0, func(job.LogEvent) error { return nil })
		},
		"Stats": func(ctx context.Context) error { _, err := adm.Stats(ctx); return err },
		"Workers": func(ctx context.Context) error {
			_, _, err := adm.Workers(ctx, job.WorkerFilter{})
			return err
		},
		"UploadContext": func(ctx context.Context) error {
			_, err := adm.UploadContext(ctx, "", strings.NewReader(`{"files":{"Dockerfile":"FROM scratch\n"}}`), contextstore.FormJSON)
			return err
		},
		"Context": func(ctx context.Context) error { _, err := adm.Context(ctx, id); return err },
		"Deploy": func(ctx context.Context) error {
			_, err := adm.Deploy(ctx, "alice", "fn", job.DeployRequest{Runtime: job.TypeLua, Code: "function handle(r) return 1 end"})
			return err
		},
		"Deployment":  func(ctx context.Context) error { _, err := adm.Deployment(ctx, "alice", "fn"); return err },
		"Deployments": func(ctx context.Context) error { _, err := adm.Deployments(ctx, "", false); return err },
		"Undeploy":    func(ctx context.Context) error { return adm.Undeploy(ctx, "alice", "fn") },
		"CreateToken": func(ctx context.Context) error {
			_, _, err := adm.CreateToken(ctx, job.TokenAdmin, "", "x")
			return err
		},
		"Tokens":      func(ctx context.Context) error { _, err := adm.Tokens(ctx); return err },
		"RevokeToken": func(ctx context.Context) error { _, err := adm.RevokeToken(ctx, "x"); return err },
		"PutPolicy":   func(ctx context.Context) error { return adm.PutPolicy(ctx, job.NamespacePolicy{Namespace: "alice"}) },
		"Policy":      func(ctx context.Context) error { _, err := adm.Policy(ctx, "alice"); return err },
		"Policies":    func(ctx context.Context) error { _, err := adm.Policies(ctx); return err },
		"Scope":       func(ctx context.Context) error { _, err := adm.Scope(ctx, "", "namespace"); return err },
	}
	// A private function exists, so that Invoke is refused for who calls,
	// not for what is missing.
	admin := job.WithPrincipal(context.Background(), job.Principal{Kind: job.TokenAdmin, Name: "test"})
	public := false
	if _, err := adm.Deploy(admin, "alice", "private", job.DeployRequest{Runtime: job.TypeLua, Code: "function handle(r) return 1 end", Public: &public}); err != nil {
		t.Fatal(err)
	}
	calls["Invoke"] = func(ctx context.Context) error {
		_, err := adm.Invoke(ctx, "/alice/private", job.FunctionRequest{Method: "GET"})
		return err
	}
	// Every method is checked here, but those that act for no tenant: a
	// new entry point must be added to calls.
	calls["ConnectService"] = func(ctx context.Context) error {
		_, _, err := adm.ConnectService(ctx, &job.Deployment{Namespace: "alice", Path: "svc", Runtime: job.TypeDocker, Service: &job.ServiceConfig{}})
		return err
	}
	calls["ServiceInstances"] = func(ctx context.Context) error { _, err := adm.ServiceInstances(ctx, "alice", "svc"); return err }
	calls["ServicePending"] = func(ctx context.Context) error { _, err := adm.ServicePending(ctx, "alice", "svc"); return err }
	calls["ServiceLogs"] = func(ctx context.Context) error { _, _, _, err := adm.ServiceLogs(ctx, "alice", "svc"); return err }
	calls["FollowServiceLog"] = func(ctx context.Context) error {
		return adm.FollowServiceLog(ctx, "alice", "svc", 0, func(job.ServiceLogEvent) error { return nil })
	}
	calls["Pools"] = func(ctx context.Context) error { _, err := adm.Pools(ctx); return err }
	notForATenant := []string{"Authenticate", "ContextArchive", "FunctionIsPrivate", "HeldJob", "ServiceAt", "ObserveServiceRequest"}
	ty := reflect.TypeOf(adm)
	for i := range ty.NumMethod() {
		m := ty.Method(i).Name
		if _, ok := calls[m]; !ok && !slices.Contains(notForATenant, m) {
			t.Errorf("method %s is not checked without a principal", m)
		}
	}
	worker := job.WithPrincipal(context.Background(), job.Principal{Kind: job.TokenWorker, Name: "laptop"})
	for name, call := range calls {
		if err := call(context.Background()); job.ErrorCode(err) != job.CodeUnauthorized {
			t.Errorf("%s without a principal: %v, want unauthorized", name, err)
		}
		if err := call(worker); job.ErrorCode(err) != job.CodeForbidden {
			t.Errorf("%s with a join token: %v, want forbidden", name, err)
		}
	}
	if n := len(svc.Submitted()); n != 0 {
		t.Errorf("%d jobs reached the orchestrator", n)
	}
	if list, _ := d.Store.ListDeployments(context.Background(), store.DeploymentFilter{}); len(list) != 1 {
		t.Errorf("%d functions deployed, want only the test's own", len(list))
	}
}
