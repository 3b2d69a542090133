package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// TestPoolsView: GET /api/pools groups workers of the same capabilities
// and trust, with their slots, jobs running and jobs pending for them.
// Alice's token sees her own pending jobs only and nothing of bob: not
// his image's tag, nor his jobs counted.
func TestPoolsView(t *testing.T) {
	srv, admin := startServer(t, testServerConfig(t, t.TempDir(), 0))
	ctx := context.Background()
	alice := newToken(t, admin, api.TokenRequest{Namespace: "alice"}).Token
	lua := job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1}
	for range 2 {
		dialRaw(t, srv.WorkerURL(), lua).keepAlive()
	}
	docker := job.Capabilities{Runtimes: []job.Type{job.TypeDocker}, Concurrency: 3,
		Docker: &job.DockerCapabilities{BuiltImages: []string{"zerverless/bob/secret:1", "zerverless/alice/app:1"},
			Pool: &job.DockerPool{Ready: 2, Hits: 5, Misses: 1}}}
	dialRawWith(t, srv.WorkerURL(), protocol.Message{Capabilities: &docker}).keepAlive()
	ac := client.New(srv.URL(), nil).WithToken(alice)
	for range 2 {
		if _, err := ac.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, err := admin.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "bob"}); err != nil {
			t.Fatal(err)
		}
	}
	// Two jobs run (one per lua worker), three wait: which ones is the
	// queue's fair order, so only the sums are checked.
	var all api.PoolList
	eventually(t, 5*time.Second, func() error {
		a := send(t, "GET", srv.URL()+"/api/pools", srv.AdminToken(), "", nil)
		all = api.PoolList{}
		json.Unmarshal(a.body, &all)
		if len(all.Pools) != 2 || all.Pools[0].Running != 2 || all.Pools[0].Pending != 3 {
			return fmt.Errorf("admin's pools: %s", a.body)
		}
		return nil
	})
	p := all.Pools[0]
	if p.Workers != 2 || p.Slots != 2 || p.Ready != 0 || !p.PendingCounted || len(p.WorkerIDs) != 2 || p.Capabilities.Concurrency != 0 {
		t.Fatalf("the lua pool: %+v", p)
	}
	if d := all.Pools[1]; d.Workers != 1 || d.Slots != 3 || d.Ready != 1 || d.Pending != 0 || d.Capabilities.Docker == nil || d.Capabilities.Docker.Pool != nil {
		t.Fatalf("the docker pool: %+v", d)
	}
	a := send(t, "GET", srv.URL()+"/api/pools", alice, "", nil)
	var mine api.PoolList
	json.Unmarshal(a.body, &mine)
	if a.status != 200 || strings.Contains(string(a.body), "bob") || !strings.Contains(string(a.body), "zerverless/alice/app:1") {
		t.Fatalf("alice's pools: %v", a)
	}
	// Alice's two jobs wait but for those of the two running that are hers.
	bobRunning := 0
	ws, err := admin.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		for _, id := range w.RunningJobs {
			if j, _ := admin.Job(ctx, id, 0); j.Namespace == "bob" {
				bobRunning++
			}
		}
	}
	if want := bobRunning; mine.Pools[0].Pending != want || mine.Pools[0].Workers != 2 {
		t.Fatalf("alice's lua pool counts %d pending, want %d (bob runs %d): %s", mine.Pools[0].Pending, want, bobRunning, a.body)
	}
	if a := send(t, "GET", srv.URL()+"/api/pools", "", "", nil); a.status != 401 {
		t.Fatalf("anonymous pools: %v", a)
	}
}
