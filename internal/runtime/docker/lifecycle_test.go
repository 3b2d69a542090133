package docker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// Two workers started from one data directory get two ids; a released
// id is the next worker's, so a restart sweeps its predecessor's leftovers.
func TestClaimWorkerID(t *testing.T) {
	dir := t.TempDir()
	a, err := ClaimWorkerID(dir, testWorkerPrefix+"claim-")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ClaimWorkerID(dir, testWorkerPrefix+"claim-")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID || !strings.HasPrefix(a.ID, testWorkerPrefix+"claim-") {
		t.Fatalf("ids %q and %q: want two distinct ids with the prefix", a.ID, b.ID)
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	c, err := ClaimWorkerID(dir, "other-")
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != a.ID {
		t.Fatalf("after a's release the next worker got %q, want a's id %q", c.ID, a.ID)
	}
	b.Release()
	c.Release()
}

// Two workers on one engine, ids from one data directory as two `serve`
// or `worker` processes take them: one runs a long job while the other
// starts and sweeps; the job survives. The running worker's own sweep
// leaves its run alone too.
func TestTwoWorkersOneEngine(t *testing.T) {
	dir := t.TempDir()
	var ds []*Docker
	for range 2 {
		claim, err := ClaimWorkerID(dir, testWorkerPrefix+"two-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { claim.Release() })
		ds = append(ds, newTestRuntime(t, func(c *Config) { c.WorkerID = claim.ID }))
	}
	jobID := newJobID()
	done := make(chan job.Result, 1)
	go func() {
		tk := testTask(jobID, testImage, "sh", "-c", "sleep 3; echo survived")
		res, err := ds[0].Run(context.Background(), tk)
		if err != nil {
			res.Error = err.Error()
		}
		done <- res
	}()
	eventually(t, 30*time.Second, func() error {
		if cs := jobContainers(t, jobID); len(cs) == 1 && cs[0].State == "running" {
			return nil
		}
		return errNotYet
	})
	for _, d := range ds {
		if _, err := d.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	res := <-done
	wantStatus(t, res, job.StatusCompleted)
	if res.Output != "survived\n" {
		t.Fatalf("output %q", res.Output)
	}
}
