package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/api/apitest"
	"github.com/zerverless/zerverless/internal/job"
)

// finishByCode ends a waited-for job according to its code or command, so
// that each test picks the outcome it needs.
func finishByCode(j *job.Job) {
	r := job.Result{Status: job.StatusCompleted}
	switch {
	case j.Type == job.TypeDocker:
		r.Output = strings.Join(j.Spec.Docker.Command, " ") + "\n"
		if cmd := j.Spec.Docker.Command; len(cmd) == 3 && cmd[2] == "exit 7" {
			r.Status, r.ExitCode, r.Output = job.StatusFailed, 7, ""
			r.Stderr = "bye\n"
		}
	case j.Spec.Code == "fail":
		r.Status, r.Error, r.Stderr = job.StatusFailed, "runtime error: boom", "trace\n"
	case j.Spec.Code == "exit3":
		r.Status, r.ExitCode = job.StatusFailed, 3
	case j.Spec.Code == "slow":
		r.Status, r.Error = job.StatusTimeout, "timed out after 1s"
	case j.Spec.Code == "pending":
		return
	default:
		r.Output = "hello"
		r.Result = json.RawMessage(`{"n":1}`)
		if len(j.Spec.Input) > 0 {
			r.Result = j.Spec.Input
		}
	}
	j.Status = r.Status
	j.Result = &r
}

func newServer(t *testing.T) (string, *apitest.Service) {
	t.Helper()
	svc := apitest.NewService()
	svc.OnWait = finishByCode
	h, err := api.New(api.DefaultConfig(), apitest.OpenAdmission(t, svc), svc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL, svc
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), args, &out, &errOut, func(k string) string { return env[k] })
	return result{code, out.String(), errOut.String()}
}

func TestRunLua(t *testing.T) {
	url, svc := newServer(t)
	res := run(t, nil, "run", "--server", url, "--type", "lua", "--code", "print('hello') return {n=1}", "--timeout", "5s", "--namespace", "team")
	if res.code != 0 || res.stdout != "hello\n{\"n\":1}\n" || res.stderr != "" {
		t.Fatalf("run: %+v", res)
	}
	req := svc.Submitted()[0]
	if req.Type != job.TypeLua || req.Namespace != "team" || *req.TimeoutSeconds != 5 {
		t.Fatalf("request %+v", req)
	}
}

func TestRunReplicas(t *testing.T) {
	url, svc := newServer(t)
	res := run(t, nil, "run", "--server", url, "--type", "lua", "--code", "return 1", "--replicas", "3", "--quorum", "2")
	if res.code != 0 {
		t.Fatalf("run: %+v", res)
	}
	if req := svc.Submitted()[0]; req.Replicas != 3 || req.Quorum != 2 {
		t.Fatalf("request %+v", req)
	}
}

func TestRunServerSelection(t *testing.T) {
	url, svc := newServer(t)
	// From the environment.
	res := run(t, map[string]string{ServerEnv: url}, "run", "--type", "js", "--code", "1")
	if res.code != 0 {
		t.Fatalf("env server: %+v", res)
	}
	// The flag wins over the environment.
	res = run(t, map[string]string{ServerEnv: "http://127.0.0.1:1"}, "run", "--server", strings.TrimPrefix(url, "http://"), "--type", "js", "--code", "1")
	if res.code != 0 {
		t.Fatalf("flag server: %+v", res)
	}
	if n := len(svc.Submitted()); n != 2 {
		t.Fatalf("%d submitted", n)
	}
	// Nothing listens at the address from the environment.
	res = run(t, map[string]string{ServerEnv: "http://127.0.0.1:1"}, "run", "--type", "js", "--code", "1")
	if res.code != ExitFail || !strings.Contains(res.stderr, "127.0.0.1:1") {
		t.Fatalf("unreachable server: %+v", res)
	}
}

func TestRunFailures(t *testing.T) {
	url, _ := newServer(t)
	for _, tt := range []struct {
		code       string
		exit       int
		stderrWant string
	}{
		{"fail", 1, "trace\nzerverless: job job-1 failed: runtime error: boom\n"},
		{"exit3", 3, "zerverless: job job-2 failed\n"},
		{"slow", 1, "timeout: timed out after 1s"},
	} {
		res := run(t, nil, "run", "--server", url, "--type", "python", "--code", tt.code)
		if res.code != tt.exit || !strings.Contains(res.stderr, tt.stderrWant) {
			t.Errorf("%s: %+v", tt.code, res)
		}
	}
}

func TestRunDocker(t *testing.T) {
	url, svc := newServer(t)
	res := run(t, nil, "run", "--server", url, "--image", "alpine:3.20", "--env", "A=1", "--env", "B=x=y",
		"--memory-mb", "64", "--cpus", "0.5", "--", "sh", "-c", "exit 7")
	if res.code != 7 || res.stderr != "bye\nzerverless: job job-1 failed\n" {
		t.Fatalf("docker run: %+v", res)
	}
	req := svc.Submitted()[0]
	if req.Type != job.TypeDocker || req.DockerImage != "alpine:3.20" ||
		!reflect.DeepEqual(req.DockerCommand, []string{"sh", "-c", "exit 7"}) ||
		!reflect.DeepEqual(req.DockerEnv, map[string]string{"A": "1", "B": "x=y"}) ||
		req.Resources == nil || req.Resources.MemoryMB != 64 || req.Resources.CPUs != 0.5 {
		t.Fatalf("request %+v", req)
	}
	// Flags of the command after -- are the container's, not ours.
	res = run(t, nil, "run", "--server", url, "--image", "busybox", "--", "echo", "-n", "--json", "hi")
	if res.code != 0 || res.stdout != "echo -n --json hi\n" {
		t.Fatalf("argv after --: %+v", res)
	}
	// Zerverless's own errors are 125, as with docker run.
	res = run(t, nil, "run", "--server", url, "--image", "not an image!")
	if res.code != ExitDockerError || !strings.Contains(res.stderr, `field "docker_image"`) {
		t.Fatalf("bad image: %+v", res)
	}
}

func TestRunAPIErrors(t *testing.T) {
	url, svc := newServer(t)
	res := run(t, nil, "run", "--server", url, "--type", "cobol", "--code", "x")
	if res.code != ExitFail || !strings.Contains(res.stderr, `field "job_type"`) || !strings.Contains(res.stderr, "unknown job type") ||
		!strings.Contains(res.stderr, "HTTP 400") {
		t.Fatalf("unknown type: %+v", res)
	}
	res = run(t, nil, "run", "--server", url, "--type", "lua", "--code", "x", "--timeout", "-3")
	if res.code != ExitFail || !strings.Contains(res.stderr, `field "timeout_seconds"`) {
		t.Fatalf("negative timeout: %+v", res)
	}
	if n := len(svc.Submitted()); n != 0 {
		t.Fatalf("%d submitted", n)
	}
}

func TestRunUsage(t *testing.T) {
	url, svc := newServer(t)
	for _, args := range [][]string{
		{"run"},
		{"run", "--code", "x"},
		{"run", "--type", "lua", "--code", "x", "extra"},
		{"run", "--type", "lua", "--code", "x", "--input", "{not json"},
		{"run", "--type", "lua", "--code", "x", "--env", "A=1"},
		{"run", "--type", "lua", "--code", "x", "--timeout", "soon"},
		{"run", "--type", "lua", "--image", "alpine"},
		{"run", "--no-such-flag"},
		{"run", "-f", "/no/such/file.lua"},
		{"job"},
		{"cancel"},
		{"jobs", "extra"},
		{"frobnicate"},
		{},
	} {
		res := run(t, nil, append(args, "--server", url)...)
		if len(args) == 0 {
			res = run(t, nil)
		}
		if res.code != ExitUsage || res.stderr == "" {
			t.Errorf("%q: %+v", args, res)
		}
	}
	for _, cmd := range []string{"run", "jobs", "job", "cancel"} {
		res := run(t, nil, cmd, "--help")
		if res.code != 0 || !strings.HasPrefix(res.stdout, "Usage:") || !strings.Contains(res.stdout, "--server") {
			t.Errorf("%s --help: %+v", cmd, res)
		}
	}
	if n := len(svc.Submitted()); n != 0 {
		t.Fatalf("%d submitted", n)
	}
}

func TestRunFilesAndInput(t *testing.T) {
	url, svc := newServer(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "hello.lua")
	os.WriteFile(script, []byte("return INPUT"), 0o644)
	res := run(t, nil, "run", "--server", url, "-f", script, "--input", `{"k":[1,2]}`)
	if res.code != 0 || res.stdout != "hello\n{\"k\":[1,2]}\n" {
		t.Fatalf("run -f: %+v", res)
	}
	req := svc.Submitted()[0]
	if req.Type != job.TypeLua || req.Code != "return INPUT" || string(req.Input) != `{"k":[1,2]}` {
		t.Fatalf("request %+v", req)
	}

	module := filepath.Join(dir, "m.wasm")
	os.WriteFile(module, []byte("\x00asm\x01\x00\x00\x00"), 0o644)
	res = run(t, nil, "run", "--server", url, "--wasm-file", module, "--args", "a b", "--", "c", "--d")
	if res.code != 0 {
		t.Fatalf("wasm: %+v", res)
	}
	req = svc.Submitted()[1]
	if req.Type != job.TypeWasm || !job.IsWasmModule(req.Wasm) || !reflect.DeepEqual(req.Args, []string{"a", "b", "c", "--d"}) {
		t.Fatalf("wasm request %+v", req)
	}

	res = run(t, nil, "run", "--server", url, "--type", "js", "--code", "pending", "--detach")
	if res.code != 0 || res.stdout != "job-3\n" {
		t.Fatalf("detach: %+v", res)
	}
	res = run(t, nil, "run", "--server", url, "--type", "js", "--code", "fail", "--json")
	var v api.View
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil || res.code != 1 || v.Status != job.StatusFailed || v.Error == "" {
		t.Fatalf("--json: %+v", res)
	}
}

func TestJobsJobCancel(t *testing.T) {
	url, _ := newServer(t)
	for _, code := range []string{"ok", "fail"} {
		run(t, nil, "run", "--server", url, "--type", "lua", "--code", code)
	}
	run(t, nil, "run", "--server", url, "--type", "lua", "--code", "pending", "-d", "--namespace", "other")

	res := run(t, nil, "jobs", "--server", url)
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if res.code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], "job-3") ||
		!strings.Contains(lines[2], "runtime error: boom") || !strings.Contains(lines[3], "completed") {
		t.Fatalf("jobs:\n%s\n%s", res.stdout, res.stderr)
	}
	res = run(t, nil, "jobs", "--server", url, "--limit", "1", "--json", "--namespace", "other")
	var list api.JobList
	if err := json.Unmarshal([]byte(res.stdout), &list); err != nil || len(list.Jobs) != 1 || list.Jobs[0].ID != "job-3" {
		t.Fatalf("jobs --json: %+v", res)
	}
	res = run(t, nil, "jobs", "--server", url, "--limit", "2")
	if !strings.Contains(res.stderr, "--cursor job-2") {
		t.Fatalf("no next page hint: %+v", res)
	}
	res = run(t, nil, "jobs", "--server", url, "--status", "finished")
	if res.code != 1 || !strings.Contains(res.stderr, `field "status"`) {
		t.Fatalf("bad status: %+v", res)
	}

	// Flags may follow the ID.
	res = run(t, nil, "job", "job-1", "--server", url)
	var v api.View
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil || res.code != 0 || v.Output != "hello" {
		t.Fatalf("job: %+v", res)
	}
	if !strings.Contains(res.stdout, "\n  \"id\": \"job-1\"") {
		t.Fatalf("not indented: %s", res.stdout)
	}
	res = run(t, nil, "job", "--server", url, "--spec", "job-1")
	if !strings.Contains(res.stdout, `"code": "ok"`) {
		t.Fatalf("job --spec: %+v", res)
	}
	res = run(t, nil, "job", "--server", url, "job-99")
	if res.code != 1 || !strings.Contains(res.stderr, "not found") || !strings.Contains(res.stderr, "HTTP 404") {
		t.Fatalf("missing job: %+v", res)
	}

	res = run(t, nil, "cancel", "--server", url, "job-3")
	if res.code != 0 || res.stdout != "job-3 canceled\n" {
		t.Fatalf("cancel: %+v", res)
	}
	res = run(t, nil, "cancel", "--server", url, "job-3", "job-99")
	if res.code != 1 || !strings.Contains(res.stderr, "already ended: canceled") || !strings.Contains(res.stderr, "job-99") {
		t.Fatalf("cancel twice: %+v", res)
	}
}

// TestRunSaysWhyPending proves that a job still pending after the first
// wait has its reason printed on stderr, and that run goes on waiting.
func TestRunSaysWhyPending(t *testing.T) {
	url, svc := newServer(t)
	waits := 0
	svc.OnWait = func(j *job.Job) {
		waits++
		if waits == 1 {
			j.Reason = "no connected worker runs docker jobs"
			return
		}
		finishByCode(j)
	}
	res := run(t, nil, "run", "--server", url, "--image", "alpine", "--", "echo", "hi")
	if res.code != 0 || res.stdout != "echo hi\n" {
		t.Fatalf("run: %+v", res)
	}
	if !strings.Contains(res.stderr, "is pending: no connected worker runs docker jobs; still waiting") {
		t.Fatalf("stderr %q does not say why the job waits", res.stderr)
	}
}

// TestNoTokenSays proves that a 401 to a command that found no token
// names where it looked, and that a command that sent a token gets no
// such hint.
func TestNoTokenSays(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"this route needs an Authorization: Bearer token"}`))
	}))
	defer srv.Close()
	dir := t.TempDir()
	res := run(t, map[string]string{DataEnv: dir}, "jobs", "--server", srv.URL)
	want := "no token was sent: neither --token nor ZERVERLESS_TOKEN is set, and there is no " + filepath.Join(dir, AdminTokenFile)
	if res.code != ExitFail || !strings.Contains(res.stderr, want) {
		t.Fatalf("jobs without a token: %+v", res)
	}
	res = run(t, nil, "jobs", "--server", srv.URL, "--token", "zv_wrong")
	if res.code != ExitFail || strings.Contains(res.stderr, "no token was sent") {
		t.Fatalf("jobs with a token: %+v", res)
	}
}

// TestRunJSONWaitsInItsSubmission proves that run --json submits and
// waits in one request (POST /api/jobs?wait=), and that a job still
// pending after it is waited for, its reason said, as before.
func TestRunJSONWaitsInItsSubmission(t *testing.T) {
	svc := apitest.NewService()
	h, err := api.New(api.DefaultConfig(), apitest.OpenAdmission(t, svc), svc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var requests []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := requests
		requests = nil
		return out
	}

	svc.OnWait = finishByCode
	res := run(t, nil, "run", "--server", srv.URL, "--type", "lua", "--code", "ok", "--json")
	var v api.View
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil || res.code != 0 || v.Status != job.StatusCompleted {
		t.Fatalf("--json: %+v", res)
	}
	if got, want := seen(), []string{"POST /api/jobs?wait=3s"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("requests %q, want %q", got, want)
	}

	waits := 0
	svc.Lock(func() {
		svc.OnWait = func(j *job.Job) {
			waits++
			if waits == 1 {
				j.Reason = "no connected worker runs lua jobs"
				return
			}
			finishByCode(j)
		}
	})
	res = run(t, nil, "run", "--server", srv.URL, "--type", "lua", "--code", "ok", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil || res.code != 0 || v.Status != job.StatusCompleted {
		t.Fatalf("--json of a job pending at first: %+v", res)
	}
	if !strings.Contains(res.stderr, "is pending: no connected worker runs lua jobs; still waiting") {
		t.Fatalf("stderr %q does not say why the job waits", res.stderr)
	}
	if got := seen(); len(got) != 2 || got[0] != "POST /api/jobs?wait=3s" || !strings.HasPrefix(got[1], "GET /api/jobs/"+v.ID+"?wait=") {
		t.Fatalf("requests %q", got)
	}
}
