package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// openAPIDoc is the document decoded, with a compiler of its schemas.
type openAPIDocument struct {
	t     *testing.T
	raw   map[string]any
	paths map[string]any
	c     *jsonschema.Compiler
}

const docURL = "https://zerverless.invalid/api/openapi.json"

func loadOpenAPI(t *testing.T) *openAPIDocument {
	t.Helper()
	data := OpenAPI("test")
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(docURL, v); err != nil {
		t.Fatal(err)
	}
	return &openAPIDocument{t: t, raw: raw, paths: raw["paths"].(map[string]any), c: c}
}

// pointer escapes a JSON pointer token.
func pointer(tokens ...string) string {
	var b strings.Builder
	for _, tok := range tokens {
		b.WriteString("/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(tok))
	}
	return b.String()
}

// schema compiles the schema at the JSON pointer made of tokens.
func (d *openAPIDocument) schema(tokens ...string) *jsonschema.Schema {
	d.t.Helper()
	s, err := d.c.Compile(docURL + "#" + pointer(tokens...))
	if err != nil {
		d.t.Fatalf("compile the schema at %s: %v", pointer(tokens...), err)
	}
	return s
}

func (d *openAPIDocument) operation(path, method string) map[string]any {
	item, _ := d.paths[path].(map[string]any)
	op, _ := item[strings.ToLower(method)].(map[string]any)
	return op
}

// TestOpenAPIDocumentsEveryRoute walks every route that the API and the
// function routes register: each is in the document, with the query
// parameters the route reads and no other, and the document has no route
// that is not registered. Every schema in it compiles (JSON Schema 2020-12,
// the dialect of OpenAPI 3.1).
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	d := loadOpenAPI(t)
	if d.raw["openapi"] != "3.1.0" {
		t.Errorf("openapi %v, want 3.1.0", d.raw["openapi"])
	}
	platform, fns, _, _ := closedAPI(t)
	routes := append(slices.Clone(platform.routes), fns.routes...)
	registered := map[string]bool{}
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt.pattern, " ")
		path = openAPIPath(path)
		registered[method+" "+path] = true
		op := d.operation(path, method)
		if op == nil {
			t.Errorf("route %q is registered in internal/api but missing from the OpenAPI document: add %s %s to operations() in internal/api/openapi.go", rt.pattern, method, path)
			continue
		}
		var query []string
		params, _ := op["parameters"].([]any)
		for _, p := range params {
			p := p.(map[string]any)
			if p["in"] == "query" {
				query = append(query, p["name"].(string))
			}
		}
		slices.Sort(query)
		want := slices.Sorted(slices.Values(rt.params))
		if !slices.Equal(query, want) {
			t.Errorf("route %q reads the query parameters %v; the OpenAPI document lists %v", rt.pattern, want, query)
		}
		_, openInDoc := op["security"]
		if rt.open != openInDoc {
			t.Errorf("route %q: open %v, but the OpenAPI document says open %v", rt.pattern, rt.open, openInDoc)
		}
	}
	for path, item := range d.paths {
		if path == "/{namespace}/{path}" {
			continue // function invocations, served behind every route
		}
		for method := range item.(map[string]any) {
			if !registered[strings.ToUpper(method)+" "+path] {
				t.Errorf("the OpenAPI document has %s %s, which no route registers", strings.ToUpper(method), path)
			}
		}
	}
	for name := range d.raw["components"].(map[string]any)["schemas"].(map[string]any) {
		d.schema("components", "schemas", name)
	}
}

// TestOpenAPIServed: GET /api/openapi.json answers the document without a
// token.
func TestOpenAPIServed(t *testing.T) {
	_, fns, _, _ := closedAPI(t)
	res := do(t, fns, "GET", "/api/openapi.json", nil)
	if res.status != 200 || !bytes.Contains(res.body, []byte(`"openapi": "3.1.0"`)) {
		t.Fatalf("GET /api/openapi.json: %d %.200s", res.status, res.body)
	}
}

// example is one curl command of the documentation: its route, its JSON
// body and the answer shown after it.
type example struct {
	where        string
	method, path string
	query        url.Values
	body         string
	// answer is the comment after the command: "→ 403 {...}".
	answer string
}

// shellWords splits a shell command line the way the documentation's
// commands are written: words, '…' and "…" strings (concatenated with
// what touches them), up to an unquoted |, ), ; or #.
func shellWords(line string) (words []string, rest string) {
	var cur strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, cur.String())
		}
		cur.Reset()
		inWord = false
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				j = len(line) - i - 1
			}
			cur.WriteString(line[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) {
					i++
				}
				cur.WriteByte(line[i])
			}
			inWord = true
		case c == ' ' || c == '\t':
			flush()
		case c == '|' || c == ')' || c == ';' || c == '#':
			flush()
			return words, line[i:]
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return words, ""
}

// docExamples reads the curl commands of the sh blocks of a Markdown file:
// a command continues over lines ending in \ and over the lines of a
// quoted body; the answer is the comment after it, on its line or on the
// comment lines that follow.
func docExamples(t *testing.T, file string) []example {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []example
	var cmd strings.Builder
	inBlock := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			inBlock = strings.TrimPrefix(line, "```") == "sh"
			cmd.Reset()
			continue
		}
		if !inBlock {
			continue
		}
		if cmd.Len() == 0 && strings.HasPrefix(strings.TrimSpace(line), "#") {
			// A comment line after a command: its answer.
			if len(out) > 0 && out[len(out)-1].answer == "" && strings.Contains(line, "→") {
				out[len(out)-1].answer = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
			}
			continue
		}
		cmd.WriteString(line)
		joined := cmd.String()
		if strings.Count(joined, "'")%2 == 1 {
			cmd.WriteString("\n")
			continue
		}
		if strings.HasSuffix(joined, "\\") {
			s := strings.TrimSuffix(joined, "\\")
			cmd.Reset()
			cmd.WriteString(s)
			continue
		}
		cmd.Reset()
		i := strings.Index(joined, "curl ")
		if i < 0 {
			continue
		}
		words, rest := shellWords(joined[i:])
		ex := example{where: fmt.Sprintf("%s:%d", filepath.Base(file), n)}
		for j := 1; j < len(words); j++ {
			w := words[j]
			switch {
			case w == "-X" && j+1 < len(words):
				j++
				ex.method = words[j]
			case (w == "-d" || w == "--data" || w == "--data-binary") && j+1 < len(words):
				j++
				ex.body = words[j]
			case w == "-H" && j+1 < len(words):
				j++
			case strings.Contains(w, "localhost:8000"):
				u, err := url.Parse("http://" + strings.TrimPrefix(strings.TrimPrefix(w, "http://"), "https://"))
				if err != nil {
					t.Fatalf("%s: URL %q: %v", ex.where, w, err)
				}
				ex.path, ex.query = u.Path, u.Query()
			}
		}
		if ex.path == "" {
			continue
		}
		if ex.method == "" {
			ex.method = "GET"
			if ex.body != "" {
				ex.method = "POST"
			}
		}
		if c := strings.Index(rest, "#"); c >= 0 {
			ex.answer = strings.TrimSpace(rest[c+1:])
		}
		out = append(out, ex)
	}
	return out
}

// matchPath finds the document's path that p is an instance of: literal
// segments equal, {x} one segment, a trailing {path} one or more.
func (d *openAPIDocument) matchPath(p string) string {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	best, bestLiterals := "", -1
	for tmpl := range d.paths {
		ts := strings.Split(strings.Trim(tmpl, "/"), "/")
		literals, ok := 0, true
		for i, s := range ts {
			if i >= len(segs) {
				ok = false
				break
			}
			if s == "{path}" && i == len(ts)-1 {
				break
			}
			if strings.HasPrefix(s, "{") {
				continue
			}
			if s != segs[i] {
				ok = false
				break
			}
			literals++
		}
		if ok && (len(ts) == len(segs) || ts[len(ts)-1] == "{path}" && len(segs) >= len(ts)) && literals > bestLiterals {
			best, bestLiterals = tmpl, literals
		}
	}
	return best
}

// TestOpenAPIExamples validates every example of README.md and docs/*.md
// against the document: each curl command names a documented route and
// method and only query parameters the route reads, its JSON body
// validates against the route's request schema, and each answer shown in
// full after it ("# → 403 {...}") against the response schema of its
// status. Answers shortened with … are not JSON and are counted apart.
func TestOpenAPIExamples(t *testing.T) {
	d := loadOpenAPI(t)
	files, _ := filepath.Glob("../../docs/*.md")
	files = append([]string{"../../README.md"}, files...)
	var bodies, answers, shortened int
	for _, f := range files {
		for _, ex := range docExamples(t, f) {
			tmpl := d.matchPath(ex.path)
			if tmpl == "" {
				t.Errorf("%s: %s %s is no route of the OpenAPI document", ex.where, ex.method, ex.path)
				continue
			}
			if tmpl == "/{namespace}/{path}" {
				continue // a function's own answer
			}
			op := d.operation(tmpl, ex.method)
			if op == nil {
				t.Errorf("%s: %s %s: the OpenAPI document has no %s on %s", ex.where, ex.method, ex.path, ex.method, tmpl)
				continue
			}
			params, _ := op["parameters"].([]any)
			for k := range ex.query {
				if !slices.ContainsFunc(params, func(p any) bool { m := p.(map[string]any); return m["in"] == "query" && m["name"] == k }) {
					t.Errorf("%s: query parameter %q is not one of %s %s", ex.where, k, ex.method, tmpl)
				}
			}
			opPtr := []string{"paths", tmpl, strings.ToLower(ex.method)}
			if ex.body != "" && !strings.HasPrefix(ex.body, "@") {
				var v any
				if err := json.Unmarshal([]byte(ex.body), &v); err != nil {
					t.Errorf("%s: the body of %s %s is not JSON: %v\n%s", ex.where, ex.method, ex.path, err, ex.body)
				} else if err := d.schema(append(opPtr, "requestBody", "content", "application/json", "schema")...).Validate(v); err != nil {
					t.Errorf("%s: the body of %s %s does not validate against the OpenAPI document:\n%v\n%s", ex.where, ex.method, ex.path, err, ex.body)
				}
				bodies++
			}
			if ex.answer == "" {
				continue
			}
			status, v, ok := parseAnswer(ex.answer)
			if !ok {
				shortened++
				continue
			}
			responses := op["responses"].(map[string]any)
			if status == 0 {
				for s := range responses {
					if s[0] == '2' {
						status, _ = strconv.Atoi(s)
					}
				}
			}
			resp, found := responses[strconv.Itoa(status)].(map[string]any)
			if !found {
				t.Errorf("%s: %s %s answers %d, which the OpenAPI document does not list", ex.where, ex.method, tmpl, status)
				continue
			}
			ptr := append(opPtr, "responses", strconv.Itoa(status), "content", "application/json", "schema")
			if r, ok := resp["$ref"].(string); ok {
				ptr = append(strings.Split(strings.TrimPrefix(r, "#/"), "/"), "content", "application/json", "schema")
			}
			if err := d.schema(ptr...).Validate(v); err != nil {
				t.Errorf("%s: the answer %s to %s %s does not validate against the OpenAPI document:\n%v", ex.where, ex.answer, ex.method, ex.path, err)
			}
			answers++
		}
	}
	t.Logf("validated %d request bodies and %d answers; %d answers are shortened with …", bodies, answers, shortened)
	if bodies < 15 || answers < 3 {
		t.Errorf("only %d request bodies and %d answers validated: the examples were not found", bodies, answers)
	}
}

// parseAnswer reads a shown answer: "→ 403 {...}", "{...} (comment)":
// its status (0 when not shown) and its JSON value, when whole.
func parseAnswer(a string) (status int, v any, ok bool) {
	a = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(a), "→"))
	if f, rest, _ := strings.Cut(a, " "); len(f) == 3 {
		if n, err := strconv.Atoi(f); err == nil {
			status, a = n, strings.TrimSpace(rest)
		}
	}
	if !strings.HasPrefix(a, "{") {
		return 0, nil, false
	}
	dec := json.NewDecoder(strings.NewReader(a))
	if err := dec.Decode(&v); err != nil {
		return 0, nil, false
	}
	return status, v, true
}

// TestOpenAPIAnswers validates the API's real answers against the
// document: a job submitted, shown, listed and canceled, the workers,
// stats, info and health, and errors.
func TestOpenAPIAnswers(t *testing.T) {
	d := loadOpenAPI(t)
	h, _, _ := newTestAPI(t, DefaultConfig())
	check := func(method, path, tmpl, body string, status int) map[string]any {
		t.Helper()
		var res response
		if body != "" {
			res = do(t, h, method, path, strings.NewReader(body))
		} else {
			res = do(t, h, method, path, nil)
		}
		if res.status != status {
			t.Fatalf("%s %s: %d %s, want %d", method, path, res.status, res.body, status)
		}
		var v any
		if err := json.Unmarshal(res.body, &v); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		ptr := []string{"paths", tmpl, strings.ToLower(method), "responses", strconv.Itoa(status), "content", "application/json", "schema"}
		if status >= 400 {
			ptr = []string{"components", "responses", "Error", "content", "application/json", "schema"}
		}
		if err := d.schema(ptr...).Validate(v); err != nil {
			t.Errorf("%s %s answered %s, which does not validate against the OpenAPI document:\n%v", method, path, res.body, err)
		}
		m, _ := v.(map[string]any)
		return m
	}
	j := check("POST", "/api/jobs", "/api/jobs", `{"job_type":"lua","code":"return 1","input_data":{"x":1}}`, http.StatusCreated)
	id, _ := j["id"].(string)
	check("GET", "/api/jobs/"+id, "/api/jobs/{id}", "", 200)
	check("GET", "/api/jobs/"+id+"?include=spec", "/api/jobs/{id}", "", 200)
	check("GET", "/api/jobs?limit=5", "/api/jobs", "", 200)
	check("DELETE", "/api/jobs/"+id, "/api/jobs/{id}", "", 200)
	check("DELETE", "/api/jobs/"+id, "/api/jobs/{id}", "", 409)
	check("GET", "/api/jobs/nope", "/api/jobs/{id}", "", 404)
	check("POST", "/api/jobs", "/api/jobs", `{"job_type":"lua","code":"return 1","bogus":1}`, 400)
	check("GET", "/api/workers", "/api/workers", "", 200)
	check("GET", "/api/pools", "/api/pools", "", 200)
	check("GET", "/stats", "/stats", "", 200)
	check("GET", "/info", "/info", "", 200)
	check("GET", "/health", "/health", "", 200)
}

// TestOpenAPISchemasRefuse: the schemas refuse what the API refuses, so
// that the examples' validation means something.
func TestOpenAPISchemasRefuse(t *testing.T) {
	d := loadOpenAPI(t)
	for _, c := range []struct{ schema, body string }{
		{"Request", `{"job_type":"lua","code":"return 1","bogus":1}`},
		{"Request", `{"job_type":"cobol","code":"1"}`},
		{"Request", `{"code":"return 1"}`},
		{"Request", `{"job_type":"lua","timeout_seconds":"30"}`},
		{"ErrorBody", `{"error":1}`},
		{"ErrorBody", `{"field":"x"}`},
		{"View", `{"status":"completed"}`},
		{"View", `{"id":"x","namespace":"d","job_type":"lua","status":"done","attempt":1,"max_attempts":3,"created_at":"2026-12-01T12:00:00Z"}`},
		{"View", `{"id":"x","namespace":"d","job_type":"lua","status":"pending","attempt":1,"max_attempts":3,"created_at":"yesterday"}`},
		{"TokenList", `{"tokens":[{"id":"x","kind":"admin","created_at":"2026-12-01T12:00:00Z","secret":"zv_x"}]}`},
	} {
		var v any
		if err := json.Unmarshal([]byte(c.body), &v); err != nil {
			t.Fatal(err)
		}
		if err := d.schema("components", "schemas", c.schema).Validate(v); err == nil {
			t.Errorf("%s accepts %s", c.schema, c.body)
		}
	}
}
