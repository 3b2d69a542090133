package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// A pool's id names its capability signature, which holds what a
// namespace token is not shown (the other namespaces a worker serves,
// the images other tenants built on it). Alice, who sees the rest, must
// not be able to confirm a guess of it offline: "does bob have image
// zerverless/bob/secret:1 on this worker?", "is carol served here?".
func TestAttack2PoolIDConfirmsNoGuess(t *testing.T) {
	srv, admin := startServer(t, testServerConfig(t, t.TempDir(), 0))
	alice := newToken(t, admin, api.TokenRequest{Namespace: "alice"}).Token
	caps := job.Capabilities{Runtimes: []job.Type{job.TypeDocker}, Concurrency: 2, Namespaces: []string{"alice", "carol"},
		Docker: &job.DockerCapabilities{BuiltImages: []string{"zerverless/alice/app:1", "zerverless/bob/secret:1"}}}
	dialRawWith(t, srv.WorkerURL(), protocol.Message{Capabilities: &caps}).keepAlive()
	var mine api.PoolList
	eventually(t, 5*time.Second, func() error {
		a := send(t, "GET", srv.URL()+"/api/pools", alice, "", nil)
		mine = api.PoolList{}
		json.Unmarshal(a.body, &mine)
		if len(mine.Pools) != 1 {
			return fmt.Errorf("alice's pools: %s", a.body)
		}
		return nil
	})
	// The guess: what alice sees, with what she suspects added, as the
	// signature is made.
	guess := caps
	guess.Concurrency = 0
	d := *caps.Docker
	guess.Docker = &d
	a := send(t, "GET", srv.URL()+"/api/pools", srv.AdminToken(), "", nil)
	var all api.PoolList
	json.Unmarshal(a.body, &all)
	if len(all.Pools) == 1 {
		// The admin's view of the same capabilities, as the server keeps
		// them (it may order or complete what a worker declares).
		guess = all.Pools[0].Capabilities
	}
	b, _ := json.Marshal(guess)
	for _, prefix := range []string{"t", "u"} {
		sum := sha256.Sum256([]byte(prefix + string(b)))
		if id := hex.EncodeToString(sum[:6]); id == mine.Pools[0].ID {
			t.Fatalf("alice confirms offline that bob built an image on this worker and carol is served by it (pool %s)", id)
		}
	}
	if mine.Pools[0].ID != all.Pools[0].ID {
		t.Fatalf("the pool's id differs by who looks: %s, %s", mine.Pools[0].ID, all.Pools[0].ID)
	}
}
