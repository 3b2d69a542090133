package docker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"

	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/job"
)

var serverImage struct {
	sync.Once
	ref string
	err error
}

// goServerImage returns the image of dockertest.GoServer, imported once;
// cleanupEngine removes it.
func goServerImage(t testing.TB) string {
	t.Helper()
	serverImage.Do(func() {
		ref := "zerverless-test/goserver:run-" + randomHex(4)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		serverImage.err = dockertest.ImportGoServer(ctx, testEngine, ref)
		serverImage.ref = ref
	})
	if serverImage.err != nil {
		t.Fatal(serverImage.err)
	}
	return serverImage.ref
}

func cleanupServiceImage(ctx context.Context) {
	if serverImage.ref != "" {
		_, _ = testEngine.ImageRemove(ctx, serverImage.ref, image.RemoveOptions{PruneChildren: true})
	}
}

func serviceRuntime(t testing.TB, tweak func(*Config)) *Docker {
	t.Helper()
	agent := agentConfig(t)
	return newTestRuntime(t, func(c *Config) {
		agent(c)
		c.Services = 4
		c.RelaySocketDir = filepath.Join(t.TempDir(), "relays")
		if tweak != nil {
			tweak(c)
		}
	})
}

func testInstance(t testing.TB, env map[string]string) job.ServiceInstance {
	return job.ServiceInstance{
		ID: "inst-" + randomHex(4), Namespace: "user", Service: "user/svc", Version: 1,
		Spec: job.ServiceSpec{Image: goServerImage(t), Env: env, Port: 8080, StartTimeoutSeconds: 60},
	}
}

// reports collects an instance's reports.
type reports chan job.InstanceReport

func (r reports) report(rep job.InstanceReport) { r <- rep }

func (r reports) next(t testing.TB, want job.InstanceState) job.InstanceReport {
	t.Helper()
	select {
	case rep := <-r:
		if rep.State != want {
			t.Fatalf("report %+v, want state %s", rep, want)
		}
		return rep
	case <-time.After(2 * time.Minute):
		t.Fatalf("no %s report", want)
	}
	return job.InstanceReport{}
}

// startInstance starts inst on d and returns once it is ready.
func startInstance(t testing.TB, d *Docker, inst job.ServiceInstance) reports {
	t.Helper()
	r := make(reports, 4)
	if err := d.StartInstance(context.Background(), inst, r.report); err != nil {
		t.Fatalf("start: %v (%+v)", err, <-r)
	}
	r.next(t, job.InstanceReady)
	return r
}

// get sends one HTTP request to the instance through its relay.
func get(t testing.TB, d *Docker, id, target string, header http.Header) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := d.DialInstance(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req, _ := http.NewRequest("GET", "http://instance"+target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func instanceContainers(t testing.TB, workerID string) []container.Summary {
	t.Helper()
	cs, err := testEngine.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelWorkerID+"="+workerID))})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// An instance starts under the strict profile in its relay's network,
// becomes ready once its port answers (it listens late), serves a request
// through the relay, and is gone, relay and all, after StopInstance.
func TestServiceInstanceServesThroughRelay(t *testing.T) {
	d := serviceRuntime(t, nil)
	inst := testInstance(t, map[string]string{"LISTEN_AFTER_MS": "700", "GREETING": "hi"})
	inst.Spec.Port = 9090
	inst.Spec.Resources = job.Resources{MemoryMB: 64, CPUs: 0.5, Pids: 50}
	r := startInstance(t, d, inst)

	resp := get(t, d, inst.ID, "/a/b?x=1&x=2", http.Header{"X-Repeat": {"one", "two"}})
	var echo struct {
		Method, Path, Query string
		Headers             http.Header
	}
	if err := json.NewDecoder(resp.Body).Decode(&echo); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || echo.Method != "GET" || echo.Path != "/a/b" || echo.Query != "x=1&x=2" ||
		strings.Join(echo.Headers["X-Repeat"], ",") != "one,two" {
		t.Fatalf("through the relay: %d %+v", resp.StatusCode, echo)
	}

	cs := instanceContainers(t, d.cfg.WorkerID)
	var svc, relay *container.Summary
	for i := range cs {
		switch cs[i].Labels[LabelRole] {
		case roleService:
			svc = &cs[i]
		case roleServiceRelay:
			relay = &cs[i]
		}
	}
	if len(cs) != 2 || svc == nil || relay == nil || svc.Labels[LabelRelay] != relay.ID || svc.Labels[LabelJobID] != inst.ID {
		t.Fatalf("containers of the instance: %+v", cs)
	}
	if _, ok := svc.Labels[LabelDeadline]; ok {
		t.Fatal("an instance carries a deadline")
	}
	info, err := testEngine.ContainerInspect(context.Background(), svc.ID)
	if err != nil {
		t.Fatal(err)
	}
	h := info.HostConfig
	if info.Config.User != "65534:65534" || !h.ReadonlyRootfs || len(h.CapDrop) != 1 || h.CapDrop[0] != "ALL" ||
		len(h.SecurityOpt) != 1 || h.SecurityOpt[0] != "no-new-privileges" || string(h.NetworkMode) != "container:"+relay.ID ||
		h.Memory != 64<<20 || h.MemorySwap != 64<<20 || h.NanoCPUs != 5e8 || h.PidsLimit == nil || *h.PidsLimit != 50 ||
		h.Privileged || h.Tmpfs["/tmp"] == "" {
		t.Fatalf("instance profile: user %q host %+v", info.Config.User, h)
	}
	env := strings.Join(info.Config.Env, " ")
	if !strings.Contains(env, "PORT=9090") || !strings.Contains(env, "GREETING=hi") {
		t.Fatalf("env %q", env)
	}

	if err := d.StopInstance(context.Background(), inst.ID, ""); err != nil {
		t.Fatal(err)
	}
	rep := r.next(t, job.InstanceExited)
	if rep.Error != "stopped" || !strings.Contains(rep.Output, "listening on :9090") {
		t.Fatalf("stopped: %+v", rep)
	}
	if n := leftovers(t, d.cfg.WorkerID); n != 0 {
		t.Fatalf("%d containers or volumes left after stop", n)
	}
	if _, _, err := d.DialInstance(context.Background(), inst.ID); !errors.Is(err, ErrNoInstance) {
		t.Fatalf("dial a stopped instance: %v", err)
	}
	if err := d.StopInstance(context.Background(), inst.ID, ""); !errors.Is(err, ErrNoInstance) {
		t.Fatalf("stop a stopped instance: %v", err)
	}
}

// With a readiness path the instance is ready only once the path answers
// 2xx; one that never does ends at its start timeout, leaving nothing.
func TestServiceReadinessPath(t *testing.T) {
	d := serviceRuntime(t, nil)
	inst := testInstance(t, map[string]string{"READY_AFTER_MS": "1000"})
	inst.Spec.ReadinessPath = "/healthz"
	startInstance(t, d, inst)
	if resp := get(t, d, inst.ID, "/healthz", nil); resp.StatusCode != 200 {
		t.Fatalf("ready, but /healthz answers %d", resp.StatusCode)
	}

	never := testInstance(t, map[string]string{"NEVER_READY": "1"})
	never.Spec.ReadinessPath = "/healthz"
	never.Spec.StartTimeoutSeconds = 5 // room for a probe to answer on a loaded machine
	r := make(reports, 4)
	err := d.StartInstance(context.Background(), never, r.report)
	rep := r.next(t, job.InstanceExited)
	if err == nil || !strings.Contains(rep.Error, "start timeout") || !strings.Contains(rep.Error, "503") {
		t.Fatalf("never ready: %v %+v", err, rep)
	}
	for _, c := range instanceContainers(t, d.cfg.WorkerID) {
		if c.Labels[LabelJobID] == never.ID {
			t.Fatalf("left after a failed start: %+v", c)
		}
	}
}

// A crash is reported with its exit code and the end of its output, and
// the containers go; so is an instance that exits before it is ready.
func TestServiceCrashReported(t *testing.T) {
	d := serviceRuntime(t, nil)
	inst := testInstance(t, nil)
	r := startInstance(t, d, inst)
	// More output than a report keeps: only its end is reported.
	if resp := get(t, d, inst.ID, "/print?n=300000", nil); resp.StatusCode != 200 {
		t.Fatalf("print: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := d.DialInstance(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /crash?code=7 HTTP/1.1\r\nHost: x\r\n\r\n")
	_, _ = io.Copy(io.Discard, c)
	c.Close()
	rep := r.next(t, job.InstanceExited)
	if rep.ExitCode != 7 || !strings.HasSuffix(rep.Output, "xxx\ncrashing with 7\n") || len(rep.Output) > job.MaxInstanceOutput ||
		len(rep.Output) < job.MaxInstanceOutput-100 || !strings.Contains(rep.Error, "code 7") {
		t.Fatalf("crash report: %d bytes of output ending %q, %+v", len(rep.Output), rep.Output[max(0, len(rep.Output)-40):], rep.Error)
	}
	if n := leftovers(t, d.cfg.WorkerID); n != 0 {
		t.Fatalf("%d containers or volumes left after a crash", n)
	}

	early := testInstance(t, map[string]string{"EXIT_AT_START": "5"})
	r = make(reports, 4)
	if err := d.StartInstance(context.Background(), early, r.report); err == nil {
		t.Fatal("an instance that exits at start started")
	}
	rep = r.next(t, job.InstanceExited)
	if rep.ExitCode != 5 || !strings.Contains(rep.Output, "exiting at start") {
		t.Fatalf("exit at start: %+v", rep)
	}
	if n := leftovers(t, d.cfg.WorkerID); n != 0 {
		t.Fatalf("%d containers or volumes left after a failed start", n)
	}
}

// What the worker's policy refuses is reported exited before anything is
// created; slots are bounded.
func TestServiceRefusals(t *testing.T) {
	d := serviceRuntime(t, func(c *Config) {
		c.Services = 1
		c.AllowImages = []string{"zerverless-test/*"}
		c.MaxMemoryMB = 512
	})
	for name, mod := range map[string]func(*job.ServiceInstance){
		"image not allowed": func(i *job.ServiceInstance) { i.Spec.Image = "evil/miner:latest" },
		"memory over max":   func(i *job.ServiceInstance) { i.Spec.Resources.MemoryMB = 4096 },
		"port in env":       func(i *job.ServiceInstance) { i.Spec.Env = map[string]string{"PORT": "22"} },
		"readiness path":    func(i *job.ServiceInstance) { i.Spec.ReadinessPath = "/a b" },
		"built elsewhere":   func(i *job.ServiceInstance) { i.Spec.Image = "zerverless-built/other/app:1" },
	} {
		inst := testInstance(t, nil)
		mod(&inst)
		r := make(reports, 2)
		if err := d.StartInstance(context.Background(), inst, r.report); err == nil {
			t.Fatalf("%s: started", name)
		}
		if rep := r.next(t, job.InstanceExited); rep.Error == "" {
			t.Fatalf("%s: no reason: %+v", name, rep)
		}
		if n := leftovers(t, d.cfg.WorkerID); n != 0 {
			t.Fatalf("%s: %d objects created", name, n)
		}
	}
	startInstance(t, d, testInstance(t, nil))
	r := make(reports, 2)
	if err := d.StartInstance(context.Background(), testInstance(t, nil), r.report); err == nil || !strings.Contains(err.Error(), "slots") {
		t.Fatalf("over the slots: %v", err)
	}
	off := newTestRuntime(t, agentConfig(t))
	if err := off.StartInstance(context.Background(), testInstance(t, nil), make(reports, 2).report); err == nil {
		t.Fatal("a worker without --docker-services started an instance")
	}
	cfg := DefaultConfig()
	cfg.Services = 2
	if _, err := New(cfg, testEngine); err == nil || !strings.Contains(err.Error(), "agent") {
		t.Fatalf("services without an agent: %v", err)
	}
}

// From inside an instance, nothing is reachable: not the worker machine's
// loopback, its bridge gateway, its other addresses (where an
// orchestrator on this machine would listen), another container, nor the
// internet. Only its own port on its own loopback answers.
func TestServiceIsolationFromInside(t *testing.T) {
	d := serviceRuntime(t, nil)
	// A listener on every address of the worker's machine.
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	targets := []string{"127.0.0.1:" + port, "[::1]:" + port, "1.1.1.1:80", "8.8.8.8:53", "169.254.169.254:80", "10.0.0.1:80", "192.168.0.1:80",
		// The engine's sockets, were they ever mounted.
		"unix:/var/run/docker.sock", "unix:/run/docker.sock", "unix:/run/containerd/containerd.sock",
		// Its relay's socket, mounted in the relay's container alone.
		"unix:" + relaySocketMount + "/" + relaySocketName}
	br, err := testEngine.NetworkInspect(context.Background(), "bridge", network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range br.IPAM.Config {
		if c.Gateway != "" {
			targets = append(targets, net.JoinHostPort(c.Gateway, port), net.JoinHostPort(c.Gateway, "2375"))
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLinkLocalUnicast() {
			targets = append(targets, net.JoinHostPort(ipn.IP.String(), port))
		}
	}
	// Another container, on the default bridge, listening.
	other := startBridged(t, d, "while true; do nc -l -p 7000 -e true; done")
	oinfo, err := testEngine.ContainerInspect(context.Background(), other)
	if err != nil {
		t.Fatal(err)
	}
	if ip := oinfo.NetworkSettings.IPAddress; ip != "" {
		targets = append(targets, ip+":7000")
	}
	// The control: what the host reaches (the listener, the other
	// container) is really there.
	for _, tgt := range []string{"127.0.0.1:" + port, oinfo.NetworkSettings.IPAddress + ":7000"} {
		eventually(t, 30*time.Second, func() error {
			c, err := net.DialTimeout("tcp", tgt, 2*time.Second)
			if err != nil {
				return fmt.Errorf("the host cannot reach %s itself: %v", tgt, err)
			}
			return c.Close()
		})
	}

	inst := testInstance(t, nil)
	startInstance(t, d, inst)
	q := "addr=127.0.0.1:8080"
	for _, tgt := range targets {
		q += "&addr=" + tgt
	}
	resp := get(t, d, inst.ID, "/dial?"+q, nil)
	var results []struct {
		Addr  string
		OK    bool
		Error string
	}
	if err := json.NewDecoder(resp.Body).Decode(&results); err != nil {
		t.Fatal(err)
	}
	if len(results) != len(targets)+1 || !results[0].OK {
		t.Fatalf("dial results: %+v", results)
	}
	for _, r := range results[1:] {
		if r.OK {
			t.Errorf("from inside the instance, %s is reachable", r.Addr)
		} else {
			t.Logf("%s: %s", r.Addr, r.Error)
		}
	}
}

// startBridged starts a busybox container on the default bridge running
// script, removed at the end of the test.
func startBridged(t *testing.T, d *Docker, script string) string {
	t.Helper()
	ctx := context.Background()
	c, err := testEngine.ContainerCreate(ctx,
		&container.Config{Image: testImage, Cmd: []string{"sh", "-c", script}, User: "65534:65534", Labels: d.labels("test", "")},
		&container.HostConfig{CapDrop: []string{"ALL"}}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = testEngine.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	})
	if err := testEngine.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// serviceChildEnv makes the test binary a worker that starts one
// instance and waits to be killed.
const serviceChildEnv = "ZERVERLESS_DOCKER_TEST_SERVICE_WORKER"

func serviceChild() {
	c, err := NewClient()
	if err != nil {
		os.Exit(3)
	}
	cfg := DefaultConfig()
	cfg.WorkerID = os.Getenv(serviceChildEnv)
	cfg.AgentBinary = os.Getenv("ZERVERLESS_DOCKER_TEST_AGENT")
	cfg.Services = 1
	d, err := New(cfg, c)
	if err != nil {
		os.Exit(3)
	}
	inst := job.ServiceInstance{ID: "killed-" + cfg.WorkerID, Namespace: "user",
		Spec: job.ServiceSpec{Image: os.Getenv("ZERVERLESS_DOCKER_TEST_IMAGE"), Port: 8080, StartTimeoutSeconds: 60}}
	if err := d.StartInstance(context.Background(), inst, func(job.InstanceReport) {}); err != nil {
		os.Exit(4)
	}
	fmt.Println("ready")
	select {}
}

// A worker killed (kill -9 of a real process) with an instance running:
// another worker on the engine, with its own id, removes the instance and
// its relay though no worker with the dead one's id starts again; and a
// successor with the dead one's id sweeps them.
func TestKilledWorkersInstanceIsReaped(t *testing.T) {
	dead := testWorkerPrefix + "dead-" + randomHex(3)
	killServiceChild(t, dead)

	other := serviceRuntime(t, nil)
	// A live instance of the other worker is never touched.
	inst := testInstance(t, nil)
	startInstance(t, other, inst)
	eventually(t, time.Minute, func() error {
		if _, err := other.Reap(context.Background()); err != nil {
			return err
		}
		if cs := instanceContainers(t, dead); len(cs) > 0 {
			return fmt.Errorf("%d containers of the killed worker remain (%s)", len(cs), cs[0].State)
		}
		return nil
	})
	if resp := get(t, other, inst.ID, "/", nil); resp.StatusCode != 200 {
		t.Fatalf("the live instance after the reap: %d", resp.StatusCode)
	}

	// A killed worker restarted with its id sweeps its instances at once.
	again := testWorkerPrefix + "dead-" + randomHex(3)
	killServiceChild(t, again)
	successor := serviceRuntime(t, func(c *Config) { c.WorkerID = again })
	if _, err := successor.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if cs := instanceContainers(t, again); len(cs) > 0 {
		t.Fatalf("%d containers of the killed worker remain after its successor's sweep", len(cs))
	}
}

// killServiceChild starts a worker process with workerID that runs one
// instance, and kills it (SIGKILL) once the instance is ready.
func killServiceChild(t *testing.T, workerID string) {
	t.Helper()
	bin, err := dockertest.AgentBinary()
	if err != nil {
		t.Fatal(err)
	}
	dead := workerID
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serviceChildEnv+"="+dead, "ZERVERLESS_DOCKER_TEST_IMAGE="+goServerImage(t),
		"ZERVERLESS_DOCKER_TEST_AGENT="+bin)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("the child worker did not start its instance: %q", line)
	}
	if cs := instanceContainers(t, dead); len(cs) != 2 {
		t.Fatalf("containers of the child: %+v", cs)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}

// A report's output is valid UTF-8 within its bound, whatever the
// instance printed.
func TestLimitOutput(t *testing.T) {
	max := job.MaxInstanceOutput
	for name, in := range map[string]string{
		"short":           "hello\n",
		"long":            strings.Repeat("x", 3*max),
		"invalid bytes":   strings.Repeat("\xff\xfe", max),
		"cut mid-rune":    "a" + strings.Repeat("é", max),
		"invalid and ok":  strings.Repeat("ok\x80", max),
		"exactly the max": strings.Repeat("y", max),
	} {
		out := limitOutput(in)
		if len(out) > max || !utf8.ValidString(out) {
			t.Errorf("%s: %d bytes, valid %v", name, len(out), utf8.ValidString(out))
		}
		// What the orchestrator decodes is what was bounded.
		var back string
		if b, _ := json.Marshal(out); json.Unmarshal(b, &back) != nil || back != out {
			t.Errorf("%s: changed through JSON", name)
		}
		if utf8.ValidString(in) && !strings.HasSuffix(in, out) {
			t.Errorf("%s: not the end of the output", name)
		}
	}
}

// The worker's dials go over the relay's socket, in a directory of
// RelaySocketDir that is removed with the instance; an instance without a
// reachable socket is dialed over the attach stream; Sweep removes the
// directories of an earlier run.
func TestServiceRelaySocket(t *testing.T) {
	base := filepath.Join(t.TempDir(), "relays")
	d := serviceRuntime(t, func(c *Config) { c.RelaySocketDir = base })
	inst := testInstance(t, nil)
	startInstance(t, d, inst)
	d.services.mu.Lock()
	r := d.services.byID[inst.ID].relay
	d.services.mu.Unlock()
	<-r.dialsSet
	if r.dir == "" || r.dials == r.sess {
		t.Fatalf("dials over the attach stream (dir %q)", r.dir)
	}
	if fi, err := os.Stat(base); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory: %v %v", fi, err)
	}
	if resp := get(t, d, inst.ID, "/", nil); resp.StatusCode != 200 {
		t.Fatalf("through the socket: %d", resp.StatusCode)
	}
	if err := d.StopInstance(context.Background(), inst.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the relay's directory after its stop: %v", err)
	}
	stale := filepath.Join(base, "0123456789abcdef-42") // as an earlier run names its relays' directories
	os.Mkdir(stale, 0o777)
	if _, err := d.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a directory of an earlier run after Sweep: %v", err)
	}
}
