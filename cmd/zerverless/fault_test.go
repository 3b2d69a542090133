package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// faultCode is a Lua job that does a little work (INPUT.n loop turns) and
// returns a value derived from its input.
const faultCode = `local s = 0
for k = 1, INPUT.n do s = s + k % 7 end
return INPUT.i * 7`

// faultRequest is job i of a fault test.
func faultRequest(i, n int) job.Request {
	return job.Request{
		Type:        job.TypeLua,
		Code:        faultCode,
		Input:       json.RawMessage(fmt.Sprintf(`{"i":%d,"n":%d}`, i, n)),
		MaxAttempts: 10,
	}
}

// checkFaultResult reports whether v completed with job i's result.
func checkFaultResult(v client.View, i int) error {
	if v.Status != job.StatusCompleted || v.ResultView == nil {
		reason, errText := v.Reason, ""
		if v.ResultView != nil {
			errText = v.Error
		}
		return fmt.Errorf("job %s (i=%d) is %s after %d attempts (reason %q, error %q)", v.ID, i, v.Status, v.Attempt, reason, errText)
	}
	var got float64
	if err := json.Unmarshal(v.Result, &got); err != nil || got != float64(i*7) {
		return fmt.Errorf("job %s (i=%d) returned %s, want %d", v.ID, i, v.Result, i*7)
	}
	if v.FinishedAt.IsZero() {
		return fmt.Errorf("job %s (i=%d) completed without a finish time", v.ID, i)
	}
	return nil
}

// listAllJobs pages through GET /api/jobs with the cursor and returns every
// job, failing on an id seen twice.
func listAllJobs(t *testing.T, c *client.Client) map[string]client.Summary {
	t.Helper()
	all := make(map[string]client.Summary)
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("the job list never ends")
		}
		list, next, err := c.Jobs(context.Background(), store.JobFilter{Limit: 100, Cursor: cursor})
		if err != nil {
			t.Fatalf("list jobs: %v", err)
		}
		for _, v := range list {
			if _, dup := all[v.ID]; dup {
				t.Fatalf("job %s listed twice", v.ID)
			}
			all[v.ID] = v
		}
		if next == "" {
			return all
		}
		cursor = next
	}
}

// metricValues returns the samples of the Prometheus text at url whose
// name is name, by their label set as written ({a="b",c="d"}, or "" with
// no labels).
func metricValues(t *testing.T, url, token, name string) map[string]float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("get metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("get metrics: %d %s", resp.StatusCode, b)
	}
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		sp := strings.LastIndexByte(rest, ' ')
		v, err := strconv.ParseFloat(rest[sp+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[strings.TrimSpace(rest[:sp])] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFaultWorkersKilledAtRandom runs 500 Lua jobs over four native
// workers while, every 50-200 ms, a random worker is stopped and a new one
// started. Every job must end exactly once, completed with its own
// result: none lost, none failed, none stored or counted twice.
func TestFaultWorkersKilledAtRandom(t *testing.T) {
	const jobs, workers = 500, 4
	dir := t.TempDir()
	srv, c := startServer(t, testServerConfig(t, dir, 0))
	token := adminToken(dir)
	ctx := context.Background()
	rng := rand.New(rand.NewSource(6))

	started := 0
	newWorker := func() func() {
		started++
		return startWorker(t, srv.WorkerURL(), fmt.Sprintf("fault-%d", started), job.TypeLua)
	}
	stops := make([]func(), workers)
	for i := range stops {
		stops[i] = newWorker()
	}

	// The jobs are submitted while workers come and go; each does a
	// loop of a random length (a few milliseconds of work).
	ids := make([]string, jobs)
	submitErr := make(chan error, 1)
	go func() {
		subRng := rand.New(rand.NewSource(7))
		for i := range jobs {
			v, err := c.Submit(ctx, faultRequest(i, 10_000+subRng.Intn(40_000)))
			if err != nil {
				submitErr <- fmt.Errorf("submit job %d: %w", i, err)
				return
			}
			ids[i] = v.ID
		}
		submitErr <- nil
	}()

	// Chaos: until the submissions are in and nothing is pending or
	// running, stop a random worker and start a new one every 50-200 ms.
	kills := 0
	submitted := false
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(50+rng.Intn(151)) * time.Millisecond)
		if !submitted {
			select {
			case err := <-submitErr:
				if err != nil {
					t.Fatal(err)
				}
				submitted = true
			default:
			}
		}
		if submitted {
			st, err := c.Stats(ctx)
			if err != nil {
				t.Fatalf("stats: %v", err)
			}
			if st.Jobs[job.StatusPending] == 0 && st.Jobs[job.StatusRunning] == 0 {
				break
			}
		}
		k := rng.Intn(workers)
		stops[k]()
		stops[k] = newWorker()
		kills++
	}
	if !submitted {
		if err := <-submitErr; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d workers stopped and replaced while the jobs ran", kills)

	// Every job ends completed with its own result.
	retried, runMS := 0, int64(0)
	for i, id := range ids {
		v := waitDone(t, c, id, 30*time.Second)
		if err := checkFaultResult(v, i); err != nil {
			t.Error(err)
			continue
		}
		runMS += v.DurationMS
		if v.Attempt > 1 {
			retried++
		}
		if v.Attempt > v.MaxAttempts {
			t.Errorf("job %s ran %d times, over its %d attempts", id, v.Attempt, v.MaxAttempts)
		}
	}

	// The store holds exactly these jobs, once each.
	all := listAllJobs(t, c)
	if len(all) != jobs {
		t.Errorf("the store lists %d jobs, want %d", len(all), jobs)
	}
	for i, id := range ids {
		v, ok := all[id]
		if !ok {
			t.Errorf("job %s (i=%d) is missing from the list", id, i)
			continue
		}
		if v.Status != job.StatusCompleted {
			t.Errorf("job %s (i=%d) is listed as %s", id, i, v.Status)
		}
	}
	st, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Jobs[job.StatusCompleted] != jobs || st.Jobs[job.StatusPending] != 0 || st.Jobs[job.StatusRunning] != 0 {
		t.Errorf("stats count jobs %v, want %d completed and none pending or running", st.Jobs, jobs)
	}

	// Each job was counted finished exactly once.
	finished := metricValues(t, srv.URL()+"/metrics", token, "zerverless_jobs_finished_total")
	for labels, n := range finished {
		want := 0.0
		if labels == `{runtime="lua",status="completed"}` {
			want = jobs
		}
		if n != want {
			t.Errorf("zerverless_jobs_finished_total%s = %v, want %v", labels, n, want)
		}
	}
	if _, ok := finished[`{runtime="lua",status="completed"}`]; !ok {
		t.Errorf("no zerverless_jobs_finished_total for completed lua jobs: %v", finished)
	}
	requeued := metricValues(t, srv.URL()+"/metrics", token, "zerverless_jobs_requeued_total")[""]
	stale := metricValues(t, srv.URL()+"/metrics", token, "zerverless_stale_results_total")[""]
	t.Logf("%d jobs (%d ms of run time in all) over %d workers started in all: %v runs lost and re-queued, %d jobs ran more than once, %v stale results rejected",
		jobs, runMS, started, requeued, retried, stale)
	if kills > 10 && requeued == 0 {
		t.Logf("no run was lost: the workers were always stopped between jobs")
	}
}

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// serveProc is `zerverless serve` running as a child process.
type serveProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startServeProc starts the test binary as `zerverless serve` on addr with
// its store in dir and two embedded workers; t's cleanup kills it.
func startServeProc(t *testing.T, addr, dir string) *serveProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--addr", addr, "--data", dir, "--workers", "2", "--log-level", "warn")
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	cmd.Stdout = io.Discard
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	return p
}

// kill sends SIGKILL and waits for the process to end.
func (p *serveProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// waitServing waits until the server at url answers /health, and returns
// a client with the admin token the server keeps in dir, if it keeps one.
func waitServing(t *testing.T, p *serveProc, url, dir string) *client.Client {
	t.Helper()
	c := client.New(url, nil)
	eventually(t, 30*time.Second, func() error {
		select {
		case <-p.done:
			t.Fatalf("serve exited: %v", p.cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Health(ctx)
	})
	return tokenClient(url, adminToken(dir))
}

// tokenClient is a client of url that sends token as a bearer token, or
// no Authorization header when token is "".
func tokenClient(url, token string) *client.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return client.New(url, &http.Client{Transport: faultBearer{tr, token}})
}

type faultBearer struct {
	inner http.RoundTripper
	token string
}

func (b faultBearer) RoundTrip(req *http.Request) (*http.Response, error) {
	if b.token == "" {
		return b.inner.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.inner.RoundTrip(r)
}

// adminToken returns the admin token a server keeps in its data directory
// dir, or "" when it keeps none.
func adminToken(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

// TestCrashOrchestratorUnderLoad kills `zerverless serve` with SIGKILL while
// jobs are being submitted and run, restarts it on the same data directory
// and port, and checks that every job acknowledged with 201 completes with
// its own result. Half the submitters wait for their jobs (?wait=, a job
// the orchestrator stores only when it ends or when the wait returns it
// unfinished): what they were answered is kept as well.
func TestCrashOrchestratorUnderLoad(t *testing.T) {
	addr, dir := freePort(t), t.TempDir()
	url := "http://" + addr
	first := startServeProc(t, addr, dir)
	c := waitServing(t, first, url, dir)

	// Load: submitters record every id acknowledged with 201.
	var mu sync.Mutex
	acked := make(map[string]int)
	next := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				var v client.View
				var err error
				if g%2 == 0 {
					v, err = c.Submit(ctx, faultRequest(i, 10_000+rng.Intn(40_000)))
				} else {
					wait := time.Duration(1+rng.Intn(200)) * time.Millisecond
					v, err = c.Run(ctx, faultRequest(i, 10_000+rng.Intn(40_000)), wait)
				}
				cancel()
				if err != nil {
					// Refused, or the server is gone: not acknowledged.
					time.Sleep(10 * time.Millisecond)
					continue
				}
				mu.Lock()
				acked[v.ID] = i
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	first.kill()
	close(stop)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no job was acknowledged before the crash")
	}

	restarted := time.Now()
	second := startServeProc(t, addr, dir)
	c = waitServing(t, second, url, dir)
	serving := time.Since(restarted)
	atRestart, err := c.Stats(context.Background())
	if err != nil {
		t.Fatalf("stats: %v", err)
	}

	// Every acknowledged job completes with its own result.
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	rerun := 0
	for id, i := range acked {
		v, err := c.Await(ctx, id, 10*time.Second)
		if err != nil {
			t.Fatalf("job %s (i=%d): %v (last seen %s, attempt %d)", id, i, err, v.Status, v.Attempt)
		}
		if err := checkFaultResult(v, i); err != nil {
			t.Error(err)
		}
		if v.Attempt > 1 {
			rerun++
		}
	}
	recovered := time.Since(restarted)

	// None of them is missing from the store's list, and nothing is left
	// pending or running.
	all := listAllJobs(t, c)
	for id, i := range acked {
		if _, ok := all[id]; !ok {
			t.Errorf("acknowledged job %s (i=%d) is missing from the list", id, i)
		}
	}
	eventually(t, 30*time.Second, func() error {
		st, err := c.Stats(context.Background())
		if err != nil {
			return err
		}
		if st.Jobs[job.StatusPending] != 0 || st.Jobs[job.StatusRunning] != 0 {
			return fmt.Errorf("jobs by status: %v", st.Jobs)
		}
		return nil
	})
	t.Logf("%d jobs acknowledged before the crash (%d submitted, %d stored); at the restart, jobs by status %v; %d ran again; "+
		"serving again %s after the restart, every acknowledged job completed %s after it",
		len(acked), next, len(all), atRestart.Jobs, rerun, serving.Round(time.Millisecond), recovered.Round(time.Millisecond))
}
