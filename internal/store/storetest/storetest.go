// Package storetest is the conformance suite that every store.Store passes.
// An implementation's tests call Run with a function that opens a store.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// Run runs the suite, each check in a subtest of t.
//
// open must return an empty store for each distinct t it is given, and, when
// called again with the same t after the suite has closed the store it got
// for that t, a store over the same data: that is how the suite checks that
// jobs survive a restart. The suite closes every store it opens; open
// registers with t.Cleanup whatever else it must remove (a directory, a
// database).
//
// Times must come back in UTC and equal to what was stored, to the
// nanosecond or truncated or rounded to the microsecond; an implementation
// documents which. Input and Result values must come back as equal JSON
// (whitespace and key order may change).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	h := harness{open: open}
	tests := []struct {
		name string
		fn   func(t *testing.T, h harness)
	}{
		{"RoundTrip", testRoundTrip},
		{"CreateInvalid", testCreateInvalid},
		{"CreateDuplicate", testCreateDuplicate},
		{"NotFound", testNotFound},
		{"Update", testUpdate},
		{"ListNewestFirst", testListNewestFirst},
		{"ListPaging", testListPaging},
		{"ListFilters", testListFilters},
		{"ListStableUnderInserts", testListStableUnderInserts},
		{"ListLimits", testListLimits},
		{"ListBadInput", testListBadInput},
		{"ListOmitsLargeFields", testListOmitsLargeFields},
		{"ActiveJobs", testActiveJobs},
		{"CountJobs", testCountJobs},
		{"Persistence", testPersistence},
		{"ConcurrentWriters", testConcurrentWriters},
		{"CanceledContext", testCanceledContext},
		{"Closed", testClosed},
	}
	tests = append(tests, deploymentCases...)
	tests = append(tests, tenancyCases...)
	tests = append(tests, retentionCases...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

type harness struct {
	open func(t *testing.T) store.Store
}

// store opens a store for t that is closed when t ends, unless the test
// closed it first.
func (h harness) store(t *testing.T) store.Store {
	t.Helper()
	s := &onceCloser{Store: h.open(t)}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// reopen closes s and opens the same t's store again, as after a restart.
func (h harness) reopen(t *testing.T, s store.Store) store.Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return h.store(t)
}

// onceCloser closes its store once, however often Close is called.
type onceCloser struct {
	store.Store
	once sync.Once
	err  error
}

func (o *onceCloser) Close() error {
	o.once.Do(func() { o.err = o.Store.Close() })
	return o.err
}

// base is the creation time of the suite's jobs: in a zone other than UTC,
// with nanoseconds, so that both are seen to round-trip.
var base = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("UTC+5", 5*3600))

// newJob returns a small pending Lua job created at base+offset.
func newJob(id string, offset time.Duration) *job.Job {
	return &job.Job{
		ID:          id,
		Namespace:   job.DefaultNamespace,
		Type:        job.TypeLua,
		Status:      job.StatusPending,
		Attempt:     1,
		MaxAttempts: 3,
		Spec: job.Spec{
			Code:           "return INPUT.n + 1",
			Input:          json.RawMessage(`{"n": 1}`),
			TimeoutSeconds: 5,
		},
		CreatedAt: base.Add(offset),
	}
}

// fullJob returns a job with every field set.
func fullJob(id string) *job.Job {
	return &job.Job{
		ID:          id,
		Namespace:   "team-a",
		Type:        job.TypeDocker,
		Status:      job.StatusCompleted,
		Attempt:     2,
		MaxAttempts: 5,
		Spec: job.Spec{
			Code:           "print('hi')",
			Wasm:           []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00, 0xff},
			Args:           []string{"--flag", "value with spaces", ""},
			Input:          json.RawMessage(`{"list": [1, 2.5, "three"], "nested": {"ok": true, "none": null}}`),
			TimeoutSeconds: 12.5,
			MemoryMB:       256,
			Docker: &job.DockerSpec{
				Image:     "busybox:1.36",
				Command:   []string{"sh", "-c", "echo hi > /output/a.txt"},
				Env:       map[string]string{"A": "1", "EMPTY": ""},
				Volumes:   map[string]string{"scratch": "/scratch"},
				Resources: job.Resources{MemoryMB: 128, CPUs: 0.5, Pids: 64},
			},
		},
		CreatedAt:  base,
		StartedAt:  base.Add(1500 * time.Millisecond).Add(7),
		FinishedAt: base.Add(3*time.Second + 999),
		WorkerID:   "worker-7",
		LeaseID:    "lease-42",
		Reason:     "second attempt after worker-3 was lost",
		Result: &job.Result{
			Status:          job.StatusCompleted,
			Output:          "hi\nünïcode ✓\n",
			Stderr:          "warning\n",
			Result:          json.RawMessage(`[{"a": 1}, "x", 3, null]`),
			Error:           "",
			ExitCode:        3,
			DurationMS:      1499,
			Truncated:       true,
			OOMKilled:       true,
			PeakMemoryBytes: 64 << 20,
			CPUTimeMS:       1200,
			Files: map[string][]byte{
				"a.txt":        []byte("hi\n"),
				"dir/bin.dat":  {0, 1, 2, 0xfe, 0xff},
				"empty.txt":    {},
				"ünïcode name": []byte("x"),
			},
			Attempt:  2,
			WorkerID: "worker-7",
		},
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustCreate(t *testing.T, s store.Store, jobs ...*job.Job) {
	t.Helper()
	for _, j := range jobs {
		if err := s.CreateJob(ctxFor(t), j); err != nil {
			t.Fatalf("CreateJob(%s): %v", j.ID, err)
		}
	}
}

// mustCreateMany creates jobs from 16 goroutines: faster, and concurrent.
func mustCreateMany(t *testing.T, s store.Store, jobs []*job.Job) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(jobs))
	work := make(chan *job.Job)
	for range 16 {
		wg.Go(func() {
			for j := range work {
				if err := s.CreateJob(context.Background(), j); err != nil {
					errs <- fmt.Errorf("CreateJob(%s): %w", j.ID, err)
				}
			}
		})
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func mustGet(t *testing.T, s store.Store, id string) *job.Job {
	t.Helper()
	j, err := s.GetJob(ctxFor(t), id)
	if err != nil {
		t.Fatalf("GetJob(%s): %v", id, err)
	}
	return j
}

// listAll pages through f until the cursor runs out and returns the ids in
// order. It fails on a page larger than the limit or on too many pages.
func listAll(t *testing.T, s store.Store, f store.JobFilter) (ids []string, pages int) {
	t.Helper()
	for {
		page, next, err := s.ListJobs(ctxFor(t), f)
		if err != nil {
			t.Fatalf("ListJobs(%+v): %v", f, err)
		}
		pages++
		if f.Limit > 0 && len(page) > f.Limit {
			t.Fatalf("ListJobs(%+v) returned %d jobs, over the limit", f, len(page))
		}
		for _, j := range page {
			ids = append(ids, j.ID)
		}
		if next == "" {
			return ids, pages
		}
		if len(page) == 0 {
			t.Fatalf("ListJobs(%+v) returned an empty page with a next cursor", f)
		}
		if pages > 10000 {
			t.Fatalf("ListJobs(%+v): no end after %d pages", f, pages)
		}
		f.Cursor = next
	}
}

// newestFirst returns the ids of jobs sorted as ListJobs must return them.
func newestFirst(jobs []*job.Job) []string {
	sorted := append([]*job.Job(nil), jobs...)
	sort.Slice(sorted, func(a, b int) bool {
		x, y := sorted[a], sorted[b]
		if !x.CreatedAt.Equal(y.CreatedAt) {
			return x.CreatedAt.After(y.CreatedAt)
		}
		return x.ID > y.ID
	})
	ids := make([]string, len(sorted))
	for i, j := range sorted {
		ids[i] = j.ID
	}
	return ids
}

func wantCode(t *testing.T, what string, err error, code job.Code) {
	t.Helper()
	if got := job.ErrorCode(err); got != code {
		t.Fatalf("%s: error %v has code %q, want %q", what, err, got, code)
	}
}

func wantIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %v\n want %v", what, got, want)
	}
}

// sameTime reports whether got is want as a store returns it: in UTC, and
// equal to the nanosecond or within a microsecond.
func sameTime(got, want time.Time) bool {
	if want.IsZero() || got.IsZero() {
		return want.IsZero() && got.IsZero()
	}
	if got.Location() != time.UTC {
		return false
	}
	d := got.Sub(want)
	return d > -time.Microsecond && d < time.Microsecond
}

func sameJSON(got, want json.RawMessage) bool {
	if len(got) == 0 || len(want) == 0 {
		return len(got) == len(want)
	}
	var g, w any
	if json.Unmarshal(got, &g) != nil || json.Unmarshal(want, &w) != nil {
		return bytes.Equal(got, want)
	}
	return reflect.DeepEqual(g, w)
}

// equalJob compares a stored job with the one that was written, field by
// field.
func equalJob(t *testing.T, got, want *job.Job) {
	t.Helper()
	if got == nil {
		t.Fatalf("job %s: got nil", want.ID)
	}
	g, w := *got, *want
	for _, tm := range []struct {
		name      string
		got, want time.Time
	}{{"created_at", g.CreatedAt, w.CreatedAt}, {"started_at", g.StartedAt, w.StartedAt}, {"finished_at", g.FinishedAt, w.FinishedAt}} {
		if !sameTime(tm.got, tm.want) {
			t.Errorf("job %s: %s = %v (%v), want %v in UTC", w.ID, tm.name, tm.got, tm.got.Location(), tm.want)
		}
	}
	g.CreatedAt, g.StartedAt, g.FinishedAt = time.Time{}, time.Time{}, time.Time{}
	w.CreatedAt, w.StartedAt, w.FinishedAt = time.Time{}, time.Time{}, time.Time{}

	if !sameJSON(g.Spec.Input, w.Spec.Input) {
		t.Errorf("job %s: input = %s, want %s", w.ID, g.Spec.Input, w.Spec.Input)
	}
	g.Spec.Input, w.Spec.Input = nil, nil
	if !bytes.Equal(g.Spec.Wasm, w.Spec.Wasm) {
		t.Errorf("job %s: wasm = %x, want %x", w.ID, g.Spec.Wasm, w.Spec.Wasm)
	}
	g.Spec.Wasm, w.Spec.Wasm = nil, nil

	if (g.Result == nil) != (w.Result == nil) {
		t.Fatalf("job %s: result = %+v, want %+v", w.ID, g.Result, w.Result)
	}
	if g.Result != nil {
		gr, wr := *g.Result, *w.Result
		if !sameJSON(gr.Result, wr.Result) {
			t.Errorf("job %s: result value = %s, want %s", w.ID, gr.Result, wr.Result)
		}
		gr.Result, wr.Result = nil, nil
		if !sameFiles(gr.Files, wr.Files) {
			t.Errorf("job %s: files = %q, want %q", w.ID, gr.Files, wr.Files)
		}
		gr.Files, wr.Files = nil, nil
		g.Result, w.Result = &gr, &wr
	}
	if !reflect.DeepEqual(g, w) {
		gj, _ := json.MarshalIndent(g, "", "  ")
		wj, _ := json.MarshalIndent(w, "", "  ")
		t.Errorf("job %s differs (lease %q, want %q):\n got  %s\n want %s", w.ID, g.LeaseID, w.LeaseID, gj, wj)
	}
}

// equalSummary compares a listed job with the summary of the one that
// was written.
func equalSummary(t *testing.T, got *job.Summary, written *job.Job) {
	t.Helper()
	if got == nil {
		t.Fatalf("job %s: got nil", written.ID)
	}
	g, w := *got, *written.Summary()
	for _, tm := range []struct {
		name      string
		got, want time.Time
	}{{"created_at", g.CreatedAt, w.CreatedAt}, {"started_at", g.StartedAt, w.StartedAt}, {"finished_at", g.FinishedAt, w.FinishedAt}} {
		if !sameTime(tm.got, tm.want) {
			t.Errorf("job %s: %s = %v (%v), want %v in UTC", w.ID, tm.name, tm.got, tm.got.Location(), tm.want)
		}
	}
	g.CreatedAt, g.StartedAt, g.FinishedAt = time.Time{}, time.Time{}, time.Time{}
	w.CreatedAt, w.StartedAt, w.FinishedAt = time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(g, w) {
		gj, _ := json.MarshalIndent(g, "", "  ")
		wj, _ := json.MarshalIndent(w, "", "  ")
		t.Errorf("summary of job %s differs:\n got  %s\n want %s", w.ID, gj, wj)
	}
}

func sameFiles(got, want map[string][]byte) bool {
	if len(got) != len(want) {
		return false
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok || !bytes.Equal(g, w) {
			return false
		}
	}
	return true
}

// start and finish move j through its life as the orchestrator would.
func start(j *job.Job, worker string, at time.Duration) {
	j.Status = job.StatusRunning
	j.WorkerID = worker
	j.LeaseID = "lease-" + j.ID + "-" + worker
	j.StartedAt = j.CreatedAt.Add(at)
	j.Reason = ""
}

func finish(j *job.Job, status job.Status, at time.Duration) {
	j.Status = status
	j.FinishedAt = j.CreatedAt.Add(at)
	j.Result = &job.Result{
		Status:     status,
		Output:     "output of " + j.ID + "\n",
		Result:     json.RawMessage(fmt.Sprintf(`{"id": %q}`, j.ID)),
		DurationMS: at.Milliseconds(),
		Files:      map[string][]byte{"out.txt": []byte(j.ID)},
		Attempt:    j.Attempt,
		WorkerID:   j.WorkerID,
	}
}
