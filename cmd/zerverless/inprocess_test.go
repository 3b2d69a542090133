package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
)

// TestEmbeddedWorkersInProcess checks that serve's embedded workers reach
// it through the in-process listener (their sessions report the address
// "inprocess", which no TCP connection has), that they run jobs and count
// as worker sessions under the server's limits, that a remote worker still
// connects over TCP, and that with --embedded-workers-inprocess=false the
// embedded workers use the TCP port as a remote one does.
func TestEmbeddedWorkersInProcess(t *testing.T) {
	workers := func(t *testing.T, c *client.Client, want int) map[string]job.WorkerInfo {
		t.Helper()
		byName := make(map[string]job.WorkerInfo)
		eventually(t, 10*time.Second, func() error {
			ws, err := c.Workers(context.Background())
			if err != nil {
				return err
			}
			clear(byName)
			for _, w := range ws {
				byName[w.Name] = w
			}
			if len(ws) != want {
				return fmt.Errorf("%d workers connected (%v), want %d", len(ws), byName, want)
			}
			return nil
		})
		return byName
	}

	t.Run("in process", func(t *testing.T) {
		srv, c := startServer(t, testServerConfig(t, t.TempDir(), 2))
		stopRemote := startWorker(t, srv.WorkerURL(), "remote", job.TypeLua)
		got := workers(t, c, 3)
		embedded := make(map[string]bool)
		for _, name := range []string{"embedded-1", "embedded-2"} {
			if got[name].Remote != "inprocess" || !got[name].Trusted {
				t.Errorf("%s: remote %q trusted %v, want inprocess (not over TCP) and trusted", name, got[name].Remote, got[name].Trusted)
			}
			embedded[got[name].ID] = true
		}
		if r := got["remote"].Remote; !strings.HasPrefix(r, "127.0.0.1:") {
			t.Errorf("the remote worker connected from %q, want a TCP address on 127.0.0.1", r)
		}
		if s := srv.limits.Stats(); s.Sessions != 3 {
			t.Errorf("the connection limits count %d worker sessions, want 3, the in-process ones with the others: %+v", s.Sessions, s)
		}
		stopRemote()
		workers(t, c, 2)
		v := submitWait(t, c, job.Request{Type: job.TypeLua, Code: `return 6 * 7`})
		if v.Status != job.StatusCompleted || string(v.Result) != "42" || !embedded[v.WorkerID] {
			t.Fatalf("lua job: %s result %s on %s (%q), want 42 from an embedded worker", v.Status, v.Result, v.WorkerID, v.Error)
		}
	})

	t.Run("over TCP", func(t *testing.T) {
		cfg := testServerConfig(t, t.TempDir(), 2)
		cfg.WorkersInProcess = false
		_, c := startServer(t, cfg)
		for name, w := range workers(t, c, 2) {
			if !strings.HasPrefix(w.Remote, "127.0.0.1:") {
				t.Errorf("%s connected from %q, want a TCP address on 127.0.0.1", name, w.Remote)
			}
		}
	})
}
