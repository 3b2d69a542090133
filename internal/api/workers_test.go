package api

import (
	"encoding/json"
	"testing"

	"github.com/zerverless/zerverless/internal/job"
)

// TestWorkerListPages: GET /api/workers comes in pages with a cursor to
// the next and filters by runtime and trust; a parameter out of range is
// refused with 400 naming it.
func TestWorkerListPages(t *testing.T) {
	h, svc, _ := newTestAPI(t, DefaultConfig())
	lua := job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1}
	js := job.Capabilities{Runtimes: []job.Type{job.TypeJS}, Concurrency: 1}
	svc.WorkerList = []job.WorkerInfo{
		{ID: "w3", Capabilities: lua, Trusted: true},
		{ID: "w1", Capabilities: lua},
		{ID: "w2", Capabilities: js, Trusted: true},
	}
	list := func(path string) WorkerList {
		t.Helper()
		res := do(t, h, "GET", path, nil)
		var l WorkerList
		if res.status != 200 || json.Unmarshal(res.body, &l) != nil {
			t.Fatalf("%s: %d %s", path, res.status, res.body)
		}
		return l
	}
	ids := func(l WorkerList) (out []string) {
		for _, w := range l.Workers {
			out = append(out, w.ID)
		}
		return out
	}
	first := list("/api/workers?limit=2")
	if got := ids(first); len(got) != 2 || got[0] != "w1" || got[1] != "w2" || first.NextCursor != "w2" {
		t.Fatalf("first page %v, cursor %q", got, first.NextCursor)
	}
	second := list("/api/workers?limit=2&cursor=" + first.NextCursor)
	if got := ids(second); len(got) != 1 || got[0] != "w3" || second.NextCursor != "" {
		t.Fatalf("second page %v, cursor %q", got, second.NextCursor)
	}
	if got := ids(list("/api/workers?runtime=lua&trusted=true")); len(got) != 1 || got[0] != "w3" {
		t.Fatalf("trusted lua workers %v", got)
	}
	for _, c := range []struct{ query, field string }{
		{"limit=0", "limit"}, {"limit=1001", "limit"}, {"trusted=maybe", "trusted"},
		{"runtime=cobol", "runtime"}, {"namespace=Not%20One", "namespace"},
	} {
		res := do(t, h, "GET", "/api/workers?"+c.query, nil)
		if res.status != 400 || res.json(t)["field"] != c.field {
			t.Errorf("?%s: %d %s, want 400 naming %s", c.query, res.status, res.body, c.field)
		}
	}
}
