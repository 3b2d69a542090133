package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime/docker"
	"github.com/zerverless/zerverless/internal/worker"
)

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// workerFlags are the flags shared by `worker` and the embedded workers of
// `serve`.
type workerFlags struct {
	concurrency int
	maxMemoryMB int
	runtimes    string
	memoryMB    int64
	namespaces  string
	docker      bool

	dockerAllow       string
	dockerPrepull     string
	dockerMaxImageMB  int
	dockerMaxMemoryMB int
	dockerMaxCPUs     float64
	dockerMaxPids     int64
	dockerMemoryMB    int
	dockerPids        int64
	dockerBudgetMB    int
	dockerVolumeMB    int
	dockerRelaySocks  string
	dockerVolumeFiles int
	dockerNSImageMB   int
	dockerNoPull      bool
	dockerImageUser   bool
	dockerWorkerID    string

	dockerBuild         bool
	dockerBuildNetwork  string
	dockerAgent         string
	dockerEgress        string
	dockerEgressBytes   int64
	dockerEgressConns   int
	dockerEgressWindow  time.Duration
	dockerBuildTimeout  time.Duration
	dockerBuildMemoryMB int
	dockerBuildCPUs     float64
	dockerBuildPids     int64
	dockerBuildDiskMB   int
	dockerServices      int
	serviceStreams      int
	serviceStart        time.Duration

	liveOutputBytes int64
	serviceOutput   int64
	metricsInterval time.Duration

	dockerPoolMax      int
	dockerPoolMemoryMB int
	dockerPoolTTL      time.Duration
	dockerPrewarm      string
}

func (f *workerFlags) register(fs *flag.FlagSet) {
	d := worker.DefaultConfig()
	fs.IntVar(&f.concurrency, "concurrency", d.Concurrency, "jobs one worker runs at once")
	fs.IntVar(&f.maxMemoryMB, "max-memory-mb", 0, "most memory one job may ask for, in MiB (0: no maximum)")
	fs.StringVar(&f.runtimes, "runtimes", "", "comma-separated runtimes to offer (default: all available)")
	fs.StringVar(&f.namespaces, "namespaces", "", "comma-separated namespaces whose jobs are accepted (default: all)")
	fs.BoolVar(&f.docker, "docker", false, "run docker container jobs (needs a Docker Engine)")
	fs.Int64Var(&f.liveOutputBytes, "live-output-bytes", d.LiveOutputBytes, "output of one job sent while it runs, for its live log (negative: none)")
	fs.Int64Var(&f.serviceOutput, "service-output-rate", d.ServiceOutputRate, "output of one service instance sent while it runs, for its service's live log, in bytes a second (negative: none)")
	fs.DurationVar(&f.metricsInterval, "metrics-interval", d.MetricsInterval, "how often the worker reports its own usage to the orchestrator")
	fs.Int64Var(&f.memoryMB, "memory-mb", d.MemoryBytes>>20, "memory bound of a job that asks for none, in MiB; Lua and JavaScript jobs past their bound fail as out of memory")

	dd := docker.DefaultConfig()
	fs.StringVar(&f.dockerAllow, "docker-allow", "", "comma-separated image patterns containers may use, e.g. 'alpine:*,registry.example/team/*' (default: any image)")
	fs.StringVar(&f.dockerPrepull, "docker-prepull", "", "comma-separated images to pull at start")
	fs.IntVar(&f.dockerMaxImageMB, "docker-max-image-mb", dd.MaxImageMB, "refuse to pull an image larger than this, by its registry manifest (0: no limit)")
	fs.IntVar(&f.dockerMaxMemoryMB, "docker-max-memory-mb", dd.MaxMemoryMB, "most memory one container may ask for")
	fs.Float64Var(&f.dockerMaxCPUs, "docker-max-cpus", dd.MaxCPUs, "most CPUs one container may ask for")
	fs.Int64Var(&f.dockerMaxPids, "docker-max-pids", dd.MaxPids, "most processes one container may ask for")
	fs.IntVar(&f.dockerMemoryMB, "docker-memory-mb", dd.MemoryMB, "memory of a container whose job asks for none")
	fs.Int64Var(&f.dockerPids, "docker-pids", dd.Pids, "process limit of a container whose job asks for none")
	fs.IntVar(&f.dockerBudgetMB, "docker-image-budget-mb", dd.ImageBudgetMB, "disk the images this worker pulled and built may take; past it the least recently used pulled images are removed (0: no budget)")
	fs.IntVar(&f.dockerNSImageMB, "docker-namespace-image-mb", dd.NamespaceImageMB, "disk the images one namespace built on this worker may take; past it that namespace's least recently used built images are removed (0: only the image budget)")
	fs.StringVar(&f.dockerRelaySocks, "docker-relay-sockets", "auto", "directory for the unix sockets that carry requests to service instances past the engine's attach stream; auto: one under the temporary directory when the engine is local; off: none")
	fs.IntVar(&f.dockerVolumeMB, "docker-volume-mb", dd.VolumeMB, "size of each volume a container can write (/output, each scratch volume, each VOLUME of its image), in MiB; tmpfs, counted against the container's memory")
	fs.IntVar(&f.dockerVolumeFiles, "docker-volume-inodes", dd.VolumeInodes, "files and directories each such volume, and /tmp, may hold")
	fs.BoolVar(&f.dockerNoPull, "docker-no-pull", false, "never pull: run only images already on the machine")
	fs.BoolVar(&f.dockerImageUser, "docker-allow-image-user", false, "run containers as their image's user instead of 65534")
	fs.BoolVar(&f.dockerBuild, "docker-build", false, "also build images from Dockerfiles (needs --docker)")
	fs.StringVar(&f.dockerBuildNetwork, "docker-build-network", dd.BuildNetwork, "network of RUN steps in builds: none, or bridge to allow network access")
	fs.DurationVar(&f.dockerBuildTimeout, "docker-build-timeout", dd.BuildTimeout, "longest build, whatever a job asks")
	fs.IntVar(&f.dockerBuildMemoryMB, "docker-build-memory-mb", dd.BuildMemoryMB, "memory of each RUN step of a build, in MiB (no swap)")
	fs.Float64Var(&f.dockerBuildCPUs, "docker-build-cpus", dd.BuildCPUs, "CPUs of each RUN step of a build")
	fs.Int64Var(&f.dockerBuildPids, "docker-build-pids", dd.BuildPids, "processes of all of a build's RUN steps together")
	fs.IntVar(&f.dockerBuildDiskMB, "docker-build-disk-mb", dd.BuildDiskMB, "disk all of a build's RUN steps may write together, in MiB; past it the build fails (0: no limit)")
	fs.StringVar(&f.dockerAgent, "docker-agent", "", "static executable whose 'relay' mode carries the network of containers that have none (services, egress); default: this program when it was built with CGO_ENABLED=0, else none and this worker runs nothing that needs it")
	fs.IntVar(&f.dockerServices, "docker-services", 0, "service instances (docker images deployed as HTTP services) this worker runs at once; each runs with no network, reached through this worker's connection to the orchestrator (needs --docker and an agent, see --docker-agent; 0: none)")
	fs.IntVar(&f.serviceStreams, "docker-service-streams", d.MaxStreams, "request streams this worker carries to its service instances at once, an equal share each; past it a request is refused")
	fs.DurationVar(&f.serviceStart, "docker-service-start-timeout", dd.ServiceStartTimeout, "longest start of a service instance to ready, whatever its start_timeout_seconds")
	fs.StringVar(&f.dockerEgress, "docker-egress", "", "comma-separated host:port patterns containers and RUN steps may reach through this worker's egress proxy, e.g. 'pypi.org:443,*.pythonhosted.org:443'; names resolving to this machine's or its networks' addresses stay refused unless an address is named, e.g. '127.0.0.1:8081' (default: none)")
	fs.Int64Var(&f.dockerEgressBytes, "docker-egress-bytes", dd.EgressBytes, "bytes one job or build may send and receive through the egress proxy, together; past it its connections are cut (0: no limit)")
	fs.IntVar(&f.dockerEgressConns, "docker-egress-conns", dd.EgressConns, "connections one job or build may open through the egress proxy (0: no limit)")
	fs.DurationVar(&f.dockerEgressWindow, "docker-service-egress-window", dd.ServiceEgressWindow, "a service instance, which runs as long as it is deployed, may use --docker-egress-bytes and --docker-egress-conns once per window of this length")
	fs.IntVar(&f.dockerPoolMax, "docker-pool-max", dd.PoolMax, "prewarmed containers kept at most, over all images, for faster container jobs (0: none; needs the agent, see --docker-agent)")
	fs.IntVar(&f.dockerPoolMemoryMB, "docker-pool-memory-mb", dd.PoolMemoryMB, "memory limits of all prewarmed containers together, in MiB")
	fs.DurationVar(&f.dockerPoolTTL, "docker-pool-ttl", dd.PoolTTL, "how long a prewarmed container waits for a job, and a pool may go unused before it shrinks")
	fs.StringVar(&f.dockerPrewarm, "docker-prewarm", "", "comma-separated IMAGE=COUNT: containers to keep prewarmed from the start for jobs of IMAGE with the default resources and no input (e.g. alpine:latest=2)")
	fs.StringVar(&f.dockerWorkerID, "docker-worker-id", "", "label of this worker's containers; a restarted worker with the same id removes what its predecessor left (default: one generated once and kept in the data directory, distinct for each worker running at once)")
}

func (f *workerFlags) apply(wc *worker.Config, ro *RuntimeOptions) error {
	if f.concurrency < 1 {
		return fmt.Errorf("--concurrency must be at least 1")
	}
	wc.Concurrency = f.concurrency
	wc.MaxMemoryMB = f.maxMemoryMB
	if f.memoryMB < 1 {
		return fmt.Errorf("--memory-mb must be at least 1")
	}
	wc.MemoryBytes = f.memoryMB << 20
	wc.LiveOutputBytes = f.liveOutputBytes
	wc.ServiceOutputRate = f.serviceOutput
	if f.metricsInterval <= 0 {
		return fmt.Errorf("--metrics-interval must be positive")
	}
	wc.MetricsInterval = f.metricsInterval
	for _, ns := range strings.Split(f.namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			if !job.ValidNamespace(ns) {
				return fmt.Errorf("--namespaces: %q is not a valid namespace", ns)
			}
			wc.Namespaces = append(wc.Namespaces, ns)
		}
	}
	only, err := parseTypes(f.runtimes)
	if err != nil {
		return fmt.Errorf("--runtimes: %w", err)
	}
	ro.Only = only
	ro.Docker = f.docker
	dc := &ro.DockerConfig
	dc.AllowImages = splitList(f.dockerAllow)
	if f.dockerRelaySocks != "auto" && f.dockerRelaySocks != "off" {
		dc.RelaySocketDir = f.dockerRelaySocks
	}
	ro.DockerRelaySocketsAuto = f.dockerRelaySocks == "auto"
	dc.Prepull = splitList(f.dockerPrepull)
	dc.MaxImageMB = f.dockerMaxImageMB
	dc.MaxMemoryMB = f.dockerMaxMemoryMB
	dc.MaxCPUs = f.dockerMaxCPUs
	dc.MaxPids = f.dockerMaxPids
	dc.MemoryMB = f.dockerMemoryMB
	dc.Pids = f.dockerPids
	dc.ImageBudgetMB = f.dockerBudgetMB
	if f.dockerVolumeMB <= 0 {
		return fmt.Errorf("--docker-volume-mb must be positive")
	}
	if f.dockerVolumeFiles < 16 {
		return fmt.Errorf("--docker-volume-inodes must be at least 16")
	}
	dc.VolumeMB = f.dockerVolumeMB
	dc.VolumeInodes = f.dockerVolumeFiles
	dc.NamespaceImageMB = f.dockerNSImageMB
	dc.Pull = !f.dockerNoPull
	dc.AllowImageUser = f.dockerImageUser
	if f.dockerWorkerID != "" {
		dc.WorkerID = f.dockerWorkerID
	}
	if f.dockerBuild && !f.docker {
		return fmt.Errorf("--docker-build needs --docker")
	}
	dc.Build = f.dockerBuild
	dc.BuildNetwork = f.dockerBuildNetwork
	dc.AgentBinary = f.dockerAgent
	dc.Egress = splitList(f.dockerEgress)
	if _, err := job.ParseEgress(dc.Egress); err != nil {
		return fmt.Errorf("--docker-egress: %w", err)
	}
	if f.dockerEgressBytes < 0 || f.dockerEgressConns < 0 {
		return fmt.Errorf("--docker-egress-bytes and --docker-egress-conns must not be negative")
	}
	dc.EgressBytes = f.dockerEgressBytes
	dc.EgressConns = f.dockerEgressConns
	if f.dockerEgressWindow <= 0 {
		return fmt.Errorf("--docker-service-egress-window must be positive")
	}
	dc.ServiceEgressWindow = f.dockerEgressWindow
	if dc.AgentBinary == "" {
		if exe, err := os.Executable(); err == nil && docker.CheckAgentBinary(exe) == nil {
			dc.AgentBinary = exe
		}
	}
	dc.BuildTimeout = f.dockerBuildTimeout
	dc.BuildMemoryMB = f.dockerBuildMemoryMB
	dc.BuildCPUs = f.dockerBuildCPUs
	dc.BuildPids = f.dockerBuildPids
	dc.BuildDiskMB = f.dockerBuildDiskMB
	switch {
	case f.dockerServices < 0:
		return fmt.Errorf("--docker-services must be at least 0")
	case f.dockerServices > 0 && !f.docker:
		return fmt.Errorf("--docker-services needs --docker")
	case f.dockerServices > 0 && dc.AgentBinary == "":
		return fmt.Errorf("--docker-services needs an agent: this program was not built static (CGO_ENABLED=0); give one with --docker-agent")
	}
	dc.Services = f.dockerServices
	if f.serviceStreams < 1 {
		return fmt.Errorf("--docker-service-streams must be at least 1")
	}
	wc.MaxStreams = f.serviceStreams
	if f.serviceStart <= 0 {
		return fmt.Errorf("--docker-service-start-timeout must be positive")
	}
	dc.ServiceStartTimeout = f.serviceStart
	dc.PoolMax = f.dockerPoolMax
	dc.PoolMemoryMB = f.dockerPoolMemoryMB
	dc.PoolTTL = f.dockerPoolTTL
	prewarm, err := parsePrewarm(f.dockerPrewarm)
	if err != nil {
		return err
	}
	dc.Prewarm = prewarm
	if f.docker {
		if err := dc.Validate(); err != nil {
			return dockerSettingsError(err)
		}
	}
	return nil
}

// dockerFlag is the flag bound to a field of docker.Config, or "".
func dockerFlag(field string) string {
	return map[string]string{
		"WorkerID":         "docker-worker-id",
		"MaxImageMB":       "docker-max-image-mb",
		"MaxMemoryMB":      "docker-max-memory-mb",
		"MaxCPUs":          "docker-max-cpus",
		"MaxPids":          "docker-max-pids",
		"MemoryMB":         "docker-memory-mb",
		"Pids":             "docker-pids",
		"ImageBudgetMB":    "docker-image-budget-mb",
		"NamespaceImageMB": "docker-namespace-image-mb",
		"VolumeMB":         "docker-volume-mb",
		"VolumeInodes":     "docker-volume-inodes",
		"BuildNetwork":     "docker-build-network",
		"BuildTimeout":     "docker-build-timeout",
		"BuildMemoryMB":    "docker-build-memory-mb",
		"BuildCPUs":        "docker-build-cpus",
		"BuildPids":        "docker-build-pids",
		"BuildDiskMB":      "docker-build-disk-mb",
		"PoolMax":          "docker-pool-max",
		"PoolMemoryMB":     "docker-pool-memory-mb",
		"PoolTTL":          "docker-pool-ttl",
	}[field]
}

// dockerSettingsError renders the refusals of docker.Config.Validate,
// each with the flag bound to its field.
func dockerSettingsError(err error) error {
	var lines []string
	for _, e := range leafErrors(err) {
		var je *job.Error
		if errors.As(e, &je) && je.Field != "" {
			if name := dockerFlag(je.Field); name != "" {
				lines = append(lines, "--"+name+": "+je.Message)
			} else {
				lines = append(lines, "docker "+je.Field+": "+je.Message)
			}
			continue
		}
		lines = append(lines, "docker: "+e.Error())
	}
	return errors.New(strings.Join(lines, "; "))
}

// parsePrewarm parses --docker-prewarm: IMAGE=COUNT, comma-separated.
func parsePrewarm(s string) (map[string]int, error) {
	var out map[string]int
	for _, item := range splitList(s) {
		i := strings.LastIndexByte(item, '=')
		n := 0
		if i > 0 {
			n, _ = strconv.Atoi(item[i+1:])
		}
		if i <= 0 || n <= 0 {
			return nil, fmt.Errorf("--docker-prewarm: %q is not IMAGE=COUNT with a positive count", item)
		}
		if out == nil {
			out = map[string]int{}
		}
		out[item[:i]] += n
	}
	return out, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

const serveUsage = `Usage:
  zerverless serve [flags]

Runs the orchestrator: the HTTP API on --addr, its store in --data, and
--workers embedded workers. On its first start it makes an admin token,
prints it once and keeps it in DATA/admin.token. Ctrl-C stops it; jobs
still pending or running are picked up again at the next start.

Flags:
`

const workerUsage = `Usage:
  zerverless worker [flags]

Runs a native worker that dials the orchestrator's /ws/volunteer endpoint
and runs the jobs it is sent. With --join-token it is trusted; without one
it is an anonymous volunteer, which an orchestrator accepts only when it
runs with --open-volunteering.

Flags:
`

// parseFlags parses the flags of serve or worker. --help prints usage and
// the flags on stdout (status 0); a bad flag or a stray argument is
// reported on stderr (status 2). ok is false when the command must stop.
func parseFlags(fs *flag.FlagSet, args []string, usage string, stdout, stderr io.Writer) (status int, ok bool) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0, false
	default:
		fmt.Fprintf(stderr, "zerverless %s: %v\nRun 'zerverless %s --help' for usage.\n", fs.Name(), err, fs.Name())
		return 2, false
	}
}

func serveCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg := DefaultServerConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "HTTP listen address")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "directory of the embedded store and of admin.token")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "embedded workers to start (0: none)")
	fs.BoolVar(&cfg.WorkersInProcess, "embedded-workers-inprocess", cfg.WorkersInProcess, "embedded workers reach the orchestrator in process, through the same HTTP server and checks, rather than over its TCP port (false: over TCP, as a remote worker does)")
	fs.DurationVar(&cfg.Orchestrator.HeartbeatInterval, "heartbeat", cfg.Orchestrator.HeartbeatInterval, "how often workers must send a heartbeat")
	fs.DurationVar(&cfg.Orchestrator.LeaseGrace, "lease-grace", cfg.Orchestrator.LeaseGrace, "how long past a job's timeout its lease lasts")
	fs.DurationVar(&cfg.Orchestrator.RunningWriteDelay, "running-write-delay", cfg.Orchestrator.RunningWriteDelay, "how long after a job is handed to a worker its running state is stored, and after a job waited for (?wait=) is submitted, it is first stored; a job that ends sooner has only its end stored (0: at once)")
	fs.IntVar(&cfg.Orchestrator.MaxQueued, "max-queued", cfg.Orchestrator.MaxQueued, "most jobs pending at once")
	fs.IntVar(&cfg.Orchestrator.MaxNamespaceLanes, "max-namespace-lanes", cfg.Orchestrator.MaxNamespaceLanes, "most distinct requirements (memory_mb, docker image and resources, build) one namespace's pending jobs may ask for at once; a submission past it is refused until some drain")
	fs.IntVar(&cfg.Orchestrator.EndedJobs.Jobs, "ended-jobs", cfg.Orchestrator.EndedJobs.Jobs, "jobs that ended recently kept in memory, so that reading one just after it ends reads no store (0: none)")
	fs.Int64Var(&cfg.Orchestrator.EndedJobs.Bytes, "ended-jobs-bytes", cfg.Orchestrator.EndedJobs.Bytes, "bytes of the jobs that ended recently kept in memory; a job over an eighth of it is not kept (0: none)")
	fs.Int64Var(&cfg.API.MaxBodyBytes, "max-body-bytes", cfg.API.MaxBodyBytes, "largest request body")
	fs.Int64Var(&cfg.API.MaxBodiesInFlight, "max-bodies-in-flight", cfg.API.MaxBodiesInFlight, "request bodies the job API (and, apart, the deploy API) may hold at once while serving them; beyond it 503 (at least --max-body-bytes)")
	fs.DurationVar(&cfg.Contexts.TTL, "build-context-ttl", cfg.Contexts.TTL, "how long an uploaded build context stays after its last use")
	fs.StringVar(&cfg.Functions.Domain, "functions-domain", "", "give each namespace its own origin: functions of namespace NS answer at NS.<domain>/PATH (a wildcard DNS name pointing here)")
	fs.BoolVar(&cfg.Functions.SharedOrigin, "functions-shared-origin", false, "with --functions-domain, keep answering functions at /NS/PATH on the platform's host too (sandboxed)")
	fs.IntVar(&cfg.Functions.MaxInformational, "service-max-informational", cfg.Functions.MaxInformational, "informational answers (103 Early Hints and the like) a docker service's instance may send before its answer to one request; past it 502")
	fs.Int64Var(&cfg.Functions.MaxInFlightBytes, "functions-inflight-bytes", cfg.Functions.MaxInFlightBytes, "bytes that all function calls being served may hold at once (each counts its request body and 64 KiB); a call beyond it is answered 503")
	fs.DurationVar(&cfg.Orchestrator.Retention.Period, "job-retention", cfg.Orchestrator.Retention.Period, "how long a job and its result are kept after it ends")
	fs.IntVar(&cfg.Orchestrator.DefaultQuotas.JobStorageMB, "job-storage-mb", cfg.Orchestrator.DefaultQuotas.JobStorageMB, "MiB of stored jobs and results a namespace may hold (its policy's job_storage_mb overrides it; -1: no limit)")
	fs.IntVar(&cfg.Net.MaxConns, "max-conns", cfg.Net.MaxConns, "most HTTP connections at once, worker sessions not counted (0: four fifths of the open-file limit left after a reserve)")
	fs.IntVar(&cfg.Net.MaxConnsPerAddr, "max-conns-per-addr", cfg.Net.MaxConnsPerAddr, "most HTTP connections one IPv4 address or IPv6 /64 holds at once (0: 512, or --max-conns when fewer)")
	fs.IntVar(&cfg.Net.MaxSessions, "max-worker-sessions", cfg.Net.MaxSessions, "most registered worker WebSockets at once (0: one fifth of the open-file limit left after a reserve)")
	fs.DurationVar(&cfg.Net.ReadHeaderTimeout, "read-header-timeout", cfg.Net.ReadHeaderTimeout, "longest read of a request's headers")
	fs.DurationVar(&cfg.Net.IdleTimeout, "idle-timeout", cfg.Net.IdleTimeout, "longest wait of a keep-alive connection for its next request")
	fs.Int64Var(&cfg.Net.MinBodyRate, "min-body-rate", cfg.Net.MinBodyRate, "slowest average rate of a request body, in bytes per second, once --body-grace has passed")
	fs.DurationVar(&cfg.Net.BodyGrace, "body-grace", cfg.Net.BodyGrace, "time a request body is given before --min-body-rate applies")
	fs.Int64Var(&cfg.API.WorkerRegisterLimit, "max-register-bytes", cfg.API.WorkerRegisterLimit, "largest message read from a worker before it is authenticated")
	origins := fs.String("allowed-origins", "", "comma-separated Origin hosts allowed to open /ws/volunteer")
	fs.BoolVar(&cfg.Orchestrator.OpenVolunteering, "open-volunteering", false, "let workers without a join token (browser tabs, anonymous volunteers) connect; they run sandboxed runtimes only")
	fs.Int64Var(&cfg.Orchestrator.Logs.JobBytes, "log-job-bytes", cfg.Orchestrator.Logs.JobBytes, "output a job's log keeps (GET /api/jobs/ID/logs), all attempts together; the result keeps the whole output all the same")
	fs.IntVar(&cfg.Orchestrator.Logs.FollowersPerJob, "log-followers-per-job", cfg.Orchestrator.Logs.FollowersPerJob, "clients following one job's log at once")
	fs.IntVar(&cfg.Orchestrator.Logs.FollowersPerToken, "log-followers-per-token", cfg.Orchestrator.Logs.FollowersPerToken, "logs one token follows at once")
	fs.BoolVar(&cfg.Orchestrator.Metrics.NamespaceLabels, "metrics-namespace-labels", cfg.Orchestrator.Metrics.NamespaceLabels, "label job counts in /metrics with their namespace")
	fs.IntVar(&cfg.Orchestrator.Metrics.MaxNamespaces, "metrics-max-namespaces", cfg.Orchestrator.Metrics.MaxNamespaces, "namespaces with a label of their own in /metrics; the others count as \"other\"")
	fs.IntVar(&cfg.Orchestrator.Metrics.MaxWorkers, "metrics-max-workers", cfg.Orchestrator.Metrics.MaxWorkers, "trusted workers whose own reports /metrics shows at once, labeled worker")
	fs.Int64Var(&cfg.Orchestrator.AnonymousReadBytes, "anonymous-read-bytes", cfg.Orchestrator.AnonymousReadBytes, "bytes that all anonymous volunteers' messages may hold at once while they are read; a message beyond it ends its session")
	orchAllow := fs.String("docker-allow-images", "", "comma-separated image patterns this orchestrator accepts in docker jobs (default: any; each worker narrows further with --docker-allow)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	sc, sl := &cfg.Orchestrator.Services, &cfg.Deploy.Limits.Services
	fs.IntVar(&sc.MaxWaiting, "service-max-waiting", sc.MaxWaiting, "requests that may wait at once for an instance of one docker service; one more is answered 503")
	fs.DurationVar(&sc.MaxWait, "service-max-wait", sc.MaxWait, "longest wait of a request for a free service instance (0: the service's start_timeout_seconds)")
	fs.DurationVar(&sc.RestartBackoff, "service-restart-backoff", sc.RestartBackoff, "wait before a crashed service instance starts again; doubles at each crash in a row")
	fs.DurationVar(&sc.MaxRestartBackoff, "service-max-restart-backoff", sc.MaxRestartBackoff, "longest wait before a crashed service instance starts again")
	fs.DurationVar(&sc.IdleConnTimeout, "service-idle-conn-timeout", sc.IdleConnTimeout, "how long a connection to a service instance is kept idle for the next request to it")
	fs.IntVar(&sc.MaxLogBytes, "service-log-bytes", sc.MaxLogBytes, "recent output of a docker service's instances kept, all instances together (GET /api/deploy/NS/PATH/logs)")
	fs.IntVar(&sc.FollowersPerService, "service-log-followers-per-service", sc.FollowersPerService, "clients following one docker service's live log at once")
	fs.IntVar(&sc.FollowersPerToken, "service-log-followers-per-token", sc.FollowersPerToken, "docker service logs one token follows at once")
	fs.IntVar(&sc.FollowerBytes, "service-log-follower-bytes", sc.FollowerBytes, "output a follower of a service's live log may fall behind before it skips ahead (told what it missed)")
	fs.IntVar(&sl.MaxInstances, "service-max-instances", sl.MaxInstances, "most max_instances a docker service may ask for")
	fs.IntVar(&sl.DefaultMaxInstances, "service-default-max-instances", sl.DefaultMaxInstances, "max_instances of a docker service that asks for none")
	fs.IntVar(&sl.MaxConcurrency, "service-max-concurrency", sl.MaxConcurrency, "most concurrency (requests per instance) a docker service may ask for")
	fs.IntVar(&cfg.Orchestrator.DefaultQuotas.MaxInstances, "namespace-max-instances", cfg.Orchestrator.DefaultQuotas.MaxInstances, "docker service instances a namespace runs at once (its policy's max_instances overrides it; -1: no limit)")
	var wf workerFlags
	wf.register(fs)
	if status, ok := parseFlags(fs, args, serveUsage, stdout, stderr); !ok {
		return status
	}
	cfg.Functions.Limits.Services = cfg.Deploy.Limits.Services
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "zerverless serve:", err)
		return 2
	}
	if err := wf.apply(&cfg.Worker, &cfg.Runtimes); err != nil {
		fmt.Fprintln(stderr, "zerverless serve:", err)
		return 2
	}
	cfg.API.OriginPatterns = splitList(*origins)
	cfg.Orchestrator.DockerAllowImages = splitList(*orchAllow)
	if wf.dockerWorkerID == "" {
		cfg.Runtimes.DockerIDDir, cfg.Runtimes.DockerIDPrefix = cfg.DataDir, "serve-"
	}
	files, err := raiseOpenFiles()
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	cfg.Net.Descriptors = files
	var bad *SettingsError
	if err := cfg.validate(); errors.As(err, &bad) {
		// Each refused setting named by its flag, before anything starts.
		for _, line := range explainSettings(bad, fs, &cfg) {
			fmt.Fprintln(stderr, "zerverless serve:", line)
		}
		return 2
	} else if err != nil {
		fmt.Fprintln(stderr, "zerverless serve:", err)
		return 2
	}
	cfg.Log = log
	cfg.API.Version = version
	cfg.Orchestrator.Version = version
	cfg.Worker.Version = version
	srv, err := StartServer(ctx, cfg)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	fmt.Fprintf(stdout, "zerverless %s listening on %s (workers: %d, data: %s)\n", version, srv.Listening(), cfg.Workers, cfg.DataDir)
	if srv.AdminTokenCreated() {
		fmt.Fprintf(stdout, "admin token (shown once; stored in %s, mode 0600):\n  %s\n", srv.AdminTokenPath(), srv.AdminToken())
	}
	<-ctx.Done()
	log.Info("shutting down")
	if err := srv.Close(); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

func workerCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	wc := worker.DefaultConfig()
	ro := DefaultRuntimeOptions()
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	url := getenv("ZERVERLESS_ORCHESTRATOR")
	if url == "" {
		url = "ws://localhost:8000/ws/volunteer"
	}
	fs.StringVar(&wc.URL, "orchestrator", url, "the orchestrator's WebSocket endpoint (env ZERVERLESS_ORCHESTRATOR)")
	fs.StringVar(&wc.Name, "name", "", "name shown in the orchestrator's worker list")
	fs.StringVar(&wc.JoinToken, "join-token", getenv("ZERVERLESS_JOIN_TOKEN"), "join token from the orchestrator's admin (env ZERVERLESS_JOIN_TOKEN); without one the worker is anonymous and runs sandboxed runtimes only, if the orchestrator allows anonymous volunteers at all")
	dataDir := fs.String("data", "zerverless-worker-data", "directory of the worker's state (its docker worker id)")
	fs.DurationVar(&wc.ReconnectMax, "reconnect-max", wc.ReconnectMax, "longest wait between connection attempts")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	var wf workerFlags
	wf.register(fs)
	if status, ok := parseFlags(fs, args, workerUsage, stdout, stderr); !ok {
		return status
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "zerverless worker:", err)
		return 2
	}
	if err := wf.apply(&wc, &ro); err != nil {
		fmt.Fprintln(stderr, "zerverless worker:", err)
		return 2
	}
	wc.Version = version
	var set settings
	set.add("", wc.Validate())
	var bad *SettingsError
	if errors.As(set.err(), &bad) {
		// Each refused setting named by its flag, before anything starts.
		for _, line := range explainSettings(bad, fs, &wc) {
			fmt.Fprintln(stderr, "zerverless worker:", line)
		}
		return 2
	}
	if wf.dockerWorkerID == "" {
		ro.DockerIDDir, ro.DockerIDPrefix = *dataDir, "worker-"
	}
	if fetch, err := worker.NewContextFetcher(wc.URL, wc.Header, nil); err == nil {
		ro.DockerConfig.Contexts = fetch
	}
	ro.Slots = wc.Concurrency
	runtimes, err := BuildRuntimes(ctx, ro, log)
	if err != nil {
		fmt.Fprintln(stderr, "zerverless worker:", err)
		return 1
	}
	if wc.Docker == nil {
		wc.Docker = runtimes.Docker
	}
	defer runtimes.Close(context.Background())
	w, err := worker.New(wc, runtimes.Set, log)
	if err != nil {
		fmt.Fprintln(stderr, "zerverless worker:", err)
		return 2
	}
	log.Info("worker starting", "orchestrator", wc.URL, "concurrency", wc.Concurrency)
	start := time.Now()
	err = w.Run(ctx)
	log.Info("worker stopped", "uptime", time.Since(start).Round(time.Second))
	var refused *worker.RefusedError
	if errors.As(err, &refused) {
		fmt.Fprintln(stderr, "zerverless worker:", err)
		return 1
	}
	return 0
}
