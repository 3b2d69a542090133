package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/protocol/protocoltest"
	"github.com/zerverless/zerverless/internal/worker"
)

// serve answers every assignment the raw worker gets with answer(task),
// until the test ends.
func (r *rawWorker) serve(answer func(*job.Task) job.Result) { r.serveThen(answer, nil) }

// serveThen is serve, calling sent(task) once the answer is written.
func (r *rawWorker) serveThen(answer func(*job.Task) job.Result, sent func(*job.Task)) {
	r.keepAlive()
	done := make(chan struct{})
	r.t.Cleanup(func() { close(done); r.conn.CloseNow() })
	go func() {
		for {
			m, err := r.conn.Read(context.Background())
			if err != nil {
				return
			}
			if m.Type != protocol.TypeAssign {
				continue
			}
			res := answer(m.Task)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = r.conn.Write(ctx, protocol.Message{Type: protocol.TypeResult, JobID: m.Task.JobID, LeaseID: m.Task.LeaseID, Result: &res})
			cancel()
			if err != nil {
				return
			}
			if sent != nil {
				sent(m.Task)
			}
		}
	}()
}

func says(out string) func(*job.Task) job.Result {
	return func(*job.Task) job.Result {
		return job.Result{Status: job.StatusCompleted, Output: out, Result: []byte(`"` + out + `"`)}
	}
}

var luaOnly = job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 4}

// TestReplicasOutvoteABadWorker: with replicas 3 and quorum 2, the honest
// answer wins over a worker that lies, the liar is recorded, and after
// enough lost votes it gets no more jobs.
func TestReplicasOutvoteABadWorker(t *testing.T) {
	srv, c := startServer(t, testServerConfig(t, t.TempDir(), 0))
	honestA := dialRaw(t, srv.WorkerURL(), luaOnly)
	honestB := dialRaw(t, srv.WorkerURL(), luaOnly)
	liar := dialRaw(t, srv.WorkerURL(), luaOnly)
	// The honest replicas answer only after the liar's answer is on its
	// way, so that the liar's vote is counted (a third answer that comes
	// after two agree is not needed and not recorded).
	var mu sync.Mutex
	liarSent := map[string]chan struct{}{}
	sentFor := func(id string) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		if liarSent[id] == nil {
			liarSent[id] = make(chan struct{})
		}
		return liarSent[id]
	}
	afterLiar := func(task *job.Task) job.Result {
		select {
		case <-sentFor(task.JobID):
			time.Sleep(20 * time.Millisecond) // let the orchestrator read it first
		case <-time.After(2 * time.Second): // the liar did not get this one
		}
		return says("honest")(task)
	}
	honestA.serve(afterLiar)
	honestB.serve(afterLiar)
	liar.serveThen(says("forged"), func(task *job.Task) {
		ch := sentFor(task.JobID)
		mu.Lock()
		defer mu.Unlock()
		select {
		case <-ch:
		default:
			close(ch)
		}
	})
	ctx := context.Background()
	banned := func() bool {
		ws, err := c.Workers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			if w.Banned && w.ID != liar.id {
				t.Fatalf("an honest worker is banned: %+v", w)
			}
			if w.ID == liar.id && w.Banned {
				return true
			}
		}
		return false
	}
	lost := 0
	for i := 0; !banned(); i++ {
		if i == 100 {
			t.Fatalf("the liar lost %d votes in 100 jobs and is still not banned", lost)
		}
		v := submitWait(t, c, job.Request{Type: job.TypeLua, Code: "return 1", Replicas: 3, Quorum: 2})
		if v.Status != job.StatusCompleted || v.Output != "honest" || v.Replicas != 3 || v.Quorum != 2 {
			t.Fatalf("job %d: %s output %q (replicas %d quorum %d) error %q", i, v.Status, v.Output, v.Replicas, v.Quorum, v.Error)
		}
		agreed := 0
		for _, a := range v.ReplicaAnswers {
			if a.WorkerID == liar.id {
				if a.Agreed {
					t.Fatalf("the liar's answer is marked as agreed: %+v", v.ReplicaAnswers)
				}
				lost++ // recorded as disagreeing
			}
			if a.Agreed {
				agreed++
			}
		}
		// Once two agree the third replica is no longer needed; a liar
		// that answered first is recorded as disagreeing.
		if agreed != 2 {
			t.Fatalf("replica answers %+v", v.ReplicaAnswers)
		}
	}
	if lost < 3 {
		t.Fatalf("banned after losing %d votes, want 3", lost)
	}
	v := submitWait(t, c, job.Request{Type: job.TypeLua, Code: "return 1"})
	if v.WorkerID == liar.id {
		t.Fatal("a banned worker got a job")
	}
}

// TestReplicasNoQuorum: two bad workers that disagree with each other and
// with the honest one leave no quorum; with no more replicas allowed the
// job fails saying so, recording every answer. With another honest worker
// and room for more replicas, an extra replica settles it.
func TestReplicasNoQuorum(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Orchestrator.MaxReplicas = 3
	srv, c := startServer(t, cfg)
	dialRaw(t, srv.WorkerURL(), luaOnly).serve(says("honest"))
	dialRaw(t, srv.WorkerURL(), luaOnly).serve(says("bad-1"))
	dialRaw(t, srv.WorkerURL(), luaOnly).serve(says("bad-2"))
	v := submitWait(t, c, job.Request{Type: job.TypeLua, Code: "return 1", Replicas: 3, Quorum: 2})
	if v.Status != job.StatusFailed || !strings.Contains(v.Error, "no quorum") || len(v.ReplicaAnswers) != 3 {
		t.Fatalf("got %s %q answers %+v", v.Status, v.Error, v.ReplicaAnswers)
	}
	hashes := map[string]bool{}
	for _, a := range v.ReplicaAnswers {
		hashes[a.Hash] = true
	}
	if len(hashes) != 3 {
		t.Fatalf("three different answers should have three hashes: %+v", v.ReplicaAnswers)
	}

	cfg2 := testServerConfig(t, t.TempDir(), 0)
	srv2, c2 := startServer(t, cfg2)
	dialRaw(t, srv2.WorkerURL(), luaOnly).serve(says("honest"))
	dialRaw(t, srv2.WorkerURL(), luaOnly).serve(says("bad-1"))
	dialRaw(t, srv2.WorkerURL(), luaOnly).serve(says("bad-2"))
	id, err := c2.Submit(context.Background(), job.Request{Type: job.TypeLua, Code: "return 1", Replicas: 3, Quorum: 2})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		v, err := c2.Job(context.Background(), id.ID, 0)
		if err != nil {
			return err
		}
		if !strings.Contains(v.Reason, "3 answers from 4 replicas") {
			return fmt.Errorf("reason %q", v.Reason)
		}
		return nil
	})
	dialRaw(t, srv2.WorkerURL(), luaOnly).serve(says("honest"))
	done := waitDone(t, c2, id.ID, 10*time.Second)
	if done.Status != job.StatusCompleted || done.Output != "honest" || len(done.ReplicaAnswers) != 4 {
		t.Fatalf("got %s %q answers %+v", done.Status, done.Output, done.ReplicaAnswers)
	}
}

// TestReplicasEndToEnd: a replicated Lua job on real workers completes
// with the answer they agree on, each replica on a distinct worker.
func TestReplicasEndToEnd(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 3)
	cfg.Worker.Concurrency = 1
	_, c := startServer(t, cfg)
	v := submitWait(t, c, job.Request{Type: job.TypeLua, Code: `print("same") return INPUT.x * 2`, Input: []byte(`{"x":21}`), Replicas: 3})
	if v.Status != job.StatusCompleted || v.Output != "same\n" || !jsonEqual(v.Result, "42") || v.Quorum != 2 {
		t.Fatalf("got %s %q %s quorum %d: %q", v.Status, v.Output, v.Result, v.Quorum, v.Error)
	}
	workers := map[string]bool{}
	for _, a := range v.ReplicaAnswers {
		if workers[a.WorkerID] {
			t.Fatalf("two replicas ran on worker %s", a.WorkerID)
		}
		workers[a.WorkerID] = true
	}
	stats, err := c.Stats(context.Background())
	if err != nil || stats.Jobs[job.StatusCompleted] != 1 {
		t.Fatalf("replicas were counted as jobs: %+v %v", stats, err)
	}
}

// TestWorkerTrust: without --open-volunteering a worker without a join
// token cannot connect; with it, an anonymous worker connects but never
// gets a docker job, which goes to a worker that joined with a token.
func TestWorkerTrust(t *testing.T) {
	srv, _ := startServer(t, testServerConfig(t, t.TempDir(), 0))
	caps := job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1}
	if m := protocoltest.Refused(t, srv.WorkerURL(), "", caps); !strings.Contains(m.Error, "join token") {
		t.Fatalf("anonymous worker with open volunteering off: %+v", m)
	}
	if m := protocoltest.Refused(t, srv.WorkerURL(), "zv_not-a-token", caps); !strings.Contains(m.Error, "invalid join token") {
		t.Fatalf("worker with a wrong join token: %+v", m)
	}

	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Orchestrator.OpenVolunteering = true
	srv2, c := startServer(t, cfg)
	dockerCaps := job.Capabilities{Runtimes: []job.Type{job.TypeLua, job.TypeDocker}, Concurrency: 2, Docker: &job.DockerCapabilities{}}
	anon := dialAnonymous(t, srv2.WorkerURL(), dockerCaps)
	v, err := c.Submit(context.Background(), job.Request{Type: job.TypeDocker, DockerImage: "alpine:latest", DockerCommand: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	lua, err := c.Submit(context.Background(), job.Request{Type: job.TypeLua, Code: "return 1"})
	if err != nil {
		t.Fatal(err)
	}
	if task := anon.next(5 * time.Second); task.JobID != lua.ID {
		t.Fatalf("the anonymous worker was given %s (%s)", task.JobID, task.Type)
	}
	got, _ := c.Job(context.Background(), v.ID, 0)
	if got.Status != job.StatusPending || !strings.Contains(got.Reason, "no connected worker runs docker") {
		t.Fatalf("docker job with only an anonymous worker: %s %q", got.Status, got.Reason)
	}
	ws, _ := c.Workers(context.Background())
	if len(ws) != 1 || ws[0].Trusted || ws[0].Capabilities.Has(job.TypeDocker) {
		t.Fatalf("the anonymous worker is listed as %+v", ws)
	}
	trusted := dialRaw(t, srv2.WorkerURL(), dockerCaps)
	if task := trusted.next(5 * time.Second); task.JobID != v.ID {
		t.Fatalf("the trusted worker was given %s", task.JobID)
	}
}

func dialAnonymous(t *testing.T, url string, caps job.Capabilities) *rawWorker {
	t.Helper()
	w := protocoltest.Register(t, url, "", caps)
	if w.Trusted {
		t.Fatal("an anonymous worker is trusted")
	}
	r := newRawWorker(w)
	r.keepAlive()
	return r
}

// TestQuotas: over a namespace's pending quota or rate, submissions get 429
// with Retry-After; every job that was accepted still completes; the
// running quota holds jobs in the queue instead of refusing them.
func TestQuotas(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Orchestrator.DefaultQuotas = job.Quotas{PendingJobs: 5, RunningJobs: 1, SubmitsPerSecond: 1000}
	srv, c := startServer(t, cfg)
	ctx := context.Background()
	var accepted []string
	for range 5 {
		v, err := c.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "tenant"})
		if err != nil {
			t.Fatal(err)
		}
		accepted = append(accepted, v.ID)
	}
	_, err := c.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "tenant"})
	if job.ErrorCode(err) != job.CodeTooMany || !strings.Contains(err.Error(), "pending") {
		t.Fatalf("sixth pending job: %v", err)
	}
	resp, err := authPost(srv, srv.URL()+"/api/jobs", "application/json", strings.NewReader(`{"job_type":"lua","code":"return 1","namespace":"tenant"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over quota: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Another namespace is not affected.
	if _, err := c.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "other"}); err != nil {
		t.Fatalf("another namespace: %v", err)
	}

	// The running quota of 1: a worker with 4 slots runs tenant's jobs one
	// at a time.
	slow := dialRaw(t, srv.WorkerURL(), luaOnly)
	slow.keepAlive()
	first := slow.next(5 * time.Second)
	second := slow.next(5 * time.Second) // the other namespace's job
	if first.Namespace == second.Namespace {
		t.Fatalf("two jobs of namespace %s ran at once over a running quota of 1", first.Namespace)
	}
	stats, _ := c.Stats(ctx)
	if stats.Jobs[job.StatusRunning] != 2 || stats.Jobs[job.StatusPending] != 4 {
		t.Fatalf("stats %+v", stats)
	}
	tenantJob := first
	if second.Namespace == "tenant" {
		tenantJob = second
	}
	for _, task := range []*job.Task{first, second} {
		slow.send(protocol.Message{Type: protocol.TypeResult, JobID: task.JobID, LeaseID: task.LeaseID, Result: &job.Result{Status: job.StatusCompleted}})
	}
	_ = tenantJob
	// The rest go one by one; every accepted job completes.
	var mu sync.Mutex
	for range 4 {
		task := slow.next(5 * time.Second)
		mu.Lock()
		slow.send(protocol.Message{Type: protocol.TypeResult, JobID: task.JobID, LeaseID: task.LeaseID, Result: &job.Result{Status: job.StatusCompleted}})
		mu.Unlock()
	}
	for _, id := range accepted {
		if v := waitDone(t, c, id, 5*time.Second); v.Status != job.StatusCompleted {
			t.Fatalf("accepted job %s ended %s", id, v.Status)
		}
	}

	// The rate: a burst over twice the rate is refused in part, and every
	// accepted job completes.
	cfg2 := testServerConfig(t, t.TempDir(), 1)
	cfg2.Orchestrator.DefaultQuotas = job.Quotas{SubmitsPerSecond: 5}
	_, c2 := startServer(t, cfg2)
	var ok []string
	refused := 0
	for range 30 {
		v, err := c2.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1"})
		switch {
		case err == nil:
			ok = append(ok, v.ID)
		case job.ErrorCode(err) == job.CodeTooMany:
			refused++
		default:
			t.Fatal(err)
		}
	}
	if refused == 0 || len(ok) < 10 {
		t.Fatalf("rate 5/s: %d accepted, %d refused", len(ok), refused)
	}
	for _, id := range ok {
		if v := waitDone(t, c2, id, 10*time.Second); v.Status != job.StatusCompleted {
			t.Fatalf("accepted job %s ended %s", id, v.Status)
		}
	}
}

// TestStorageQuotas: a namespace holds at most its quota of functions
// (redeploying one is always allowed) and of stored build contexts.
func TestStorageQuotas(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Orchestrator.DefaultQuotas.Deployments = 2
	cfg.Orchestrator.DefaultQuotas.BuildContextMB = 1
	_, c := startServer(t, cfg)
	ctx := context.Background()
	fn := job.DeployRequest{Runtime: job.TypeLua, Code: `function handle(req) return "hi" end`}
	for _, p := range []string{"one", "two"} {
		if _, err := c.Deploy(ctx, "quota", p, fn); err != nil {
			t.Fatalf("deploy %s: %v", p, err)
		}
	}
	if _, err := c.Deploy(ctx, "quota", "three", fn); job.ErrorCode(err) != job.CodeTooMany {
		t.Fatalf("third function over a quota of 2: %v", err)
	}
	if _, err := c.Deploy(ctx, "quota", "two", fn); err != nil {
		t.Fatalf("redeploy within the quota: %v", err)
	}
	if _, err := c.Deploy(ctx, "other", "three", fn); err != nil {
		t.Fatalf("another namespace: %v", err)
	}

	upload := func(fill byte) error {
		body := fmt.Sprintf(`{"files":{"Dockerfile":"FROM scratch\n","blob":%q}}`, strings.Repeat(string(rune('a'+fill)), 600<<10))
		_, err := c.UploadContext(ctx, strings.NewReader(body), "application/json")
		return err
	}
	if err := upload(0); err != nil {
		t.Fatalf("first context: %v", err)
	}
	if err := upload(0); err != nil {
		t.Fatalf("the same context again costs nothing: %v", err)
	}
	if err := upload(1); job.ErrorCode(err) != job.CodeTooMany {
		t.Fatalf("a second 600 KiB context over a quota of 1 MiB: %v", err)
	}
}

// TestWorkerOrigin: a browser page from an origin the operator did not list
// cannot open the worker WebSocket; a listed origin, the orchestrator's own
// and a native worker (no Origin) can.
func TestWorkerOrigin(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Orchestrator.OpenVolunteering = true
	cfg.API.OriginPatterns = []string{"volunteers.example"}
	srv, _ := startServer(t, cfg)
	dial := func(origin string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		conn, err := protocol.Dial(ctx, srv.WorkerURL(), h, protocol.Options{})
		if err != nil {
			return err
		}
		conn.CloseNow()
		return nil
	}
	if err := dial("https://evil.example"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("a page from an unlisted origin connected: %v", err)
	}
	for _, origin := range []string{"", "https://volunteers.example", srv.URL()} {
		if err := dial(origin); err != nil {
			t.Fatalf("origin %q refused: %v", origin, err)
		}
	}
}

// TestWorkerNamespaces: a worker that accepts only some namespaces is
// never given another namespace's job, which waits saying why.
func TestWorkerNamespaces(t *testing.T) {
	srv, c := startServer(t, testServerConfig(t, t.TempDir(), 0))
	ro := DefaultRuntimeOptions()
	ro.Only = []job.Type{job.TypeLua}
	stop := startWorkerWithConfig(t, srv.WorkerURL(), "alice-only", ro, func(wc *worker.Config) { wc.Namespaces = []string{"alice"} })
	defer stop()
	ctx := context.Background()
	bob, err := c.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 'bob'", Namespace: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	alice := submitWait(t, c, job.Request{Type: job.TypeLua, Code: "return 'alice'", Namespace: "alice"})
	if alice.Status != job.StatusCompleted {
		t.Fatalf("alice's job: %s", alice.Status)
	}
	got, _ := c.Job(ctx, bob.ID, 0)
	if got.Status != job.StatusPending || !strings.Contains(got.Reason, "does not accept namespace bob") {
		t.Fatalf("bob's job on an alice-only worker: %s %q", got.Status, got.Reason)
	}
}

// TestNamespaceRequiresTrustedWorkers: a namespace whose policy requires
// trusted workers never has its jobs sent to an anonymous volunteer, and a
// worker with a join token issued through the API is trusted.
func TestNamespaceRequiresTrustedWorkers(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Orchestrator.OpenVolunteering = true
	srv, c := startServer(t, cfg)
	ctx := context.Background()
	if _, err := c.PutNamespacePolicy(ctx, job.NamespacePolicy{Namespace: "secret", RequireTrustedWorkers: true}); err != nil {
		t.Fatal(err)
	}
	anon := dialAnonymous(t, srv.WorkerURL(), luaOnly)
	private, err := c.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	open, err := c.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "public"})
	if err != nil {
		t.Fatal(err)
	}
	if task := anon.next(5 * time.Second); task.JobID != open.ID {
		t.Fatalf("the anonymous worker was given %s", task.JobID)
	}
	got, _ := c.Job(ctx, private.ID, 0)
	if got.Status != job.StatusPending || !strings.Contains(got.Reason, "requires trusted workers") {
		t.Fatalf("the secret namespace's job: %s %q", got.Status, got.Reason)
	}

	tok, err := c.CreateToken(ctx, api.TokenRequest{Kind: job.TokenWorker, Name: "laptop-1"})
	if err != nil {
		t.Fatal(err)
	}
	w := protocoltest.Register(t, srv.WorkerURL(), tok.Token, luaOnly)
	if !w.Trusted {
		t.Fatalf("a worker with an issued join token is not trusted")
	}
	trusted := newRawWorker(w)
	trusted.keepAlive()
	if task := trusted.next(5 * time.Second); task.JobID != private.ID {
		t.Fatalf("the trusted worker was given %s", task.JobID)
	}
	ws, _ := c.Workers(ctx)
	for _, w := range ws {
		if w.ID == trusted.id && (!w.Trusted || !strings.Contains(w.Owner, "laptop-1")) {
			t.Fatalf("the trusted worker is listed as %+v", w)
		}
	}
}

// TestRefusedWorkerStops: a worker whose join token the orchestrator
// refuses stops with an error and exit status 1 instead of retrying.
func TestRefusedWorkerStops(t *testing.T) {
	srv, _ := startServer(t, testServerConfig(t, t.TempDir(), 0))
	cmd := exec.Command(os.Args[0], "worker", "--orchestrator", srv.WorkerURL(), "--runtimes", "lua", "--join-token", "zv_wrong", "--log-level", "error")
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), "invalid join token") {
			t.Fatalf("worker ended with %v, stderr %q", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("a refused worker kept running; stderr %q", stderr.String())
	}
}

// TestWorkersListScoped: a namespace token sees which of its own jobs run
// on a worker, and only how many others do; the admin sees them all.
func TestWorkersListScoped(t *testing.T) {
	srv, admin := startServer(t, testServerConfig(t, t.TempDir(), 0))
	ctx := context.Background()
	tok, err := admin.CreateToken(ctx, api.TokenRequest{Namespace: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	alice := client.New(srv.URL(), nil).WithToken(tok.Token)
	w := dialRaw(t, srv.WorkerURL(), luaOnly)
	w.keepAlive()
	mine, err := alice.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1"})
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := admin.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	w.next(5 * time.Second)
	w.next(5 * time.Second)
	ws, err := alice.Workers(ctx)
	if err != nil || len(ws) != 1 {
		t.Fatalf("workers as alice: %+v %v", ws, err)
	}
	if ws[0].Running != 2 || len(ws[0].RunningJobs) != 1 || ws[0].RunningJobs[0] != mine.ID {
		t.Fatalf("alice sees running %d %v, want 2 with only %s", ws[0].Running, ws[0].RunningJobs, mine.ID)
	}
	ws, _ = admin.Workers(ctx)
	if len(ws[0].RunningJobs) != 2 || !slices.Contains(ws[0].RunningJobs, theirs.ID) {
		t.Fatalf("the admin sees %v", ws[0].RunningJobs)
	}
}
