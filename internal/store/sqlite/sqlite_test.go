package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
	"github.com/zerverless/zerverless/internal/store/storetest"
)

// openTest opens a store in a temporary directory that t removes.
func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(dir, "zerverless.db")
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	// Each test of the suite gets its own directory; opening again for
	// the same test reopens the same database.
	var mu sync.Mutex
	dirs := map[*testing.T]string{}
	storetest.Run(t, func(t *testing.T) store.Store {
		mu.Lock()
		dir, ok := dirs[t]
		if !ok {
			dir = t.TempDir()
			dirs[t] = dir
		}
		mu.Unlock()
		return openTest(t, dir)
	})
}

func TestTimesKeepNanoseconds(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	created := time.Date(2261, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", -7*3600))
	j := &job.Job{ID: "ns", Namespace: "default", Type: job.TypeLua, Status: job.StatusRunning,
		CreatedAt: created, StartedAt: created.Add(1), FinishedAt: time.Date(1700, 1, 1, 0, 0, 0, 1, time.UTC)}
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJob(ctx, "ns")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ got, want time.Time }{
		{got.CreatedAt, j.CreatedAt}, {got.StartedAt, j.StartedAt}, {got.FinishedAt, j.FinishedAt},
	} {
		if !tc.got.Equal(tc.want) || tc.got.Location() != time.UTC || tc.got.Nanosecond() != tc.want.Nanosecond() {
			t.Errorf("time %v, want %v in UTC", tc.got, tc.want)
		}
	}
	out := *j
	out.ID = "out-of-range"
	out.CreatedAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.CreateJob(ctx, &out); job.ErrorCode(err) != job.CodeInvalid {
		t.Errorf("CreateJob in the year 3000 = %v, want code invalid", err)
	}
}

// TestQueryPlans proves that every listing query is an index range: SQLite
// never scans the jobs table, and the index gives the order (no sort), so a
// page reads its limit of index entries and stops. (The unfiltered first
// page shows as "SCAN j USING INDEX jobs_created": a walk of that index from
// its newest end, stopped by the LIMIT.)
func TestQueryPlans(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	cursor := encodeCursor(time.Now().UnixNano(), "some-id")
	for _, f := range []store.JobFilter{
		{},
		{Cursor: cursor},
		{Status: job.StatusPending},
		{Status: job.StatusCompleted, Cursor: cursor},
		{Namespace: "team-a"},
		{Namespace: "team-a", Cursor: cursor},
		{Namespace: "team-a", Status: job.StatusRunning},
		{Namespace: "team-a", Status: job.StatusRunning, Cursor: cursor},
	} {
		query, args, _, err := listQuery(f)
		if err != nil {
			t.Fatal(err)
		}
		plan := queryPlan(t, s.readDB, query, args...)
		checkIndexed(t, fmt.Sprintf("ListJobs(%+v)", f), plan, true)
		if f.Cursor != "" && !strings.Contains(plan, "created_at<?") {
			t.Errorf("ListJobs(%+v): the cursor does not bound the index range:\n%s", f, plan)
		}
		wantIndex := map[[2]bool]string{
			{false, false}: "jobs_created",
			{true, false}:  "jobs_status_created",
			{false, true}:  "jobs_namespace_created",
			{true, true}:   "jobs_namespace_status_created",
		}[[2]bool{f.Status != "", f.Namespace != ""}]
		if !strings.Contains(plan+"\n", "INDEX "+wantIndex+" ") && !strings.Contains(plan+"\n", "INDEX "+wantIndex+"\n") {
			t.Errorf("ListJobs(%+v) does not use %s:\n%s", f, wantIndex, plan)
		}
	}
	checkIndexed(t, "ActiveJobs", queryPlan(t, s.readDB, activeJobsSQL), false)
	checkIndexed(t, "GetJob", queryPlan(t, s.readDB, getJobSQL, "id"), false)
}

func queryPlan(t *testing.T, db *sql.DB, query string, args ...any) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("explain %s: %v", query, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// checkIndexed fails unless each table in plan is reached through an index
// or its primary key; ordered also forbids a sort after the fact.
func checkIndexed(t *testing.T, what, plan string, ordered bool) {
	t.Helper()
	t.Logf("%s:\n%s", what, plan)
	for _, line := range strings.Split(plan, "\n") {
		if strings.HasPrefix(line, "SCAN ") && !strings.Contains(line, " USING ") {
			t.Errorf("%s scans a whole table: %q", what, line)
		}
		if !strings.Contains(line, "USING") && !strings.HasPrefix(line, "USE TEMP B-TREE") {
			t.Errorf("%s: unexpected plan step %q", what, line)
		}
		if ordered && strings.Contains(line, "TEMP B-TREE") {
			t.Errorf("%s sorts its rows instead of reading them in index order: %q", what, line)
		}
	}
}

func TestMigrations(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	var version int
	if err := s.writeDB.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version != len(migrations) {
		t.Errorf("user_version = %d, want %d", version, len(migrations))
	}
	ctx := context.Background()
	if err := s.CreateJob(ctx, &job.Job{ID: "a", Status: job.StatusPending, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	// Appending a migration applies just that one, once, keeping the data.
	next := append(append([]string(nil), migrations...),
		`CREATE TABLE extra (k TEXT PRIMARY KEY); INSERT INTO extra VALUES ('x');`)
	for range 2 {
		if err := migrate(ctx, s.writeDB, next); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := s.writeDB.QueryRow("SELECT count(*) FROM extra").Scan(&n); err != nil || n != 1 {
		t.Errorf("extra table has %d rows (%v), want 1", n, err)
	}
	if _, err := s.GetJob(ctx, "a"); err != nil {
		t.Errorf("job lost by a migration: %v", err)
	}

	// A failing migration changes nothing, not even the version.
	bad := append(append([]string(nil), next...), `CREATE TABLE more (k TEXT); SELECT no_such_function();`)
	if err := migrate(ctx, s.writeDB, bad); err == nil {
		t.Error("a failing migration succeeded")
	}
	if err := s.writeDB.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != len(next) {
		t.Errorf("user_version = %d (%v) after a failed migration, want %d", version, err, len(next))
	}
	if err := s.writeDB.QueryRow("SELECT count(*) FROM sqlite_schema WHERE name = 'more'").Scan(&n); err != nil || n != 0 {
		t.Errorf("a failed migration left its table behind")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// This program's list is now older than the database: refuse to open it.
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(dir, "zerverless.db")
	if s, err := Open(ctx, cfg); err == nil {
		s.Close()
		t.Error("opened a database with a newer schema")
	}
}

// TestBadWriteInBatch checks that a write that fails alone (a duplicate id)
// fails only its caller when it shares a transaction with others.
func TestBadWriteInBatch(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conflicts, ok int
	for i := range 200 {
		wg.Go(func() {
			id := fmt.Sprintf("j%03d", i%150) // 50 ids are written twice
			err := s.CreateJob(ctx, &job.Job{ID: id, Status: job.StatusPending, CreatedAt: time.Unix(int64(i), 0)})
			mu.Lock()
			defer mu.Unlock()
			switch job.ErrorCode(err) {
			case "":
				ok++
			case job.CodeConflict:
				conflicts++
			default:
				t.Errorf("CreateJob(%s): %v", id, err)
			}
		})
	}
	wg.Wait()
	if ok != 150 || conflicts != 50 {
		t.Errorf("%d created, %d conflicts; want 150 and 50", ok, conflicts)
	}
	counts, err := s.CountJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[job.StatusPending] != 150 {
		t.Errorf("%d pending jobs counted, want 150", counts[job.StatusPending])
	}
}

// TestCloseDrains closes the store while writers are busy: every write that
// returned nil is in the database afterwards, every other one failed with
// code unavailable.
func TestCloseDrains(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var written []string
	started := make(chan struct{})
	var once sync.Once
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				err := s.CreateJob(ctx, &job.Job{ID: id, Status: job.StatusPending, CreatedAt: time.Now()})
				if err != nil {
					if job.ErrorCode(err) != job.CodeUnavailable {
						t.Errorf("CreateJob: %v", err)
					}
					return
				}
				mu.Lock()
				written = append(written, id)
				mu.Unlock()
				if i == 20 {
					once.Do(func() { close(started) })
				}
			}
		})
	}
	<-started
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	s = openTest(t, dir)
	defer s.Close()
	for _, id := range written {
		if _, err := s.GetJob(ctx, id); err != nil {
			t.Fatalf("job %s returned nil from CreateJob but is not stored: %v", id, err)
		}
	}
	counts, err := s.CountJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[job.StatusPending] != len(written) {
		t.Errorf("%d jobs stored, %d acknowledged", counts[job.StatusPending], len(written))
	}
}

func TestOpenRefusesMemory(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file::memory:"} {
		cfg := DefaultConfig()
		cfg.Path = p
		if s, err := Open(context.Background(), cfg); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func TestPathWithSpecialCharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?with#odd%chars")
	s := openTest(t, dir)
	if err := s.CreateJob(context.Background(), &job.Job{ID: "x", Status: job.StatusPending, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	if _, err := s.GetJob(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
}

// TestResultRows: a job's result is stored exactly once (in its jobs row
// when small, else in a job_results row) while it has one, through each
// path of UpdateJob (none before, a result, a result replaced small by
// large and back, the result removed, none again), and the namespace's
// bytes follow it.
func TestResultRows(t *testing.T) {
	s := openTest(t, t.TempDir())
	ctx := context.Background()
	rows := func() (n int) {
		t.Helper()
		if err := s.readDB.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM job_results) +
			(SELECT count(*) FROM jobs WHERE result IS NOT NULL OR result_value IS NOT NULL OR result_files IS NOT NULL)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	j := &job.Job{ID: "r", Namespace: "ns", Type: job.TypeLua, Status: job.StatusPending, Attempt: 1, MaxAttempts: 3,
		Spec: job.Spec{Code: "return 1"}, CreatedAt: time.Now()}
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	created, _ := s.JobBytes(ctx, "ns")
	for i, step := range []struct {
		result *job.Result
		rows   int
	}{
		{nil, 0},
		{&job.Result{Status: job.StatusCompleted, Result: []byte("1")}, 1},
		{&job.Result{Status: job.StatusFailed, Error: "boom"}, 1},
		{&job.Result{Status: job.StatusFailed, Error: strings.Repeat("large ", 200)}, 1},
		{&job.Result{Status: job.StatusCompleted, Output: "more", Files: map[string][]byte{"f": []byte(strings.Repeat("x", 900))}}, 1},
		{&job.Result{Status: job.StatusCompleted, Result: []byte("2")}, 1},
		{nil, 0},
		{&job.Result{Status: job.StatusCompleted, Output: strings.Repeat("o", 3000)}, 1},
		{nil, 0},
		{nil, 0},
	} {
		j.Result = step.result
		j.Status = job.StatusRunning
		if step.result != nil {
			j.Status = step.result.Status
		}
		if err := s.UpdateJob(ctx, j); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if n := rows(); n != step.rows {
			t.Errorf("step %d: %d result rows, want %d", i, n, step.rows)
		}
		got, err := s.GetJob(ctx, "r")
		if err != nil || (got.Result == nil) != (step.result == nil) || got.Status != j.Status {
			t.Fatalf("step %d: %+v %v", i, got, err)
		}
		if step.result != nil && (got.Result.Error != step.result.Error || got.Result.Output != step.result.Output ||
			string(got.Result.Result) != string(step.result.Result) || len(got.Result.Files["f"]) != len(step.result.Files["f"])) {
			t.Errorf("step %d: result %+v, want %+v", i, got.Result, step.result)
		}
		n, _ := s.JobBytes(ctx, "ns")
		if step.result == nil && n != created || step.result != nil && n <= created {
			t.Errorf("step %d: JobBytes %d, created with %d", i, n, created)
		}
	}
	for _, res := range []*job.Result{nil, {Status: job.StatusCompleted}} {
		j := &job.Job{ID: "missing", Status: job.StatusRunning, CreatedAt: time.Now(), Result: res}
		if err := s.UpdateJob(ctx, j); !errors.Is(err, job.ErrNotFound) {
			t.Errorf("update of a missing job (result %v): %v", res != nil, err)
		}
	}
}

// TestFailedTransactionRolledBack: a write that fails its transaction (an
// error that is not its own, such as the disk's) is rolled back, with
// what it wrote, and fails alone; the writes around it commit, and the
// writer's connection is left with no transaction open for the next.
func TestFailedTransactionRolledBack(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	boom := errors.New("the disk is on fire")
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if err := s.CreateJob(ctx, &job.Job{ID: fmt.Sprintf("ok-%d", i), Status: job.StatusPending, CreatedAt: time.Unix(int64(i), 0)}); err != nil {
				t.Errorf("CreateJob: %v", err)
			}
		})
	}
	wg.Go(func() {
		err := s.enqueue(ctx, func(ctx context.Context, tx *writeTx) error {
			if _, err := tx.tx.ExecContext(ctx, `INSERT INTO job_tombstones (id, namespace, expired_at) VALUES ('boom', 'x', 1)`); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Errorf("the failing write: %v", err)
		}
	})
	wg.Wait()
	for i := range 20 {
		if _, err := s.GetJob(ctx, fmt.Sprintf("ok-%d", i)); err != nil {
			t.Errorf("a write beside the failed one: %v", err)
		}
	}
	var n int
	if err := s.readDB.QueryRowContext(ctx, `SELECT count(*) FROM job_tombstones WHERE id = 'boom'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("the failed write left %d rows (%v)", n, err)
	}
	if err := s.CreateJob(ctx, &job.Job{ID: "after", Status: job.StatusPending, CreatedAt: time.Now()}); err != nil {
		t.Fatalf("a write after the failed one: %v", err)
	}
	if _, err := s.GetJob(ctx, "after"); err != nil {
		t.Errorf("a write after the failed one: %v", err)
	}
}

// TestSpecRows: a small spec without Wasm is kept in the jobs row, a large
// one or one with Wasm in job_specs, and each reads back whole.
func TestSpecRows(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	large := json.RawMessage(`"` + strings.Repeat("i", 2000) + `"`)
	for i, c := range []struct {
		spec    job.Spec
		specRow bool
	}{
		{job.Spec{Code: "return 1", Input: json.RawMessage(`{"n":1}`), TimeoutSeconds: 3}, false},
		{job.Spec{Code: "return 1"}, false},
		{job.Spec{Code: strings.Repeat("x", 600)}, true},
		{job.Spec{Code: "return 1", Input: large}, true},
		{job.Spec{Wasm: []byte("\x00asm"), Input: json.RawMessage(`1`)}, true},
	} {
		id := fmt.Sprintf("s%d", i)
		if err := s.CreateJob(ctx, &job.Job{ID: id, Namespace: "ns", Status: job.StatusPending, CreatedAt: time.Now(), Spec: c.spec}); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetJob(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Spec.Code != c.spec.Code || string(got.Spec.Input) != string(c.spec.Input) ||
			string(got.Spec.Wasm) != string(c.spec.Wasm) || got.Spec.TimeoutSeconds != c.spec.TimeoutSeconds {
			t.Errorf("job %s: spec %+v, want %+v", id, got.Spec, c.spec)
		}
		var rows int
		if err := s.readDB.QueryRow(`SELECT count(*) FROM job_specs s JOIN jobs j ON j.seq = s.job_seq WHERE j.id = ?`, id).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if (rows == 1) != c.specRow {
			t.Errorf("job %s: %d job_specs rows, want one: %v", id, rows, c.specRow)
		}
	}
}
