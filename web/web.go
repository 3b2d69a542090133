// Package web holds the browser side of Zerverless, embedded in the binary
// with go:embed: the volunteer page, a worker that runs JavaScript and
// WebAssembly jobs in the browser tab of whoever opens it.
//
// The page speaks the worker protocol of docs/protocol.md over
// /ws/volunteer like a native worker, and runs each job in a dedicated Web
// Worker that it terminates at the job's timeout or on cancel. The job
// workers are served with a Content-Security-Policy that forbids every
// network request (default-src 'none'), so that code run for someone else
// cannot reach the network from the volunteer's browser even if it finds a
// way around the globals the JavaScript runner removes.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed volunteer
var files embed.FS

// Prefix is the path under which Volunteer serves the page.
const Prefix = "/volunteer/"

// Content-Security-Policy of the page: its own scripts, styles and workers,
// and connections to its own origin (the WebSocket to /ws/volunteer).
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Content-Security-Policies of the job workers. Neither allows any fetch:
// no connect-src, no script-src host for importScripts or import(), no
// worker-src for nested workers. The JavaScript runner needs eval for the
// job's code, the Wasm runner WebAssembly compilation.
const (
	jsWorkerCSP    = "default-src 'none'; script-src 'unsafe-eval'"
	wasmWorkerCSP  = "default-src 'none'; script-src 'wasm-unsafe-eval'"
	timerWorkerCSP = "default-src 'none'"
)

// workerCSP maps each worker script to its policy.
var workerCSP = map[string]string{
	"js-worker.js":    jsWorkerCSP,
	"wasm-worker.js":  wasmWorkerCSP,
	"timer-worker.js": timerWorkerCSP,
}

// Volunteer returns the handler of the volunteer page and its assets. It
// expects request paths that start with Prefix; "/volunteer/" serves the
// page. Every answer carries the headers that make the page cross-origin
// isolated (so that a Wasm job can sleep without spinning) and its
// Content-Security-Policy.
func Volunteer() http.Handler {
	sub, err := fs.Sub(files, "volunteer")
	if err != nil {
		// The directory is embedded at build time; it is always there.
		panic(err)
	}
	return &volunteer{files: sub}
}

type volunteer struct {
	files fs.FS
}

func (v *volunteer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, Prefix)
	if !ok || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	if name == "" {
		name = "index.html"
	}
	data, err := fs.ReadFile(v.files, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	pageHeaders(h, name, "no-cache")
	h.Set("Cross-Origin-Embedder-Policy", "require-corp")
	if csp, ok := workerCSP[name]; ok {
		h.Set("Content-Security-Policy", csp)
	} else {
		h.Set("Content-Security-Policy", pageCSP)
	}
	if r.Method == http.MethodHead {
		return
	}
	w.Write(data)
}

// pageHeaders sets the headers every answer of a page carries: its type,
// no sniffing, no referrer, cache, and an origin of its own for its
// window and resources.
func pageHeaders(h http.Header, name, cache string) {
	h.Set("Content-Type", contentType(name))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", cache)
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	return "application/octet-stream"
}
