package sqlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// checkRowsOwnTheirWrites fails when a row holds a write meant for another
// job (the reason of every write starts with its job's id), and when a
// job_results row belongs to no job's stored result (the counters are
// checkCounts').
func checkRowsOwnTheirWrites(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	rows, err := s.readDB.QueryContext(ctx, `SELECT id, reason FROM jobs`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, reason string
		if err := rows.Scan(&id, &reason); err != nil {
			t.Fatal(err)
		}
		if reason != "" && !strings.HasPrefix(reason, id+":") {
			t.Errorf("row of %s holds %q, another job's write", id, reason)
		}
	}
	rows.Close()
	var n int
	if err := s.readDB.QueryRowContext(ctx, `SELECT count(*) FROM job_results r LEFT JOIN jobs j ON j.seq = r.job_seq WHERE j.seq IS NULL OR j.result IS NOT NULL OR j.result_bytes = 0`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d stray job_results rows (%v)", n, err)
	}
}

// TestAttackKnownJobsRandom drives two stores on one file with concurrent
// creates, updates (with and without log lines, some failing their batch),
// expiry and re-creation of expired ids, and checks after each round that
// the counters and every row are exact.
func TestAttackKnownJobsRandom(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := openTest(t, dir)
	defer a.Close()
	b := openTest(t, dir)
	defer b.Close()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	const nJobs = 40
	nss := []string{"alice", "bob", "carol"}
	statuses := []job.Status{job.StatusPending, job.StatusRunning, job.StatusCompleted, job.StatusFailed, job.StatusCanceled}
	var mu sync.Mutex
	logSeq := map[string]uint64{}
	gen := 0
	oks, errsSeen := map[int]int{}, map[int]int{}
	expired := 0
	clock := int64(1000)
	for round := 0; round < 400; round++ {
		var wg sync.WaitGroup
		picked := rng.Perm(nJobs)[:8]
		for _, p := range picked {
			id := fmt.Sprintf("j%d", p)
			s := a
			if rng.IntN(5) == 0 {
				s = b
			}
			op := rng.IntN(10)
			st := statuses[rng.IntN(len(statuses))]
			size := []int{0, 10, 600, 5000}[rng.IntN(4)]
			gen++
			g := gen
			clock++
			now := clock
			dupLog := rng.IntN(6) == 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				j := &job.Job{ID: id, Namespace: nss[p%3], Type: job.TypeLua, Status: st, Attempt: 1, MaxAttempts: 3,
					CreatedAt: time.Unix(0, 1), Reason: fmt.Sprintf("%s:%d", id, g)}
				j.Spec.Code = strings.Repeat("x", p)
				if st.Terminal() {
					j.FinishedAt = time.Unix(0, now)
				}
				if size > 0 {
					j.Result = &job.Result{Status: st, Output: strings.Repeat("o", size), Attempt: 1}
				}
				var err error
				switch {
				case op < 3:
					err = s.CreateJob(ctx, j)
				case op < 6:
					err = s.UpdateJob(ctx, j)
				default:
					mu.Lock()
					seq := logSeq[id] + 1
					if dupLog && seq > 1 {
						seq-- // a duplicate: fails the batch, retried alone
					} else {
						logSeq[id] = seq
					}
					mu.Unlock()
					err = s.UpdateJobWithLog(ctx, j, job.LogEvent{Seq: seq, Stream: job.LogStatus, Time: time.Unix(0, now), Status: st})
				}
				mu.Lock()
				if err != nil {
					errsSeen[op/3]++
				} else {
					oks[op/3]++
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		if rng.IntN(8) == 0 {
			s := a
			if rng.IntN(2) == 0 {
				s = b
			}
			out, err := s.ExpireJobs(ctx, store.Expiry{FinishedBefore: time.Unix(0, clock-int64(rng.IntN(20))), Now: time.Unix(0, clock)})
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			expired += len(out.IDs)
			for _, id := range out.IDs {
				delete(logSeq, id)
			}
			mu.Unlock()
		}
		checkCounts(t, a)
		checkRowsOwnTheirWrites(t, a)
		if t.Failed() {
			t.Fatalf("round %d", round)
		}
	}
	t.Logf("ok %v, errors %v, expired %d, known %d", oks, errsSeen, expired, len(a.known.jobs))
}
