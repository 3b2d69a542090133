package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// TestWorkersShowNothingOfAnotherNamespace: a worker holds images and
// build caches of namespaces alice and bob, runs a job of each and
// reports notes naming bob's image. Alice's token reads GET /api/workers
// and the raw answer holds nothing of bob: not his namespace's name, his
// image's tag, a build cache key or his job's id. The admin sees it all.
func TestWorkersShowNothingOfAnotherNamespace(t *testing.T) {
	srv, admin := startServer(t, testServerConfig(t, t.TempDir(), 0))
	ctx := context.Background()
	alice := newToken(t, admin, api.TokenRequest{Namespace: "alice"}).Token
	bobKey := strings.Repeat("b0", 32)
	caps := job.Capabilities{Runtimes: []job.Type{job.TypeLua, job.TypeDocker}, Concurrency: 4,
		Docker: &job.DockerCapabilities{Build: true,
			BuiltImages: []string{"zerverless/bob/secret:1", "docker.io/zerverless/bob/other:2", "zerverless/alice/app:1"},
			BuildCache:  []string{bobKey}}}
	w := dialRawWith(t, srv.WorkerURL(), protocol.Message{Capabilities: &caps,
		Notes: map[string]string{"python": "zerverless/bob/secret:1 failed for bob"}})
	w.keepAlive()
	mine, err := client.New(srv.URL(), nil).WithToken(alice).Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1"})
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := admin.Submit(ctx, job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	w.next(5 * time.Second)
	w.next(5 * time.Second)

	a := send(t, "GET", srv.URL()+"/api/workers", alice, "", nil)
	if a.status != 200 {
		t.Fatalf("workers as alice: %v", a)
	}
	for _, secret := range []string{"bob", bobKey, bobKey[:16], theirs.ID} {
		if strings.Contains(string(a.body), secret) {
			t.Errorf("alice's /api/workers holds %q: %s", secret, a.body)
		}
	}
	for _, own := range []string{mine.ID, "zerverless/alice/app:1", `"running":2`} {
		if !strings.Contains(string(a.body), own) {
			t.Errorf("alice's /api/workers lacks %q: %s", own, a.body)
		}
	}
	all := send(t, "GET", srv.URL()+"/api/workers", srv.AdminToken(), "", nil)
	for _, s := range []string{"zerverless/bob/secret:1", bobKey, theirs.ID, "failed for bob"} {
		if !strings.Contains(string(all.body), s) {
			t.Errorf("the admin's /api/workers lacks %q: %s", s, all.body)
		}
	}
}

// dirBytes sums the sizes of the files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return nil // removed meanwhile: a temporary file
		}
		n += fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestContextQuotaKeepsNothingRefused: uploads over a namespace's
// build_context_mb quota are answered 429 and leave the context store's
// disk usage as it was, also when they race: of concurrent uploads that
// each fit alone, only as many as the quota holds are stored.
func TestContextQuotaKeepsNothingRefused(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Orchestrator.DefaultQuotas.BuildContextMB = 1
	srv, admin := startServer(t, cfg)
	ctx := context.Background()
	tok := newToken(t, admin, api.TokenRequest{Namespace: "quota"}).Token
	c := client.New(srv.URL(), nil).WithToken(tok)
	dir := filepath.Join(cfg.DataDir, "build-contexts")
	upload := func(fill int) error {
		body := fmt.Sprintf(`{"files":{"Dockerfile":"FROM scratch\n","blob":%q}}`, strings.Repeat(string(rune('a'+fill)), 600<<10))
		_, err := c.UploadContext(ctx, strings.NewReader(body), "application/json")
		return err
	}

	// Concurrent uploads from an empty quota: one fits, the others are
	// refused and nothing of them is kept.
	const racers = 6
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = upload(i)
		}()
	}
	wg.Wait()
	stored := 0
	for _, err := range errs {
		switch job.ErrorCode(err) {
		case "":
			stored++
		case job.CodeTooMany:
		default:
			t.Fatalf("upload: %v", err)
		}
	}
	if stored != 1 {
		t.Fatalf("%d concurrent 600 KiB uploads stored under a 1 MiB quota, want 1 (%v)", stored, errs)
	}
	before := dirBytes(t, dir)
	if before > 1<<20 {
		t.Fatalf("the store holds %d bytes after the race, more than the quota", before)
	}
	for i := range 5 {
		if err := upload(10 + i); job.ErrorCode(err) != job.CodeTooMany {
			t.Fatalf("upload over the quota: %v, want 429", err)
		}
	}
	if after := dirBytes(t, dir); after != before {
		t.Fatalf("refused uploads changed the context store from %d to %d bytes", before, after)
	}
}

// TestServeRefusesNonsense: settings that would break the API are refused
// at start, naming the setting.
func TestServeRefusesNonsense(t *testing.T) {
	for name, set := range map[string]func(*ServerConfig){
		"MaxBodyBytes":              func(c *ServerConfig) { c.API.MaxBodyBytes = -1 },
		"MaxWait":                   func(c *ServerConfig) { c.API.MaxWait = -time.Second },
		"DefaultTimeout":            func(c *ServerConfig) { c.API.RequestLimits.DefaultTimeout = 2 * c.API.RequestLimits.MaxTimeout },
		"MaxDockerfileInstructions": func(c *ServerConfig) { c.Admission.MaxDockerfileInstructions = -1 },
		"Functions.MaxRequestBytes": func(c *ServerConfig) { c.Functions.MaxRequestBytes = -1 },
	} {
		cfg := testServerConfig(t, t.TempDir(), 0)
		set(&cfg)
		srv, err := StartServer(context.Background(), cfg)
		if err == nil {
			srv.Close()
			t.Errorf("%s: started", name)
			continue
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want the setting named", name, err)
		}
	}
}

// TestWorkersShowNothingOfTheirOwners: what identifies a volunteer — the
// address its worker connects from and the join token it presented — is
// the admin's to see, never a namespace token's; nor are the other
// namespaces a worker serves. A worker that serves bob and alice shows
// alice only herself in its namespaces, and a worker that serves bob
// alone is not in alice's list at all.
func TestWorkersShowNothingOfTheirOwners(t *testing.T) {
	srv, admin := startServer(t, testServerConfig(t, t.TempDir(), 0))
	alice := newToken(t, admin, api.TokenRequest{Namespace: "alice"}).Token
	both := dialRaw(t, srv.WorkerURL(), job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1,
		Namespaces: []string{"bob", "alice"}})
	both.keepAlive()
	bobs := dialRaw(t, srv.WorkerURL(), job.Capabilities{Runtimes: []job.Type{job.TypeLua}, Concurrency: 1,
		Namespaces: []string{"bob"}})
	bobs.keepAlive()

	// A session is listed just after its registered answer is sent.
	var all []job.WorkerInfo
	eventually(t, 5*time.Second, func() error {
		var err error
		if all, err = admin.Workers(context.Background()); err != nil || len(all) != 2 {
			return fmt.Errorf("the admin's /api/workers lists %d workers (%v), want both", len(all), err)
		}
		return nil
	})
	if all[0].Remote == "" || all[1].Remote == "" {
		t.Fatalf("the admin's /api/workers should show both workers with their remote address: %+v", all)
	}
	a := send(t, "GET", srv.URL()+"/api/workers", alice, "", nil)
	if a.status != 200 {
		t.Fatalf("workers as alice: %v", a)
	}
	for _, w := range all {
		host, _, _ := strings.Cut(w.Remote, ":")
		for _, secret := range []string{host, w.Owner, "bob"} {
			if secret != "" && strings.Contains(string(a.body), secret) {
				t.Errorf("alice's /api/workers holds %q: %s", secret, a.body)
			}
		}
	}
	if !strings.Contains(string(a.body), both.id) || strings.Contains(string(a.body), bobs.id) {
		t.Errorf("alice's /api/workers should list the worker that serves her (%s) and not bob's own (%s): %s", both.id, bobs.id, a.body)
	}
	if !strings.Contains(string(a.body), `"namespaces":["alice"]`) {
		t.Errorf("alice's /api/workers should show the worker serving her namespace: %s", a.body)
	}
}

// TestContextUploadsInProgressKeepToTheQuota: ten uploads of a 3 MiB
// context into a namespace whose build_context_mb quota is 1 each send
// all but the end of their archive and hold it there. What their
// temporary files take on disk meanwhile stays within the quota (each
// would be refused at the end anyway), rather than ten times the
// context: the uploads are answered 429 as they pass it together, before
// their end arrives.
func TestContextUploadsInProgressKeepToTheQuota(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Orchestrator.DefaultQuotas.BuildContextMB = 1
	srv, admin := startServer(t, cfg)
	tok := newToken(t, admin, api.TokenRequest{Namespace: "slow"}).Token
	dir := filepath.Join(cfg.DataDir, "build-contexts")

	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	for i, size := range []int{3 << 20, 1 << 20} {
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("blob%d", i), Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg})
		tw.Write(bytes.Repeat([]byte{'a' + byte(i)}, size))
	}
	tw.Close()
	data := archive.Bytes()
	held := len(data) - (512 << 10) // inside the second file

	const uploads = 10
	host := strings.TrimPrefix(srv.URL(), "http://")
	answers := make(chan string, uploads)
	conns := make([]net.Conn, 0, uploads)
	for range uploads {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
		fmt.Fprintf(c, "POST /api/build-contexts HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/x-tar\r\nContent-Length: %d\r\n\r\n", host, tok, len(data))
		go func() {
			c.Write(data[:held])
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				answers <- "no answer"
				return
			}
			resp.Body.Close()
			answers <- resp.Status
		}()
	}
	// Every upload has sent what it will until it is answered: each goes
	// over the quota while it is held, and is answered then.
	refused := 0
	eventually(t, 30*time.Second, func() error {
		for {
			select {
			case a := <-answers:
				if !strings.HasPrefix(a, "429") {
					t.Fatalf("an upload in progress was answered %s, want 429", a)
				}
				refused++
				continue
			default:
			}
			break
		}
		if refused < uploads {
			return fmt.Errorf("%d of %d uploads refused so far; %d bytes on disk", refused, uploads, dirBytes(t, dir))
		}
		return nil
	})
	if n := dirBytes(t, dir); n > 1<<20 {
		t.Errorf("uploads in progress hold %d bytes on disk, more than the namespace's quota of 1 MiB", n)
	}
	for _, c := range conns {
		c.Close()
	}
}
