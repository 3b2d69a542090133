package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

func testRoundTrip(t *testing.T, h harness) {
	s := h.store(t)
	full := fullJob("full")
	mustCreate(t, s, full)
	equalJob(t, mustGet(t, s, "full"), full)

	// A minimal job: no result, no optional times, no Wasm.
	small := newJob("small", time.Second)
	mustCreate(t, s, small)
	got := mustGet(t, s, "small")
	equalJob(t, got, small)
	if got.Result != nil {
		t.Errorf("small job has result %+v, want none", got.Result)
	}

	// What the store returns is the caller's: changing it changes nothing stored.
	got.Spec.Code = "changed"
	got.Spec.Wasm = append(got.Spec.Wasm, 1)
	equalJob(t, mustGet(t, s, "small"), small)
	// Nor does changing the job the caller stored.
	full.Spec.Wasm[0] = 0x7f
	full.Result.Files["a.txt"][0] = 'X'
	equalJob(t, mustGet(t, s, "full"), fullJob("full"))
}

func testCreateInvalid(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	noID := newJob("", 0)
	wantCode(t, "CreateJob without id", s.CreateJob(ctx, noID), job.CodeInvalid)
	noTime := newJob("no-time", 0)
	noTime.CreatedAt = time.Time{}
	wantCode(t, "CreateJob without created_at", s.CreateJob(ctx, noTime), job.CodeInvalid)
	badStatus := newJob("bad-status", 0)
	badStatus.Status = "sleeping"
	wantCode(t, "CreateJob with unknown status", s.CreateJob(ctx, badStatus), job.CodeInvalid)
	for _, id := range []string{"no-time", "bad-status"} {
		_, err := s.GetJob(ctx, id)
		wantCode(t, "GetJob of a refused job", err, job.CodeNotFound)
	}
}

func testCreateDuplicate(t *testing.T, h harness) {
	s := h.store(t)
	first := newJob("dup", 0)
	mustCreate(t, s, first)
	second := newJob("dup", time.Hour)
	second.Spec.Code = "return 2"
	wantCode(t, "second CreateJob with the same id", s.CreateJob(ctxFor(t), second), job.CodeConflict)
	equalJob(t, mustGet(t, s, "dup"), first)
	counts, err := s.CountJobs(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if counts[job.StatusPending] != 1 {
		t.Errorf("pending count = %d after a refused duplicate, want 1", counts[job.StatusPending])
	}
}

func testNotFound(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	_, err := s.GetJob(ctx, "nope")
	wantCode(t, "GetJob(unknown)", err, job.CodeNotFound)
	err = s.UpdateJob(ctx, newJob("nope", 0))
	wantCode(t, "UpdateJob(unknown)", err, job.CodeNotFound)
	if !errors.Is(err, job.ErrNotFound) {
		t.Errorf("UpdateJob(unknown) = %v, want job.ErrNotFound in its chain", err)
	}
	if _, err := s.GetJob(ctx, "nope"); job.ErrorCode(err) != job.CodeNotFound {
		t.Errorf("UpdateJob of an unknown id created it: GetJob = %v", err)
	}
}

func testUpdate(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	j := newJob("u", 0)
	mustCreate(t, s, j)

	start(j, "w1", 10*time.Millisecond)
	if err := s.UpdateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	equalJob(t, mustGet(t, s, "u"), j)

	// The worker is lost: back to pending, next attempt, no lease.
	j.Status, j.Attempt, j.WorkerID, j.LeaseID = job.StatusPending, 2, "", ""
	j.StartedAt = time.Time{}
	j.Reason = "worker w1 disconnected"
	if err := s.UpdateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	equalJob(t, mustGet(t, s, "u"), j)

	start(j, "w2", 20*time.Millisecond)
	finish(j, job.StatusCompleted, 30*time.Millisecond)
	if err := s.UpdateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	equalJob(t, mustGet(t, s, "u"), j)

	// A result is replaced whole, and can be removed.
	j.Result = &job.Result{Status: job.StatusFailed, Error: "boom", ExitCode: 1}
	j.Status = job.StatusFailed
	if err := s.UpdateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	equalJob(t, mustGet(t, s, "u"), j)
	j.Result = nil
	if err := s.UpdateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	equalJob(t, mustGet(t, s, "u"), j)
}

func testListNewestFirst(t *testing.T, h harness) {
	s := h.store(t)
	var jobs []*job.Job
	// Created out of order, with three jobs sharing one creation time, so
	// that the id decides among them.
	for i, off := range []int{5, 1, 9, 3, 3, 3, 7, 0, 2} {
		j := newJob(fmt.Sprintf("j%02d", i), time.Duration(off)*time.Second)
		jobs = append(jobs, j)
	}
	mustCreate(t, s, jobs...)
	page, next, err := s.ListJobs(ctxFor(t), store.JobFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if next != "" {
		t.Errorf("one short page has next cursor %q", next)
	}
	got := make([]string, len(page))
	for i, j := range page {
		got[i] = j.ID
	}
	wantIDs(t, "ListJobs order", got, newestFirst(jobs))
}

func testListPaging(t *testing.T, h harness) {
	s := h.store(t)
	var jobs []*job.Job
	for i := range 40 {
		off := time.Duration(i) * time.Second
		if i%8 == 0 {
			off = 0 // a run of ties at the oldest time
		}
		jobs = append(jobs, newJob(fmt.Sprintf("p%03d", (i*17)%40), off))
	}
	mustCreateMany(t, s, jobs)
	for _, limit := range []int{1, 7, 8, 13, 39, 40, 41} {
		ids, pages := listAll(t, s, store.JobFilter{Limit: limit})
		wantIDs(t, fmt.Sprintf("all pages of %d", limit), ids, newestFirst(jobs))
		if want := (len(jobs) + limit - 1) / limit; pages != want {
			t.Errorf("limit %d: %d pages, want %d", limit, pages, want)
		}
	}
}

func testListFilters(t *testing.T, h harness) {
	s := h.store(t)
	namespaces := []string{"default", "team-a", "team-b"}
	statuses := []job.Status{job.StatusPending, job.StatusRunning, job.StatusCompleted, job.StatusFailed}
	var jobs []*job.Job
	for i := range 72 {
		j := newJob(fmt.Sprintf("f%03d", i), time.Duration(i%30)*time.Second)
		j.Namespace = namespaces[i%len(namespaces)]
		j.Status = statuses[(i/3)%len(statuses)]
		jobs = append(jobs, j)
	}
	mustCreateMany(t, s, jobs)

	for _, ns := range append([]string{""}, namespaces...) {
		for _, st := range append([]job.Status{""}, job.Statuses...) {
			var want []*job.Job
			for _, j := range jobs {
				if (ns == "" || j.Namespace == ns) && (st == "" || j.Status == st) {
					want = append(want, j)
				}
			}
			f := store.JobFilter{Namespace: ns, Status: st, Limit: 4}
			ids, _ := listAll(t, s, f)
			wantIDs(t, fmt.Sprintf("ListJobs(namespace=%q, status=%q)", ns, st), ids, newestFirst(want))
		}
	}
	ids, _ := listAll(t, s, store.JobFilter{Namespace: "nobody"})
	wantIDs(t, "unknown namespace", ids, nil)
}

func testListStableUnderInserts(t *testing.T, h harness) {
	s := h.store(t)
	var jobs []*job.Job
	for i := range 20 {
		jobs = append(jobs, newJob(fmt.Sprintf("s%02d", i), time.Duration(i)*time.Second))
	}
	mustCreate(t, s, jobs...)
	f := store.JobFilter{Limit: 6}
	var got []string
	for page := 0; ; page++ {
		list, next, err := s.ListJobs(ctxFor(t), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range list {
			got = append(got, j.ID)
		}
		// Between pages, newer jobs arrive and an older one changes
		// status: neither shifts the pages that follow.
		mustCreate(t, s, newJob(fmt.Sprintf("new%d", page), time.Hour+time.Duration(page)))
		old := jobs[page]
		start(old, "w", time.Millisecond)
		if err := s.UpdateJob(ctxFor(t), old); err != nil {
			t.Fatal(err)
		}
		if next == "" {
			break
		}
		f.Cursor = next
	}
	wantIDs(t, "pages across inserts", got, newestFirst(jobs))
}

func testListLimits(t *testing.T, h harness) {
	s := h.store(t)
	n := store.MaxListLimit + 10
	jobs := make([]*job.Job, n)
	for i := range jobs {
		jobs[i] = newJob(fmt.Sprintf("l%04d", i), time.Duration(i)*time.Millisecond)
	}
	mustCreateMany(t, s, jobs)
	for _, tc := range []struct{ limit, want int }{
		{0, store.DefaultListLimit},
		{-5, store.DefaultListLimit},
		{3, 3},
		{store.MaxListLimit, store.MaxListLimit},
		{store.MaxListLimit + 100, store.MaxListLimit},
	} {
		page, next, err := s.ListJobs(ctxFor(t), store.JobFilter{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != tc.want || next == "" {
			t.Errorf("Limit %d: %d jobs (next %q), want %d and a cursor", tc.limit, len(page), next, tc.want)
		}
	}
	ids, pages := listAll(t, s, store.JobFilter{Limit: store.MaxListLimit})
	if len(ids) != n || pages != 2 {
		t.Errorf("listing %d jobs by %d: %d jobs in %d pages", n, store.MaxListLimit, len(ids), pages)
	}
}

func testListBadInput(t *testing.T, h harness) {
	s := h.store(t)
	mustCreate(t, s, newJob("a", 0))
	for _, c := range []string{"garbage", "!!!", "bm90LWEtY3Vyc29y"} {
		_, _, err := s.ListJobs(ctxFor(t), store.JobFilter{Cursor: c})
		wantCode(t, fmt.Sprintf("ListJobs(cursor=%q)", c), err, job.CodeInvalid)
	}
	_, _, err := s.ListJobs(ctxFor(t), store.JobFilter{Status: "sleeping"})
	wantCode(t, "ListJobs(status=sleeping)", err, job.CodeInvalid)
}

func testListOmitsLargeFields(t *testing.T, h harness) {
	s := h.store(t)
	full := fullJob("full")
	mustCreate(t, s, full)
	page, _, err := s.ListJobs(ctxFor(t), store.JobFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 1 {
		t.Fatalf("listed %d jobs, want 1", len(page))
	}
	equalSummary(t, page[0], full)
}

func testActiveJobs(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	var jobs, want []*job.Job
	for i, st := range []job.Status{
		job.StatusRunning, job.StatusCompleted, job.StatusPending, job.StatusFailed,
		job.StatusPending, job.StatusTimeout, job.StatusCanceled, job.StatusRunning,
	} {
		// Newest first in creation order, so that the store must sort.
		j := newJob(fmt.Sprintf("a%d", i), time.Duration(10-i)*time.Second)
		j.Spec.Wasm = []byte{0, 'a', 's', 'm', byte(i)}
		jobs = append(jobs, j)
		if st == job.StatusRunning {
			start(j, "w", time.Millisecond)
		}
		if st.Terminal() {
			finish(j, st, time.Second)
		}
		j.Status = st
		if !st.Terminal() {
			want = append([]*job.Job{j}, want...)
		}
	}
	mustCreate(t, s, jobs...)
	got, err := s.ActiveJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("ActiveJobs returned %d jobs, want %d", len(got), len(want))
	}
	for i := range want {
		equalJob(t, got[i], want[i])
	}

	// A job that ends leaves the active set.
	finish(want[0], job.StatusCompleted, 2*time.Second)
	if err := s.UpdateJob(ctx, want[0]); err != nil {
		t.Fatal(err)
	}
	got, err = s.ActiveJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want)-1 || got[0].ID != want[1].ID {
		t.Errorf("after completing %s, ActiveJobs = %d jobs starting %s", want[0].ID, len(got), got[0].ID)
	}
}

func testCountJobs(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	counts, err := s.CountJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for st, n := range counts {
		if n != 0 {
			t.Errorf("empty store counts %d %s jobs", n, st)
		}
	}
	want := map[job.Status]int{}
	var jobs []*job.Job
	for i := range 30 {
		j := newJob(fmt.Sprintf("c%02d", i), time.Duration(i))
		jobs = append(jobs, j)
		want[job.StatusPending]++
	}
	mustCreate(t, s, jobs...)
	for i, j := range jobs[:20] {
		start(j, "w", time.Millisecond)
		mustUpdate(t, s, j, want, job.StatusPending)
		if i < 12 {
			st := job.Statuses[2+i%4] // completed, failed, timeout, canceled
			finish(j, st, time.Second)
			mustUpdate(t, s, j, want, job.StatusRunning)
		}
	}
	// An update that keeps the status changes no count.
	j := jobs[25]
	j.Reason = "waiting for a python worker"
	mustUpdate(t, s, j, want, job.StatusPending)

	counts, err = s.CountJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range job.Statuses {
		if counts[st] != want[st] {
			t.Errorf("CountJobs()[%s] = %d, want %d (all: %v)", st, counts[st], want[st], counts)
		}
	}
}

// mustUpdate stores j, which was in status from, and adjusts counts.
func mustUpdate(t *testing.T, s store.Store, j *job.Job, counts map[job.Status]int, from job.Status) {
	t.Helper()
	if err := s.UpdateJob(ctxFor(t), j); err != nil {
		t.Fatalf("UpdateJob(%s): %v", j.ID, err)
	}
	counts[from]--
	counts[j.Status]++
}

func testPersistence(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	full := fullJob("full")
	jobs := []*job.Job{full}
	for i := range 10 {
		jobs = append(jobs, newJob(fmt.Sprintf("r%02d", i), time.Duration(i)*time.Second))
	}
	mustCreate(t, s, jobs...)
	start(jobs[1], "w", time.Millisecond)
	start(jobs[2], "w", time.Millisecond)
	finish(jobs[2], job.StatusCompleted, time.Second)
	for _, j := range jobs[1:3] {
		if err := s.UpdateJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = h.store(t)
	for _, j := range jobs {
		equalJob(t, mustGet(t, s, j.ID), j)
	}
	active, err := s.ActiveJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 9 {
		t.Errorf("after reopening, %d active jobs, want 9", len(active))
	}
	counts, err := s.CountJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[job.StatusPending] != 8 || counts[job.StatusRunning] != 1 || counts[job.StatusCompleted] != 2 {
		t.Errorf("after reopening, counts = %v", counts)
	}
	ids, _ := listAll(t, s, store.JobFilter{Limit: 4})
	wantIDs(t, "list after reopening", ids, newestFirst(jobs))
	// The reopened store takes writes.
	start(jobs[3], "w", time.Millisecond)
	if err := s.UpdateJob(ctx, jobs[3]); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, newJob("after-reopen", time.Hour))
}

func testConcurrentWriters(t *testing.T, h harness) {
	s := h.store(t)
	const n = 64
	jobs := make([]*job.Job, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		j := newJob(fmt.Sprintf("w%02d", i), time.Duration(i)*time.Microsecond)
		j.Namespace = []string{"default", "team-a"}[i%2]
		jobs[i] = j
		wg.Go(func() {
			ctx := context.Background()
			if err := s.CreateJob(ctx, j); err != nil {
				errs <- err
				return
			}
			start(j, fmt.Sprintf("worker-%d", i%4), time.Millisecond)
			if err := s.UpdateJob(ctx, j); err != nil {
				errs <- err
				return
			}
			finish(j, job.StatusCompleted, 2*time.Millisecond)
			if err := s.UpdateJob(ctx, j); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	for _, j := range jobs {
		equalJob(t, mustGet(t, s, j.ID), j)
	}
	counts, err := s.CountJobs(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if counts[job.StatusCompleted] != n || counts[job.StatusPending] != 0 || counts[job.StatusRunning] != 0 {
		t.Errorf("counts = %v, want %d completed", counts, n)
	}
	ids, _ := listAll(t, s, store.JobFilter{Status: job.StatusCompleted, Namespace: "team-a", Limit: 10})
	if len(ids) != n/2 {
		t.Errorf("listed %d completed team-a jobs, want %d", len(ids), n/2)
	}
}

func testCanceledContext(t *testing.T, h harness) {
	s := h.store(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.CreateJob(ctx, newJob("canceled", 0)); err == nil {
		t.Fatal("CreateJob with a canceled context succeeded")
	}
	_, err := s.GetJob(ctxFor(t), "canceled")
	wantCode(t, "GetJob after a canceled CreateJob", err, job.CodeNotFound)

	j := newJob("kept", 0)
	mustCreate(t, s, j)
	changed := *j
	start(&changed, "w", time.Millisecond)
	if err := s.UpdateJob(ctx, &changed); err == nil {
		t.Fatal("UpdateJob with a canceled context succeeded")
	}
	equalJob(t, mustGet(t, s, "kept"), j)
}

func testClosed(t *testing.T, h harness) {
	s := h.store(t)
	ctx := ctxFor(t)
	mustCreate(t, s, newJob("a", 0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateJob(ctx, newJob("b", 0)); err == nil {
		t.Error("CreateJob after Close succeeded")
	}
	if err := s.UpdateJob(ctx, newJob("a", 0)); err == nil {
		t.Error("UpdateJob after Close succeeded")
	}
	if _, err := s.GetJob(ctx, "a"); err == nil {
		t.Error("GetJob after Close succeeded")
	}
	if _, _, err := s.ListJobs(ctx, store.JobFilter{}); err == nil {
		t.Error("ListJobs after Close succeeded")
	}
	if _, err := s.ActiveJobs(ctx); err == nil {
		t.Error("ActiveJobs after Close succeeded")
	}
	if _, err := s.CountJobs(ctx); err == nil {
		t.Error("CountJobs after Close succeeded")
	}
}
