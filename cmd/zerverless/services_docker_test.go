package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"github.com/zerverless/zerverless/internal/api"
	zclient "github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime/docker"
)

// Scaling, crashes, lost workers, redeploys and orchestrator restarts of
// docker services on the real engine: an orchestrator in this process,
// docker workers that offer services (in this process, or as processes
// of their own that a test can kill), and the test image of
// services_e2e_test.go.

// svcDocker is an orchestrator for these tests: on an address and a data
// directory of its own, so that it can be restarted over the same store
// and its workers find it again.
type svcDocker struct {
	t   *testing.T
	cfg ServerConfig
	srv *Server
	img string
	// wids are the docker worker ids of the test's workers.
	mu   sync.Mutex
	wids []string
}

func newSvcDocker(t *testing.T) *svcDocker {
	t.Helper()
	img := serviceTestImage(t)
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Addr = freeAddr(t)
	cfg.Orchestrator.Services.ReconcileInterval = 50 * time.Millisecond
	cfg.Orchestrator.Services.RestartBackoff = 50 * time.Millisecond
	// A loaded machine must not make a live worker pass for a lost one.
	cfg.Orchestrator.HeartbeatInterval = time.Second
	e := &svcDocker{t: t, cfg: cfg, img: img}
	e.start()
	t.Cleanup(func() { e.srv.Close() })
	return e
}

func (e *svcDocker) start() {
	e.t.Helper()
	srv, err := StartServer(context.Background(), e.cfg)
	if err != nil {
		e.t.Fatalf("start server: %v", err)
	}
	e.srv = srv
}

// restart closes the orchestrator and starts it again over the same
// store, on the same address.
func (e *svcDocker) restart() {
	e.t.Helper()
	if err := e.srv.Close(); err != nil {
		e.t.Logf("close server: %v", err)
	}
	e.start()
}

func (e *svcDocker) workerID(name string) string {
	wid := fmt.Sprintf("zvtest-svcd-%s-%d", name, time.Now().UnixNano())
	e.mu.Lock()
	e.wids = append(e.wids, wid)
	e.mu.Unlock()
	return wid
}

// worker starts a docker worker in this process that offers n service
// instances, and returns its docker worker id.
func (e *svcDocker) worker(name string, n int) string {
	e.t.Helper()
	agentBin, err := dockertest.AgentBinary()
	if err != nil {
		e.t.Fatal(err)
	}
	ro := DefaultRuntimeOptions()
	ro.Only = []job.Type{job.TypeDocker}
	ro.Docker = true
	ro.DockerConfig.WorkerID = e.workerID(name)
	ro.DockerConfig.Pull = false
	ro.DockerConfig.AgentBinary = agentBin
	ro.DockerConfig.Services = n
	// Its upkeep reaps what dead workers left on the engine.
	ro.DockerConfig.UpkeepInterval = 200 * time.Millisecond
	startWorkerWith(e.t, e.srv.WorkerURL(), name, ro)
	return ro.DockerConfig.WorkerID
}

// workerProcess starts a docker worker process that offers n service
// instances; kill -9 it with the returned command's Process.
func (e *svcDocker) workerProcess(name string, n int) (*exec.Cmd, string) {
	e.t.Helper()
	agentBin, err := dockertest.AgentBinary()
	if err != nil {
		e.t.Fatal(err)
	}
	wid := e.workerID(name)
	cmd := exec.Command(os.Args[0], "worker", "--orchestrator", e.srv.WorkerURL(), "--name", name, "--runtimes", "docker",
		"--docker", "--docker-no-pull", "--docker-agent", agentBin, "--docker-services", fmt.Sprint(n),
		"--docker-worker-id", wid, "--join-token", testWorkerSecret, "--concurrency", "1", "--log-level", "warn", "--data", e.t.TempDir())
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { stopProcess(cmd) })
	return cmd, wid
}

func (e *svcDocker) deploy(name, body string) {
	e.t.Helper()
	a := send(e.t, "POST", e.srv.URL()+"/api/deploy/"+name, e.srv.AdminToken(), "application/json", []byte(body))
	if a.status != 201 && a.status != 200 {
		e.t.Fatalf("deploy %s: %v", name, a)
	}
}

func (e *svcDocker) undeploy(name string) {
	e.t.Helper()
	if a := send(e.t, "DELETE", e.srv.URL()+"/api/deploy/"+name, e.srv.AdminToken(), "", nil); a.status != 204 {
		e.t.Fatalf("undeploy %s: %v", name, a)
	}
}

// view returns the deployment name with its instances.
func (e *svcDocker) view(name string) api.DeploymentView {
	e.t.Helper()
	a := send(e.t, "GET", e.srv.URL()+"/api/deploy/"+name, e.srv.AdminToken(), "", nil)
	var v api.DeploymentView
	if a.status != 200 || json.Unmarshal(a.body, &v) != nil {
		e.t.Fatalf("deployment %s: %v", name, a)
	}
	return v
}

// call makes one request to the service name at path rest.
func (e *svcDocker) call(name, rest string) (int, string, error) {
	return callService("GET", e.srv.URL()+"/"+name+rest, nil)
}

// mustCall wants 200 from the service, waiting (bounded) while it starts.
func (e *svcDocker) mustCall(name, rest string) string {
	e.t.Helper()
	var body string
	eventually(e.t, 60*time.Second, func() error {
		st, b, err := e.call(name, rest)
		if err != nil || st != 200 {
			return fmt.Errorf("call %s%s: %d %q %v", name, rest, st, b, err)
		}
		body = b
		return nil
	})
	return body
}

// instanceContainers lists the service containers (instances and their
// relays) of the test's workers on the engine, by role.
func (e *svcDocker) instanceContainers() (instances, relays []string) {
	e.t.Helper()
	e.mu.Lock()
	wids := append([]string(nil), e.wids...)
	e.mu.Unlock()
	for _, wid := range wids {
		for _, c := range labeled(e.t, wid) {
			switch c.Labels[docker.LabelRole] {
			case "service":
				instances = append(instances, c.ID)
			case "service-relay":
				relays = append(relays, c.ID)
			}
		}
	}
	return instances, relays
}

// waitNoInstanceContainers waits until no instance or relay of the test's
// workers is left on the engine.
func (e *svcDocker) waitNoInstanceContainers(why string) {
	e.t.Helper()
	eventually(e.t, 60*time.Second, func() error {
		in, re := e.instanceContainers()
		if len(in)+len(re) > 0 {
			return fmt.Errorf("%s: %d instance and %d relay containers left on the engine", why, len(in), len(re))
		}
		return nil
	})
}

// waitNothingLeft waits until no container or volume of the test's
// workers is left on the engine (their workers run no jobs, so they keep
// nothing warm).
func (e *svcDocker) waitNothingLeft(why string) {
	e.t.Helper()
	e.mu.Lock()
	wids := append([]string(nil), e.wids...)
	e.mu.Unlock()
	eventually(e.t, 60*time.Second, func() error {
		for _, wid := range wids {
			if cs := labeled(e.t, wid); len(cs) > 0 {
				return fmt.Errorf("%s: %d containers of worker %s left", why, len(cs), wid)
			}
			vs, err := testEngine(e.t).VolumeList(context.Background(), volume.ListOptions{
				Filters: filters.NewArgs(filters.Arg("label", docker.LabelWorkerID+"="+wid))})
			if err != nil {
				return err
			}
			if len(vs.Volumes) > 0 {
				return fmt.Errorf("%s: %d volumes of worker %s left", why, len(vs.Volumes), wid)
			}
		}
		return nil
	})
}

// readyInstances waits until the deployment name shows n instances, all
// ready, and returns them.
func (e *svcDocker) readyInstances(name string, n int) []job.InstanceView {
	e.t.Helper()
	var ins []job.InstanceView
	eventually(e.t, 60*time.Second, func() error {
		ins = e.view(name).Instances
		if len(ins) != n {
			return fmt.Errorf("%d instances, want %d: %+v", len(ins), n, ins)
		}
		for _, in := range ins {
			if in.State != "ready" {
				return fmt.Errorf("instance %s is %s", in.ID, in.State)
			}
		}
		return nil
	})
	return ins
}

// TestServiceDockerScaleToZero: an idle instance stops, its container and
// relay leave the engine, and the next request starts a new one.
func TestServiceDockerScaleToZero(t *testing.T) {
	e := newSvcDocker(t)
	e.worker("w1", 2)
	e.deploy("zero/svc", `{"runtime":"docker","docker_image":"`+e.img+`","idle_timeout_seconds":0.5,"start_timeout_seconds":60}`)
	first := e.mustCall("zero/svc", "/_host")
	if in, re := e.instanceContainers(); len(in) != 1 || len(re) != 1 {
		t.Fatalf("a running instance is %d instance and %d relay containers, want one each", len(in), len(re))
	}
	eventually(t, 60*time.Second, func() error {
		if ins := e.view("zero/svc").Instances; len(ins) > 0 {
			return fmt.Errorf("instances still shown: %+v", ins)
		}
		return nil
	})
	e.waitNoInstanceContainers("scaled to zero")
	second := e.mustCall("zero/svc", "/_host")
	if second == first {
		t.Fatalf("the request after scaling to zero was answered by the same instance (%q)", first)
	}
	e.undeploy("zero/svc")
	e.waitNothingLeft("after undeploy")
}

// TestServiceDockerTwoInstancesUnderLoad: more requests in flight than
// one instance takes start a second instance, on the other worker, and
// every request is answered.
func TestServiceDockerTwoInstancesUnderLoad(t *testing.T) {
	e := newSvcDocker(t)
	e.worker("w1", 2)
	e.worker("w2", 2)
	eventually(t, 30*time.Second, func() error {
		ws, err := zclient.New(e.srv.URL(), nil).WithToken(e.srv.AdminToken()).Workers(context.Background())
		if err != nil || len(ws) != 2 {
			return fmt.Errorf("workers %d %v", len(ws), err)
		}
		return nil
	})
	e.deploy("load/svc", `{"runtime":"docker","docker_image":"`+e.img+`","concurrency":2,"max_instances":2,"start_timeout_seconds":60}`)
	// Three callers, each with one slow request at a time: more than the
	// two one instance takes, fewer than the four of two.
	var (
		mu    sync.Mutex
		hosts = map[string]int{}
		fails []string
		n     atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st, body, err := e.call("load/svc", "/_host?ms=200")
				mu.Lock()
				if err != nil || st != 200 {
					fails = append(fails, fmt.Sprintf("%d %q %v", st, body, err))
				} else {
					hosts[strings.Fields(body)[0]]++
				}
				mu.Unlock()
				n.Add(1)
			}
		}()
	}
	var workers map[string]bool
	eventually(t, 90*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		workers = map[string]bool{}
		for _, in := range e.view("load/svc").Instances {
			workers[in.WorkerID] = true
		}
		if len(hosts) < 2 || len(workers) < 2 || n.Load() < 30 {
			return fmt.Errorf("%d requests answered by %v, instances on %d workers", n.Load(), hosts, len(workers))
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if len(fails) > 0 {
		t.Fatalf("%d of %d requests failed under load, first: %s", len(fails), n.Load(), fails[0])
	}
	if len(hosts) != 2 {
		t.Fatalf("requests answered by %v, want two instances", hosts)
	}
	e.undeploy("load/svc")
	e.waitNothingLeft("after undeploy")
}

// TestServiceDockerCrashRestarted: an instance that exits is started
// again; the deployment shows the restart, the exit code and the output.
func TestServiceDockerCrashRestarted(t *testing.T) {
	e := newSvcDocker(t)
	e.worker("w1", 2)
	e.deploy("crash/svc", `{"runtime":"docker","docker_image":"`+e.img+`","start_timeout_seconds":60}`)
	first := e.mustCall("crash/svc", "/_host")
	crashed, _ := e.instanceContainers()
	if len(crashed) != 1 {
		t.Fatalf("%d instance containers, want 1", len(crashed))
	}
	if st, _, _ := e.call("crash/svc", "/_exit?code=7"); st == 200 {
		t.Fatalf("the request that made the instance exit was answered 200")
	}
	second := e.mustCall("crash/svc", "/_host")
	if second == first {
		t.Fatalf("answered by the instance that exited (%q)", first)
	}
	var in job.InstanceView
	eventually(t, 30*time.Second, func() error {
		ins := e.view("crash/svc").Instances
		if len(ins) != 1 || ins[0].State != "ready" || ins[0].Restarts != 1 || ins[0].LastExit == nil {
			return fmt.Errorf("instances %+v", ins)
		}
		in = ins[0]
		return nil
	})
	if in.LastExit.ExitCode != 7 || !strings.Contains(in.LastExit.Output, "exiting with code 7 on request") {
		t.Fatalf("last exit %+v, want code 7 and the instance's output", in.LastExit)
	}
	now, _ := e.instanceContainers()
	for _, id := range now {
		if id == crashed[0] {
			t.Fatalf("the crashed instance's container is still on the engine")
		}
	}
	logs := send(t, "GET", e.srv.URL()+"/api/deploy/crash/svc/logs", e.srv.AdminToken(), "", nil)
	if !strings.Contains(string(logs.body), "exiting with code 7 on request") {
		t.Fatalf("logs: %v", logs)
	}
	e.undeploy("crash/svc")
	e.waitNothingLeft("after undeploy")
}

// TestServiceDockerWorkerKilled: kill -9 of a worker process while a
// request to its instance is in flight. The request ends 502 at once (the
// instance would answer a minute later), the service answers again from
// the other worker, and the killed worker's containers are reaped.
func TestServiceDockerWorkerKilled(t *testing.T) {
	e := newSvcDocker(t)
	proc, dead := e.workerProcess("doomed", 2)
	e.deploy("kill/svc", `{"runtime":"docker","docker_image":"`+e.img+`","min_instances":1,"start_timeout_seconds":60}`)
	before := e.readyInstances("kill/svc", 1)[0]
	e.worker("survivor", 2)
	if cs := labeled(t, dead); len(cs) != 2 {
		t.Fatalf("the worker process runs %d containers, want the instance and its relay", len(cs))
	}
	type result struct {
		status int
		body   string
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		st, b, err := e.call("kill/svc", "/_host?ms=60000")
		slow <- result{st, b, err}
	}()
	eventually(t, 30*time.Second, func() error {
		if ins := e.view("kill/svc").Instances; len(ins) != 1 || ins[0].InFlight != 1 {
			return fmt.Errorf("the slow request is not in flight yet: %+v", ins)
		}
		return nil
	})
	proc.Process.Signal(syscall.SIGKILL)
	proc.Wait()
	select {
	case r := <-slow:
		if r.status != 502 {
			t.Fatalf("the request in flight on the killed worker: %d %q %v, want 502", r.status, r.body, r.err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("the request in flight on the killed worker did not end")
	}
	e.mustCall("kill/svc", "/_host")
	after := e.readyInstances("kill/svc", 1)[0]
	if after.WorkerID == before.WorkerID || after.WorkerName != "survivor" {
		t.Fatalf("instance on %s (%s) after the kill, want the survivor", after.WorkerName, after.WorkerID)
	}
	eventually(t, 60*time.Second, func() error {
		if cs := labeled(t, dead); len(cs) > 0 {
			return fmt.Errorf("%d containers of the killed worker left", len(cs))
		}
		return nil
	})
	e.undeploy("kill/svc")
	e.waitNothingLeft("after undeploy")
}

// TestServiceDockerRedeployUnderLoad: a redeploy with a new environment
// while requests keep coming: none fails, and they move to the new
// version.
func TestServiceDockerRedeployUnderLoad(t *testing.T) {
	e := newSvcDocker(t)
	e.worker("w1", 3)
	deploy := func(version string) {
		e.deploy("redeploy/svc", `{"runtime":"docker","docker_image":"`+e.img+`","docker_env":{"VERSION":"`+version+`"},"min_instances":1,"start_timeout_seconds":60}`)
	}
	deploy("v1")
	if got := e.mustCall("redeploy/svc", "/_host"); !strings.HasSuffix(got, " v1") {
		t.Fatalf("first version answered %q", got)
	}
	var (
		mu       sync.Mutex
		fails    []string
		versions = map[string]int{}
		lastV2   atomic.Int64 // requests answered by v2 in a row, over all callers
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st, body, err := e.call("redeploy/svc", "/_host?ms=20")
				mu.Lock()
				if err != nil || st != 200 {
					fails = append(fails, fmt.Sprintf("%d %q %v", st, body, err))
				} else {
					f := strings.Fields(body)
					v := f[len(f)-1]
					versions[v]++
					if v == "v2" {
						lastV2.Add(1)
					} else {
						lastV2.Store(0)
					}
				}
				mu.Unlock()
			}
		}()
	}
	eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if versions["v1"] < 10 {
			return fmt.Errorf("%d requests to v1 so far", versions["v1"])
		}
		return nil
	})
	deploy("v2")
	eventually(t, 90*time.Second, func() error {
		if n := lastV2.Load(); n < 30 {
			return fmt.Errorf("%d requests in a row answered by v2", n)
		}
		ins := e.view("redeploy/svc").Instances
		if len(ins) != 1 {
			return fmt.Errorf("instances %+v, want the new one only", ins)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if len(fails) > 0 {
		t.Fatalf("%d requests failed during the redeploy (%v answered), first: %s", len(fails), versions, fails[0])
	}
	if in, re := e.instanceContainers(); len(in) != 1 || len(re) != 1 {
		t.Fatalf("after the redeploy %d instance and %d relay containers, want the new version's only", len(in), len(re))
	}
	e.undeploy("redeploy/svc")
	e.waitNothingLeft("after undeploy")
}

// TestServiceDockerOrchestratorRestart: the orchestrator restarts over
// the same store; its workers connect again. The instances of before are
// gone from the engine, min_instances run again, and requests are
// answered.
func TestServiceDockerOrchestratorRestart(t *testing.T) {
	e := newSvcDocker(t)
	e.worker("w1", 2)
	e.deploy("restart/svc", `{"runtime":"docker","docker_image":"`+e.img+`","min_instances":1,"start_timeout_seconds":60}`)
	before := e.readyInstances("restart/svc", 1)[0]
	first := e.mustCall("restart/svc", "/_host")
	old, _ := e.instanceContainers()
	if len(old) != 1 {
		t.Fatalf("%d instance containers before the restart, want 1", len(old))
	}
	e.restart()
	after := e.readyInstances("restart/svc", 1)[0]
	if after.ID == before.ID {
		t.Fatalf("the same instance id after the restart")
	}
	if got := e.mustCall("restart/svc", "/_host"); got == first {
		t.Fatalf("answered by the instance of before the restart (%q)", got)
	}
	eventually(t, 60*time.Second, func() error {
		now, relays := e.instanceContainers()
		for _, id := range now {
			if id == old[0] {
				return fmt.Errorf("the instance of before the restart is still on the engine")
			}
		}
		if len(now) != 1 || len(relays) != 1 {
			return fmt.Errorf("%d instance and %d relay containers, want one each", len(now), len(relays))
		}
		return nil
	})
	e.undeploy("restart/svc")
	e.waitNothingLeft("after undeploy")
}
