package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/zerverless/zerverless/internal/job"
)

// serviceOpts are the flags of a docker service's deploy.
type serviceOpts struct {
	image, dockerfile, readiness string
	port, minI, maxI, conc       int
	idle, start, cpus            float64
	buildArgs                    envFlag
	egress                       listFlag
}

func serviceFlags(fs *flag.FlagSet) *serviceOpts {
	o := &serviceOpts{}
	fs.StringVar(&o.image, "image", "", "")
	fs.StringVar(&o.dockerfile, "dockerfile", "Dockerfile", "")
	fs.StringVar(&o.readiness, "readiness-path", "", "")
	fs.IntVar(&o.port, "port", 0, "")
	fs.IntVar(&o.minI, "min-instances", -1, "")
	fs.IntVar(&o.maxI, "max-instances", 0, "")
	fs.IntVar(&o.conc, "concurrency", 0, "")
	fs.Float64Var(&o.idle, "idle-timeout", 0, "")
	fs.Float64Var(&o.start, "start-timeout", 0, "")
	fs.Float64Var(&o.cpus, "cpus", 0, "")
	fs.Var(&o.buildArgs, "build-arg", "")
	fs.Var(&o.egress, "egress", "")
	return o
}

// deployService deploys a docker service: o.image run with args as its
// command, or, without an image, the image built from the directory
// args[0].
func (c *command) deployService(ctx context.Context, ns, path string, args []string, o *serviceOpts, env map[string]string,
	timeout float64, memory int, private, asJSON bool) int {
	req := job.DeployRequest{Runtime: job.TypeDocker}
	s := &req.ServiceRequest
	s.DockerEnv = env
	s.ReadinessPath = o.readiness
	if len(o.egress) > 0 {
		s.Network = &job.Network{Egress: o.egress}
	}
	setIf := func(p **int, v int, ok bool) {
		if ok {
			*p = &v
		}
	}
	setIf(&s.Port, o.port, o.port != 0)
	setIf(&s.MinInstances, o.minI, o.minI >= 0)
	setIf(&s.MaxInstances, o.maxI, o.maxI != 0)
	setIf(&s.Concurrency, o.conc, o.conc != 0)
	if o.idle != 0 {
		s.IdleTimeout = &o.idle
	}
	if o.start != 0 {
		s.StartTimeout = &o.start
	}
	if memory != 0 || o.cpus != 0 {
		s.Resources = &job.Resources{MemoryMB: memory, CPUs: o.cpus}
	}
	if timeout > 0 {
		req.TimeoutSeconds = &timeout
	}
	if private {
		public := false
		req.Public = &public
	}
	cl := c.client()
	if o.image != "" {
		s.DockerImage = o.image
		s.DockerCommand = args
	} else {
		if len(args) != 1 {
			return c.usageError("want --image IMAGE or one directory to build")
		}
		dir := args[0]
		file := filepath.ToSlash(filepath.Clean(o.dockerfile))
		if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
			return c.usageError("%v", err)
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeContext(pw, dir, file)) }()
		up, err := cl.UploadContext(ctx, pr, "application/gzip")
		pr.Close()
		if err != nil {
			return c.fail(ExitDockerError, "upload %s to %s: %v", dir, cl.BaseURL(), describe(err))
		}
		fmt.Fprintf(c.stderr, "zerverless: uploaded %s: %d files, %d bytes (build context %s)\n", dir, up.Files, up.Bytes, up.BuildContextID[:12])
		s.Dockerfile = file
		s.BuildContextID = up.BuildContextID
		s.BuildArgs = o.buildArgs.m
	}
	d, err := cl.Deploy(ctx, ns, path, req)
	if err != nil {
		return c.fail(ExitFail, "%s: %v", cl.BaseURL(), describe(err))
	}
	if asJSON {
		c.printJSON(d)
		return ExitOK
	}
	what := d.Service.Image
	if d.Service.BuildJobID != "" {
		what += ", built by job " + d.Service.BuildJobID
	}
	fmt.Fprintf(c.stdout, "deployed %s version %d (docker service %s): %s\n", d.Name(), d.Version, what, functionURL(cl.BaseURL(), d.URL))
	return ExitOK
}

// listFlag collects a repeated flag's values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

var _ flag.Value = (*listFlag)(nil)
