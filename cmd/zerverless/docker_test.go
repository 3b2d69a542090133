package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	zclient "github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime/docker"
	"github.com/zerverless/zerverless/internal/worker"
)

// The docker tests share one engine client and images imported once.
var (
	engineOnce sync.Once
	engine     *client.Client
	engineErr  error

	imagesMu sync.Mutex
	images   = map[string]bool{} // imported by the tests, removed at the end
)

// testEngine returns the real Docker Engine. These tests run in CI and
// never skip: an engine that does not answer fails them.
func testEngine(t testing.TB) *client.Client {
	t.Helper()
	engineOnce.Do(func() {
		engine, engineErr = docker.NewClient()
		if engineErr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, engineErr = engine.Ping(ctx)
		}
	})
	if engineErr != nil {
		t.Fatalf("the docker tests need a Docker Engine: %v", engineErr)
	}
	return engine
}

// testImage makes sure ref exists on the engine, importing the busybox test
// image under that name when it does not. Images the tests import are
// removed when the tests end; an image that was already there is left.
func testImage(t testing.TB, ref string) string {
	t.Helper()
	c := testEngine(t)
	imagesMu.Lock()
	defer imagesMu.Unlock()
	ctx := context.Background()
	if _, err := c.ImageInspect(ctx, ref); err == nil {
		return ref
	}
	if err := dockertest.ImportBusybox(ctx, c, ref); err != nil {
		t.Fatalf("import test image %s: %v", ref, err)
	}
	images[ref] = true
	return ref
}

func removeTestImages() {
	imagesMu.Lock()
	defer imagesMu.Unlock()
	if engine == nil {
		return
	}
	for ref := range images {
		engine.ImageRemove(context.Background(), ref, image.RemoveOptions{PruneChildren: true})
	}
}

// dockerServerConfig is a test server whose embedded worker runs docker
// containers, labeled with a worker id of its own.
func dockerServerConfig(t testing.TB, workers int) ServerConfig {
	cfg := testServerConfig(t, t.TempDir(), workers)
	cfg.Runtimes.Docker = true
	cfg.Runtimes.DockerConfig.WorkerID = fmt.Sprintf("zvtest-e2e-%d", time.Now().UnixNano())
	cfg.Runtimes.DockerConfig.Pull = false
	return cfg
}

// jobsLabeled counts the containers of jobs (not the worker's warm volume
// holders) that carry worker id wid.
func jobsLabeled(t testing.TB, wid string) int {
	n := 0
	for _, c := range labeled(t, wid) {
		if c.Labels[docker.LabelJobID] != "" {
			n++
		}
	}
	return n
}

// labeled lists the containers that carry worker id wid.
func labeled(t testing.TB, wid string) []container.Summary {
	t.Helper()
	cs, err := testEngine(t).ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", docker.LabelWorkerID+"="+wid))})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestDockerExampleJob posts the example job of the design, exactly as
// written, to a platform whose embedded worker runs containers.
func TestDockerExampleJob(t *testing.T) {
	testImage(t, "alpine:latest")
	cfg := dockerServerConfig(t, 1)
	srv, c := startServer(t, cfg)
	body := `{
     "job_type": "docker",
     "docker_image": "alpine:latest",
     "docker_command": ["echo", "Hello"],
     "input_data": {"key": "value"},
     "timeout_seconds": 30
   }`
	resp, err := authPost(srv, srv.URL()+"/api/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %d %s", resp.StatusCode, raw)
	}
	var id string
	fmt.Sscanf(string(raw[bytes.Index(raw, []byte(`"id":"`))+6:]), "%36s", &id)
	v := waitDone(t, c, id, 60*time.Second)
	if v.Status != job.StatusCompleted || v.Output != "Hello\n" || v.ExitCode != 0 {
		t.Fatalf("got %s exit %d output %q error %q", v.Status, v.ExitCode, v.Output, v.Error)
	}
	// Input arrives as a read-only file and in the environment, as user 65534.
	v = submitWait(t, c, job.Request{Type: job.TypeDocker, DockerImage: "alpine:latest", Input: []byte(`{"key":"value"}`),
		DockerCommand: []string{"sh", "-c", `id -u; cat /input/input.json; echo; echo "$INPUT_DATA"; echo x > /input/input.json || echo input is read-only`}})
	want := "65534\n{\"key\":\"value\"}\n{\"key\":\"value\"}\ninput is read-only\n"
	if v.Status != job.StatusCompleted || v.Output != want {
		t.Fatalf("got %s output %q stderr %q error %q, want %q", v.Status, v.Output, v.Stderr, v.Error, want)
	}
	eventually(t, 10*time.Second, func() error {
		if n := jobsLabeled(t, cfg.Runtimes.DockerConfig.WorkerID); n > 0 {
			return fmt.Errorf("%d containers left", n)
		}
		return nil
	})
}

// TestDockerRouting: docker jobs go only to workers that opted in and whose
// limits fit; with none, the job waits and says why.
func TestDockerRouting(t *testing.T) {
	img := testImage(t, "zerverless-test/busybox:e2e")
	cfg := testServerConfig(t, t.TempDir(), 1) // embedded worker without --docker
	cfg.Orchestrator.DockerAllowImages = []string{"zerverless-test/*"}
	srv, c := startServer(t, cfg)
	ctx := context.Background()

	v, err := c.Submit(ctx, job.Request{Type: job.TypeDocker, DockerImage: img, DockerCommand: []string{"echo", "routed"}})
	if err != nil {
		t.Fatal(err)
	}
	big, err := c.Submit(ctx, job.Request{Type: job.TypeDocker, DockerImage: img, DockerCommand: []string{"true"},
		Resources: &job.Resources{MemoryMB: 4096}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got, _ := c.Job(ctx, v.ID, 0); got.Status != job.StatusPending || !strings.Contains(got.Reason, "no connected worker runs docker") {
		t.Fatalf("docker job without a docker worker: %s %q", got.Status, got.Reason)
	}

	_, err = c.Submit(ctx, job.Request{Type: job.TypeDocker, DockerImage: "evil/miner:latest", DockerCommand: []string{"true"}})
	if job.ErrorCode(err) != job.CodeForbidden || job.ErrorField(err) != "docker_image" {
		t.Fatalf("image outside the operator's allow-list: %v", err)
	}

	ro := DefaultRuntimeOptions()
	ro.Only = []job.Type{job.TypeDocker}
	ro.Docker = true
	ro.DockerConfig.WorkerID = fmt.Sprintf("zvtest-route-%d", time.Now().UnixNano())
	ro.DockerConfig.Pull = false
	ro.DockerConfig.MaxMemoryMB = 1024
	startWorkerWith(t, srv.WorkerURL(), "docker-worker", ro)

	done := waitDone(t, c, v.ID, 60*time.Second)
	if done.Status != job.StatusCompleted || done.Output != "routed\n" {
		t.Fatalf("got %s %q %q", done.Status, done.Output, done.Error)
	}
	got, _ := c.Job(ctx, big.ID, 0)
	if got.Status != job.StatusPending || !strings.Contains(got.Reason, "at most 1024 MB") {
		t.Fatalf("job over the worker's memory maximum: %s %q", got.Status, got.Reason)
	}
	ws, _ := c.Workers(ctx)
	var offered bool
	for _, w := range ws {
		if w.Capabilities.Has(job.TypeDocker) && w.Capabilities.Docker != nil && w.Capabilities.Docker.MaxMemoryMB == 1024 {
			offered = true
		}
		if w.Name == "embedded-1" && w.Capabilities.Has(job.TypeDocker) {
			t.Errorf("a worker without --docker advertises docker")
		}
	}
	if !offered {
		t.Fatalf("no worker advertises docker with its limits: %+v", ws)
	}
}

// TestDockerWorkerKilled kills a worker process while its container runs,
// starts a new one with the same worker id, and checks that the job runs
// again (attempt 2) and no labeled container remains.
func TestDockerWorkerKilled(t *testing.T) {
	img := testImage(t, "zerverless-test/busybox:e2e")
	srv, c := startServer(t, testServerConfig(t, t.TempDir(), 0))
	wid := fmt.Sprintf("zvtest-kill-%d", time.Now().UnixNano())
	startProc := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "worker", "--orchestrator", srv.WorkerURL(), "--runtimes", "docker",
			"--docker", "--docker-no-pull", "--docker-worker-id", wid, "--join-token", testWorkerSecret, "--concurrency", "1", "--log-level", "warn")
		cmd.Env = append(os.Environ(), asMainEnv+"=1")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopProcess(cmd) })
		return cmd
	}
	first := startProc()
	ctx := context.Background()
	v, err := c.Submit(ctx, job.Request{Type: job.TypeDocker, DockerImage: img, TimeoutSeconds: ptr(60.0),
		DockerCommand: []string{"sh", "-c", "sleep 2; echo finished"}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		for _, c := range labeled(t, wid) {
			if c.Labels[docker.LabelRole] == "job" && c.State == "running" {
				return nil
			}
		}
		return fmt.Errorf("no running container yet")
	})
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	if cs := labeled(t, wid); len(cs) == 0 {
		t.Fatal("the killed worker's container vanished by itself; the test proves nothing")
	}

	second := startProc()
	done := waitDone(t, c, v.ID, 60*time.Second)
	if done.Status != job.StatusCompleted || done.Attempt != 2 || done.Output != "finished\n" {
		t.Fatalf("got %s attempt %d output %q error %q", done.Status, done.Attempt, done.Output, done.Error)
	}
	eventually(t, 15*time.Second, func() error {
		// The live worker's warm volume holders (no job) stay.
		if n := jobsLabeled(t, wid); n > 0 {
			return fmt.Errorf("%d labeled containers of jobs remain", n)
		}
		return nil
	})
	// A worker stopped the ordinary way leaves no container or volume.
	stopProcess(second)
	if cs := labeled(t, wid); len(cs) > 0 {
		t.Fatalf("%d labeled containers remain after the worker stopped", len(cs))
	}
	vs, err := testEngine(t).VolumeList(context.Background(), volume.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", docker.LabelWorkerID+"="+wid))})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs.Volumes) > 0 {
		t.Fatalf("%d labeled volumes remain after the worker stopped", len(vs.Volumes))
	}
}

// stopProcess stops a worker process as an operator would (SIGTERM), and
// kills it if it has not ended within 20 s.
func stopProcess(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// TestDockerCLI: `zerverless run --image IMAGE -- CMD` prints the output and
// exits with the container's exit code.
func TestDockerCLI(t *testing.T) {
	img := testImage(t, "zerverless-test/busybox:e2e")
	srv, _ := startServer(t, dockerServerConfig(t, 1))
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"run", "--server", srv.URL(), "--token", srv.AdminToken(), "--image", img, "--", "sh", "-c", "echo from-container; exit 7"},
		&out, &errOut, func(string) string { return "" })
	if code != 7 || !strings.Contains(out.String(), "from-container") {
		t.Fatalf("exit %d stdout %q stderr %q", code, out.String(), errOut.String())
	}
}

// engineProxy serves the real engine's API on a socket of its own that a
// test can take away and bring back.
type engineProxy struct {
	t    testing.TB
	sock string
	srv  *http.Server

	mu    sync.Mutex
	paths []string // requests served, in order
	// fail, when set, answers the requests it matches with an engine
	// fault (500) instead of passing them on.
	fail func(*http.Request) bool
}

// served reports whether a request whose path contains s was served.
func (p *engineProxy) served(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, path := range p.paths {
		if strings.Contains(path, s) {
			return true
		}
	}
	return false
}

func newEngineProxy(t testing.TB) *engineProxy {
	p := &engineProxy{t: t, sock: t.TempDir() + "/docker.sock"}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *engineProxy) start() {
	ln, err := net.Listen("unix", p.sock)
	if err != nil {
		p.t.Fatal(err)
	}
	target, _ := url.Parse("http://docker")
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", "/var/run/docker.sock")
	}}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.paths = append(p.paths, r.URL.Path)
		fail := p.fail
		p.mu.Unlock()
		if fail != nil && fail(r) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"message":"RWLayer of container 0123 is unexpectedly nil"}`))
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(ln)
}

func (p *engineProxy) stop() {
	if p.srv != nil {
		p.srv.Close()
		p.srv = nil
		os.Remove(p.sock)
	}
}

// TestDockerEngineGoesAway: a worker whose engine is down at start does
// not advertise docker and says why; when the engine answers, the runtime
// runs its whole start-up (sweep, the built images of its earlier runs,
// the pre-pulls) and the worker offers docker with its built images; it
// stops offering it when the engine goes away again, and offers it again
// when it is back.
func TestDockerEngineGoesAway(t *testing.T) {
	img := testImage(t, "zerverless-test/busybox:e2e")
	prepull := testImage(t, "zerverless-test/busybox:prepull")
	proxy := newEngineProxy(t)
	proxy.stop()
	t.Setenv("DOCKER_HOST", "unix://"+proxy.sock)
	cfg := dockerServerConfig(t, 1)
	cfg.Worker.CheckInterval = 100 * time.Millisecond
	cfg.Worker.CheckTimeout = time.Second
	cfg.Runtimes.DockerConfig.Build = true
	cfg.Runtimes.DockerConfig.Prepull = []string{prepull}
	cfg.Runtimes.DockerConfig.UpkeepInterval = 200 * time.Millisecond
	// An image this worker id built in an earlier run.
	built := "zerverless/zvtest/earlier-" + strings.ToLower(rand.Text()[:8]) + ":1"
	importBuilt(t, built, map[string]string{
		docker.LabelManagedBy: "zerverless", docker.LabelWorkerID: cfg.Runtimes.DockerConfig.WorkerID,
		docker.LabelRole: "build", docker.LabelSourceKey: "earlier-key",
	})
	_, c := startServer(t, cfg)
	ctx := context.Background()
	advertises := func(want bool) func() error {
		return func() error {
			ws, err := c.Workers(ctx)
			if err != nil || len(ws) != 1 {
				return fmt.Errorf("workers %v %v", ws, err)
			}
			if got := ws[0].Capabilities.Has(job.TypeDocker); got != want {
				return fmt.Errorf("advertises docker: %v, notes %v", got, ws[0].Notes)
			}
			if !want && !strings.Contains(ws[0].Notes["docker"], "did not answer") {
				return fmt.Errorf("notes do not say why: %v", ws[0].Notes)
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, advertises(false))
	proxy.start()
	eventually(t, 10*time.Second, advertises(true))
	ws, _ := c.Workers(ctx)
	if d := ws[0].Capabilities.Docker; d == nil || !slices.Contains(d.BuiltImages, built) {
		t.Fatalf("after the engine came back the worker does not offer the image it built earlier: %+v", d)
	}
	eventually(t, 10*time.Second, func() error {
		if !proxy.served("/images/" + prepull + "/json") {
			return fmt.Errorf("no pre-pull of %s after the engine came back", prepull)
		}
		return nil
	})
	proxy.stop()
	eventually(t, 10*time.Second, advertises(false))
	v, err := c.Submit(ctx, job.Request{Type: job.TypeDocker, DockerImage: img, DockerCommand: []string{"echo", "back"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got, _ := c.Job(ctx, v.ID, 0); got.Status != job.StatusPending {
		t.Fatalf("docker job while the engine is away: %s %q", got.Status, got.Error)
	}
	proxy.start()
	eventually(t, 10*time.Second, advertises(true))
	if done := waitDone(t, c, v.ID, 60*time.Second); done.Status != job.StatusCompleted || done.Output != "back\n" {
		t.Fatalf("got %s %q %q", done.Status, done.Output, done.Error)
	}
}

// TestDockerTwoServersOneEngine: two `serve --docker` on one machine, each
// with the default worker id kept in its data directory. The second starts
// (and sweeps) while the first runs a job; the job survives.
func TestDockerTwoServersOneEngine(t *testing.T) {
	img := testImage(t, "zerverless-test/busybox:e2e")
	serve := func() *zclient.Client {
		cfg := dockerServerConfig(t, 1)
		cfg.Runtimes.DockerConfig.WorkerID = ""
		cfg.Runtimes.DockerIDDir, cfg.Runtimes.DockerIDPrefix = cfg.DataDir, "zvtest-serve-"
		_, c := startServer(t, cfg)
		return c
	}
	c := serve()
	ctx := context.Background()
	v, err := c.Submit(ctx, job.Request{Type: job.TypeDocker, DockerImage: img, TimeoutSeconds: ptr(60.0),
		DockerCommand: []string{"sh", "-c", "sleep 4; echo survived"}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		cs, err := testEngine(t).ContainerList(ctx, container.ListOptions{
			Filters: filters.NewArgs(filters.Arg("label", docker.LabelJobID+"="+v.ID))})
		if err != nil || len(cs) == 0 {
			return fmt.Errorf("no running container of the job yet (%v)", err)
		}
		return nil
	})
	serve()
	done := waitDone(t, c, v.ID, 60*time.Second)
	if done.Status != job.StatusCompleted || done.Attempt != 1 || done.Output != "survived\n" {
		t.Fatalf("got %s attempt %d output %q error %q", done.Status, done.Attempt, done.Output, done.Error)
	}
}

// importBuilt imports the test image as ref with labels, as a build of an
// earlier run would have left it, and removes it at the end of the test.
func importBuilt(t *testing.T, ref string, labels map[string]string) {
	t.Helper()
	c := testEngine(t)
	ctx := context.Background()
	rootfs, err := dockertest.BusyboxRootfs()
	if err != nil {
		t.Fatal(err)
	}
	var changes []string
	for k, v := range labels {
		changes = append(changes, "LABEL "+k+"="+v)
	}
	rc, err := c.ImageImport(ctx, image.ImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"}, ref, image.ImportOptions{Changes: changes})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	t.Cleanup(func() {
		c.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true, PruneChildren: true})
	})
}

// TestDockerKilledWorkersContainerIsReaped: kill -9 of a `worker` process
// mid-job, with another docker worker running on the engine (serve's
// embedded one) and no worker of the dead one's id ever starting again:
// the dead worker's container and volumes are gone within a minute of the
// job's deadline.
func TestDockerKilledWorkersContainerIsReaped(t *testing.T) {
	img := testImage(t, "zerverless-test/busybox:e2e")
	srv, c := startServer(t, dockerServerConfig(t, 1))
	dead := fmt.Sprintf("zvtest-reaped-%d", time.Now().UnixNano())
	cmd := exec.Command(os.Args[0], "worker", "--orchestrator", srv.WorkerURL(), "--runtimes", "docker",
		"--docker", "--docker-no-pull", "--docker-worker-id", dead, "--join-token", testWorkerSecret,
		"--concurrency", "1", "--log-level", "warn", "--data", t.TempDir())
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(cmd) })
	ctx := context.Background()
	var deadline time.Time
	var vols []string // the job's volumes
	eventually(t, 60*time.Second, func() error {
		// Submitted until the worker process takes one (the embedded
		// worker may take some first).
		if _, err := c.Submit(ctx, job.Request{Type: job.TypeDocker, DockerImage: img, TimeoutSeconds: ptr(5.0),
			DockerCommand: []string{"sleep", "600"}}); err != nil {
			return err
		}
		for _, ct := range labeled(t, dead) {
			if ct.Labels[docker.LabelRole] == "job" && ct.State == "running" {
				secs, err := strconv.ParseInt(ct.Labels[docker.LabelDeadline], 10, 64)
				if err != nil {
					t.Fatalf("the job's container has no deadline label: %v", ct.Labels)
				}
				deadline = time.Unix(secs, 0)
				for _, m := range ct.Mounts {
					if m.Type == "volume" {
						vols = append(vols, m.Name)
					}
				}
				return nil
			}
		}
		return fmt.Errorf("the worker process runs no job yet")
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if len(vols) == 0 {
		t.Fatal("the job's container mounts no volume")
	}
	// The job's container, its volumes and their holder go; warm holders
	// the dead worker kept for later jobs go at their own deadline.
	eventually(t, time.Until(deadline)+time.Minute, func() error {
		n := 0
		for _, ct := range labeled(t, dead) {
			for _, m := range ct.Mounts {
				if slices.Contains(vols, m.Name) {
					n++
					break
				}
			}
		}
		vs, err := testEngine(t).VolumeList(ctx, volume.ListOptions{
			Filters: filters.NewArgs(filters.Arg("label", docker.LabelWorkerID+"="+dead))})
		if err != nil {
			return err
		}
		for _, v := range vs.Volumes {
			if slices.Contains(vols, v.Name) {
				n++
			}
		}
		if n > 0 {
			return fmt.Errorf("%d containers or volumes of the killed worker's job remain", n)
		}
		return nil
	})
	// Clean up the dead worker's warm holders (their deadline is later).
	for _, ct := range labeled(t, dead) {
		testEngine(t).ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true})
	}
	vs, _ := testEngine(t).VolumeList(ctx, volume.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", docker.LabelWorkerID+"="+dead))})
	for _, v := range vs.Volumes {
		testEngine(t).VolumeRemove(ctx, v.Name, true)
	}
}

// TestDockerEngineFaultRunsElsewhere: a docker worker whose engine fails
// every container create (as a lost layer does) gives the job back as an
// attempt instead of failing it; the job is not offered to that worker
// again and completes at attempt 2 on serve's own docker worker.
func TestDockerEngineFaultRunsElsewhere(t *testing.T) {
	img := testImage(t, "zerverless-test/busybox:e2e")
	cfg := dockerServerConfig(t, 1)
	cfg.Worker.Concurrency = 1
	srv, c := startServer(t, cfg)
	ctx := context.Background()
	waitWorkers(t, c, 1)
	// Keep the good worker's only slot busy, so that the job goes to the
	// faulty worker first.
	blocker, err := c.Submit(ctx, job.Request{Type: job.TypeDocker, DockerImage: img, TimeoutSeconds: ptr(300.0),
		DockerCommand: []string{"sleep", "300"}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		if v, err := c.Job(ctx, blocker.ID, 0); err != nil || v.Status != job.StatusRunning {
			return fmt.Errorf("blocker is %s (%v)", v.Status, err)
		}
		return nil
	})

	proxy := newEngineProxy(t)
	proxy.fail = func(r *http.Request) bool {
		return r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/containers/create")
	}
	t.Setenv("DOCKER_HOST", "unix://"+proxy.sock) // read when the faulty worker's client is made
	faulty := DefaultRuntimeOptions()
	faulty.Only = []job.Type{job.TypeDocker}
	faulty.Docker = true
	faulty.DockerConfig.WorkerID = cfg.Runtimes.DockerConfig.WorkerID + "-faulty"
	faulty.DockerConfig.Pull = false
	startWorkerWithConfig(t, srv.WorkerURL(), "faulty", faulty, func(wc *worker.Config) { wc.Concurrency = 1 })
	waitWorkers(t, c, 2)

	j, err := c.Submit(ctx, job.Request{Type: job.TypeDocker, DockerImage: img, DockerCommand: []string{"echo", "elsewhere"}, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		v, err := c.Job(ctx, j.ID, 0)
		if err != nil {
			return err
		}
		if v.Status != job.StatusPending || v.Attempt != 2 || !strings.Contains(v.Reason, "unexpectedly nil") {
			return fmt.Errorf("job is %s, attempt %d, reason %q", v.Status, v.Attempt, v.Reason)
		}
		return nil
	})
	if !proxy.served("/containers/create") {
		t.Fatal("the faulty worker never tried to create the job's container")
	}
	if _, err := c.Cancel(ctx, blocker.ID); err != nil {
		t.Fatal(err)
	}
	v := waitDone(t, c, j.ID, 60*time.Second)
	if v.Status != job.StatusCompleted || v.Attempt != 2 || v.Output != "elsewhere\n" {
		t.Fatalf("job: %s attempt %d %q %q", v.Status, v.Attempt, v.Output, v.Error)
	}
	ws, err := c.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.ID == v.WorkerID && w.Name == "faulty" {
			t.Fatal("completed on the faulty worker")
		}
	}
}
