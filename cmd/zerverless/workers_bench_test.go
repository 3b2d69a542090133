package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// BenchmarkSimulatedWorkers connects simulated workers to one server over
// real WebSockets, speaking the worker protocol (each answers its task at
// once and sends heartbeats), and drives b.N trivial Lua jobs through them
// from 16 clients, first with 200 workers and then, in the same server,
// with 9,000, and both once more. It prints, for each run, jobs/s and the
// p50/p95 latency of submit-to-result, the server's RSS and open
// descriptors, and at the end each crowd's mean jobs/s, their ratio and
// the server's peak RSS. Every job must complete exactly once: answered
// by one worker, on its first attempt.
//
// The simulated workers run in a child process (this test binary again),
// as remote workers would: the server's RSS and descriptors are its own.
// Both raise their soft open-file limit to the hard one, and the server's
// session limit is set to take the crowd.
//
//	go test ./cmd/zerverless -run '^$' -bench SimulatedWorkers -benchtime 20000x -timeout 30m
func BenchmarkSimulatedWorkers(b *testing.B) {
	if b.N == 1 {
		// The first, sizing run of the benchmark: the crowd is built
		// once, for the run of -benchtime's count.
		return
	}
	// The crowds in turn, twice: a change of the machine's load during
	// the run weighs on both sizes alike.
	crowds := []int{200, 9000, 200, 9000}
	const clients = 16
	fds, err := raiseOpenFiles()
	if err != nil {
		b.Fatal(err)
	}
	most := slices.Max(crowds)
	if need := most + 512; fds < need {
		b.Fatalf("the open-file limit is %d; %d simulated workers need %d", fds, most, need)
	}
	cfg := testServerConfig(b, b.TempDir(), 0)
	cfg.Log = nil
	cfg.Orchestrator.HeartbeatInterval = 5 * time.Second
	cfg.Net.Descriptors = fds
	cfg.Net.MaxSessions = most + 100
	cfg.Net.MaxConns = 1024
	srv, admin := startServer(b, cfg)
	c := client.New(srv.URL(), &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}).
		WithToken(srv.AdminToken())

	f := startFleetProc(b, srv.WorkerURL(), cfg.Orchestrator.HeartbeatInterval)

	ctx := context.Background()
	req := job.Request{Type: job.TypeLua, Code: `return INPUT.n + 1`, Input: []byte(`{"n":1}`)}
	rates := make([]float64, len(crowds))
	b.ResetTimer()
	for i, n := range crowds {
		b.StopTimer()
		f.grow(n)
		eventually(b, 2*time.Minute, func() error {
			st, err := admin.Stats(ctx)
			if err != nil || st.WorkersConnected != n {
				// Replace the sessions that ended meanwhile.
				f.grow(n)
				return fmt.Errorf("%d workers connected, want %d (%v)", st.WorkersConnected, n, err)
			}
			return nil
		})
		if i == 0 {
			// Warm up the store, the connections and the runtime.
			driveClients(b, clients, min(b.N, 1000), func() error {
				v, err := c.Submit(ctx, req)
				if err == nil {
					_, err = c.Job(ctx, v.ID, 30*time.Second)
				}
				return err
			})
			f.answers() // the warm-up's
		}
		stopProfile := func() {}
		if i == len(crowds)-1 && *simCPUProfile != "" {
			stopProfile = startCPUProfile(b, *simCPUProfile)
		}
		b.StartTimer()
		var mu sync.Mutex
		var ids []string
		lat, elapsed := driveClients(b, clients, b.N, func() error {
			v, err := c.Submit(ctx, req)
			if err != nil {
				return err
			}
			mu.Lock()
			ids = append(ids, v.ID)
			mu.Unlock()
			v, err = c.Job(ctx, v.ID, 30*time.Second)
			if err != nil || v.Status != job.StatusCompleted || v.Attempt != 1 {
				return fmt.Errorf("job %s: %v %s attempt %d", v.ID, err, v.Status, v.Attempt)
			}
			return nil
		})
		b.StopTimer()
		stopProfile()
		if got := f.answers(); got.total != len(ids) || got.repeated != 0 {
			b.Fatalf("the simulated workers sent %d results for %d jobs, %d of them for a job answered before; want one per job", got.total, len(ids), got.repeated)
		}
		rates[i] = float64(len(lat)) / elapsed.Seconds()
		if i >= len(crowds)-2 {
			b.ReportMetric(ms(lat[len(lat)/2]), fmt.Sprintf("p50-ms-%dw", n))
			b.ReportMetric(ms(lat[len(lat)*95/100]), fmt.Sprintf("p95-ms-%dw", n))
		}
		var mem runtime.MemStats
		runtime.ReadMemStats(&mem)
		b.Logf("%5d workers: %7.0f jobs/s, p50 %6.2f ms, p95 %6.2f ms; server RSS %4d MiB (heap %d MiB, stacks %d MiB, %d goroutines), %5d descriptors; workers' process RSS %d MiB",
			n, rates[i], ms(lat[len(lat)/2]), ms(lat[len(lat)*95/100]), procStatus(b, "VmRSS")>>20,
			mem.HeapInuse>>20, mem.StackInuse>>20, runtime.NumGoroutine(), openDescriptors(b), f.rss()>>20)
		if i == len(crowds)-1 && *simHeapProfile != "" {
			writeHeapProfile(b, *simHeapProfile)
		}
		b.StartTimer()
	}
	b.StopTimer()
	rate := func(n int) float64 {
		sum, k := 0.0, 0
		for i, c := range crowds {
			if c == n {
				sum, k = sum+rates[i], k+1
			}
		}
		return sum / float64(k)
	}
	b.ReportMetric(rate(200), "jobs/s-200w")
	b.ReportMetric(rate(most), fmt.Sprintf("jobs/s-%dw", most))
	b.ReportMetric(rate(most)/rate(200), fmt.Sprintf("ratio-%dw/200w", most))
	b.ReportMetric(float64(procStatus(b, "VmHWM")>>20), "server-peak-RSS-MiB")
	b.ReportMetric(float64(openDescriptors(b)), "fds")
}

// The profiles of the largest crowd's run, for go tool pprof:
//
//	go test ./cmd/zerverless -run '^$' -bench SimulatedWorkers -benchtime 20000x -sim.cpuprofile cpu.out
var (
	simCPUProfile  = flag.String("sim.cpuprofile", "", "write the CPU profile of BenchmarkSimulatedWorkers's largest crowd's jobs to this file")
	simHeapProfile = flag.String("sim.heapprofile", "", "write the heap profile of BenchmarkSimulatedWorkers's largest crowd, once connected, to this file")
)

func startCPUProfile(b *testing.B, path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// driveClients runs n calls from clients concurrent loops and returns the
// latency of each call, sorted, and the time they took together.
func driveClients(b *testing.B, clients, n int, call func() error) ([]time.Duration, time.Duration) {
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				if err := call(); err != nil {
					b.Error(err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if b.Failed() {
		b.FailNow()
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return all, elapsed
}

// openDescriptors counts this process's open descriptors.
func openDescriptors(b *testing.B) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		b.Fatal(err)
	}
	return len(ents)
}

// simFleetEnv, set to a worker URL, makes this test binary a simulated
// fleet's process (TestMain runs runSimFleet).
const simFleetEnv = "ZERVERLESS_TEST_SIM_FLEET"

// fleetProc is the child process that runs the simulated workers. It takes
// commands on its stdin, one a line, and answers each with a line:
//
//	grow N     connect workers until there are N; "grown N"
//	answers    "answers TOTAL REPEATED": the results sent since the last
//	           answers, and how many of them were for a job already
//	           answered
//	rss        "rss BYTES": the process's RSS
type fleetProc struct {
	b   *testing.B
	in  io.Writer
	out *bufio.Scanner
}

func startFleetProc(b *testing.B, url string, heartbeat time.Duration) *fleetProc {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), simFleetEnv+"="+url, "ZERVERLESS_TEST_SIM_HEARTBEAT="+heartbeat.String())
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	return &fleetProc{b: b, in: in, out: sc}
}

// ask sends cmd and returns the answer's fields after its first word.
func (p *fleetProc) ask(cmd string) []string {
	if _, err := fmt.Fprintln(p.in, cmd); err != nil {
		p.b.Fatalf("fleet %s: %v", cmd, err)
	}
	if !p.out.Scan() {
		p.b.Fatalf("fleet %s: no answer (%v)", cmd, p.out.Err())
	}
	f := strings.Fields(p.out.Text())
	if len(f) == 0 || f[0] == "error" {
		p.b.Fatalf("fleet %s: %s", cmd, p.out.Text())
	}
	return f[1:]
}

func (p *fleetProc) grow(n int) { p.ask(fmt.Sprintf("grow %d", n)) }

type fleetAnswers struct{ total, repeated int }

func (p *fleetProc) answers() fleetAnswers {
	f := p.ask("answers")
	var a fleetAnswers
	a.total, _ = strconv.Atoi(f[0])
	a.repeated, _ = strconv.Atoi(f[1])
	return a
}

func (p *fleetProc) rss() int64 {
	n, _ := strconv.ParseInt(p.ask("rss")[0], 10, 64)
	return n
}

// runSimFleet is the simulated fleet's process: it serves fleetProc's
// commands from in until in ends.
func runSimFleet(url string, heartbeat time.Duration, in io.Reader, out io.Writer) int {
	if _, err := raiseOpenFiles(); err != nil {
		fmt.Fprintln(out, "error", err)
		return 1
	}
	f := &simFleet{url: url, heartbeat: heartbeat, stop: make(chan struct{}), answered: make(map[string]int), workers: make(map[*simWorker]struct{})}
	defer f.close()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd := strings.Fields(sc.Text())
		switch {
		case len(cmd) == 2 && cmd[0] == "grow":
			n, _ := strconv.Atoi(cmd[1])
			if err := f.grow(n); err != nil {
				fmt.Fprintln(out, "error", err)
				continue
			}
			fmt.Fprintln(out, "grown", n)
		case len(cmd) == 1 && cmd[0] == "answers":
			f.mu.Lock()
			fmt.Fprintln(out, "answers", f.total, f.repeated)
			f.total, f.repeated = 0, 0
			f.mu.Unlock()
		case len(cmd) == 1 && cmd[0] == "rss":
			fmt.Fprintln(out, "rss", selfRSS())
		default:
			fmt.Fprintln(out, "error unknown command", sc.Text())
		}
	}
	return 0
}

// selfRSS is this process's VmRSS in bytes, 0 when it cannot be read.
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// simFleet is a crowd of simulated workers: each a registered WebSocket
// session whose reader answers every assignment at once.
type simFleet struct {
	url       string
	heartbeat time.Duration
	mu        sync.Mutex
	// workers are the live workers, whose connection has not failed.
	workers map[*simWorker]struct{}
	// answered counts, per job id, the results the fleet sent; total and
	// repeated count them since they were last reported.
	answered        map[string]int
	total, repeated int
	stop            chan struct{}
	once            sync.Once
}

type simWorker struct {
	conn *protocol.Conn
	// mu orders the writes of results and heartbeats.
	mu sync.Mutex
}

func (s *simWorker) write(m protocol.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn.Write(ctx, m)
}

// grow connects workers until the fleet has n, 64 at a time, or closes
// the connections of those past n.
func (f *simFleet) grow(n int) error {
	f.mu.Lock()
	have := len(f.workers)
	for w := range f.workers {
		if have <= n {
			break
		}
		w.conn.CloseNow()
		delete(f.workers, w)
		have--
	}
	f.mu.Unlock()
	todo := make(chan struct{}, n)
	for range n - have {
		todo <- struct{}{}
	}
	close(todo)
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range todo {
				if err := f.connect(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (f *simFleet) connect() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := protocol.Dial(ctx, f.url, nil, protocol.Options{})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	caps := job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1}
	if err := conn.Write(ctx, protocol.Message{Type: protocol.TypeRegister, Version: protocol.Version, Name: "sim",
		Token: testWorkerSecret, Capabilities: &caps}); err != nil {
		conn.CloseNow()
		return fmt.Errorf("register: %w", err)
	}
	m, err := conn.Read(ctx)
	if err != nil || m.Type != protocol.TypeRegistered {
		conn.CloseNow()
		return fmt.Errorf("register: %+v %v", m, err)
	}
	w := &simWorker{conn: conn}
	f.mu.Lock()
	f.workers[w] = struct{}{}
	f.mu.Unlock()
	go f.serve(w)
	go f.heartbeats(w, f.heartbeat)
	return nil
}

// serve answers w's assignments until its connection ends.
func (f *simFleet) serve(w *simWorker) {
	defer func() {
		f.mu.Lock()
		delete(f.workers, w)
		f.mu.Unlock()
		w.conn.CloseNow()
	}()
	for {
		m, err := w.conn.Read(context.Background())
		if err != nil {
			return
		}
		if m.Type != protocol.TypeAssign {
			continue
		}
		t := m.Task
		f.mu.Lock()
		f.answered[t.JobID]++
		f.total++
		if f.answered[t.JobID] > 1 {
			f.repeated++
		}
		f.mu.Unlock()
		err = w.write(protocol.Message{Type: protocol.TypeResult, JobID: t.JobID, LeaseID: t.LeaseID,
			Result: &job.Result{Status: job.StatusCompleted, Result: []byte("2")}})
		if err != nil {
			return
		}
	}
}

// heartbeats sends w a heartbeat each interval, as the worker does, the
// first after a random part of it (so that the fleet's are spread), until
// the fleet is closed or w's connection fails.
func (f *simFleet) heartbeats(w *simWorker, interval time.Duration) {
	first := time.NewTimer(rand.N(interval))
	defer first.Stop()
	select {
	case <-f.stop:
		return
	case <-first.C:
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if w.write(protocol.Message{Type: protocol.TypeHeartbeat}) != nil {
			return
		}
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
	}
}

func (f *simFleet) close() {
	f.once.Do(func() { close(f.stop) })
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.workers {
		w.conn.CloseNow()
	}
}
