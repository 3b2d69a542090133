package api

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/zerverless/zerverless/internal/admission"
	"github.com/zerverless/zerverless/internal/job"
)

// FunctionsConfig configures the function routes.
type FunctionsConfig struct {
	// MaxRequestBytes caps the body of a request to a function (default
	// 8 MiB); a larger one is answered 413.
	MaxRequestBytes int64
	// Limits bound what a deployment may ask for (default
	// job.DefaultDeployLimits).
	Limits job.DeployLimits
	// MaxListCodeBytes caps the code (sources and Wasm modules) that one
	// GET /api/deploy?include=code answers with (default 16 MiB): a list
	// whose functions hold more is refused (400, field include), and each
	// function's code is read with GET /api/deploy/{namespace}/{path}.
	// Without it one listing of a namespace's functions (100 Wasm modules
	// of 32 MiB) would hold gigabytes.
	MaxListCodeBytes int64
	// MaxInFlightBytes bounds what all function calls being served hold
	// at once, counted as each call's request body (its Content-Length,
	// or MaxRequestBytes when it is not known) and ResponseAllowance for
	// its answer (default 128 MiB; what the calls hold is a few times
	// that: the body is copied into the task and, in base64, to the
	// worker). A call that does not fit is answered
	// 503 with Retry-After at once, before its body is read: without it,
	// anyone could make the orchestrator hold MaxRequestBytes (and the
	// copies made of it) per connection by calling a public function.
	MaxInFlightBytes int64
	// Domain, when set (for example "fn.example.com"), gives each
	// namespace its own origin: namespace alice's function alice/hello
	// answers at http(s)://alice.fn.example.com/hello, where it may set
	// cookies and register service workers. Every request whose Host is
	// under Domain goes to that namespace's functions, never to the
	// platform. Default none: functions answer only on the shared origin,
	// sandboxed (see origin.go).
	Domain string
	// SharedOrigin keeps the shared-origin routes /{namespace}/{path...}
	// on the platform's host when Domain is set (sandboxed as without
	// Domain). Default false: with a functions domain the platform's host
	// serves no function. Without Domain the shared origin is always on.
	SharedOrigin bool
	// MaxInformational bounds the informational answers (1xx but 101,
	// such as 103 Early Hints) that a docker service's instance sends
	// before its answer to one request, each relayed to the caller
	// (default 16); past it the request is answered 502. net/http's
	// transport stops counting them once they are read (the proxy reads
	// them, to filter their headers), and each may carry a header as
	// large as an answer's: without it an instance could make the
	// orchestrator read and relay headers without end within a request.
	MaxInformational int
}

// Validate checks the configuration: MaxRequestBytes is not negative
// (zero means the default), and Domain, when set, is a lowercase DNS name
// of at least two labels, without scheme, port or dots at its ends.
func (c FunctionsConfig) Validate() error {
	if c.MaxRequestBytes < 0 {
		return job.Invalid("MaxRequestBytes", "is %d; it must be positive (0: the default)", c.MaxRequestBytes)
	}
	if c.MaxInFlightBytes < 0 {
		return job.Invalid("MaxInFlightBytes", "is %d; it must be positive (0: the default)", c.MaxInFlightBytes)
	}
	if c.MaxListCodeBytes < 0 {
		return job.Invalid("MaxListCodeBytes", "is %d; it must be positive (0: the default)", c.MaxListCodeBytes)
	}
	if c.MaxInformational < 0 {
		return job.Invalid("MaxInformational", "is %d; it must be positive (0: the default)", c.MaxInformational)
	}
	if c.Domain != "" {
		if err := validDomain(c.Domain); err != nil {
			return job.Invalid("Domain", "%v", err)
		}
	}
	return nil
}

// ResponseAllowance is what each function call counts against
// FunctionsConfig.MaxInFlightBytes beside its body, for its request and
// answer: enough for the usual small call, so that thousands of them may
// run at once.
const ResponseAllowance = 64 << 10

// DefaultFunctionsConfig returns the documented defaults.
func DefaultFunctionsConfig() FunctionsConfig {
	return FunctionsConfig{MaxRequestBytes: 8 << 20, Limits: job.DefaultDeployLimits(), MaxListCodeBytes: 16 << 20, MaxInFlightBytes: 128 << 20, MaxInformational: 16}
}

// functions serves the deploy API and function invocations in front of
// the platform's own handler.
type functions struct {
	*server
	fcfg     FunctionsConfig
	platform http.Handler
	// inFlight is what the calls being served count against
	// fcfg.MaxInFlightBytes.
	inFlight atomic.Int64
}

// NewFunctions returns a handler that serves
//
//	POST   /api/deploy/{namespace}/{path...}  deploy (201 when new, 200 when replaced)
//	GET    /api/deploy[?namespace=NS][&include=code]
//	GET    /api/deploy/{namespace}/{path...}  one function, with its code
//	DELETE /api/deploy/{namespace}/{path...}  remove it (204)
//	ANY    /{namespace}/{path...}             invoke the function
//
// The deploy routes need a token: an admin token, or a namespace token for
// its own namespace (deploying elsewhere is 403, and another namespace's
// functions are 404); adm decides. A public function answers anyone; a
// private one needs a token of its namespace or an admin token. The
// Authorization header is never passed to a function.
//
// and hands every other request to platform (the handler of New). A path
// whose first segment is a reserved namespace (job.ReservedNamespaces:
// api, ws, health, ...) or that has a single segment is always the
// platform's, so functions never shadow its routes, present or future,
// and its 404 and 405 answers stay as they are. cfg supplies the job API's
// limits (MaxBodyBytes bounds a deploy request).
//
// With fcfg.Domain, a request whose Host is NS.<Domain> invokes namespace
// NS's function at its path (ANY /{path...}); nothing of the platform, the
// deploy routes included, answers under Domain, and the platform's host
// serves functions only with fcfg.SharedOrigin. What a function's answer
// may carry depends on the origin it is served on: see origin.go.
func NewFunctions(cfg Config, fcfg FunctionsConfig, adm *admission.Service, log *slog.Logger, platform http.Handler) (http.Handler, error) {
	if err := fcfg.Validate(); err != nil {
		return nil, err
	}
	def := DefaultFunctionsConfig()
	if fcfg.MaxRequestBytes == 0 {
		fcfg.MaxRequestBytes = def.MaxRequestBytes
	}
	if fcfg.Limits == (job.DeployLimits{}) {
		fcfg.Limits = def.Limits
	}
	if fcfg.MaxListCodeBytes == 0 {
		fcfg.MaxListCodeBytes = def.MaxListCodeBytes
	}
	if fcfg.MaxInFlightBytes == 0 {
		fcfg.MaxInFlightBytes = def.MaxInFlightBytes
	}
	if fcfg.MaxInformational == 0 {
		fcfg.MaxInformational = def.MaxInformational
	}
	if fcfg.MaxInFlightBytes < fcfg.MaxRequestBytes+ResponseAllowance {
		return nil, fmt.Errorf("api: functions MaxInFlightBytes (%d) must hold at least one call of the largest body, MaxRequestBytes (%d) + %d", fcfg.MaxInFlightBytes, fcfg.MaxRequestBytes, ResponseAllowance)
	}
	if platform == nil {
		return nil, errors.New("api: NewFunctions needs the platform's handler")
	}
	srv, err := newServer(cfg, adm, log)
	if err != nil {
		return nil, err
	}
	f := &functions{server: srv, fcfg: fcfg, platform: platform}
	f.handle("POST /api/deploy/{namespace}/{path...}", f.deploy)
	f.handle("GET /api/deploy", f.listDeployments, "namespace", "include")
	// follow and after are read by a docker service's logs (PATH/logs).
	f.handle("GET /api/deploy/{namespace}/{path...}", f.getDeployment, "follow", "after")
	f.handle("DELETE /api/deploy/{namespace}/{path...}", f.undeploy)
	return f, nil
}

func (f *functions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if (p == "/api/deploy" || strings.HasPrefix(p, "/api/deploy/")) && !f.onFunctionsDomain(r) {
		defer f.recoverPanic(w, r)
		if _, pattern := f.mux.Handler(r); pattern == "" {
			f.noRoute(w, r)
			return
		}
		f.mux.ServeHTTP(w, r)
		return
	}
	o, urlPath, fn := f.route(r)
	if !fn {
		f.platform.ServeHTTP(w, r)
		return
	}
	defer f.recoverPanic(w, r)
	if urlPath == "" {
		f.writeError(w, r, job.Errorf(job.CodeNotFound, "host %s names no namespace under %s", requestHost(r.Host), f.fcfg.Domain))
		return
	}
	f.invoke(w, r, o, urlPath)
}

// cleanPath resolves "." and ".." segments and double slashes, keeping a
// trailing slash.
func cleanPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	c := path.Clean(p) // p itself, without a copy, when it is clean
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// DeploymentView is a function as the API shows it: the deployment and
// the URL path where it answers.
type DeploymentView struct {
	*job.Deployment
	URL string `json:"url"`
	// Instances are a docker service's instances (GET of one service).
	Instances []job.InstanceView `json:"instances,omitempty"`
	// Pending, for a docker service, says why an instance that should
	// run could not start when last tried: no connected worker may run it
	// (each one's reason), or its namespace's policy refuses its egress.
	Pending string `json:"pending,omitempty"`
}

// DeploymentList is the body of GET /api/deploy.
type DeploymentList struct {
	Deployments []DeploymentView `json:"deployments"`
}

func (f *functions) deploymentView(r *http.Request, d *job.Deployment) DeploymentView {
	return DeploymentView{Deployment: d, URL: f.functionURL(r, d)}
}

// deploy is POST /api/deploy/{namespace}/{path...}.
func (f *functions) deploy(w http.ResponseWriter, r *http.Request) {
	ns, path := r.PathValue("namespace"), r.PathValue("path")
	if err := job.ValidateFunctionName(ns, path); err != nil {
		f.writeError(w, r, err)
		return
	}
	body, err := f.readBody(w, r)
	if err != nil {
		f.writeError(w, r, err)
		return
	}
	req, err := job.DecodeDeployRequest(body, f.fcfg.Limits)
	if err != nil {
		f.writeError(w, r, err)
		return
	}
	d, err := f.adm.Deploy(r.Context(), ns, path, req)
	if err != nil {
		f.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if d.Version == 1 {
		status = http.StatusCreated
	}
	w.Header().Set("Location", "/api/deploy/"+d.Name())
	writeJSON(w, status, f.deploymentView(r, d))
}

// listDeployments is GET /api/deploy[?namespace=NS][&include=code].
func (f *functions) listDeployments(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ns := q.Get("namespace")
	var withCode bool
	switch v := q.Get("include"); v {
	case "":
	case "code":
		withCode = true
	default:
		f.writeError(w, r, job.Invalid("include", "unknown value %q (only code)", v))
		return
	}
	list, err := f.adm.Deployments(r.Context(), ns, false)
	if err == nil && withCode {
		// The code is read only when it fits, and counted again once
		// read: functions may have been redeployed meanwhile.
		if err = f.checkListCode(list); err == nil {
			list, err = f.adm.Deployments(r.Context(), ns, true)
		}
		if err == nil {
			err = f.checkListCode(list)
		}
	}
	if err != nil {
		f.writeError(w, r, err)
		return
	}
	out := DeploymentList{Deployments: make([]DeploymentView, len(list))}
	for i, d := range list {
		out.Deployments[i] = f.deploymentView(r, d)
	}
	writeJSON(w, http.StatusOK, out)
}

// checkListCode refuses include=code for a list whose code is over
// MaxListCodeBytes.
func (f *functions) checkListCode(list []*job.Deployment) error {
	var total int64
	for _, d := range list {
		total += int64(d.CodeBytes)
	}
	if total > f.fcfg.MaxListCodeBytes {
		return job.Invalid("include", "these %d functions hold %d bytes of code, more than a list shows (%d); list them without include=code and read each with GET /api/deploy/{namespace}/{path}", len(list), total, f.fcfg.MaxListCodeBytes)
	}
	return nil
}

// getDeployment is GET /api/deploy/{namespace}/{path...}.
func (f *functions) getDeployment(w http.ResponseWriter, r *http.Request) {
	d, err := f.adm.Deployment(r.Context(), r.PathValue("namespace"), r.PathValue("path"))
	if job.ErrorCode(err) == job.CodeNotFound && f.serviceLogs(w, r) {
		return
	}
	if err != nil {
		f.writeError(w, r, err)
		return
	}
	v := f.deploymentView(r, d)
	if d.Runtime == job.TypeDocker {
		if v.Instances, err = f.adm.ServiceInstances(r.Context(), d.Namespace, d.Path); err == nil {
			v.Pending, err = f.adm.ServicePending(r.Context(), d.Namespace, d.Path)
		}
		if err != nil {
			f.writeError(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, v)
}

// undeploy is DELETE /api/deploy/{namespace}/{path...}.
func (f *functions) undeploy(w http.ResponseWriter, r *http.Request) {
	if err := f.adm.Undeploy(r.Context(), r.PathValue("namespace"), r.PathValue("path")); err != nil {
		f.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// allowInvoke authenticates the caller of a private function: no token
// or a refused one is 401 (ok false: answered). Public functions, and
// paths where no function answers, need no token; authed says whether a
// token was checked. What the caller may invoke is admission's to decide.
func (f *functions) allowInvoke(w http.ResponseWriter, r *http.Request, urlPath string) (p job.Principal, authed, ok bool) {
	if !f.adm.FunctionIsPrivate(urlPath) {
		return job.Principal{}, false, true
	}
	p, ok = f.authenticate(w, r)
	return p, ok, ok
}

// invoke answers a request to a function with the one deployed at
// urlPath ("/namespace/path...", r's path made clean: "." and ".."
// resolved) on origin o. The function's status and body go out as they
// are, its headers (less job.DroppedResponseHeaders) as o allows
// (functionOrigin.writeHeaders); Content-Length is the body's.
func (f *functions) invoke(w http.ResponseWriter, r *http.Request, o functionOrigin, urlPath string) {
	if o.shared() {
		addSandbox(w.Header()) // the platform's own answers here too
	}
	if f.refuse(w, r, o) {
		return
	}
	p, authed, ok := f.allowInvoke(w, r, urlPath)
	if !ok {
		return
	}
	if authed {
		sw := &statusWriter{ResponseWriter: w}
		defer f.logUse(r, p, sw)
		w = sw
	}
	if d, rest, ok := f.adm.ServiceAt(urlPath); ok {
		f.proxyService(w, r, o, p, authed, d, urlPath, rest)
		return
	}
	release, ok := f.admitCall(r)
	if !ok {
		w.Header().Set("Retry-After", "1")
		f.writeError(w, r, job.Errorf(job.CodeUnavailable, "the function calls being served hold as much memory as they may (%d bytes); try again shortly", f.fcfg.MaxInFlightBytes))
		return
	}
	defer release()
	var body []byte
	var err error
	if r.Body != http.NoBody { // the server's body of a request without one
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, f.fcfg.MaxRequestBytes))
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			f.writeError(w, r, job.Errorf(job.CodeTooLarge, "request body is over the limit of %d bytes", f.fcfg.MaxRequestBytes))
			return
		}
		f.writeError(w, r, job.Invalid("", "read request body: %v", err))
		return
	}
	req := functionRequest(r)
	o.requestHeaders(req.Headers)
	req.SetBody(body)
	ctx := r.Context()
	if authed {
		ctx = job.WithPrincipal(ctx, p)
	}
	resp, err := f.adm.Invoke(ctx, urlPath, req)
	if err != nil {
		f.writeError(w, r, err)
		return
	}
	h := w.Header()
	o.writeHeaders(h, resp.Header)
	bodyAllowed := r.Method != http.MethodHead && resp.Status != http.StatusNoContent && resp.Status != http.StatusNotModified
	if bodyAllowed {
		h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	} else if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // no sniffing of an empty body
	}
	w.WriteHeader(resp.Status)
	if bodyAllowed {
		w.Write(resp.Body)
	}
}

// admitCall counts r against MaxInFlightBytes: its body (as declared, or
// the most it may be) and ResponseAllowance. It reports false, counting
// nothing, when r does not fit; otherwise release gives it back.
func (f *functions) admitCall(r *http.Request) (release func(), ok bool) {
	n := f.fcfg.MaxRequestBytes
	if r.ContentLength >= 0 && r.ContentLength < n {
		n = r.ContentLength
	}
	n += ResponseAllowance
	if f.inFlight.Add(n) > f.fcfg.MaxInFlightBytes {
		f.inFlight.Add(-n)
		return nil, false
	}
	return func() { f.inFlight.Add(-n) }, true
}

// functionRequest builds req from r, without its body and path.
func functionRequest(r *http.Request) job.FunctionRequest {
	query := r.URL.Query() // a map of its own, r's URL keeps none
	req := job.FunctionRequest{
		Method:   r.Method,
		Query:    make(map[string]string, len(query)),
		QueryAll: query,
		Headers:  make(map[string]string, len(r.Header)+1),
	}
	for k, v := range query {
		if len(v) > 0 {
			req.Query[k] = v[0]
		}
	}
	for k, v := range r.Header {
		// The caller's token is the platform's, never the function's.
		if k == "Authorization" || slices.Contains(job.HopByHopHeaders, k) {
			continue
		}
		sep := ", "
		if k == "Cookie" {
			sep = "; "
		}
		req.Headers[lowerHeader(k)] = strings.Join(v, sep)
	}
	req.Headers["host"] = r.Host
	return req
}

// lowerHeader is strings.ToLower(k), without an allocation for the
// headers most requests carry.
func lowerHeader(k string) string {
	switch k {
	case "Accept":
		return "accept"
	case "Accept-Encoding":
		return "accept-encoding"
	case "Accept-Language":
		return "accept-language"
	case "Content-Length":
		return "content-length"
	case "Content-Type":
		return "content-type"
	case "Cookie":
		return "cookie"
	case "Origin":
		return "origin"
	case "Referer":
		return "referer"
	case "User-Agent":
		return "user-agent"
	case "X-Forwarded-For":
		return "x-forwarded-for"
	}
	return strings.ToLower(k)
}
