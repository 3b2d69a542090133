package storetest

import (
	"bytes"
	"fmt"
	"maps"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// deploymentCases are the suite's checks of the deployment methods.
var deploymentCases = []struct {
	name string
	fn   func(t *testing.T, h harness)
}{
	{"DeploymentRoundTrip", testDeploymentRoundTrip},
	{"DeploymentRedeploy", testDeploymentRedeploy},
	{"DeploymentNotFound", testDeploymentNotFound},
	{"DeploymentList", testDeploymentList},
	{"DeploymentDelete", testDeploymentDelete},
	{"DeploymentPersistence", testDeploymentPersistence},
	{"DeploymentConcurrentPuts", testDeploymentConcurrentPuts},
}

func newDeployment(ns, path string, offset time.Duration) *job.Deployment {
	return &job.Deployment{
		Namespace:      ns,
		Path:           path,
		Runtime:        job.TypeLua,
		Code:           `function handle(req) return "hi" end`,
		Digest:         "d1",
		CodeBytes:      36,
		TimeoutSeconds: 2.5,
		UpdatedAt:      base.Add(offset),
	}
}

func mustPut(t *testing.T, s store.Store, d *job.Deployment) {
	t.Helper()
	if err := s.PutDeployment(ctxFor(t), d); err != nil {
		t.Fatalf("PutDeployment(%s): %v", d.Name(), err)
	}
}

func mustGetDeployment(t *testing.T, s store.Store, ns, path string) *job.Deployment {
	t.Helper()
	d, err := s.GetDeployment(ctxFor(t), ns, path)
	if err != nil {
		t.Fatalf("GetDeployment(%s/%s): %v", ns, path, err)
	}
	return d
}

// equalDeployment fails t unless got is want as stored; withCode says
// whether got should carry the code.
func equalDeployment(t *testing.T, got, want *job.Deployment, withCode bool) {
	t.Helper()
	w := *want
	if !withCode {
		w.Code, w.Wasm = "", nil
	}
	if got.Namespace != w.Namespace || got.Path != w.Path || got.Runtime != w.Runtime ||
		got.Code != w.Code || !bytes.Equal(got.Wasm, w.Wasm) || got.Digest != w.Digest ||
		got.CodeBytes != w.CodeBytes || !maps.Equal(got.Env, w.Env) ||
		got.TimeoutSeconds != w.TimeoutSeconds || got.MemoryMB != w.MemoryMB ||
		got.MaxConcurrency != w.MaxConcurrency || got.Public != w.Public || got.Version != w.Version ||
		got.AnonymousWorkers != w.AnonymousWorkers {
		t.Fatalf("deployment %s:\n got  %+v\n want %+v", w.Name(), got, &w)
	}
	if !sameTime(got.CreatedAt, w.CreatedAt) || !sameTime(got.UpdatedAt, w.UpdatedAt) {
		t.Fatalf("deployment %s times: got created %v updated %v, want %v %v",
			w.Name(), got.CreatedAt, got.UpdatedAt, w.CreatedAt, w.UpdatedAt)
	}
}

func testDeploymentRoundTrip(t *testing.T, h harness) {
	s := h.store(t)
	d := newDeployment("team-a", "api/v1/hello", 0)
	d.Env = map[string]string{"GREETING": "hej", "EMPTY": ""}
	d.MemoryMB, d.MaxConcurrency = 64, 3
	d.AnonymousWorkers = true
	mustPut(t, s, d)
	if d.Version != 1 || !sameTime(d.CreatedAt, d.UpdatedAt) {
		t.Fatalf("first put: version %d, created %v, updated %v", d.Version, d.CreatedAt, d.UpdatedAt)
	}
	equalDeployment(t, mustGetDeployment(t, s, "team-a", "api/v1/hello"), d, true)

	w := newDeployment("team-a", "wasm", 0)
	w.Runtime, w.Code = job.TypeWasm, ""
	w.Wasm = append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{0xff, 0}, 40000)...)
	mustPut(t, s, w)
	equalDeployment(t, mustGetDeployment(t, s, "team-a", "wasm"), w, true)
}

func testDeploymentRedeploy(t *testing.T, h harness) {
	s := h.store(t)
	d := newDeployment("default", "f", 0)
	mustPut(t, s, d)
	first := d.CreatedAt
	d2 := newDeployment("default", "f", time.Hour)
	d2.Runtime, d2.Code, d2.Digest = job.TypeJS, "function handle(r) { return 2 }", "d2"
	d2.Env = map[string]string{"A": "b"}
	mustPut(t, s, d2)
	if d2.Version != 2 {
		t.Fatalf("redeploy: version %d, want 2", d2.Version)
	}
	if !sameTime(d2.CreatedAt, first) {
		t.Fatalf("redeploy: created %v, want the first deployment's %v", d2.CreatedAt, first)
	}
	got := mustGetDeployment(t, s, "default", "f")
	equalDeployment(t, got, d2, true)
	// Dropping env on a redeploy drops it from the store.
	d3 := newDeployment("default", "f", 2*time.Hour)
	mustPut(t, s, d3)
	if got := mustGetDeployment(t, s, "default", "f"); got.Version != 3 || len(got.Env) != 0 {
		t.Fatalf("third put: version %d env %v", got.Version, got.Env)
	}
}

func testDeploymentNotFound(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	mustPut(t, s, newDeployment("a", "x/y", 0))
	for _, p := range [][2]string{{"a", "x"}, {"a", "x/y/z"}, {"b", "x/y"}, {"a", "X/y"}} {
		_, err := s.GetDeployment(ctx, p[0], p[1])
		wantCode(t, "get "+p[0]+"/"+p[1], err, job.CodeNotFound)
		wantCode(t, "delete "+p[0]+"/"+p[1], s.DeleteDeployment(ctx, p[0], p[1]), job.CodeNotFound)
	}
	wantCode(t, "put without update time", s.PutDeployment(ctx, &job.Deployment{Namespace: "a", Path: "b"}), job.CodeInvalid)
}

func testDeploymentList(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	all := []*job.Deployment{
		newDeployment("zeta", "a", 0), newDeployment("alpha", "b/c", 0),
		newDeployment("alpha", "b", 0), newDeployment("alpha", "a", 0),
	}
	for _, d := range all {
		mustPut(t, s, d)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Name() < all[j].Name() })
	for _, withCode := range []bool{false, true} {
		got, err := s.ListDeployments(ctx, store.DeploymentFilter{WithCode: withCode})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(all) {
			t.Fatalf("listed %d deployments, want %d", len(got), len(all))
		}
		for i := range all {
			equalDeployment(t, got[i], all[i], withCode)
		}
	}
	got, err := s.ListDeployments(ctx, store.DeploymentFilter{Namespace: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range got {
		names = append(names, d.Name())
	}
	wantIDs(t, "list of namespace alpha", names, []string{"alpha/a", "alpha/b", "alpha/b/c"})
	got, err = s.ListDeployments(ctx, store.DeploymentFilter{Namespace: "none"})
	if err != nil || len(got) != 0 {
		t.Fatalf("list of an empty namespace: %v %v", got, err)
	}
}

func testDeploymentDelete(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	mustPut(t, s, newDeployment("a", "f", 0))
	mustPut(t, s, newDeployment("a", "f", time.Second))
	mustPut(t, s, newDeployment("a", "g", 0))
	if err := s.DeleteDeployment(ctx, "a", "f"); err != nil {
		t.Fatal(err)
	}
	_, err := s.GetDeployment(ctx, "a", "f")
	wantCode(t, "get after delete", err, job.CodeNotFound)
	mustGetDeployment(t, s, "a", "g")
	// Deploying again starts over at version 1.
	d := newDeployment("a", "f", time.Minute)
	mustPut(t, s, d)
	if d.Version != 1 || !sameTime(d.CreatedAt, base.Add(time.Minute)) {
		t.Fatalf("put after delete: version %d created %v", d.Version, d.CreatedAt)
	}
}

func testDeploymentPersistence(t *testing.T, h harness) {
	s := h.store(t)
	d := newDeployment("p", "persisted/fn", 0)
	d.Env = map[string]string{"K": "v"}
	mustPut(t, s, d)
	mustPut(t, s, d)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = h.store(t)
	equalDeployment(t, mustGetDeployment(t, s, "p", "persisted/fn"), d, true)
}

func testDeploymentConcurrentPuts(t *testing.T, h harness) {
	s := h.store(t)
	const n = 20
	versions := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := newDeployment("c", "f", time.Duration(i))
			d.Code = fmt.Sprintf("return %d", i)
			if err := s.PutDeployment(ctxFor(t), d); err != nil {
				t.Error(err)
				return
			}
			versions[i] = d.Version
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for _, v := range versions {
		if v < 1 || v > n || seen[v] {
			t.Fatalf("versions of concurrent puts %v: want each of 1..%d once", versions, n)
		}
		seen[v] = true
	}
	if d := mustGetDeployment(t, s, "c", "f"); d.Version != n {
		t.Fatalf("final version %d, want %d", d.Version, n)
	}
}
