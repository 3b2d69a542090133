package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/invopop/jsonschema"

	"github.com/zerverless/zerverless/internal/buildctx"
	"github.com/zerverless/zerverless/internal/job"
)

// The OpenAPI document (GET /api/openapi.json) is built from two sources,
// so that it stays true: the table below says, for every route, its
// parameters, the type of its request body and of each answer; the JSON
// schemas of those types are reflected from the Go types the handlers
// encode and decode. A test walks every registered route and checks that
// the table has it, and validates the README's examples against the
// document.

// operation is one route as the document describes it.
type operation struct {
	method string
	// path is the route's path in OpenAPI form: a {path...} wildcard is
	// {path}, which may hold slashes.
	path    string
	summary string
	// open routes need no token.
	open  bool
	query []param
	// headers are request headers the route reads (besides
	// Authorization).
	headers []param
	// body is the JSON request body's Go value (nil: none); rawBody
	// lists non-JSON media types the body may have instead or too.
	body    any
	rawBody []string
	// status is the success status and resp its JSON body's Go value
	// (nil: no JSON body); rawResp is a non-JSON media type answered.
	status  int
	resp    any
	rawResp string
	// also are other success statuses with the same body.
	also []int
	// errors are the error statuses the route answers besides 401 (and
	// 403 for a token that may not use it), all with ErrorBody.
	errors []int
}

// param is a query parameter or header.
type param struct {
	name, description string
	schema            map[string]any
}

func str() map[string]any { return map[string]any{"type": "string"} }
func enum(vs ...string) map[string]any {
	return map[string]any{"type": "string", "enum": vs}
}

func jobStatuses() []string {
	out := make([]string, len(job.Statuses))
	for i, s := range job.Statuses {
		out[i] = string(s)
	}
	return out
}

// operations is every route of the HTTP API.
func operations() []operation {
	deployPath := "/api/deploy/{namespace}/{path}"
	return []operation{
		{method: "GET", path: "/health", summary: "Liveness: {\"status\":\"ok\"}.", open: true, status: 200, resp: Health{}},
		{method: "GET", path: "/info", summary: "Version, Go version, protocol version and uptime.", status: 200, resp: Info{}},
		{method: "GET", path: "/stats", summary: "Workers connected and busy, slots, jobs by status, queue by runtime.", status: 200, resp: job.Stats{}},
		{method: "GET", path: "/metrics", summary: "Prometheus metrics (text exposition format).", status: 200, rawResp: "text/plain"},
		{method: "GET", path: "/ws/volunteer", summary: "The worker protocol (docs/protocol.md): a WebSocket upgrade; workers authenticate inside the protocol with a join token.",
			open: true, status: 101, rawResp: "", errors: []int{400, 403}},
		{method: "GET", path: "/ws/streams", summary: "A trusted worker's stream connection for docker service requests (docs/protocol.md, Services): a WebSocket upgrade carrying yamux, authenticated with Authorization: Bearer <stream_key> from its session.",
			open: true, status: 101, rawResp: "", errors: []int{401, 409}},
		{method: "GET", path: "/volunteer/", summary: "The browser volunteer page and its assets (any path below).", open: true, status: 200, rawResp: "text/html", errors: []int{404}},
		{method: "GET", path: "/dashboard/", summary: "The dashboard page and its assets (any path below); it signs in with a token pasted in.", open: true, status: 200, rawResp: "text/html", errors: []int{404}},
		{method: "GET", path: "/api/openapi.json", summary: "This document.", open: true, status: 200, rawResp: "application/json"},

		{method: "POST", path: "/api/jobs", summary: "Submit a job. With wait, the job is accepted as without it, then the answer waits for the job to end: 201 with the ended job, or with the job still pending or running once wait passes.",
			body: job.Request{}, status: 201, resp: View{},
			query: []param{
				{"wait", "after the job is stored, wait until it ends or this long passes (a Go duration or seconds, at most 60 s)", str()},
			}, errors: []int{400, 413, 429, 503}},
		{method: "GET", path: "/api/jobs", summary: "List jobs, newest first, as bounded summaries.", status: 200, resp: JobList{},
			query: []param{
				{"status", "only jobs in this status", enum(jobStatuses()...)},
				{"namespace", "only this namespace's jobs (a namespace token: only its own)", str()},
				{"limit", "page size (default 50, at most 500)", map[string]any{"type": "integer", "minimum": 1, "maximum": 500}},
				{"cursor", "next_cursor of the previous page", str()},
			}, errors: []int{400}},
		{method: "GET", path: "/api/jobs/{id}", summary: "A job, with its result fields at the top level once it has one.", status: 200, resp: View{},
			query: []param{
				{"wait", "block until the job ends or this long passes (a Go duration or seconds, at most 60 s)", str()},
				{"include", "spec: add the job's spec (code, module, input)", enum("spec")},
			}, errors: []int{400, 404}},
		{method: "DELETE", path: "/api/jobs/{id}", summary: "Cancel a job: a pending job never runs, a running one is stopped.", status: 200, resp: View{},
			errors: []int{404, 409}},
		{method: "GET", path: "/api/jobs/{id}/logs", summary: "A job's log so far (output chunks and status changes, numbered); with follow=true a text/event-stream of events (event: stdout|stderr|status, id: the number) until the job ends, resuming after Last-Event-ID.",
			status: 200, resp: LogPage{},
			query: []param{
				{"follow", "true: stream the log as Server-Sent Events until the job ends", enum("true", "false")},
				{"after", "only events numbered after this one", map[string]any{"type": "integer", "minimum": 0}},
				{"limit", "most events in the answer", map[string]any{"type": "integer", "minimum": 1}},
			},
			headers: []param{{"Last-Event-ID", "with follow: resume after this event", str()}},
			errors:  []int{400, 404, 429}},
		{method: "GET", path: "/api/workers", summary: "The connected workers, paged by id (a namespace token sees those that accept its jobs, and of what they hold only its own).",
			query: []param{
				{"runtime", "only workers that run this runtime", str()},
				{"trusted", "true or false: only trusted or only anonymous workers", enum("true", "false")},
				{"namespace", "only workers that accept this namespace's jobs", str()},
				{"limit", "page size (at most 1000)", map[string]any{"type": "integer", "minimum": 1, "maximum": 1000}},
				{"cursor", "next_cursor of the previous page", str()},
			},
			status: 200, resp: WorkerList{}, errors: []int{400}},
		{method: "GET", path: "/api/pools", summary: "The dispatch pools (workers of the same capabilities and trust), the largest first: members, ready workers, slots, jobs running and pending for them (a namespace token sees the pools that accept its jobs, and only its own pending jobs).",
			status: 200, resp: PoolList{}},

		{method: "POST", path: "/api/build-contexts", summary: "Upload a build context: a tar (or gzip'd tar) stream, or a JSON object of files.",
			body: buildctx.FilesBody{}, rawBody: []string{"application/x-tar", "application/gzip"},
			query:  []param{{"namespace", "the namespace the context belongs to", str()}},
			status: 201, resp: BuildContextView{}, errors: []int{400, 413, 415, 429}},
		{method: "GET", path: "/api/build-contexts/{id}", summary: "A build context's metadata.", status: 200, resp: BuildContextView{}, errors: []int{404}},
		{method: "GET", path: "/api/build-contexts/{id}/archive", summary: "A worker's fetch of the context of a job it holds (authenticated by the job and lease, not a token).",
			open: true, headers: []param{{HeaderJob, "the job the worker holds", str()}, {HeaderLease, "the lease it holds it with", str()}},
			status: 200, rawResp: "application/x-tar", errors: []int{401, 404}},

		{method: "POST", path: "/api/tokens", summary: "Create a token (admin); the secret is in \"token\", shown this once.", body: TokenRequest{},
			status: 201, resp: TokenView{}, errors: []int{400}},
		{method: "GET", path: "/api/tokens", summary: "The tokens, never their secrets (admin).", status: 200, resp: TokenList{}},
		{method: "DELETE", path: "/api/tokens/{id}", summary: "Revoke a token (admin); it is refused at once.", status: 204, errors: []int{404}},
		{method: "GET", path: "/api/namespaces", summary: "The namespaces with a policy of their own (admin).", status: 200, resp: PolicyList{}},
		{method: "GET", path: "/api/namespaces/{namespace}", summary: "A namespace's policy (admin); zero fields take the platform's defaults.", status: 200, resp: job.NamespacePolicy{}, errors: []int{400}},
		{method: "PUT", path: "/api/namespaces/{namespace}", summary: "Set a namespace's policy (admin).", body: job.NamespacePolicy{}, status: 200, resp: job.NamespacePolicy{}, errors: []int{400}},

		{method: "POST", path: deployPath, summary: "Deploy a function at NAMESPACE/PATH (201 when new, 200 when replaced: version + 1).",
			body: job.DeployRequest{}, status: 201, also: []int{200}, resp: DeploymentView{}, errors: []int{400, 413, 429}},
		{method: "GET", path: "/api/deploy", summary: "The deployed functions, without code unless include=code.", status: 200, resp: DeploymentList{},
			query: []param{
				{"namespace", "only this namespace's functions", str()},
				{"include", "code: add each function's code (up to 16 MiB in all)", enum("code")},
			}, errors: []int{400}},
		{method: "GET", path: deployPath, summary: "One function, with its code. For a docker service, PATH/logs is its instances' recent output (ServiceLogs); with follow=true a text/event-stream of its live log (event: stdout|stderr with the instance of each line, dropped when the follower missed events, end when the service is undeployed; id: the number), resuming after Last-Event-ID.",
			status: 200, resp: DeploymentView{},
			query: []param{
				{"follow", "PATH/logs of a docker service: true streams its live log as Server-Sent Events", enum("true", "false")},
				{"after", "with follow: only events numbered after this one", map[string]any{"type": "integer", "minimum": 0}},
			},
			headers: []param{{"Last-Event-ID", "with follow: resume after this event", str()}},
			errors:  []int{400, 404, 503}},
		{method: "DELETE", path: deployPath, summary: "Remove a function.", status: 204, errors: []int{404}},
	}
}

// functionMethods are the methods a function answers at
// /{namespace}/{path}.
var functionMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}

// pathParams are the path parameters' descriptions.
var pathParams = map[string]string{
	"id":        "the job's, token's or build context's id",
	"namespace": "a namespace: 1-63 lowercase letters, digits or inner dashes",
	"path":      "the function's path below its namespace: one or more segments, slashes included",
}

var paramRE = regexp.MustCompile(`\{([a-z]+)\}`)

// openAPIPath turns a mux pattern's path into the document's form.
func openAPIPath(pattern string) string {
	return strings.ReplaceAll(pattern, "...}", "}")
}

// OpenAPI returns the OpenAPI 3.1 document of the HTTP API, as JSON.
func OpenAPI(version string) []byte {
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":   "Zerverless API",
			"version": version,
			"description": "The HTTP API of a Zerverless orchestrator. Every route needs Authorization: Bearer <token> unless it says otherwise; " +
				"errors are JSON {\"error\", \"field\"} with the status of their code. A query parameter a route does not read is 400 naming it.",
		},
		"security": []any{map[string]any{"bearer": []any{}}},
		"paths":    openAPIPaths(),
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "an admin or namespace token (zv_...)"},
			},
			"schemas": openAPISchemas(),
			"responses": map[string]any{
				"Error": map[string]any{
					"description": "an error: what went wrong, and the request field at fault when there is one",
					"content":     map[string]any{"application/json": map[string]any{"schema": ref("ErrorBody")}},
				},
			},
		},
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("encode the OpenAPI document: %v", err))
	}
	return append(data, '\n')
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

func openAPIPaths() map[string]any {
	paths := map[string]any{}
	add := func(path, method string, op map[string]any) {
		item, _ := paths[path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[path] = item
		}
		item[strings.ToLower(method)] = op
	}
	for _, o := range operations() {
		add(o.path, o.method, o.describe())
	}
	for _, m := range functionMethods {
		add("/{namespace}/{path}", m, map[string]any{
			"summary":    "Invoke a function: its answer as it made it. Public functions need no token; a private one needs a token of its namespace or an admin token, which is never passed to the function.",
			"tags":       []string{"functions"},
			"parameters": []any{pathParam("namespace"), pathParam("path")},
			"security":   []any{map[string]any{}, map[string]any{"bearer": []any{}}},
			"responses": map[string]any{
				"default": map[string]any{"description": "the function's answer"},
			},
		})
	}
	return paths
}

func pathParam(name string) map[string]any {
	return map[string]any{"name": name, "in": "path", "required": true, "description": pathParams[name], "schema": str()}
}

func (o operation) describe() map[string]any {
	op := map[string]any{
		"summary":     o.summary,
		"operationId": operationID(o.method, o.path),
	}
	var params []any
	for _, m := range paramRE.FindAllStringSubmatch(o.path, -1) {
		params = append(params, pathParam(m[1]))
	}
	for _, q := range o.query {
		params = append(params, map[string]any{"name": q.name, "in": "query", "description": q.description, "schema": q.schema})
	}
	for _, h := range o.headers {
		params = append(params, map[string]any{"name": h.name, "in": "header", "required": true, "description": h.description, "schema": h.schema})
	}
	if params != nil {
		op["parameters"] = params
	}
	if o.open {
		op["security"] = []any{}
	}
	if o.body != nil || o.rawBody != nil {
		content := map[string]any{}
		if o.body != nil {
			content["application/json"] = map[string]any{"schema": schemaRef(o.body)}
		}
		for _, t := range o.rawBody {
			content[t] = map[string]any{"schema": map[string]any{"type": "string", "contentMediaType": t}}
		}
		op["requestBody"] = map[string]any{"required": true, "content": content}
	}
	responses := map[string]any{}
	ok := map[string]any{"description": http.StatusText(o.status)}
	if o.resp != nil {
		ok["content"] = map[string]any{"application/json": map[string]any{"schema": schemaRef(o.resp)}}
	} else if o.rawResp != "" {
		ok["content"] = map[string]any{o.rawResp: map[string]any{}}
	}
	for _, s := range append([]int{o.status}, o.also...) {
		responses[strconv.Itoa(s)] = ok
	}
	errs := o.errors
	if !o.open {
		errs = append(errs, 401, 403)
	}
	for _, s := range errs {
		responses[strconv.Itoa(s)] = map[string]any{"$ref": "#/components/responses/Error"}
	}
	op["responses"] = responses
	return op
}

// operationID names an operation: "get_api_jobs_id".
func operationID(method, path string) string {
	id := strings.ToLower(method) + strings.NewReplacer("/", "_", "{", "", "}", "", ".", "_", "-", "_").Replace(path)
	return strings.TrimSuffix(id, "_")
}

// schemaRef is a reference to the schema of v's type.
func schemaRef(v any) map[string]any { return ref(reflect.TypeOf(v).Name()) }

var schemasOnce = sync.OnceValue(reflectSchemas)

func openAPISchemas() map[string]any { return schemasOnce() }

// required are the properties always present in a schema (the reflected
// ones require none: encoding/json's omitempty and omitzero, and decoders
// with defaults, decide).
var required = map[string][]string{
	"ErrorBody":        {"error"},
	"Request":          {"job_type"},
	"View":             {"id", "namespace", "job_type", "status", "attempt", "max_attempts", "created_at"},
	"Summary":          {"id", "namespace", "job_type", "status", "attempt", "max_attempts", "created_at"},
	"JobList":          {"jobs"},
	"WorkerInfo":       {"id", "capabilities", "trusted", "running", "connected_at", "last_heartbeat"},
	"WorkerList":       {"workers"},
	"PoolList":         {"pools"},
	"PoolInfo":         {"id", "capabilities", "trusted", "workers", "ready", "slots", "running", "pending", "pending_counted", "worker_ids"},
	"TokenView":        {"id", "kind", "created_at"},
	"TokenList":        {"tokens"},
	"DeploymentView":   {"namespace", "path", "runtime", "version", "url"},
	"DeployRequest":    {"runtime"},
	"DeploymentList":   {"deployments"},
	"BuildContextView": {"build_context_id", "sha256", "files", "bytes"},
	"Health":           {"status"},
	"PolicyList":       {"namespaces"},
}

// reflectSchemas reflects the schemas of every type the operations name,
// and of the types those hold, keyed by type name.
func reflectSchemas() map[string]any {
	// Schemas are named by their type's name: two types of one name
	// would be one schema, so that is refused.
	seen := map[string]reflect.Type{}
	r := &jsonschema.Reflector{
		RequiredFromJSONSchemaTags: true, // none: see required
		Mapper:                     mapSchema,
		Namer: func(t reflect.Type) string {
			if o, ok := seen[t.Name()]; ok && o != t && t.Name() != "" {
				panic(fmt.Sprintf("openapi: %s and %s would both be schema %s", o, t, t.Name()))
			}
			seen[t.Name()] = t
			return t.Name()
		},
	}
	defs := map[string]any{}
	var types []reflect.Type
	for _, o := range operations() {
		for _, v := range []any{o.body, o.resp} {
			if v == nil {
				continue
			}
			types = append(types, reflect.TypeOf(v))
		}
	}
	types = append(types, reflect.TypeOf(ErrorBody{}))
	for _, t := range types {
		s := r.ReflectFromType(t)
		data, err := json.Marshal(s)
		if err != nil {
			panic(err)
		}
		data = []byte(strings.ReplaceAll(string(data), `"#/$defs/`, `"#/components/schemas/`))
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			panic(err)
		}
		sub, _ := m["$defs"].(map[string]any)
		for name, d := range sub {
			defs[name] = d
		}
	}
	for name, d := range defs {
		ds := d.(map[string]any)
		if req, ok := required[name]; ok {
			ds["required"] = req
		}
		nullableCollections(ds)
	}
	return defs
}

// nullableCollections lets each array and map property of s be null:
// encoding/json writes a nil slice or map so.
func nullableCollections(s map[string]any) {
	props, _ := s["properties"].(map[string]any)
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		p, _ := props[k].(map[string]any)
		switch p["type"] {
		case "array", "object":
			if _, isRef := p["$ref"]; !isRef && (p["type"] == "array" || p["properties"] == nil) {
				p["type"] = []any{p["type"], "null"}
			}
		}
	}
}

// mapSchema gives the schemas that reflection cannot see: a build context
// file is a string or an object (job.ContextFile.UnmarshalJSON), a job's
// type and status are enumerations, a raw JSON value is any value.
func mapSchema(t reflect.Type) *jsonschema.Schema {
	switch t {
	case reflect.TypeOf(job.ContextFile{}):
		return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
			{Type: "string", Description: "the file's content"},
			{Type: "object", Description: "the file's content, its encoding and mode"},
		}}
	case reflect.TypeOf(json.RawMessage{}):
		return &jsonschema.Schema{Description: "any JSON value"}
	case reflect.TypeOf(job.Status("")):
		s := &jsonschema.Schema{Type: "string"}
		for _, v := range job.Statuses {
			s.Enum = append(s.Enum, string(v))
		}
		return s
	case reflect.TypeOf(job.Type("")):
		s := &jsonschema.Schema{Type: "string"}
		for _, v := range job.Types {
			s.Enum = append(s.Enum, string(v))
		}
		return s
	}
	return nil
}

// openAPIDoc serves GET /api/openapi.json.
func (s *server) openAPIDoc(w http.ResponseWriter, r *http.Request) {
	data := OpenAPI(s.cfg.Version)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}
