package web

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"strings"
)

// The dashboard is a page for people: it signs in with a token pasted in
// (or given as #token=… in the URL fragment), keeps it in sessionStorage
// and shows jobs, workers, deployments and, to an admin, namespaces and
// tokens, through the HTTP API with the token as a bearer token.
//
// Functions may answer on the dashboard's origin (the shared origin,
// /{namespace}/{path...}). What keeps them away from its token:
//
//   - every function answer there is sandboxed without allow-same-origin
//     (internal/api/origin.go): a function's page runs in an opaque
//     origin and reads nothing of the platform's storage, nor can it
//     become a service worker or worker;
//   - the dashboard runs only its own script: script-src holds a nonce
//     that changes with every answer and no 'self', so not even a script
//     answered by a function on the same origin could run in the page;
//   - frame-ancestors 'none' (and X-Frame-Options: DENY) keep it out of
//     any frame, and Cross-Origin-Opener-Policy: same-origin cuts it off
//     from the window that opened it;
//   - the token is never in a query string or a cookie: a request to a
//     function never carries it, and the API never passes Authorization
//     to a function.
//
// With a functions domain (serve --functions-domain) functions answer on
// their namespace's own hosts, where nothing of the platform, the
// dashboard included, is served.

//go:embed dashboard
var dashboardFiles embed.FS

// DashboardPrefix is the path under which Dashboard serves the page.
const DashboardPrefix = "/dashboard/"

// nonceMark is replaced in index.html by each answer's nonce.
const nonceMark = "{{nonce}}"

// dashboardCSP returns the page's Content-Security-Policy: only the
// scripts and styles that carry nonce, connections to its own origin (the
// API), no frames, forms, plugins or base changes, and no framing.
func dashboardCSP(nonce string) string {
	return "default-src 'none'; script-src 'nonce-" + nonce + "'; style-src 'nonce-" + nonce + "'; " +
		"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; " +
		"frame-src 'none'; object-src 'none'; frame-ancestors 'none'"
}

// assetCSP is the policy of the dashboard's script and style sheet when
// fetched as documents: nothing.
const assetCSP = "default-src 'none'; frame-ancestors 'none'"

// Dashboard returns the handler of the dashboard page and its assets. It
// expects request paths that start with DashboardPrefix; "/dashboard/"
// serves the page. Every answer carries the headers that confine it (see
// above) and Cache-Control: no-store.
func Dashboard() http.Handler {
	sub, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		// The directory is embedded at build time; it is always there.
		panic(err)
	}
	page, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		panic(err)
	}
	return &dashboard{files: sub, page: page}
}

type dashboard struct {
	files fs.FS
	page  []byte
}

func (d *dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, DashboardPrefix)
	if !ok || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	var data []byte
	h := w.Header()
	if name == "" || name == "index.html" {
		nonce := newNonce()
		data = bytes.ReplaceAll(d.page, []byte(nonceMark), []byte(nonce))
		h.Set("Content-Security-Policy", dashboardCSP(nonce))
		name = "index.html"
	} else {
		var err error
		if data, err = fs.ReadFile(d.files, name); err != nil {
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Security-Policy", assetCSP)
	}
	pageHeaders(h, name, "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
	if r.Method == http.MethodHead {
		return
	}
	w.Write(data)
}

// newNonce returns 16 random bytes in base64.
func newNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
