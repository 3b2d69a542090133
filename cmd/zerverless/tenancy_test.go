package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/auth"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// answer is one HTTP answer, read whole.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(a.body)) }

// send makes one request with token as a bearer token ("" sends none).
func send(t testing.TB, method, url, token, contentType string, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

// tenants is a server with tokens of two namespaces, a join token, a
// revoked token, and things that belong to namespace alice.
type tenants struct {
	srv                 *Server
	admin               *client.Client
	adminSecret         string
	alice, bob, revoked string
	worker              string
	aliceJob            string // a js job that stays pending: no worker runs js
	aliceContext        string
	seq                 atomic.Int64
}

func newToken(t testing.TB, c *client.Client, r api.TokenRequest) api.TokenView {
	t.Helper()
	v, err := c.CreateToken(context.Background(), r)
	if err != nil {
		t.Fatalf("create token %+v: %v", r, err)
	}
	if !strings.HasPrefix(v.Token, auth.SecretPrefix) || v.ID == "" {
		t.Fatalf("created token %+v: want an id and a %s secret", v, auth.SecretPrefix)
	}
	return v
}

func startTenants(t *testing.T) *tenants {
	t.Helper()
	srv, c := startServer(t, testServerConfig(t, t.TempDir(), 0))
	startWorker(t, srv.WorkerURL(), "lua-only", job.TypeLua)
	ctx := context.Background()
	tn := &tenants{srv: srv, admin: c, adminSecret: srv.AdminToken()}
	tn.alice = newToken(t, c, api.TokenRequest{Namespace: "alice", Name: "alice"}).Token
	tn.bob = newToken(t, c, api.TokenRequest{Kind: job.TokenNamespace, Namespace: "bob"}).Token
	tn.worker = newToken(t, c, api.TokenRequest{Kind: job.TokenWorker, Name: "laptop-1"}).Token
	rv := newToken(t, c, api.TokenRequest{Namespace: "alice", Name: "to revoke"})
	tn.revoked = rv.Token
	// Use it once, so that it is cached, then revoke it: it must be
	// refused at once.
	if a := send(t, "GET", srv.URL()+"/api/jobs", tn.revoked, "", nil); a.status != 200 {
		t.Fatalf("token before revocation: %v", a)
	}
	if err := c.RevokeToken(ctx, rv.ID); err != nil {
		t.Fatal(err)
	}
	v, err := c.Submit(ctx, job.Request{Type: job.TypeJS, Namespace: "alice", Code: "1"})
	if err != nil {
		t.Fatal(err)
	}
	tn.aliceJob = v.ID
	public := false
	if _, err := c.Deploy(ctx, "alice", "private", job.DeployRequest{Runtime: job.TypeLua,
		Code: `function handle(req) return "secret of alice" end`, Public: &public}); err != nil {
		t.Fatal(err)
	}
	a := send(t, "POST", srv.URL()+"/api/build-contexts", tn.alice, "application/json",
		[]byte(`{"files":{"Dockerfile":"FROM scratch\nCOPY a /a\n","a":"alice's context"}}`))
	if a.status != 201 {
		t.Fatalf("upload a context as alice: %v", a)
	}
	var up api.BuildContextView
	json.Unmarshal(a.body, &up)
	tn.aliceContext = up.BuildContextID
	return tn
}

// fresh returns a name unique within the test.
func (tn *tenants) fresh(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, tn.seq.Add(1))
}

// endpoint is one route of the matrix: how to call it, and what each
// caller gets.
type endpoint struct {
	name        string
	method      string
	contentType string
	// target returns the path (and body) of one call; it may create what
	// the call consumes (a job to cancel, a token to revoke).
	target func(t *testing.T, tn *tenants) (path string, body []byte)
	// right is the caller that may call it: "alice" or "admin".
	right string
	// ok is the status of a successful call.
	ok int
	// wrong is the status for a namespace token of another namespace
	// (bob), or for alice on an admin route; 0 for routes every token may
	// call (then bob gets ok).
	wrong int
	// wrongField is the error field the wrong caller's 403 names.
	wrongField string
}

func fixed(path string, body string) func(*testing.T, *tenants) (string, []byte) {
	return func(*testing.T, *tenants) (string, []byte) { return path, []byte(body) }
}

func (tn *tenants) pendingAliceJob(t *testing.T) string {
	t.Helper()
	v, err := tn.admin.Submit(context.Background(), job.Request{Type: job.TypeJS, Namespace: "alice", Code: "1"})
	if err != nil {
		t.Fatal(err)
	}
	return v.ID
}

var matrix = []endpoint{
	{name: "submit job", method: "POST", contentType: "application/json", right: "alice", ok: 201, wrong: 403, wrongField: "namespace",
		target: fixed("/api/jobs", `{"job_type":"lua","code":"return 1","namespace":"alice"}`)},
	{name: "list jobs", method: "GET", right: "alice", ok: 200, wrong: 403, wrongField: "namespace",
		target: fixed("/api/jobs?namespace=alice", "")},
	{name: "get job", method: "GET", right: "alice", ok: 200, wrong: 404,
		target: func(t *testing.T, tn *tenants) (string, []byte) { return "/api/jobs/" + tn.aliceJob, nil }},
	{name: "wait for job", method: "GET", right: "alice", ok: 200, wrong: 404,
		target: func(t *testing.T, tn *tenants) (string, []byte) {
			return "/api/jobs/" + tn.aliceJob + "?wait=0.01", nil
		}},
	{name: "job log", method: "GET", right: "alice", ok: 200, wrong: 404,
		target: func(t *testing.T, tn *tenants) (string, []byte) { return "/api/jobs/" + tn.aliceJob + "/logs", nil }},
	{name: "cancel job", method: "DELETE", right: "alice", ok: 200, wrong: 404,
		target: func(t *testing.T, tn *tenants) (string, []byte) { return "/api/jobs/" + tn.pendingAliceJob(t), nil }},
	{name: "workers", method: "GET", right: "alice", ok: 200, target: fixed("/api/workers", "")},
	{name: "stats", method: "GET", right: "alice", ok: 200, target: fixed("/stats", "")},
	{name: "info", method: "GET", right: "alice", ok: 200, target: fixed("/info", "")},
	{name: "metrics", method: "GET", right: "alice", ok: 200, target: fixed("/metrics", "")},
	{name: "deploy", method: "POST", contentType: "application/json", right: "alice", ok: 201, wrong: 403, wrongField: "namespace",
		target: func(t *testing.T, tn *tenants) (string, []byte) {
			return "/api/deploy/alice/" + tn.fresh("fn"), []byte(`{"runtime":"lua","code":"function handle(req) return 'hi' end"}`)
		}},
	{name: "list deployments", method: "GET", right: "alice", ok: 200, wrong: 403, wrongField: "namespace",
		target: fixed("/api/deploy?namespace=alice", "")},
	{name: "get deployment", method: "GET", right: "alice", ok: 200, wrong: 404,
		target: fixed("/api/deploy/alice/private", "")},
	{name: "undeploy", method: "DELETE", right: "alice", ok: 204, wrong: 404,
		target: func(t *testing.T, tn *tenants) (string, []byte) {
			name := tn.fresh("gone")
			if _, err := tn.admin.Deploy(context.Background(), "alice", name, job.DeployRequest{Runtime: job.TypeLua,
				Code: `function handle(req) return "x" end`}); err != nil {
				t.Fatal(err)
			}
			return "/api/deploy/alice/" + name, nil
		}},
	{name: "invoke private function", method: "GET", right: "alice", ok: 200, wrong: 403,
		target: fixed("/alice/private", "")},
	{name: "invoke private function below its path", method: "POST", right: "alice", ok: 200, wrong: 403,
		target: fixed("/alice/private/x/y?q=1", "body")},
	{name: "upload build context", method: "POST", contentType: "application/json", right: "alice", ok: 201, wrong: 403, wrongField: "namespace",
		target: func(t *testing.T, tn *tenants) (string, []byte) {
			return "/api/build-contexts?namespace=alice", []byte(fmt.Sprintf(`{"files":{"Dockerfile":"FROM scratch\n","n":%q}}`, tn.fresh("n")))
		}},
	{name: "get build context", method: "GET", right: "alice", ok: 200, wrong: 404,
		target: func(t *testing.T, tn *tenants) (string, []byte) { return "/api/build-contexts/" + tn.aliceContext, nil }},
	{name: "create token", method: "POST", contentType: "application/json", right: "admin", ok: 201, wrong: 403,
		target: fixed("/api/tokens", `{"namespace":"carol","name":"carol's"}`)},
	{name: "list tokens", method: "GET", right: "admin", ok: 200, wrong: 403, target: fixed("/api/tokens", "")},
	{name: "revoke token", method: "DELETE", right: "admin", ok: 204, wrong: 403,
		target: func(t *testing.T, tn *tenants) (string, []byte) {
			return "/api/tokens/" + newToken(t, tn.admin, api.TokenRequest{Namespace: "dave"}).ID, nil
		}},
	{name: "put namespace policy", method: "PUT", contentType: "application/json", right: "admin", ok: 200, wrong: 403,
		target: fixed("/api/namespaces/alice", `{"require_trusted_workers":true,"quotas":{"pending_jobs":100}}`)},
	{name: "get namespace policy", method: "GET", right: "admin", ok: 200, wrong: 403, target: fixed("/api/namespaces/alice", "")},
	{name: "list namespace policies", method: "GET", right: "admin", ok: 200, wrong: 403, target: fixed("/api/namespaces", "")},
}

// TestAuthMatrix calls every endpoint with no token, a token of another
// namespace (or a namespace token on an admin route), the right token, a
// revoked token and a worker's join token.
func TestAuthMatrix(t *testing.T) {
	tn := startTenants(t)
	base := tn.srv.URL()
	for _, ep := range matrix {
		t.Run(ep.name, func(t *testing.T) {
			call := func(token string) answer {
				t.Helper()
				path, body := ep.target(t, tn)
				return send(t, ep.method, base+path, token, ep.contentType, body)
			}
			if a := call(""); a.status != 401 || !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") ||
				!strings.Contains(a.header.Get("Content-Type"), "application/json") {
				t.Errorf("no token: %v (WWW-Authenticate %q), want a JSON 401 with a Bearer challenge", a, a.header.Get("WWW-Authenticate"))
			}
			if a := call(tn.revoked); a.status != 401 {
				t.Errorf("revoked token: %v, want 401", a)
			}
			if a := call("zv_" + strings.Repeat("A", 43)); a.status != 401 {
				t.Errorf("unknown token: %v, want 401", a)
			}
			if a := call(tn.worker); a.status != 403 {
				t.Errorf("join token: %v, want 403", a)
			}
			wrong, wantWrong := tn.bob, ep.wrong
			if ep.right == "admin" {
				wrong = tn.alice
			}
			if wantWrong == 0 {
				wantWrong = ep.ok
			}
			a := call(wrong)
			if a.status != wantWrong {
				t.Errorf("wrong namespace's token: %v, want %d", a, wantWrong)
			}
			if ep.wrongField != "" {
				var e api.ErrorBody
				json.Unmarshal(a.body, &e)
				if e.Field != ep.wrongField {
					t.Errorf("wrong namespace's token: %v, want the field %q named", a, ep.wrongField)
				}
			}
			right := tn.alice
			if ep.right == "admin" {
				right = tn.adminSecret
			}
			if a := call(right); a.status != ep.ok {
				t.Errorf("right token: %v, want %d", a, ep.ok)
			}
			if ep.right == "alice" {
				if a := call(tn.adminSecret); a.status != ep.ok {
					t.Errorf("admin token: %v, want %d", a, ep.ok)
				}
			}
		})
	}

	t.Run("open routes", func(t *testing.T) {
		for _, path := range []string{"/health", "/volunteer/"} {
			if a := send(t, "GET", base+path, "", "", nil); a.status != 200 {
				t.Errorf("GET %s without a token: %v, want 200", path, a)
			}
		}
		// The workers' fetch of a context is authenticated by a lease,
		// which no API token replaces.
		for _, token := range []string{"", tn.adminSecret} {
			if a := send(t, "GET", base+"/api/build-contexts/"+tn.aliceContext+"/archive", token, "", nil); a.status != 401 {
				t.Errorf("context archive without a lease (token %v): %v, want 401", token != "", a)
			}
		}
	})
}

// TestNamespaceScoping: a namespace token that names no namespace acts in
// its own, lists only its own jobs and functions, and cannot use another
// namespace's build context.
func TestNamespaceScoping(t *testing.T) {
	tn := startTenants(t)
	ctx := context.Background()
	alice := client.New(tn.srv.URL(), nil).WithToken(tn.alice)
	bob := client.New(tn.srv.URL(), nil).WithToken(tn.bob)

	v, err := bob.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 2"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Namespace != "bob" {
		t.Fatalf("a bob token's job without a namespace went to %q, want bob", v.Namespace)
	}
	if done, err := bob.Await(ctx, v.ID, 0); err != nil || done.Status != job.StatusCompleted {
		t.Fatalf("bob's job: %+v %v", done, err)
	}
	jobs, _, err := bob.Jobs(ctx, storeFilter(""))
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Namespace != "bob" {
			t.Fatalf("bob lists a job of %s", j.Namespace)
		}
	}
	if len(jobs) != 1 {
		t.Fatalf("bob lists %d jobs, want 1", len(jobs))
	}
	all, _, err := tn.admin.Jobs(ctx, storeFilter(""))
	if err != nil || len(all) < 2 {
		t.Fatalf("admin lists %d jobs (%v), want every namespace's", len(all), err)
	}
	if _, err := bob.Deploy(ctx, "bob", "mine", job.DeployRequest{Runtime: job.TypeLua, Code: `function handle(req) return "b" end`}); err != nil {
		t.Fatal(err)
	}
	fns, err := bob.Deployments(ctx, "", false)
	if err != nil || len(fns) != 1 || fns[0].Namespace != "bob" {
		t.Fatalf("bob's deployments: %+v %v; want only bob/mine", fns, err)
	}
	_, err = bob.Submit(ctx, job.Request{Type: job.TypeDocker, Dockerfile: "Dockerfile", BuildContextID: tn.aliceContext, ImageTag: "x:1"})
	if job.ErrorCode(err) != job.CodeInvalid || job.ErrorField(err) != "build_context_id" {
		t.Fatalf("bob building from alice's context: %v, want invalid build_context_id", err)
	}
	if _, _, err := alice.Jobs(ctx, storeFilter("bob")); job.ErrorCode(err) != job.CodeForbidden {
		t.Fatalf("alice listing bob's jobs: %v, want forbidden", err)
	}
}

// TestPrivateFunctionsAndHeaders: functions are public by default; the
// caller's Authorization header never reaches a function's code.
func TestPrivateFunctionsAndHeaders(t *testing.T) {
	tn := startTenants(t)
	ctx := context.Background()
	d, err := tn.admin.Deploy(ctx, "alice", "echo", job.DeployRequest{Runtime: job.TypeLua,
		Code: `function handle(req) return "authorization=" .. tostring(req.headers["authorization"]) .. " x=" .. tostring(req.headers["x-other"]) end`})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Public {
		t.Fatalf("a function deployed without \"public\" is private: %+v", d.Deployment)
	}
	if a := send(t, "GET", tn.srv.URL()+"/alice/echo", "", "", nil); a.status != 200 || string(a.body) != "authorization=nil x=nil" {
		t.Fatalf("public function without a token: %v", a)
	}
	for _, token := range []string{tn.alice, tn.bob, tn.revoked} {
		req, _ := http.NewRequest("GET", tn.srv.URL()+"/alice/echo", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Other", "kept")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "authorization=nil x=kept" {
			t.Fatalf("public function with a token: %d %s, want the Authorization header stripped", resp.StatusCode, b)
		}
	}
	// The private function of startTenants, called by alice: her token
	// is not passed on either.
	if a := send(t, "GET", tn.srv.URL()+"/alice/private", tn.alice, "", nil); a.status != 200 || string(a.body) != "secret of alice" {
		t.Fatalf("private function with alice's token: %v", a)
	}
	got, err := tn.admin.Deployment(ctx, "alice", "private")
	if err != nil || got.Public {
		t.Fatalf("private deployment reads back as %+v, %v", got.Deployment, err)
	}
}

// TestAdminTokenFile: the first start writes admin.token with mode 0600 and
// a restart reuses it; no secret is stored in clear in the database.
func TestAdminTokenFile(t *testing.T) {
	dir := t.TempDir()
	cfg := testServerConfig(t, dir, 0)
	srv, err := StartServer(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	first := srv.AdminToken()
	if !srv.AdminTokenCreated() || !strings.HasPrefix(first, auth.SecretPrefix) {
		t.Fatalf("first start: created %v, token %q", srv.AdminTokenCreated(), first)
	}
	path := filepath.Join(dir, auth.AdminTokenFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != first {
		t.Fatalf("%s does not hold the admin token", path)
	}
	c := client.New(srv.URL(), nil).WithToken(first)
	ns := newToken(t, c, api.TokenRequest{Namespace: "alice"})
	join := newToken(t, c, api.TokenRequest{Kind: job.TokenWorker, Name: "w"})
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	srv, err = StartServer(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if srv.AdminTokenCreated() || srv.AdminToken() != first {
		t.Fatalf("restart: created %v, same token %v; want the first token reused", srv.AdminTokenCreated(), srv.AdminToken() == first)
	}
	c = client.New(srv.URL(), nil).WithToken(first)
	if _, err := c.Tokens(context.Background()); err != nil {
		t.Fatalf("admin token after restart: %v", err)
	}
	if _, _, err := client.New(srv.URL(), nil).WithToken(ns.Token).Jobs(context.Background(), storeFilter("")); err != nil {
		t.Fatalf("namespace token after restart: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "zerverless.db*"))
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{first, ns.Token, join.Token} {
			if bytes.Contains(b, []byte(secret[len(auth.SecretPrefix):])) {
				t.Fatalf("%s holds a secret in clear", f)
			}
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServePrintsAdminTokenOnce runs `zerverless serve` twice on one data
// directory: the first prints the admin token and where it is stored, the
// second does not.
func TestServePrintsAdminTokenOnce(t *testing.T) {
	dir := t.TempDir()
	serve := func() string {
		ctx, cancel := context.WithCancel(context.Background())
		var out, errOut lockedBuffer
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", dir, "--workers", "0", "--log-level", "error"}, &out, &errOut, func(string) string { return "" })
		}()
		eventually(t, 20*time.Second, func() error {
			if !strings.Contains(out.String(), "listening on") {
				return fmt.Errorf("serve printed %q, stderr %q", out.String(), errOut.String())
			}
			return nil
		})
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("serve exited %d: %s", code, errOut.String())
		}
		return out.String()
	}
	first := serve()
	b, err := os.ReadFile(filepath.Join(dir, auth.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(string(b))
	if !strings.Contains(first, secret) || !strings.Contains(first, filepath.Join(dir, auth.AdminTokenFile)) {
		t.Fatalf("first serve printed %q; want the admin token and where it is stored", first)
	}
	if second := serve(); strings.Contains(second, secret) || strings.Contains(second, "admin token") {
		t.Fatalf("second serve printed %q; want no admin token", second)
	}
}

// TestAuditLog: administrative actions and authentication failures are
// logged with audit=true; a token's use is logged at debug level.
func TestAuditLog(t *testing.T) {
	var logs lockedBuffer
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Log = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, c := startServer(t, cfg)
	ctx := context.Background()
	tok := newToken(t, c, api.TokenRequest{Namespace: "alice", Name: "audited"})
	if _, err := c.PutNamespacePolicy(ctx, job.NamespacePolicy{Namespace: "alice", RequireTrustedWorkers: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	send(t, "GET", srv.URL()+"/api/jobs", tok.Token, "", nil)
	send(t, "GET", srv.URL()+"/api/jobs", "", "", nil)

	type record struct {
		Level, Msg, Kind, Namespace, Method, Route, Reason string
		Audit                                              bool
		TokenID                                            string `json:"token_id"`
		Status                                             int
	}
	var recs []record
	for _, line := range strings.Split(logs.String(), "\n") {
		var r record
		if json.Unmarshal([]byte(line), &r) == nil && r.Audit {
			recs = append(recs, r)
		}
	}
	find := func(msg string, ok func(record) bool) {
		t.Helper()
		for _, r := range recs {
			if r.Msg == msg && ok(r) {
				return
			}
		}
		t.Errorf("no audit record %q as wanted among %+v", msg, recs)
	}
	find("admin token created", func(r record) bool { return r.Level == "INFO" })
	find("token created", func(r record) bool { return r.TokenID == tok.ID && r.Namespace == "alice" })
	find("namespace policy set", func(r record) bool { return r.Namespace == "alice" })
	find("token revoked", func(r record) bool { return r.TokenID == tok.ID })
	find("authentication failed", func(r record) bool { return r.Level == "WARN" && strings.Contains(r.Reason, "revoked") })
	find("authentication failed", func(r record) bool { return r.Level == "WARN" && r.Method == "GET" })
	find("token used", func(r record) bool {
		return r.Level == "DEBUG" && r.Method == "POST" && r.Route == "POST /api/tokens" && r.Status == 201 && r.TokenID != ""
	})
	if strings.Contains(logs.String(), tok.Token) || strings.Contains(logs.String(), srv.AdminToken()) {
		t.Error("a secret appears in the log")
	}
}

// storeFilter selects the jobs of ns ("": every job the token sees).
func storeFilter(ns string) store.JobFilter { return store.JobFilter{Namespace: ns} }
