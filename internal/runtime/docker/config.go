package docker

import (
	"errors"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"time"

	"github.com/zerverless/zerverless/internal/buildctx"
	"github.com/zerverless/zerverless/internal/egress"
	"github.com/zerverless/zerverless/internal/job"
)

// Config is what a worker's owner decides about containers on their
// machine. DefaultConfig documents every default; cmd maps flags such as
// --docker-allow and --docker-max-image-mb onto it.
type Config struct {
	// WorkerID labels every container and volume the runtime creates, and
	// Sweep removes what carries it. It must be stable across restarts of
	// the same worker and distinct between workers that run at once on an
	// engine: cmd takes it from ClaimWorkerID on the worker's data
	// directory unless the owner names one. Default "local".
	WorkerID string

	// MemoryMB, CPUs and Pids are what a container gets when its job asks
	// for nothing (defaults 256 MiB, 1 CPU, 128 processes).
	MemoryMB int
	CPUs     float64
	Pids     int64
	// MaxMemoryMB, MaxCPUs and MaxPids are the most a job may ask for; a
	// job asking for more is refused (defaults 2048 MiB, every CPU of the
	// machine, 1024 processes). They are advertised in Capabilities.
	MaxMemoryMB int
	MaxCPUs     float64
	MaxPids     int64

	// TmpMB sizes the tmpfs at /tmp (default 64 MiB). Its pages count
	// against the container's memory limit too.
	TmpMB int
	// VolumeMB and VolumeInodes bound each volume a job can write — /output,
	// each scratch volume, each VOLUME path of its image — in bytes and in
	// files and directories (defaults 1024 MiB, 16384; VolumeInodes bounds
	// /tmp too). They are tmpfs: nothing a job writes reaches the host's
	// disk, a write past the limit fails with ENOSPC, a job that fills a
	// volume fails saying so, and what a job keeps in them counts against
	// its memory limit.
	VolumeMB     int
	VolumeInodes int
	// NoFile is the nofile ulimit, soft and hard (default 1024).
	NoFile int64
	// RelaySocketDir, when set, is a directory of this machine that the
	// engine shares (a local engine): each service instance's relay gets
	// a directory in it, mounted in the relay's container alone, where it
	// listens on a unix socket that carries the worker's dials to the
	// instance, past the engine's attach stream (two fewer processes on
	// each request's path). The runtime keeps it mode 0700. Default ""
	// (cmd sets one under the temporary directory for a local engine):
	// dials go over the attach stream, as they do when a relay's socket
	// does not appear.
	RelaySocketDir string
	// OutputBytes caps stdout and stderr, each, when the task's limits
	// give no cap (default 1 MiB).
	OutputBytes int
	// MaxOutputFiles and MaxOutputBytes cap the regular files read back
	// from /output (defaults 64 files, 8 MiB in all). Past either,
	// Result.Truncated is set and the rest is dropped.
	MaxOutputFiles int
	MaxOutputBytes int64
	// MaxInputEnvBytes is the largest input_data also passed as the
	// INPUT_DATA variable (default 64 KiB: the kernel refuses single
	// environment strings over 128 KiB). Larger input is only in
	// /input/input.json.
	MaxInputEnvBytes int

	// AllowImages are job.MatchImage patterns of the images jobs may use;
	// empty allows every image. An image outside them is refused before
	// any pull or container.
	AllowImages []string
	// AllowImageUser lets a container run as its image's own user instead
	// of 65534:65534 (default false).
	AllowImageUser bool
	// Pull allows pulling images that are not on the machine (default
	// true). Credentials come from the worker's Docker config.
	Pull bool
	// PullTimeout bounds one pull, including the manifest check (default
	// 5 minutes; the job's own deadline also applies).
	PullTimeout time.Duration
	// MaxImageMB refuses, before pulling, an image whose compressed size
	// in the registry manifest is larger (default 2048; 0: no limit).
	MaxImageMB int
	// Prepull is pulled by Prepull, at worker start.
	Prepull []string
	// ImageBudgetMB is the disk the images this runtime pulled and built
	// may take; past it, the least recently used pulled images that no job
	// is using are removed (default 10240; 0: no budget). Images the
	// runtime did not pull or build are never removed.
	ImageBudgetMB int
	// NamespaceImageMB is the disk the images one namespace built on this
	// worker may take (default 2048; 0: only ImageBudgetMB bounds them).
	// Built images are never removed to make room for another namespace's
	// or for a pull; see images.go.
	NamespaceImageMB int

	// WarmHolders is how many volume holders, each with an /output and an
	// /input volume, are kept ready for the next jobs (default 2; 0 makes
	// each job prepare its own). See volumes.go.
	WarmHolders int
	// PoolMax is how many prewarmed containers (pool.go) the worker keeps
	// at most, over every image and profile (default 4; 0 turns the pools
	// off). Pools need AgentBinary: without it there are none.
	PoolMax int
	// PoolMemoryMB bounds the memory limits of the prewarmed containers
	// together (default 1024 MiB): a pool does not grow past it.
	PoolMemoryMB int
	// PoolTTL is how long a prewarmed container waits for a job before it
	// is removed, and how long a pool goes unused before it shrinks by one
	// (default 5 minutes).
	PoolTTL time.Duration
	// Prewarm is how many containers to keep ready, by image reference,
	// for jobs of that image with the default resources, no input and no
	// scratch volume, from the start (--docker-prewarm alpine:latest=2).
	// They count against PoolMax and PoolMemoryMB.
	Prewarm map[string]int
	// CgroupRoot is where the engine's cgroups can be read for peak memory
	// and CPU time (default "/sys/fs/cgroup"; empty: not reported).
	CgroupRoot string
	// Build lets the worker build images from Dockerfiles (default false:
	// the owner opts in with --docker-build).
	Build bool
	// BuildNetwork is the network of RUN steps (default "none"; the owner
	// may allow "bridge" with --docker-build-network).
	BuildNetwork string
	// BuildMemoryMB and BuildCPUs bound each RUN step of a build (defaults
	// 1024 MiB without swap, 1 CPU).
	BuildMemoryMB int
	BuildCPUs     float64
	// BuildPids bounds the processes of all of a build's RUN steps
	// together (default 256), through the build's anchor container (see
	// buildlimits.go).
	BuildPids int64
	// BuildDiskMB bounds what a build's RUN steps write to the engine's
	// disk, together (default 1024); past it the build is stopped and
	// fails. 0: no limit.
	BuildDiskMB int
	// BuildTimeout caps a build, whatever the job asks (default 10
	// minutes). It is separate from the run's timeout.
	BuildTimeout time.Duration
	// MaxBuiltImageMB and MaxLayers bound a built image; one over either is
	// removed and the job fails (defaults 2048 MiB, 64 layers).
	MaxBuiltImageMB int
	MaxLayers       int
	// MaxInstructions caps a Dockerfile's instructions (default 100).
	MaxInstructions int
	// BuildLogBytes caps the build log returned (default 256 KiB).
	BuildLogBytes int
	// ContextLimits bound a build context (default buildctx.DefaultLimits:
	// 100 MiB, 1,000 files).
	ContextLimits buildctx.Limits
	// Contexts fetches uploaded build contexts; nil: only inline contexts.
	Contexts ContextFetcher

	// UpkeepInterval is how often the upkeep (Start) probes the engine and
	// reaps expired containers (default 10 s).
	UpkeepInterval time.Duration
	// ReapGrace is how long past its deadline (LabelDeadline) a container
	// of any Zerverless worker may live before the upkeep removes it
	// (default 30 s): with UpkeepInterval, no container outlives its job's
	// deadline by more than 40 s while a worker runs on the engine.
	ReapGrace time.Duration
	// MaxRunTime is the deadline of a run whose task and context give none
	// (default 1 hour, the longest job timeout).
	MaxRunTime time.Duration

	// AgentBinary is a static executable whose "relay" mode runs the
	// relay of package agent (the zerverless program itself when it was
	// built with CGO_ENABLED=0; cmd gives it then). The runtime imports it
	// as its agent image. Empty: this worker starts no relay, so it runs
	// nothing that needs one (services, egress).
	AgentBinary string

	// Services is how many service instances the worker runs at once
	// (default 0: none; the owner opts in with --docker-services). Each
	// needs a relay, so AgentBinary is required. See service.go.
	Services int
	// ServiceStartTimeout bounds an instance's start to ready when its
	// spec gives no start_timeout_seconds, and caps the one it gives
	// (default 5 minutes).
	ServiceStartTimeout time.Duration
	// Egress are the host:port patterns (job.ParseEgressPattern) that
	// the owner lets containers reach through the worker's egress proxy
	// (--docker-egress; default none: no job gets egress here). Names
	// that resolve to an address of the worker's machine or networks are
	// still refused; an address pattern here ("127.0.0.1:8081") is the
	// only way to allow such an address. See egress.go.
	Egress []string
	// EgressBytes bounds the bytes one job (or build) sends and receives
	// through the proxy, together (default 256 MiB; 0: no bound); past
	// it its connections are cut and it fails saying so.
	EgressBytes int64
	// EgressConns bounds the connections one job (or build) opens
	// through the proxy in all (default 256; 0: no bound).
	EgressConns int
	// ServiceEgressWindow is the window over which EgressBytes and
	// EgressConns bound a service instance, which runs for as long as it
	// is deployed: per window of this length (default 1 hour), past
	// EgressBytes its connections are cut and past either limit new ones
	// are refused until the window ends; then the counts start again.
	ServiceEgressWindow time.Duration
	// EgressResolver resolves the names of egress destinations; nil:
	// the system's resolver.
	EgressResolver egress.Resolver

	// Logger receives cleanup failures; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		WorkerID:         "local",
		MemoryMB:         256,
		CPUs:             1,
		Pids:             128,
		MaxMemoryMB:      2048,
		MaxCPUs:          float64(goruntime.NumCPU()),
		MaxPids:          1024,
		TmpMB:            64,
		VolumeMB:         1024,
		VolumeInodes:     16384,
		NoFile:           1024,
		OutputBytes:      1 << 20,
		MaxOutputFiles:   64,
		MaxOutputBytes:   8 << 20,
		MaxInputEnvBytes: 64 << 10,
		Pull:             true,
		PullTimeout:      5 * time.Minute,
		MaxImageMB:       2048,
		ImageBudgetMB:    10240,
		NamespaceImageMB: 2048,
		WarmHolders:      2,
		PoolMax:          4,
		PoolMemoryMB:     1024,
		PoolTTL:          5 * time.Minute,
		CgroupRoot:       "/sys/fs/cgroup",
		BuildNetwork:     "none",
		BuildMemoryMB:    1024,
		BuildCPUs:        1,
		BuildPids:        256,
		BuildDiskMB:      1024,
		BuildTimeout:     10 * time.Minute,
		MaxBuiltImageMB:  2048,
		MaxLayers:        64,
		MaxInstructions:  100,
		BuildLogBytes:    256 << 10,
		ContextLimits:    buildctx.DefaultLimits(),
		UpkeepInterval:   10 * time.Second,
		ReapGrace:        30 * time.Second,
		MaxRunTime:       time.Hour,

		ServiceStartTimeout: 5 * time.Minute,
		EgressBytes:         256 << 20,
		EgressConns:         256,
		ServiceEgressWindow: time.Hour,
	}
}

// Validate reports the settings of c that make no sense, each as a
// job.Error naming its field (MemoryMB, BuildPids, …), so that a command
// can name the flag bound to it; an empty WorkerID is not refused (it is
// claimed at start, see ClaimWorkerID). New validates the same way.
func (c Config) Validate() error {
	if c.WorkerID == "" {
		c.WorkerID = "unclaimed"
	}
	return c.validate()
}

// validate checks c and fills a nil logger.
func (c *Config) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) { errs = append(errs, job.Invalid(field, format, args...)) }
	if c.WorkerID == "" || !labelValueRE.MatchString(c.WorkerID) {
		bad("WorkerID", "%q must be 1-128 letters, digits, '.', '_' or '-'", c.WorkerID)
	}
	// A default is checked against its maximum only when the maximum
	// itself makes sense, so that a refusal names the setting at fault.
	switch {
	case c.MaxMemoryMB < 6:
		bad("MaxMemoryMB", "%d MiB must be at least 6", c.MaxMemoryMB)
	case c.MemoryMB < 6 || c.MaxMemoryMB < c.MemoryMB:
		bad("MemoryMB", "%d MiB must be at least 6 and at most the maximum %d", c.MemoryMB, c.MaxMemoryMB)
	}
	switch {
	case !(c.MaxCPUs > 0):
		bad("MaxCPUs", "%g must be positive", c.MaxCPUs)
	case !(c.CPUs > 0) || c.MaxCPUs < c.CPUs:
		bad("CPUs", "%g must be positive and at most the maximum %g", c.CPUs, c.MaxCPUs)
	}
	switch {
	case c.MaxPids <= 0:
		bad("MaxPids", "%d must be positive", c.MaxPids)
	case c.Pids <= 0 || c.MaxPids < c.Pids:
		bad("Pids", "%d must be positive and at most the maximum %d", c.Pids, c.MaxPids)
	}
	if c.TmpMB <= 0 || c.NoFile <= 0 || c.OutputBytes <= 0 || c.MaxOutputFiles < 0 || c.MaxOutputBytes < 0 || c.MaxInputEnvBytes < 0 {
		errs = append(errs, errors.New("tmp size, nofile and output caps must be positive"))
	}
	if c.VolumeMB <= 0 {
		bad("VolumeMB", "%d MiB must be positive", c.VolumeMB)
	}
	if c.VolumeInodes < 16 {
		bad("VolumeInodes", "%d must be at least 16", c.VolumeInodes)
	}
	if c.PullTimeout <= 0 {
		errs = append(errs, errors.New("pull timeout must be positive"))
	}
	for _, f := range []struct {
		field string
		v     int
	}{{"MaxImageMB", c.MaxImageMB}, {"ImageBudgetMB", c.ImageBudgetMB}, {"NamespaceImageMB", c.NamespaceImageMB},
		{"WarmHolders", c.WarmHolders}, {"PoolMax", c.PoolMax}, {"PoolMemoryMB", c.PoolMemoryMB}} {
		if f.v < 0 {
			bad(f.field, "%d must not be negative (0: none)", f.v)
		}
	}
	if c.PoolTTL <= 0 {
		bad("PoolTTL", "%v must be positive", c.PoolTTL)
	}
	for ref, n := range c.Prewarm {
		if err := job.ValidateImageRef(ref); err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("prewarm %q=%d: a valid image reference and a positive count are needed", ref, n))
		}
	}
	if c.UpkeepInterval <= 0 || c.ReapGrace < 0 || c.MaxRunTime <= 0 {
		errs = append(errs, errors.New("upkeep interval and longest run time must be positive, reap grace not negative"))
	}
	if c.Build {
		switch c.BuildNetwork {
		case "none", "bridge", "default":
		default:
			bad("BuildNetwork", "%q must be none, bridge or default", c.BuildNetwork)
		}
		if c.BuildMemoryMB < 6 {
			bad("BuildMemoryMB", "%d MiB must be at least 6", c.BuildMemoryMB)
		}
		if !(c.BuildCPUs > 0) {
			bad("BuildCPUs", "%g must be positive", c.BuildCPUs)
		}
		if c.BuildPids <= 0 {
			bad("BuildPids", "%d must be positive", c.BuildPids)
		}
		if c.BuildTimeout <= 0 {
			bad("BuildTimeout", "%v must be positive", c.BuildTimeout)
		}
		if c.BuildLogBytes <= 0 {
			bad("BuildLogBytes", "%d must be positive", c.BuildLogBytes)
		}
		if c.BuildDiskMB < 0 {
			bad("BuildDiskMB", "%d MiB must not be negative (0: no limit)", c.BuildDiskMB)
		}
	}
	if err := c.validateEgress(); err != nil {
		errs = append(errs, err)
	}
	if c.AgentBinary != "" {
		if err := checkAgentBinary(c.AgentBinary, ""); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Services < 0 || c.ServiceStartTimeout < 0 {
		errs = append(errs, errors.New("services and the service start timeout must not be negative"))
	}
	if c.Services > 0 && c.AgentBinary == "" {
		errs = append(errs, errors.New("services need an agent (AgentBinary, --docker-agent): each instance's network is a relay"))
	}
	if c.ServiceStartTimeout == 0 {
		c.ServiceStartTimeout = 5 * time.Minute
	}
	if c.ServiceEgressWindow < 0 {
		errs = append(errs, errors.New("the service egress window must not be negative"))
	}
	if c.ServiceEgressWindow == 0 {
		c.ServiceEgressWindow = time.Hour
	}
	if c.BuildNetwork == "" {
		c.BuildNetwork = "none"
	}
	if c.BuildLogBytes <= 0 {
		c.BuildLogBytes = 256 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return errors.Join(errs...)
}
