// Package deploy runs functions: code deployed at NAMESPACE/PATH that
// answers HTTP requests to /NAMESPACE/PATH/... . It keeps the table of
// deployments (stored through the store, cached here), turns each
// invocation into an ephemeral job of the orchestrator — queued, leased and
// run like any job, but never written to the store — and turns the job's
// result back into an HTTP answer. The HTTP adapter (internal/api) reads
// the request and writes the answer.
//
// # Routing
//
// A request to /NAMESPACE/A/B/C (on the shared origin, or A/B/C on the
// namespace's own host with a functions domain: internal/api routes both
// to the URL path /NAMESPACE/A/B/C) is answered by the deployment whose path is
// the longest whole-segment prefix of A/B/C in NAMESPACE (A/B/C, then A/B,
// then A). req.path is the rest: "/" for the deployment itself, "/C" for
// A/B. The table of deployments lives in memory (without code); a deploy or
// delete through this orchestrator takes effect at once, and the table is
// reloaded from the store every Config.RefreshInterval to see changes made
// through another orchestrator. Code is cached in memory per version up to
// Config.CodeCacheBytes.
//
// # The handler's contract
//
// Lua, JavaScript and Python functions define handle(req) at the top level
// of their code (Lua: a global or top-level local function, without a
// top-level return; JavaScript: a function declaration or binding, or
// module.exports.handle, or module.exports itself; Python: a def). The
// code runs once per invocation, then handle is called with req:
//
//	{"method": "POST", "path": "/rest/of/path",
//	 "query": {"k": "first value"}, "query_all": {"k": ["first value", "second"]},
//	 "headers": {"content-type": "application/json", "host": "..."},
//	 "body": "text", "body_base64": false}
//
// A body that is not valid UTF-8 arrives base64-encoded with body_base64
// true. ENV holds the deployment's env (an empty table, object or dict when
// it has none). INPUT is req too. Lua offers base64.encode/base64.decode
// and JavaScript atob/btoa (binary strings) for binary bodies.
//
// handle returns a response object {status, headers, body, body_base64} or
// a plain value; job.ParseFunctionResponse says how each becomes the HTTP
// answer. Binary bodies go back without effort: a Lua body string that is
// not plain ASCII, a JavaScript Uint8Array or ArrayBuffer body, a Python
// bytes body are sent base64-encoded by the wrapper and decoded here. A
// JavaScript handle may return a Promise.
//
// A Wasm function is a WASI command: its stdin is req as JSON with an
// extra member "env", and it writes the response (object or plain JSON
// value) as JSON on stdout. A module that calls zerverless.set_result
// answers with that value instead of stdout.
//
// The answer is bounded by the worker's output limit (1 MiB by default):
// for Lua, JavaScript and Python the encoded response, for Wasm stdout.
//
// # Outcomes
//
//   - no deployment answers the path: 404;
//   - the function's max_concurrency is reached: the invocation waits up to
//     Config.QueueWait for a slot, then 503 with Retry-After;
//   - no worker runs the runtime, or all are busy: the job waits in the
//     queue up to Config.QueueWait, then 503 with Retry-After;
//   - the handler raises an error, crashes, runs out of memory or returns
//     something that is not a response: 502 with a JSON error that quotes
//     the function's own error (never the orchestrator's);
//   - the handler runs past its timeout: 504, as soon as the worker stops
//     it (a backstop gives up at QueueWait + timeout + Config.StopGrace).
//
// An invocation is not retried on another worker when its worker is lost
// mid-run (Config.MaxAttempts is 1): the caller gets 502.
package deploy
