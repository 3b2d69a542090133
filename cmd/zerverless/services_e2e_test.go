package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"

	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/testutil"
)

// The docker services end to end: `serve` with an embedded docker worker
// that offers services (--docker-services), the real engine, and an image
// holding an HTTP server built here from Go source (FROM scratch).

// serviceServerSource is the test image's server: it answers with what it
// got, listening on $PORT; with ?say=TEXT it first prints a line "TEXT"
// and, with ?sleep=DURATION, waits that long (or until the caller goes)
// before it answers. Two paths do more: /_host answers its
// hostname (each instance has its own) and $VERSION, after ?ms=N
// milliseconds; /_exit?code=N prints a line and exits with code N.
const serviceServerSource = `package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if say := r.URL.Query().Get("say"); say != "" {
			fmt.Println(say)
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
			}
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s?%s prefix=%s body=%s", r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Forwarded-Prefix"), b)
	})
	http.HandleFunc("/_host", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "%s %s", host, os.Getenv("VERSION"))
	})
	http.HandleFunc("/_exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		fmt.Printf("exiting with code %d on request\n", code)
		os.Exit(code)
	})
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}
`

var serviceImageOnce struct {
	sync.Once
	ref string
	err error
}

// serviceTestImage imports, once per test process, an image whose
// /app/entrypoint.sh is the HTTP server of serviceServerSource (a static
// Go binary), with a /tmp of mode 1777, under a tag of this process. It
// is removed when the tests end.
func serviceTestImage(t testing.TB) string {
	t.Helper()
	c := testEngine(t)
	serviceImageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "zerverless-svc-image-")
		if err != nil {
			serviceImageOnce.err = err
			return
		}
		defer os.RemoveAll(dir)
		src := filepath.Join(dir, "main.go")
		os.WriteFile(src, []byte(serviceServerSource), 0o644)
		bin := filepath.Join(dir, "server")
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin, src)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off", "GOFLAGS=")
		if b, err := cmd.CombinedOutput(); err != nil {
			serviceImageOnce.err = fmt.Errorf("build the server: %v\n%s", err, b)
			return
		}
		exe, err := os.ReadFile(bin)
		if err != nil {
			serviceImageOnce.err = err
			return
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755})
		tw.WriteHeader(&tar.Header{Name: "app/entrypoint.sh", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(exe))})
		tw.Write(exe)
		tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777})
		tw.Close()
		// A tag of this process's own: the tests of other checkouts on
		// the engine import their own server under theirs, and remove
		// it when they end.
		ref := fmt.Sprintf("zerverless-test/svc-http:e2e-%d-%d", os.Getpid(), time.Now().UnixNano())
		rc, err := c.ImageImport(context.Background(), image.ImportSource{Source: &buf, SourceName: "-"}, ref,
			image.ImportOptions{Changes: []string{`CMD ["/app/entrypoint.sh"]`, "LABEL zerverless-test=services"}})
		if err != nil {
			serviceImageOnce.err = err
			return
		}
		io.Copy(io.Discard, rc)
		rc.Close()
		imagesMu.Lock()
		images[ref] = true
		imagesMu.Unlock()
		serviceImageOnce.ref = ref
	})
	if serviceImageOnce.err != nil {
		t.Fatalf("service test image: %v", serviceImageOnce.err)
	}
	return serviceImageOnce.ref
}

// freeAddr returns a loopback address with a free port.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveWithServices starts `serve` as its own process with one embedded
// docker worker that offers services, and returns its URL and admin token.
func serveWithServices(t testing.TB) (url, token string) {
	t.Helper()
	agentBin, err := dockertest.AgentBinary()
	if err != nil {
		t.Fatal(err)
	}
	addr, dir := freeAddr(t), t.TempDir()
	wid := fmt.Sprintf("zvtest-svc-%d", time.Now().UnixNano())
	cmd := exec.Command(os.Args[0], "serve", "--addr", addr, "--data", dir, "--workers", "1", "--runtimes", "docker",
		"--docker", "--docker-no-pull", "--docker-services", "4", "--docker-agent", agentBin,
		"--docker-worker-id", wid, "--log-level", "warn")
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
	})
	url = "http://" + addr
	eventually(t, 30*time.Second, func() error {
		select {
		case <-exited:
			t.Fatalf("serve with --docker-services exited: %s", stderr.String())
		default:
		}
		b, err := os.ReadFile(filepath.Join(dir, "admin.token"))
		if err != nil {
			return err
		}
		token = strings.TrimSpace(string(b))
		resp, err := http.Get(url + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return url, token
}

// callService makes one request and returns its status and body.
func callService(method, url string, body []byte) (int, string, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestServiceEndToEnd deploys the seed's example (with the test image in
// place of myapp:latest) to serve's embedded docker worker and calls it.
func TestServiceEndToEnd(t *testing.T) {
	img := serviceTestImage(t)
	url, token := serveWithServices(t)
	a := send(t, "POST", url+"/api/deploy/user/my-service", token, "application/json",
		[]byte(`{"runtime": "docker", "docker_image": "`+img+`", "docker_command": ["/app/entrypoint.sh"]}`))
	if a.status != 201 {
		t.Fatalf("deploy: %v", a)
	}
	status, body, err := callService("POST", url+"/user/my-service/hello?x=1", []byte("ping"))
	if err != nil || status != 200 || body != "POST /hello?x=1 prefix=/user/my-service body=ping" {
		t.Fatalf("call: %d %q %v", status, body, err)
	}
	a = send(t, "GET", url+"/api/deploy/user/my-service", token, "", nil)
	if a.status != 200 || !strings.Contains(string(a.body), `"state":"ready"`) {
		t.Fatalf("deployment: %v", a)
	}
	if a := send(t, "DELETE", url+"/api/deploy/user/my-service", token, "", nil); a.status != 204 {
		t.Fatalf("undeploy: %v", a)
	}
}

// BenchmarkServiceVsDockerRun compares, in one run, a warm request to the
// test image's server through Zerverless (the orchestrator, the worker's
// stream connection, its relay into the container) with the same request
// to the same image published with `docker run -p` and called directly;
// and the cold start (deploy to first answer) with `docker run` to first
// answer. It prints p50 and throughput of each and their ratios.
//
//	go test ./cmd/zerverless -run '^$' -bench ServiceVsDockerRun -benchtime 2000x
func BenchmarkServiceVsDockerRun(b *testing.B) {
	img := serviceTestImage(b)
	url, token := serveWithServices(b)

	// Cold starts.
	coldZ := func(i int) time.Duration {
		name := fmt.Sprintf("bench/cold%d", i)
		t0 := time.Now()
		a := send(b, "POST", url+"/api/deploy/"+name, token, "application/json", []byte(`{"runtime":"docker","docker_image":"`+img+`","start_timeout_seconds":60}`))
		if a.status != 201 {
			b.Fatalf("deploy: %v", a)
		}
		for {
			if st, _, err := callService("GET", url+"/"+name+"/", nil); err == nil && st == 200 {
				break
			}
		}
		d := time.Since(t0)
		send(b, "DELETE", url+"/api/deploy/"+name, token, "", nil)
		return d
	}
	coldD := func() (time.Duration, string, string) {
		t0 := time.Now()
		out, err := exec.Command("docker", "run", "-d", "--rm", "--label", "zerverless-test=services", "-e", "PORT=8080", "-p", "127.0.0.1::8080", img).Output()
		if err != nil {
			b.Fatalf("docker run: %v", err)
		}
		id := strings.TrimSpace(string(out))
		port, err := exec.Command("docker", "port", id, "8080/tcp").Output()
		if err != nil {
			b.Fatalf("docker port: %v", err)
		}
		direct := "http://" + strings.TrimSpace(strings.Split(string(port), "\n")[0])
		for {
			if st, _, err := callService("GET", direct+"/", nil); err == nil && st == 200 {
				break
			}
		}
		return time.Since(t0), id, direct
	}
	var coldZs, coldDs []time.Duration
	var direct, cid string
	for i := range 3 {
		coldZs = append(coldZs, coldZ(i))
		d, id, u := coldD()
		coldDs = append(coldDs, d)
		if i < 2 {
			exec.Command("docker", "rm", "-f", id).Run()
		} else {
			cid, direct = id, u
		}
	}
	defer exec.Command("docker", "rm", "-f", cid).Run()

	// Warm requests.
	if a := send(b, "POST", url+"/api/deploy/bench/warm", token, "application/json", []byte(`{"runtime":"docker","docker_image":"`+img+`","min_instances":1}`)); a.status != 201 {
		b.Fatalf("deploy: %v", a)
	}
	viaZ := url + "/bench/warm/x"
	for {
		if st, _, err := callService("GET", viaZ, nil); err == nil && st == 200 {
			break
		}
	}
	var z, d []time.Duration
	// The CPU of the serving process (the orchestrator and its embedded
	// worker), steadier than latency on a shared machine.
	serveCPU := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return testutil.TreeCPU() - time.Duration(ru.Utime.Nano()+ru.Stime.Nano())
	}
	cpu0 := serveCPU()
	b.ResetTimer()
	var zTotal, dTotal time.Duration
	for range b.N {
		t0 := time.Now()
		if st, _, err := callService("GET", viaZ, nil); err != nil || st != 200 {
			b.Fatalf("through zerverless: %d %v", st, err)
		}
		z = append(z, time.Since(t0))
		zTotal += z[len(z)-1]
		t0 = time.Now()
		if st, _, err := callService("GET", direct+"/x", nil); err != nil || st != 200 {
			b.Fatalf("direct: %d %v", st, err)
		}
		d = append(d, time.Since(t0))
		dTotal += d[len(d)-1]
	}
	b.StopTimer()
	cpu := serveCPU() - cpu0
	p50 := func(s []time.Duration) time.Duration {
		s = slices.Clone(s)
		slices.Sort(s)
		return s[len(s)/2]
	}
	pz, pd := p50(z), p50(d)
	b.Logf("warm p50: zerverless %v, docker run -p %v; added %v (ratio %.2f)", pz, pd, pz-pd, float64(pz)/float64(pd))
	b.Logf("warm throughput (sequential): zerverless %.0f req/s, direct %.0f req/s (ratio %.2f)",
		float64(len(z))/zTotal.Seconds(), float64(len(d))/dTotal.Seconds(), dTotal.Seconds()/zTotal.Seconds())
	b.Logf("serving process CPU: %.0f µs per request through zerverless", float64(cpu.Microseconds())/float64(len(z)))
	cz, cd := p50(coldZs), p50(coldDs)
	b.Logf("cold start p50: deploy to first answer %v, docker run to first answer %v (ratio %.2f)", cz, cd, float64(cz)/float64(cd))
}
