package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

var retentionCases = []struct {
	name string
	fn   func(t *testing.T, h harness)
}{
	{"ListSummaries", testListSummaries},
	{"ExpireJobs", testExpireJobs},
	{"ExpireJobsBounds", testExpireJobsBounds},
	{"ExpireForgetsTombstones", testExpireForgetsTombstones},
	{"JobBytes", testJobBytes},
}

// bigJob returns a completed job whose output, stderr, returned value and
// files take about n bytes each, and whose error and reason are n bytes.
func bigJob(id string, offset time.Duration, n int) *job.Job {
	j := newJob(id, offset)
	start(j, "w1", time.Second)
	finish(j, job.StatusFailed, 2*time.Second)
	j.Reason = strings.Repeat("r", n)
	j.Result.Output = strings.Repeat("o", n)
	j.Result.Stderr = strings.Repeat("e", n)
	j.Result.Result = json.RawMessage(`"` + strings.Repeat("v", n) + `"`)
	j.Result.Error = strings.Repeat("é", n/2)
	j.Result.Files = map[string][]byte{"a": make([]byte, n), "b": {1}}
	return j
}

// testListSummaries checks that a listed job carries the sizes of its
// large fields and no more than SummaryTextBytes of its reason and error.
func testListSummaries(t *testing.T, h harness) {
	s := h.store(t)
	const n = 256 << 10
	big := bigJob("big", 0, n)
	mustCreate(t, s, newJob("pending", time.Second))
	mustCreate(t, s, big)
	page, _, err := s.ListJobs(ctxFor(t), store.JobFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 {
		t.Fatalf("listed %d jobs, want 2", len(page))
	}
	if page[0].ID != "pending" || page[0].Result != nil || page[0].TimeoutSeconds != 5 {
		t.Errorf("pending job listed as %+v", page[0])
	}
	got := page[1]
	equalSummary(t, got, big)
	r := got.Result
	if r == nil {
		t.Fatal("listed without its result summary")
	}
	if r.OutputBytes != n || r.StderrBytes != n || r.ResultBytes != n+2 || r.Files != 2 || r.FilesBytes != n+1 {
		t.Errorf("sizes = %+v, want output %d, stderr %d, result %d, 2 files of %d bytes", r, n, n, n+2, n+1)
	}
	if len(r.Error) > job.SummaryTextBytes || len(got.Reason) > job.SummaryTextBytes {
		t.Errorf("listed error of %d bytes and reason of %d, want at most %d", len(r.Error), len(got.Reason), job.SummaryTextBytes)
	}
	// The job itself keeps everything.
	equalJob(t, mustGet(t, s, "big"), big)
}

// ended returns a job of ns that finished at base+finished.
func ended(id, ns string, status job.Status, finished time.Duration) *job.Job {
	j := newJob(id, 0)
	j.Namespace = ns
	start(j, "w1", time.Second)
	finish(j, status, finished)
	return j
}

func testExpireJobs(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	old := []*job.Job{
		ended("old-completed", "team-a", job.StatusCompleted, time.Minute),
		ended("old-failed", "team-a", job.StatusFailed, 2*time.Minute),
		ended("old-canceled", "team-b", job.StatusCanceled, 3*time.Minute),
	}
	recent := ended("recent", "team-a", job.StatusCompleted, time.Hour)
	running := newJob("running", 0)
	start(running, "w1", time.Second)
	pending := newJob("pending", 0)
	mustCreate(t, s, append(old, recent, running, pending)...)
	before, err := s.JobBytes(ctx, "team-a")
	if err != nil {
		t.Fatal(err)
	}

	now := base.Add(2 * time.Hour)
	got, err := s.ExpireJobs(ctx, store.Expiry{FinishedBefore: base.Add(30 * time.Minute), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	want := map[job.Status]int{job.StatusCompleted: 1, job.StatusFailed: 1, job.StatusCanceled: 1}
	if fmt.Sprint(got.Jobs) != fmt.Sprint(want) || got.More || got.Bytes <= 0 {
		t.Errorf("ExpireJobs = %+v, want %v removed, no more", got, want)
	}
	if gotIDs := slices.Sorted(slices.Values(got.IDs)); !slices.Equal(gotIDs, []string{"old-canceled", "old-completed", "old-failed"}) {
		t.Errorf("ExpireJobs removed ids %v, want the three old jobs'", got.IDs)
	}
	for _, j := range old {
		_, err := s.GetJob(ctx, j.ID)
		var exp *job.ExpiredError
		if !errors.As(err, &exp) || !errors.Is(err, job.ErrNotFound) || job.ErrorCode(err) != job.CodeNotFound {
			t.Fatalf("GetJob(%s) after expiry: %v, want an expired not_found error", j.ID, err)
		}
		if exp.ID != j.ID || exp.Namespace != j.Namespace || !sameTime(exp.ExpiredAt, now) {
			t.Errorf("GetJob(%s): expired %+v, want namespace %s at %v", j.ID, exp, j.Namespace, now)
		}
	}
	for _, j := range []*job.Job{recent, running, pending} {
		equalJob(t, mustGet(t, s, j.ID), j)
	}
	ids, _ := listAll(t, s, store.JobFilter{})
	wantIDs(t, "ListJobs after expiry", ids, newestFirst([]*job.Job{recent, running, pending}))
	counts, err := s.CountJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[job.StatusCompleted] != 1 || counts[job.StatusFailed] != 0 || counts[job.StatusCanceled] != 0 {
		t.Errorf("CountJobs after expiry = %v", counts)
	}
	after, err := s.JobBytes(ctx, "team-a")
	if err != nil {
		t.Fatal(err)
	}
	if after >= before || after <= 0 {
		t.Errorf("JobBytes(team-a) = %d after expiry, was %d: want less, above 0", after, before)
	}
	// Nothing else is due.
	again, err := s.ExpireJobs(ctx, store.Expiry{FinishedBefore: base.Add(30 * time.Minute), Now: now})
	if err != nil || again.Total() != 0 || again.More {
		t.Errorf("second ExpireJobs = %+v, %v; want nothing", again, err)
	}
	// Tombstones survive a restart.
	s2 := h.reopen(t, s)
	if _, err := s2.GetJob(ctx, "old-failed"); !isExpired(err) {
		t.Errorf("GetJob after restart: %v, want expired", err)
	}
}

func testExpireJobsBounds(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	var jobs []*job.Job
	for i := range 5 {
		jobs = append(jobs, ended(fmt.Sprintf("j%d", i), "team-a", job.StatusCompleted, time.Duration(i+1)*time.Minute))
	}
	mustCreate(t, s, jobs...)
	e := store.Expiry{FinishedBefore: base.Add(time.Hour), Now: base.Add(2 * time.Hour), MaxJobs: 2}
	got, err := s.ExpireJobs(ctx, e)
	if err != nil || got.Total() != 2 || !got.More {
		t.Fatalf("ExpireJobs(max 2 jobs) = %+v, %v; want 2 and more", got, err)
	}
	// Oldest first.
	if _, err := s.GetJob(ctx, "j0"); !isExpired(err) {
		t.Errorf("j0 not expired first: %v", err)
	}
	mustGet(t, s, "j2")
	// A byte bound of 1 still removes one job per call.
	e.MaxJobs, e.MaxBytes = 0, 1
	got, err = s.ExpireJobs(ctx, e)
	if err != nil || got.Total() != 1 || !got.More {
		t.Fatalf("ExpireJobs(max 1 byte) = %+v, %v; want 1 and more", got, err)
	}
	for got.More {
		if got, err = s.ExpireJobs(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	ids, _ := listAll(t, s, store.JobFilter{})
	if len(ids) != 0 {
		t.Errorf("jobs left after draining: %v", ids)
	}
	// FinishedBefore and Now are required.
	if _, err := s.ExpireJobs(ctx, store.Expiry{}); job.ErrorCode(err) != job.CodeInvalid {
		t.Errorf("ExpireJobs with zero times: %v, want invalid", err)
	}
}

func testExpireForgetsTombstones(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	mustCreate(t, s, ended("a", "team-a", job.StatusCompleted, time.Minute), ended("b", "team-a", job.StatusCompleted, time.Hour))
	if _, err := s.ExpireJobs(ctx, store.Expiry{FinishedBefore: base.Add(30 * time.Minute), Now: base.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ExpireJobs(ctx, store.Expiry{FinishedBefore: base.Add(2 * time.Hour), Now: base.Add(3 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ExpireJobs(ctx, store.Expiry{FinishedBefore: base, Now: base.Add(4 * time.Hour), ForgetBefore: base.Add(2 * time.Hour)})
	if err != nil || got.Tombstones != 1 || got.Total() != 0 {
		t.Fatalf("ExpireJobs(forget) = %+v, %v; want one tombstone removed", got, err)
	}
	_, err = s.GetJob(ctx, "a")
	if isExpired(err) || job.ErrorCode(err) != job.CodeNotFound {
		t.Errorf("GetJob of a forgotten job: %v, want a plain not_found", err)
	}
	if _, err := s.GetJob(ctx, "b"); !isExpired(err) {
		t.Errorf("GetJob of a recently expired job: %v, want expired", err)
	}
}

func testJobBytes(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	bytesOf := func(ns string) int64 {
		t.Helper()
		n, err := s.JobBytes(ctx, ns)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := bytesOf("nobody"); n != 0 {
		t.Errorf("JobBytes of an unknown namespace = %d", n)
	}
	a := newJob("a", 0)
	a.Namespace = "team-a"
	a.Spec.Input = json.RawMessage(`"` + strings.Repeat("i", 10000) + `"`)
	mustCreate(t, s, a)
	created := bytesOf("team-a")
	if created < 10000 {
		t.Errorf("JobBytes after a 10 kB input = %d", created)
	}
	start(a, "w1", time.Second)
	finish(a, job.StatusCompleted, 2*time.Second)
	a.Result.Output = strings.Repeat("o", 50000)
	if err := s.UpdateJob(ctx, a); err != nil {
		t.Fatal(err)
	}
	done := bytesOf("team-a")
	if done < created+50000 {
		t.Errorf("JobBytes after a 50 kB output = %d, was %d", done, created)
	}
	// Writing the same result again changes nothing.
	if err := s.UpdateJob(ctx, a); err != nil {
		t.Fatal(err)
	}
	if n := bytesOf("team-a"); n != done {
		t.Errorf("JobBytes after rewriting the result = %d, want %d", n, done)
	}
	if n := bytesOf(job.DefaultNamespace); n != 0 {
		t.Errorf("another namespace's JobBytes = %d", n)
	}
	s2 := h.reopen(t, s)
	if n, err := s2.JobBytes(ctx, "team-a"); err != nil || n != done {
		t.Errorf("JobBytes after restart = %d, %v; want %d", n, err, done)
	}
	if _, err := s2.ExpireJobs(ctx, store.Expiry{FinishedBefore: base.Add(time.Hour), Now: base.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if n, err := s2.JobBytes(ctx, "team-a"); err != nil || n != 0 {
		t.Errorf("JobBytes after expiry = %d, %v; want 0", n, err)
	}
}

func isExpired(err error) bool {
	var e *job.ExpiredError
	return errors.As(err, &e)
}
