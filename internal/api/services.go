package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// A docker service answers at its function URL like a function does: the
// request goes, as an HTTP/1.1 exchange, over a stream to one of its
// instances (see docs/protocol.md, "Services"; the streams are kept and
// reused by the orchestrator), with its body and the
// answer's streamed both ways as they come (an event stream reaches the
// caller as it is written). What passes follows the function rules: the
// rest of the path below the service, its query, the caller's headers
// less the hop-by-hop ones, its Authorization (the platform's) and, on
// the shared origin, its cookies; the deployment's prefix goes in
// X-Forwarded-Prefix. The answer's headers are filtered as a function's
// are on the origin it is served on.

// originTransport passes a service's informational answers (103 Early
// Hints and the like, which the proxy relays as they come) through the
// header rules of origin o, as its final answer: without it a 103 would
// carry Set-Cookie or Service-Worker-Allowed to the shared origin.
type originTransport struct {
	o  functionOrigin
	rt http.RoundTripper
}

func (t originTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	// The hooks of this trace run before the proxy's own, which copies
	// the header it is given to the caller.
	ctx := httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(_ int, h textproto.MIMEHeader) error {
			kept := serviceHeaders(t.o, http.Header(h))
			clear(h)
			for k, v := range kept {
				h[k] = v
			}
			return nil
		},
	})
	return t.rt.RoundTrip(r.WithContext(ctx))
}

// proxyService answers r with an instance of the docker service d, which
// answers urlPath; rest is the path below the service.
func (f *functions) proxyService(w http.ResponseWriter, r *http.Request, o functionOrigin, p job.Principal, authed bool, d *job.Deployment, urlPath, rest string) {
	begin := time.Now()
	ctx := r.Context()
	if authed {
		ctx = job.WithPrincipal(ctx, p)
	}
	if d.TimeoutSeconds > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout())
		defer cancel()
	}
	rt, release, err := f.adm.ConnectService(ctx, d)
	if err != nil {
		if job.ErrorCode(err) == job.CodeUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		if ctx.Err() != nil && r.Context().Err() == nil {
			err = job.Errorf(job.CodeTimeout, "service %s had no free instance within its timeout of %s", d.Name(), d.Timeout())
		}
		f.writeError(w, r, err)
		return
	}
	// The instance's slot is held until the answer's body is done.
	defer release()
	// A caller that does not read its answer would hold the slot for as
	// long as it stays connected (the proxy's write blocks once the
	// connection's buffers are full): once ctx ends (the service's
	// timeout, the caller gone), the answer's writes have
	// serviceWriteGrace to go out.
	defer boundWrites(ctx, w)()
	// The informational answers relayed are bounded: past the bound the
	// request is cut (the proxy relays them from the transport's hook,
	// whose error it ignores).
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	errInfo := fmt.Errorf("the instance sent more than %d informational answers (FunctionsConfig.MaxInformational)", f.fcfg.MaxInformational)
	w = &informationalLimit{ResponseWriter: w, left: f.fcfg.MaxInformational, over: func() { stop(errInfo) }}
	prefix := "/" + d.Name()
	if !o.shared() {
		prefix = "/" + d.Path
	}
	status := http.StatusBadGateway
	// Observed also when the proxy aborts an answer whose copy failed
	// after its header went out (it panics with http.ErrAbortHandler).
	defer func() { f.adm.ObserveServiceRequest(d, status, time.Since(begin)) }()
	rp := &httputil.ReverseProxy{
		Transport:     originTransport{o, rt},
		FlushInterval: serviceFlushInterval,
		BufferPool:    proxyBuffers,
		Rewrite: func(pr *httputil.ProxyRequest) {
			out := pr.Out
			out.URL.Scheme = "http"
			out.URL.Host = "instance"
			out.URL.Path = rest
			out.URL.RawPath = ""
			out.Host = r.Host
			// The caller's token is the platform's, never the service's.
			out.Header.Del("Authorization")
			if o.shared() {
				out.Header.Del("Cookie")
			}
			pr.SetXForwarded()
			out.Header.Set("X-Forwarded-Prefix", prefix)
		},
		ModifyResponse: func(resp *http.Response) error {
			status = resp.StatusCode
			if resp.StatusCode == http.StatusSwitchingProtocols {
				// Past the request's time the switch is not made: the
				// caller's connection, once taken over, would lose the
				// write deadline boundWrites gave it.
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				// Only to the protocol the caller asked for: an
				// unasked switch would hand the caller's connection
				// (a front proxy's, carrying other callers' requests
				// next) to the instance as raw bytes.
				asked, got := upgradeType(r.Header), upgradeType(resp.Header)
				if asked == "" || !strings.EqualFold(asked, got) {
					status = http.StatusBadGateway
					return fmt.Errorf("the instance switched to protocol %q, the caller asked for %q", job.CutText(got, 64), asked)
				}
				resp.Header = serviceHeaders(o, resp.Header)
				// The switch's own headers, which the proxy checks.
				resp.Header.Set("Connection", "Upgrade")
				resp.Header.Set("Upgrade", got)
				return nil
			}
			resp.Header = serviceHeaders(o, resp.Header)
			// Announced trailers are known now, the others once the
			// body is read: both pass the origin's rules before the
			// proxy copies them.
			filterTrailers(o, resp.Trailer)
			resp.Body = &trailerFilter{ReadCloser: resp.Body, o: o, resp: resp}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			if o.shared() {
				addSandbox(w.Header())
			}
			// r is the caller's request (the proxy's carries ctx).
			if ctx.Err() == context.DeadlineExceeded && r.Context().Err() == nil {
				status = http.StatusGatewayTimeout
				f.writeError(w, r, job.Errorf(job.CodeTimeout, "service %s did not answer within its timeout of %s", d.Name(), d.Timeout()))
				return
			}
			status = http.StatusBadGateway
			if context.Cause(ctx) == errInfo {
				err = errInfo
			}
			f.writeError(w, r, job.Errorf(job.CodeBadGateway, "service %s: its instance did not answer: %v", d.Name(), err))
		},
		ErrorLog: slog.NewLogLogger(f.log.Handler(), slog.LevelDebug),
	}
	// The answer's headers bring the sandbox policy again (serviceHeaders).
	w.Header().Del("Content-Security-Policy")
	rp.ServeHTTP(w, r.WithContext(ctx))
}

// serviceWriteGrace is how long the writes of a service's answer may
// still take once its request has ended: what is left of it (an error
// answer, the last bytes) goes out to a caller that reads.
const serviceWriteGrace = 5 * time.Second

// boundWrites gives the writes to w a deadline, serviceWriteGrace away,
// once ctx is done; the returned function, called when the handler is
// done with the answer, stops that. A deadline set stays for the
// server's last flush of the answer, which clears it before it reads the
// connection's next request.
func boundWrites(ctx context.Context, w http.ResponseWriter) func() {
	rc := http.NewResponseController(w)
	var mu sync.Mutex
	done := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			rc.SetWriteDeadline(time.Now().Add(serviceWriteGrace))
		}
	})
	return func() {
		stop()
		mu.Lock()
		defer mu.Unlock()
		done = true
	}
}

// serviceFlushInterval bounds how long a part of an answer with a known
// length waits in the caller's connection buffer before it is flushed:
// an answer that comes whole (the common one) goes out in one write,
// headers and body together, when it ends. An event stream and an answer
// of unknown length (chunked) are flushed at each write, as the proxy
// does for those whatever its interval.
const serviceFlushInterval = 5 * time.Millisecond

// proxyBuffers are the copy buffers of the answers' bodies (32 KiB
// each), reused from one request to the next.
var proxyBuffers httputil.BufferPool = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(p []byte) { b.p.Put(&p) }

// informationalLimit relays at most left informational answers (1xx but
// 101) of a service to its caller, and calls over at the next one.
type informationalLimit struct {
	http.ResponseWriter
	left int
	over func()
}

func (w *informationalLimit) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		if w.left <= 0 {
			w.over()
			return
		}
		w.left--
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (flushes,
// a protocol switch).
func (w *informationalLimit) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// trailerFilter filters its answer's trailers as origin o allows when
// its body ends, before the proxy copies them.
type trailerFilter struct {
	io.ReadCloser
	o    functionOrigin
	resp *http.Response
}

func (t *trailerFilter) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err == io.EOF {
		filterTrailers(t.o, t.resp.Trailer)
	}
	return n, err
}

// filterTrailers removes from a service's trailers tr what origin o
// does not let through, as for its headers.
func filterTrailers(o functionOrigin, tr http.Header) {
	if len(tr) == 0 {
		return
	}
	kept := http.Header{}
	for k, v := range tr {
		if slices.Contains(job.DroppedResponseHeaders, http.CanonicalHeaderKey(k)) {
			continue
		}
		kept[k] = v
	}
	out := http.Header{}
	o.writeHeaders(out, kept)
	out.Del("Content-Security-Policy") // the sandbox, added by writeHeaders
	if v := kept.Values("Content-Security-Policy"); len(v) > 0 {
		out["Content-Security-Policy"] = v
	}
	clear(tr)
	for k, v := range out {
		tr[k] = v
	}
}

// upgradeType is the protocol that h (a request's or a 101's headers)
// names to switch to, "" when none.
func upgradeType(h http.Header) string {
	for _, v := range h.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}

// serviceHeaders returns the headers of a service's answer that origin o
// lets through, as a function's (Content-Length kept: the body streams
// as the instance sent it).
func serviceHeaders(o functionOrigin, h http.Header) http.Header {
	in := make(map[string][]string, len(h))
	for k, v := range h {
		if slices.Contains(job.DroppedResponseHeaders, k) {
			continue
		}
		in[k] = v
	}
	out := http.Header{}
	o.writeHeaders(out, in)
	if cl := h.Get("Content-Length"); cl != "" {
		out.Set("Content-Length", cl)
	}
	return out
}

// serviceLogs answers GET /api/deploy/{namespace}/{path}/logs for a docker
// service: its instances' recent output. It reports false, answering
// nothing, when the path does not name one.
func (f *functions) serviceLogs(w http.ResponseWriter, r *http.Request) bool {
	svcPath, ok := strings.CutSuffix(r.PathValue("path"), "/logs")
	if !ok {
		return false
	}
	if r.URL.Query().Has("follow") && f.followServiceLogs(w, r, svcPath) {
		return true
	}
	d, instances, logs, err := f.adm.ServiceLogs(r.Context(), r.PathValue("namespace"), svcPath)
	if err != nil {
		if job.ErrorCode(err) == job.CodeNotFound {
			return false
		}
		f.writeError(w, r, err)
		return true
	}
	writeJSON(w, http.StatusOK, ServiceLogs{Service: d.Name(), Version: d.Version, Instances: instances, Output: logs})
	return true
}

// ServiceLogs is the body of GET /api/deploy/{namespace}/{path}/logs.
type ServiceLogs struct {
	Service string `json:"service"`
	Version int64  `json:"version"`
	// Instances are the service's instances, each with its last exit.
	Instances []job.InstanceView `json:"instances"`
	// Output is the recent output of its instances, oldest first, each
	// report's lines after its instance's id.
	Output string `json:"output"`
}
