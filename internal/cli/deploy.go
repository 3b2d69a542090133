package cli

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
)

const deployUsage = `Usage:
  zerverless deploy NAMESPACE/PATH -f FILE [flags]
  zerverless deploy NAMESPACE/PATH --image IMAGE [flags] [-- COMMAND...]
  zerverless deploy NAMESPACE/PATH DIR [flags]

Deploys FILE as the function at NAMESPACE/PATH, replacing any previous
version. It answers every HTTP method at SERVER/NAMESPACE/PATH/...

With --image, deploys a docker service instead: IMAGE (run with COMMAND
when given) listens on --port (given as PORT) and runs as instances on
trusted workers that offer services, started on demand. With DIR, the
image is first built from DIR (its Dockerfile, or --dockerfile), whose
files are uploaded as the build context.

Flags:
  --server URL           orchestrator (default $ZERVERLESS_SERVER, or http://localhost:8000)
  --token TOKEN          API token (default $ZERVERLESS_TOKEN, or DIR/admin.token)
  --data DIR             data dir of a local orchestrator (default $ZERVERLESS_DATA, or ./zerverless-data)
  -f, --file FILE        the handler's source, or a .wasm module
  --runtime R            lua, js, python or wasm (default: from FILE's extension,
                         .lua .js .py .wasm)
  --env NAME=VALUE       an entry of ENV (repeatable)
  --timeout SECONDS      per invocation (default 30)
  --memory-mb N          memory per invocation, where the runtime bounds it
  --max-concurrency N    invocations at once (default: no cap)
  --private              answer only requests with a token of NAMESPACE or an
                         admin token (default: public, anyone may call it)
  --anonymous-workers    let anonymous volunteers run it; they see its env and
                         callers' requests (default: trusted workers only)
  --json                 print the deployment as JSON

Docker service flags (with --image or DIR):
  --image IMAGE          the image to run
  --dockerfile FILE      the Dockerfile in DIR (default Dockerfile)
  --build-arg NAME=VALUE a build argument (repeatable)
  --env NAME=VALUE       an environment variable of the container (repeatable)
  --port N               where the server listens in the container (default 8080)
  --min-instances N      instances kept running without requests (default 0)
  --max-instances N      instances at most (default 10)
  --concurrency N        requests one instance takes at once (default 80)
  --idle-timeout SECONDS an instance without requests stops after (default 300)
  --start-timeout SECONDS bound from start to ready (default 60)
  --readiness-path PATH  an HTTP path that answers 2xx once ready (default: a
                         TCP connection to the port)
  --memory-mb N, --cpus N  resources of each instance
  --egress HOST:PORT     a destination each instance may reach through its
                         worker's egress proxy, e.g. api.example.com:443 or
                         *.example.org:443 (repeatable; the namespace's policy
                         must allow egress; default: none, no network at all)
  --timeout SECONDS      per request (default 30)
`

const deploymentsUsage = `Usage:
  zerverless deployments [flags]

Lists deployed functions.

Flags:
  --server URL      orchestrator (default $ZERVERLESS_SERVER, or http://localhost:8000)
  --token TOKEN     API token (default $ZERVERLESS_TOKEN, or DIR/admin.token)
  --data DIR        data dir of a local orchestrator (default $ZERVERLESS_DATA, or ./zerverless-data)
  --namespace NS    only functions of namespace NS
  --json            print the list as JSON
`

const undeployUsage = `Usage:
  zerverless undeploy NAMESPACE/PATH

Removes the function at NAMESPACE/PATH.

Flags:
  --server URL      orchestrator (default $ZERVERLESS_SERVER, or http://localhost:8000)
  --token TOKEN     API token (default $ZERVERLESS_TOKEN, or DIR/admin.token)
  --data DIR        data dir of a local orchestrator (default $ZERVERLESS_DATA, or ./zerverless-data)
`

// runtimeByExt maps a file extension to a function runtime.
var runtimeByExt = map[string]job.Type{".lua": job.TypeLua, ".js": job.TypeJS, ".mjs": job.TypeJS, ".py": job.TypePython, ".wasm": job.TypeWasm}

func (c *command) deploy(ctx context.Context, args []string) int {
	var (
		file, runtime   string
		timeout         float64
		memory, maxConc int
		asJSON, private bool
		anonymous       bool
		env             envFlag
	)
	fs := c.flags()
	fs.StringVar(&file, "f", "", "")
	fs.StringVar(&file, "file", "", "")
	fs.StringVar(&runtime, "runtime", "", "")
	fs.Var(&env, "env", "")
	fs.Float64Var(&timeout, "timeout", 0, "")
	fs.IntVar(&memory, "memory-mb", 0, "")
	fs.IntVar(&maxConc, "max-concurrency", 0, "")
	fs.BoolVar(&asJSON, "json", false, "")
	fs.BoolVar(&private, "private", false, "")
	fs.BoolVar(&anonymous, "anonymous-workers", false, "")
	sf := serviceFlags(fs)
	rest, st, ok := c.parse(fs, args, deployUsage, true)
	if !ok {
		return st
	}
	if len(rest) == 0 {
		return c.usageError("want one NAMESPACE/PATH")
	}
	ns, path, ok := strings.Cut(rest[0], "/")
	if !ok || ns == "" || path == "" {
		return c.usageError("%q is not NAMESPACE/PATH", rest[0])
	}
	if sf.image != "" || (file == "" && len(rest) == 2) {
		if file != "" || runtime != "" || maxConc != 0 || anonymous {
			return c.usageError("-f, --runtime, --max-concurrency and --anonymous-workers are for functions, not docker services")
		}
		return c.deployService(ctx, ns, path, rest[1:], sf, env.m, timeout, memory, private, asJSON)
	}
	if len(rest) != 1 {
		return c.usageError("want one NAMESPACE/PATH")
	}
	if file == "" {
		return c.usageError("-f FILE is required")
	}
	rt := job.Type(runtime)
	if rt == "" {
		if rt = runtimeByExt[strings.ToLower(filepath.Ext(file))]; rt == "" {
			return c.usageError("--runtime is required: the extension of %s names no runtime", file)
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return c.fail(ExitFail, "%v", err)
	}
	req := job.DeployRequest{Runtime: rt, MemoryMB: memory, MaxConcurrency: maxConc, AnonymousWorkers: anonymous}
	req.Env = env.m
	if private {
		public := false
		req.Public = &public
	}
	if timeout > 0 {
		req.TimeoutSeconds = &timeout
	}
	if rt == job.TypeWasm {
		req.Wasm = data
	} else {
		req.Code = string(data)
	}
	cl := c.client()
	d, err := cl.Deploy(ctx, ns, path, req)
	if err != nil {
		return c.fail(ExitFail, "%s: %v", cl.BaseURL(), describe(err))
	}
	if asJSON {
		c.printJSON(d)
		return ExitOK
	}
	fmt.Fprintf(c.stdout, "deployed %s version %d (%s): %s\n", d.Name(), d.Version, d.Runtime, functionURL(cl.BaseURL(), d.URL))
	return ExitOK
}

func (c *command) deployments(ctx context.Context, args []string) int {
	var ns string
	var asJSON bool
	fs := c.flags()
	fs.StringVar(&ns, "namespace", "", "")
	fs.BoolVar(&asJSON, "json", false, "")
	rest, st, ok := c.parse(fs, args, deploymentsUsage, true)
	if !ok {
		return st
	}
	if len(rest) > 0 {
		return c.usageError("unexpected arguments %q", rest)
	}
	cl := c.client()
	list, err := cl.Deployments(ctx, ns, false)
	if err != nil {
		return c.fail(ExitFail, "%s: %v", cl.BaseURL(), describe(err))
	}
	if asJSON {
		if list == nil {
			list = []client.Deployment{}
		}
		c.printJSON(api.DeploymentList{Deployments: list})
		return ExitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FUNCTION\tRUNTIME\tVERSION\tTIMEOUT\tMAX CONCURRENCY\tUPDATED\tURL")
	now := time.Now()
	for _, d := range list {
		conc := "-"
		if d.MaxConcurrency > 0 {
			conc = fmt.Sprint(d.MaxConcurrency)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%gs\t%s\t%s\t%s\n", d.Name(), d.Runtime, d.Version, d.TimeoutSeconds,
			conc, age(now, d.UpdatedAt), functionURL(cl.BaseURL(), d.URL))
	}
	tw.Flush()
	return ExitOK
}

func (c *command) undeploy(ctx context.Context, args []string) int {
	fs := c.flags()
	rest, st, ok := c.parse(fs, args, undeployUsage, true)
	if !ok {
		return st
	}
	if len(rest) != 1 {
		return c.usageError("want one NAMESPACE/PATH")
	}
	ns, path, ok := strings.Cut(rest[0], "/")
	if !ok || ns == "" || path == "" {
		return c.usageError("%q is not NAMESPACE/PATH", rest[0])
	}
	cl := c.client()
	if err := cl.Undeploy(ctx, ns, path); err != nil {
		return c.fail(ExitFail, "%s: %v", cl.BaseURL(), describe(err))
	}
	fmt.Fprintf(c.stdout, "removed %s/%s\n", ns, path)
	return ExitOK
}

// functionURL resolves a deployment's url (a path on the API's host, or
// "//NS.<functions domain>/PATH" on a namespace's own host) against the
// API's base URL.
func functionURL(base, ref string) string {
	b, err := url.Parse(base)
	if err != nil {
		return base + ref
	}
	r, err := url.Parse(ref)
	if err != nil {
		return base + ref
	}
	return b.ResolveReference(r).String()
}
