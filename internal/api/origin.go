package api

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/zerverless/zerverless/internal/job"
)

// Where a function answers decides what its answer may do in a browser.
//
// On the shared origin (/{namespace}/{path...} on the platform's own host)
// every function and the platform's pages (/volunteer/, /dashboard/) are one
// origin to a browser: one cookie jar, one localStorage, one set of service
// workers. There nothing a function returns may act on that origin:
//
//   - every answer carries Content-Security-Policy: sharedOriginCSP, a
//     sandbox without allow-same-origin, so a function's page runs in an
//     opaque origin: its scripts cannot read the origin's cookies or
//     storage, register a service worker or start a same-origin worker;
//   - requests that fetch a worker script (Service-Worker: script, or
//     Sec-Fetch-Dest serviceworker, sharedworker or worker) are refused with
//     403, so not even a platform page could be made to register a
//     function as a service worker or run it as a worker; the refusal
//     carries Clear-Site-Data: "storage", which frees a browser whose
//     origin a service worker took over before (its update check is such
//     a fetch);
//   - only the headers of sharedOriginHeaders (and X-* headers) pass;
//     Set-Cookie, Service-Worker-Allowed, Origin-Agent-Cluster, Link,
//     Use-As-Dictionary, Accept-CH, NEL, Report-To and every header not
//     known to act on the answer alone are dropped;
//   - the caller's Cookie header is not passed to the function: any cookie
//     of the shared origin is the platform's.
//
// On a namespace origin (FunctionsConfig.Domain: namespace alice at
// alice.<domain>) the origin is the namespace's own: its functions may set
// cookies, register service workers and use storage. Only the Domain
// attribute of Set-Cookie is removed, so that a cookie stays with the host
// that set it and never reaches a sibling namespace or the platform.

// sharedOriginCSP sandboxes a function's document on the shared origin. It
// allows scripts, forms, popups (sandboxed too), modals and downloads, and
// never allow-same-origin: with it the sandbox would be void.
const sharedOriginCSP = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"

// sharedOriginHeaders are the headers (canonical names) of a function's
// answer that pass on the shared origin, besides any X-* header: those that
// describe the answer itself, its caching, CORS, redirects and the
// document's own policies. Everything else is dropped, so that a header a
// browser learns to honour tomorrow cannot act on the platform's origin.
var sharedOriginHeaders = []string{
	"Content-Type", "Content-Disposition", "Content-Encoding", "Content-Language",
	"Content-Location", "Content-Range", "Accept-Ranges", "Content-Digest", "Repr-Digest",
	"Cache-Control", "Expires", "Etag", "Last-Modified", "Age", "Vary", "Pragma",
	"Location", "Refresh", "Retry-After", "Allow", "Www-Authenticate",
	"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
	"Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
	"Access-Control-Expose-Headers", "Access-Control-Max-Age",
	"Timing-Allow-Origin", "Server-Timing",
	"Content-Security-Policy", "Content-Security-Policy-Report-Only",
	"Cross-Origin-Opener-Policy", "Cross-Origin-Embedder-Policy", "Cross-Origin-Resource-Policy",
	"Referrer-Policy", "Permissions-Policy",
}

// originWideXHeaders are X-* headers that are not about the answer alone.
var originWideXHeaders = []string{"X-Permitted-Cross-Domain-Policies"}

// workerDestinations are the Sec-Fetch-Dest values of worker script fetches.
var workerDestinations = []string{"serviceworker", "sharedworker", "worker"}

// functionOrigin is where one request to a function arrived.
type functionOrigin struct {
	// namespace is the namespace whose own origin the request is on, or
	// "" on the shared origin.
	namespace string
}

func (o functionOrigin) shared() bool { return o.namespace == "" }

// refuse answers a request that a function must not see on this origin and
// reports whether it did: on the shared origin, the fetch of a worker
// script.
func (f *functions) refuse(w http.ResponseWriter, r *http.Request, o functionOrigin) bool {
	if !o.shared() {
		return false
	}
	dest := strings.ToLower(r.Header.Get("Sec-Fetch-Dest"))
	if r.Header.Get("Service-Worker") == "" && !slices.Contains(workerDestinations, dest) {
		return false
	}
	// Only a same-origin, unsandboxed context fetches a worker script
	// here: a platform page, or a service worker registered before these
	// rules (a browser checks its script for updates on navigations).
	// Either way the origin was taken over in this browser: clearing its
	// storage unregisters that service worker.
	w.Header().Set("Clear-Site-Data", `"storage"`)
	f.writeError(w, r, job.Errorf(job.CodeForbidden,
		"a function on the platform's shared origin cannot be a service worker or worker script; it can on its namespace's own origin (serve --functions-domain)"))
	return true
}

// requestHeaders removes from a function's request what does not belong to
// it on this origin: on the shared origin, the caller's cookies.
func (o functionOrigin) requestHeaders(h map[string]string) {
	if o.shared() {
		delete(h, "cookie")
	}
}

// writeHeaders copies a function's response headers fn into h as this
// origin allows. On the shared origin the sandbox policy is added to h
// whatever fn holds (a function's own Content-Security-Policy is kept
// beside it: a browser enforces both).
func (o functionOrigin) writeHeaders(h http.Header, fn map[string][]string) {
	for k, v := range fn {
		key := http.CanonicalHeaderKey(k)
		if o.shared() {
			if !sharedOriginAllows(key) {
				continue
			}
		} else if key == "Set-Cookie" {
			v = hostOnlyCookies(v)
		}
		h[key] = append(h[key], v...)
	}
	if o.shared() {
		addSandbox(h)
	}
}

// addSandbox adds the shared origin's sandbox policy to h once.
func addSandbox(h http.Header) {
	if !slices.Contains(h.Values("Content-Security-Policy"), sharedOriginCSP) {
		h.Add("Content-Security-Policy", sharedOriginCSP)
	}
}

func sharedOriginAllows(key string) bool {
	if strings.HasPrefix(key, "X-") {
		return !slices.Contains(originWideXHeaders, key)
	}
	return slices.Contains(sharedOriginHeaders, key)
}

// hostOnlyCookies removes the Domain attribute from each Set-Cookie value,
// so that the browser keeps the cookie for the exact host that set it.
func hostOnlyCookies(values []string) []string {
	out := make([]string, 0, len(values))
	for _, v := range values {
		parts := strings.Split(v, ";")
		kept := parts[:1]
		for _, attr := range parts[1:] {
			name, _, _ := strings.Cut(attr, "=")
			if strings.EqualFold(strings.TrimSpace(name), "domain") {
				continue
			}
			kept = append(kept, attr)
		}
		out = append(out, strings.Join(kept, ";"))
	}
	return out
}

// route says who answers r: a namespace's function on its own origin
// (host under Domain), a function on the shared origin, or the platform.
// urlPath is the function path to invoke ("/namespace/path..."), or ""
// on a host under Domain that names no namespace.
func (f *functions) route(r *http.Request) (o functionOrigin, urlPath string, fn bool) {
	if f.fcfg.Domain != "" {
		if label, ok := f.namespaceHost(r); ok {
			// Every path of a host under the functions domain is its
			// namespace's, and nothing of the platform is served there.
			// The domain itself, or a label that is no namespace, names
			// no function (urlPath "": 404).
			if !job.ValidNamespace(label) || slices.Contains(job.ReservedNamespaces, label) {
				return functionOrigin{}, "", true
			}
			return functionOrigin{namespace: label}, "/" + label + cleanPath(r.URL.Path), true
		}
		if !f.fcfg.SharedOrigin {
			return functionOrigin{}, "", false
		}
	}
	c := cleanPath(r.URL.Path)
	ns, rest, ok := strings.Cut(strings.TrimPrefix(c, "/"), "/")
	if !ok || rest == "" || slices.Contains(job.ReservedNamespaces, ns) || !job.ValidNamespace(ns) {
		return functionOrigin{}, "", false
	}
	return functionOrigin{}, c, true
}

// namespaceHost reports whether r's Host is Domain or a host under it,
// and the label before Domain ("" for Domain itself, "a.b" for
// a.b.<domain>).
func (f *functions) namespaceHost(r *http.Request) (label string, ok bool) {
	if f.fcfg.Domain == "" {
		return "", false
	}
	host := requestHost(r.Host)
	if host == f.fcfg.Domain {
		return "", true
	}
	return strings.CutSuffix(host, "."+f.fcfg.Domain)
}

// onFunctionsDomain reports whether r is for a host under Domain, where
// nothing of the platform answers.
func (f *functions) onFunctionsDomain(r *http.Request) bool {
	_, ok := f.namespaceHost(r)
	return ok
}

// requestHost is the host of a Host header, lowercase, without port or
// trailing dot.
func requestHost(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// functionURL is where d answers: its path on the shared origin, or, with
// a functions domain, a network-path reference ("//alice.fn.example.com/hello",
// with the port of the request's Host) to resolve against the API's URL.
func (f *functions) functionURL(r *http.Request, d *job.Deployment) string {
	if f.fcfg.Domain == "" {
		return "/" + d.Name()
	}
	host := d.Namespace + "." + f.fcfg.Domain
	if _, port, err := net.SplitHostPort(r.Host); err == nil && port != "" {
		host = net.JoinHostPort(host, port)
	}
	return "//" + host + "/" + d.Path
}

// validDomain checks FunctionsConfig.Domain: a DNS name of two labels or
// more, lowercase, without port, scheme or leading and trailing dots.
func validDomain(d string) error {
	if d != strings.ToLower(d) || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
		return fmt.Errorf("%q must be a lowercase DNS name without leading or trailing dot", d)
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return fmt.Errorf("%q must have at least two labels (fn.example.com)", d)
	}
	for _, l := range labels {
		if !job.ValidNamespace(l) {
			return fmt.Errorf("%q: label %q must be 1-63 lowercase letters, digits or inner dashes", d, l)
		}
	}
	return nil
}
