package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/protocol/protocoltest"
	"github.com/zerverless/zerverless/internal/testutil"
	"github.com/zerverless/zerverless/internal/worker"
)

// wasmEcho is a WASI module built from Go source in TestMain: it prints
// "wasm got " and its stdin, its arguments, and INPUT_DATA.
var wasmEcho []byte

const wasmEchoSource = `package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	in, _ := io.ReadAll(os.Stdin)
	fmt.Printf("wasm got %s args=%s env=%s\n", in, strings.Join(os.Args[1:], ","), os.Getenv("INPUT_DATA"))
	if len(os.Args) > 1 && os.Args[1] == "loop" {
		for {
		}
	}
	if len(os.Args) > 1 && os.Args[1] == "fail" {
		fmt.Fprintln(os.Stderr, "failing on purpose")
		os.Exit(3)
	}
}
`

// asMainEnv makes the test binary act as the zerverless binary, so that a
// test can start a worker as a separate process and kill it.
const asMainEnv = "ZERVERLESS_TEST_AS_MAIN"

// cpuProfileEnv names the file of the CPU profile of a program started
// with asMainEnv.
const cpuProfileEnv = "ZERVERLESS_TEST_CPUPROFILE"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == childCommand {
		// A worker of these tests started this binary as its runtime
		// process (os.Executable is the test binary).
		os.Exit(runtimeChild(os.Stdin, os.Stdout, os.Stderr))
	}
	if url := os.Getenv(simFleetEnv); url != "" {
		// BenchmarkSimulatedWorkers started this binary to run its
		// simulated workers.
		hb, _ := time.ParseDuration(os.Getenv("ZERVERLESS_TEST_SIM_HEARTBEAT"))
		os.Exit(runSimFleet(url, cmp.Or(hb, 5*time.Second), os.Stdin, os.Stdout))
	}
	if os.Getenv(asMainEnv) != "" {
		// ZERVERLESS_TEST_CPUPROFILE: the CPU profile of the program
		// started so (a benchmark's serve), for go tool pprof.
		if f, err := os.Create(os.Getenv(cpuProfileEnv)); err == nil {
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
		stop()
		if code != 0 {
			os.Exit(code)
		}
		return
	}
	dir, err := os.MkdirTemp("", "zerverless-e2e-")
	if err != nil {
		panic(err)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		src := filepath.Join(dir, "main.go")
		if err := os.WriteFile(src, []byte(wasmEchoSource), 0o644); err != nil {
			panic(err)
		}
		out := filepath.Join(dir, "echo.wasm")
		cmd := exec.Command("go", "build", "-o", out, src)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GO111MODULE=off", "GOFLAGS=")
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build wasm module: %v\n%s", err, b)
			return 1
		}
		wasmEcho, err = os.ReadFile(out)
		if err != nil {
			panic(err)
		}
		defer removeTestImages()
		return m.Run()
	}()
	os.Exit(code)
}

// testWorkerSecret is the join token of the test servers' embedded workers;
// the tests' own workers present it too, so they are trusted.
const testWorkerSecret = "test-worker-secret"

// testServerConfig is a server on a free loopback port with fast
// heartbeats, in dir.
func testServerConfig(t testing.TB, dir string, workers int) ServerConfig {
	cfg := DefaultServerConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.Workers = workers
	cfg.Worker.Concurrency = 4
	cfg.Orchestrator.LocalWorkerSecret = testWorkerSecret
	cfg.Orchestrator.HeartbeatInterval = 200 * time.Millisecond
	cfg.Orchestrator.LeaseGrace = 2 * time.Second
	cfg.ShutdownTimeout = 5 * time.Second
	if testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

func startServer(t testing.TB, cfg ServerConfig) (*Server, *client.Client) {
	t.Helper()
	srv, err := StartServer(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, client.New(srv.URL(), nil).WithToken(srv.AdminToken())
}

// authPost is http.Post with srv's admin token.
func authPost(srv *Server, url, contentType string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
	return http.DefaultClient.Do(req)
}

// authGet is http.Get with srv's admin token.
func authGet(srv *Server, url string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
	return http.DefaultClient.Do(req)
}

// startWorker runs a native worker against srv until the returned stop is
// called (or the test ends).
func startWorker(t testing.TB, url string, name string, only ...job.Type) (stop func()) {
	t.Helper()
	ro := DefaultRuntimeOptions()
	ro.Only = only
	return startWorkerWith(t, url, name, ro)
}

// startWorkerWith runs a native worker with the runtimes ro describes.
func startWorkerWith(t testing.TB, url string, name string, ro RuntimeOptions) (stop func()) {
	t.Helper()
	return startWorkerWithConfig(t, url, name, ro, nil)
}

// startWorkerWithConfig is startWorkerWith with a hook that adjusts the
// worker's configuration.
func startWorkerWithConfig(t testing.TB, url string, name string, ro RuntimeOptions, adjust func(*worker.Config)) (stop func()) {
	t.Helper()
	rts, err := BuildRuntimes(context.Background(), ro, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rts.Close(context.Background()) })
	wc := worker.DefaultConfig()
	wc.URL = url
	wc.Name = name
	wc.Concurrency = 2
	wc.ReconnectMax = 200 * time.Millisecond
	wc.Docker = rts.Docker
	wc.JoinToken = testWorkerSecret
	if adjust != nil {
		adjust(&wc)
	}
	w, err := worker.New(wc, rts.Set, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// eventually polls f until it returns nil or d passes.
func eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	testutil.Eventually(t, d, f)
}

// rawWorker is a worker that speaks the protocol by hand, so that a test
// can hold a lease, answer late, or vanish mid-job: protocoltest's fake
// worker, with the short names these tests use.
type rawWorker struct {
	*protocoltest.Worker
	t    testing.TB
	conn *protocol.Conn
	id   string
}

func newRawWorker(w *protocoltest.Worker) *rawWorker {
	return &rawWorker{Worker: w, t: w.T, conn: w.Conn, id: w.ID}
}

// dialRaw connects a trusted raw worker (it presents testWorkerSecret).
func dialRaw(t testing.TB, url string, caps job.Capabilities) *rawWorker {
	t.Helper()
	return newRawWorker(protocoltest.Register(t, url, testWorkerSecret, caps))
}

// dialRawWith registers a trusted raw worker with reg's capabilities and
// notes.
func dialRawWith(t testing.TB, url string, reg protocol.Message) *rawWorker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := protocol.Dial(ctx, url, nil, protocol.Options{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	reg.Type, reg.Version, reg.Name, reg.Token = protocol.TypeRegister, protocol.Version, "raw", testWorkerSecret
	if err := conn.Write(ctx, reg); err != nil {
		t.Fatal(err)
	}
	m, err := conn.Read(ctx)
	if err != nil || m.Type != protocol.TypeRegistered {
		t.Fatalf("register: %+v %v", m, err)
	}
	return &rawWorker{t: t, conn: conn, id: m.WorkerID}

}

// fake is r's protocoltest worker; a rawWorker made from a connection a
// test registered by hand gets one on first use.
func (r *rawWorker) fake() *protocoltest.Worker {
	if r.Worker == nil {
		r.Worker = &protocoltest.Worker{T: r.t, Conn: r.conn, ID: r.id}
	}
	return r.Worker
}

// next reads until an assignment arrives.
func (r *rawWorker) next(d time.Duration) *job.Task { r.t.Helper(); return r.fake().Next(d) }

func (r *rawWorker) send(m protocol.Message) { r.t.Helper(); r.fake().Send(m) }

func ptr[T any](v T) *T { return &v }

// keepAlive sends heartbeats until the test ends or the connection fails.
func (r *rawWorker) keepAlive() { r.fake().KeepAlive() }

// cliAgainst returns a runner of the client commands against srv with
// its admin token, answering exit code, stdout and stderr.
func cliAgainst(srv *Server) func(args ...string) (int, string, string) {
	getenv := func(k string) string {
		switch k {
		case "ZERVERLESS_SERVER":
			return srv.URL()
		case "ZERVERLESS_TOKEN":
			return srv.AdminToken()
		}
		return ""
	}
	return func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, &out, &errb, getenv)
		return code, out.String(), errb.String()
	}
}
