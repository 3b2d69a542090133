package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime/docker"
)

// fakeImage makes sure ref exists, importing the busybox test image with
// extra executable files (stand-ins for interpreters the real image would
// have) when it does not. It is removed when the tests end if it was
// imported here.
func fakeImage(t testing.TB, ref string, extra map[string]string) string {
	t.Helper()
	c := testEngine(t)
	imagesMu.Lock()
	defer imagesMu.Unlock()
	ctx := context.Background()
	if _, err := c.ImageInspect(ctx, ref); err == nil {
		return ref
	}
	rootfs, err := dockertest.BusyboxRootfs()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tr := tar.NewReader(bytes.NewReader(rootfs))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		tw.WriteHeader(h)
		io.Copy(tw, tr)
	}
	for name, content := range extra {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(content)), ModTime: time.Unix(1700000000, 0)})
		tw.Write([]byte(content))
	}
	tw.Close()
	rc, err := c.ImageImport(ctx, image.ImportSource{Source: &b, SourceName: "-"}, ref,
		image.ImportOptions{Changes: []string{"ENV PATH=/bin", `CMD ["sh"]`}})
	if err != nil {
		t.Fatal(err)
	}
	if err := dockertest.DrainJSON(rc); err != nil {
		t.Fatal(err)
	}
	images[ref] = true
	return ref
}

// buildServerConfig is a test server whose embedded worker runs and builds
// containers; the images it builds are removed when the test ends.
func buildServerConfig(t testing.TB) ServerConfig {
	cfg := dockerServerConfig(t, 1)
	cfg.Runtimes.DockerConfig.Build = true
	wid := cfg.Runtimes.DockerConfig.WorkerID
	t.Cleanup(func() { removeBuilt(wid) })
	return cfg
}

// removeBuilt removes the images a test worker built.
func removeBuilt(wid string) {
	if engine == nil {
		return
	}
	ctx := context.Background()
	imgs, _ := engine.ImageList(ctx, image.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", docker.LabelWorkerID+"="+wid))})
	for _, img := range imgs {
		engine.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
	}
}

// postJob posts a raw JSON job and returns the status and body.
func postJob(t testing.TB, srv *Server, body string) (int, []byte) {
	t.Helper()
	resp, err := authPost(srv, srv.URL()+"/api/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func postWait(t *testing.T, srv *Server, c *client.Client, body string) api.View {
	t.Helper()
	code, raw := postJob(t, srv, body)
	if code != http.StatusCreated {
		t.Fatalf("submit: %d %s", code, raw)
	}
	var v api.View
	json.Unmarshal(raw, &v)
	return waitDone(t, c, v.ID, 120*time.Second)
}

const (
	fakePython = "#!/bin/sh\necho \"test interpreter running $1 in $(pwd):\"\ncat \"$1\"\n"
	fakeNpm    = "#!/bin/sh\nmkdir -p node_modules/express && echo \"npm $* (offline test stand-in)\"\n"
)

// TestBuildDesignExamples posts the three build examples of the design
// exactly as written, with their FROM images imported as test images.
func TestBuildDesignExamples(t *testing.T) {
	fakeImage(t, "python:3.11-slim", map[string]string{"bin/python": fakePython})
	fakeImage(t, "node:18", map[string]string{"bin/npm": fakeNpm})
	fakeImage(t, "python:3.11", nil)
	srv, c := startServer(t, buildServerConfig(t))

	v := postWait(t, srv, c, `{
    "job_type": "docker",
    "dockerfile": "FROM python:3.11-slim\nWORKDIR /app\nCOPY main.py .\nCMD [\"python\", \"main.py\"]",
    "build_context": {
      "main.py": "import sys\nprint(f\"Hello from {sys.version}\")"
    },
    "docker_command": ["python", "main.py"],
    "input_data": {},
    "timeout_seconds": 300
  }`)
	if v.Status != job.StatusCompleted || !strings.Contains(v.Output, "running main.py in /app") || !strings.Contains(v.Output, "import sys") {
		t.Fatalf("build and run: %s output %q error %q build %+v", v.Status, v.Output, v.Error, v.Build)
	}
	if v.Build == nil || !strings.HasPrefix(v.Build.Image, "zerverless/default/") || v.Build.ImageID == "" {
		t.Fatalf("build report: %+v", v.Build)
	}

	v = postWait(t, srv, c, `{
    "job_type": "docker",
    "dockerfile": "FROM node:18\nWORKDIR /app\nCOPY package.json .\nRUN npm install\nCOPY . .",
    "build_context": {
      "package.json": "{\"dependencies\": {\"express\": \"^4.18.0\"}}",
      "index.js": "const express = require(\"express\"); const app = express(); app.get(\"/\", (req, res) => res.send(\"Hello\")); app.listen(3000);"
    },
    "image_tag": "myapp:v1.0.0",
    "build_only": true,
    "timeout_seconds": 600
  }`)
	if v.Status != job.StatusCompleted || v.Build == nil || v.Build.Image != "zerverless/default/myapp:v1.0.0" || v.Build.ImageID == "" {
		t.Fatalf("build only: %s %q %+v", v.Status, v.Error, v.Build)
	}
	if !strings.Contains(v.Build.Log, "npm install (offline test stand-in)") {
		t.Fatalf("build log: %q", v.Build.Log)
	}

	v = postWait(t, srv, c, `{
    "job_type": "docker",
    "dockerfile": "FROM python:3.11\nARG VERSION\nENV APP_VERSION=$VERSION\nRUN echo \"Building version $VERSION\"",
    "build_args": {
      "VERSION": "1.0.0"
    },
    "image_tag": "myapp:1.0.0",
    "build_only": true,
    "timeout_seconds": 300
  }`)
	if v.Status != job.StatusCompleted || v.Build == nil || v.Build.Image != "zerverless/default/myapp:1.0.0" || !strings.Contains(v.Build.Log, "Building version 1.0.0") {
		t.Fatalf("build with arguments: %s %q %+v", v.Status, v.Error, v.Build)
	}
	info, err := testEngine(t).ImageInspect(context.Background(), v.Build.Image)
	if err != nil || !strings.Contains(strings.Join(info.Config.Env, " "), "APP_VERSION=1.0.0") {
		t.Fatalf("built image env: %v %v", info.Config, err)
	}
}

// TestBuildCopyArgRunAndCache builds and runs an image with COPY (a text
// and a binary file) and ARG, then submits the same build again: a cache
// hit, the same image, and no new image.
func TestBuildCopyArgRunAndCache(t *testing.T) {
	fakeImage(t, "zerverless-test/busybox:build", nil)
	cfg := buildServerConfig(t)
	srv, c := startServer(t, cfg)
	body := `{"job_type": "docker", "namespace": "alice",
	  "dockerfile": "FROM zerverless-test/busybox:build\nARG GREETING\nCOPY hello.txt /srv/\nCOPY blob.bin /srv/\nRUN echo \"arg=$GREETING\" > /srv/arg.txt\nCMD [\"sh\", \"-c\", \"cat /srv/hello.txt /srv/arg.txt; od -An -tx1 /srv/blob.bin\"]",
	  "build_context": {"hello.txt": "hello from the context\n", "blob.bin": {"content": "AAH/", "encoding": "base64"}},
	  "build_args": {"GREETING": "hi there"}}`
	first := postWait(t, srv, c, body)
	want := "hello from the context\narg=hi there\n 00 01 ff\n"
	if first.Status != job.StatusCompleted || first.Output != want || first.Build == nil || first.Build.CacheHit {
		t.Fatalf("first build: %s output %q error %q build %+v", first.Status, first.Output, first.Error, first.Build)
	}
	second := postWait(t, srv, c, body)
	if second.Status != job.StatusCompleted || second.Output != want || second.Build == nil || !second.Build.CacheHit ||
		second.Build.ImageID != first.Build.ImageID {
		t.Fatalf("second build: %s output %q build %+v", second.Status, second.Output, second.Build)
	}
	t.Logf("first build %d ms (cache miss), second %d ms (cache hit); whole jobs %d ms and %d ms",
		first.Build.DurationMS, second.Build.DurationMS, first.DurationMS, second.DurationMS)
	imgs, _ := testEngine(t).ImageList(context.Background(), image.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", docker.LabelWorkerID+"="+cfg.Runtimes.DockerConfig.WorkerID))})
	if len(imgs) != 1 {
		t.Fatalf("%d images built, want 1", len(imgs))
	}
}

// TestBuildNamespaces: a build_only image is tagged under its namespace,
// runs later in that namespace, cannot be run from another, and a tag like
// alpine:latest never touches the real alpine:latest.
func TestBuildNamespaces(t *testing.T) {
	fakeImage(t, "zerverless-test/busybox:build", nil)
	alpine := testImage(t, "alpine:latest")
	ctx := context.Background()
	before, err := testEngine(t).ImageInspect(ctx, alpine)
	if err != nil {
		t.Fatal(err)
	}
	srv, c := startServer(t, buildServerConfig(t))
	build := func(ns, marker string) api.View {
		return postWait(t, srv, c, fmt.Sprintf(`{"job_type": "docker", "namespace": %q, "image_tag": "alpine:latest", "build_only": true,
		  "dockerfile": "FROM zerverless-test/busybox:build\nRUN echo %s > /owner"}`, ns, marker))
	}
	a := build("alice", "alice")
	if a.Status != job.StatusCompleted || a.Build == nil || a.Build.Image != "zerverless/alice/alpine:latest" || a.Build.ImageID == "" {
		t.Fatalf("alice's build: %s %q %+v", a.Status, a.Error, a.Build)
	}
	after, _ := testEngine(t).ImageInspect(ctx, alpine)
	if after.ID != before.ID {
		t.Fatalf("alpine:latest changed from %s to %s", before.ID, after.ID)
	}
	run := submitWait(t, c, job.Request{Type: job.TypeDocker, Namespace: "alice", DockerImage: a.Build.Image, DockerCommand: []string{"cat", "/owner"}})
	if run.Status != job.StatusCompleted || run.Output != "alice\n" {
		t.Fatalf("alice runs her image: %s %q %q", run.Status, run.Output, run.Error)
	}
	_, err = c.Submit(ctx, job.Request{Type: job.TypeDocker, Namespace: "bob", DockerImage: a.Build.Image, DockerCommand: []string{"cat", "/owner"}})
	if job.ErrorCode(err) != job.CodeForbidden || job.ErrorField(err) != "docker_image" {
		t.Fatalf("bob runs alice's image by tag: %v", err)
	}
	code, raw := postJob(t, srv, `{"job_type": "docker", "namespace": "bob", "dockerfile": "FROM zerverless/alice/alpine:latest\nRUN true"}`)
	if code != http.StatusBadRequest || !strings.Contains(string(raw), "another namespace") {
		t.Fatalf("bob builds from alice's image: %d %s", code, raw)
	}
	byID := submitWait(t, c, job.Request{Type: job.TypeDocker, Namespace: "bob", DockerImage: a.Build.ImageID, DockerCommand: []string{"cat", "/owner"}})
	if byID.Status != job.StatusFailed || !strings.Contains(byID.Error, "another namespace") {
		t.Fatalf("bob runs alice's image by id: %s %q %q", byID.Status, byID.Output, byID.Error)
	}
	b := build("bob", "bob")
	if b.Status != job.StatusCompleted || b.Build.Image != "zerverless/bob/alpine:latest" {
		t.Fatalf("bob's build: %s %q %+v", b.Status, b.Error, b.Build)
	}
	run = submitWait(t, c, job.Request{Type: job.TypeDocker, Namespace: "alice", DockerImage: a.Build.Image, DockerCommand: []string{"cat", "/owner"}})
	if run.Output != "alice\n" {
		t.Fatalf("bob's build changed alice's image: %q %q", run.Output, run.Error)
	}
	if after, _ := testEngine(t).ImageInspect(ctx, alpine); after.ID != before.ID {
		t.Fatalf("alpine:latest changed")
	}
}

// TestBuildNoNetwork: RUN steps have no network by default.
func TestBuildNoNetwork(t *testing.T) {
	fakeImage(t, "zerverless-test/busybox:build", nil)
	srv, c := startServer(t, buildServerConfig(t))
	v := postWait(t, srv, c, `{"job_type": "docker", "build_only": true,
	  "dockerfile": "FROM zerverless-test/busybox:build\nRUN echo interfaces: $(ls /sys/class/net)\nRUN nc -w 3 1.1.1.1 80 </dev/null"}`)
	if v.Status != job.StatusFailed || !strings.Contains(v.Error, "build failed") || v.Build == nil {
		t.Fatalf("network during build: %s %q %+v", v.Status, v.Error, v.Build)
	}
	if !strings.Contains(v.Build.Log, "interfaces: lo\n") || !strings.Contains(v.Build.Log, "unreachable") {
		t.Fatalf("build log: %q", v.Build.Log)
	}
}

func tarOf(t testing.TB, entries ...*tar.Header) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range entries {
		body := h.Linkname
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(h.Uname))
			body = h.Uname
			h.Uname = ""
		} else {
			body = ""
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	return b.Bytes()
}

// file is a tar entry whose content rides in Uname, for tarOf.
func file(name, content string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Uname: content}
}

// TestBuildRefusedBeforeBuild: each bad input is a clear 4xx at
// submission, naming the field, with no worker to build anything.
func TestBuildRefusedBeforeBuild(t *testing.T) {
	cfg := testServerConfig(t, t.TempDir(), 0)
	cfg.Admission.ContextLimits.MaxBytes = 1 << 20
	cfg.Admission.ContextLimits.MaxFiles = 10
	cfg.Orchestrator.DockerAllowImages = []string{"python:*", "zerverless-test/*"}
	srv, _ := startServer(t, cfg)
	df := `"FROM python:3.11\nCOPY . /app"`
	many := map[string]string{}
	for i := range 11 {
		many[fmt.Sprintf("f%d", i)] = "x"
	}
	manyJSON, _ := json.Marshal(many)
	cases := []struct {
		name, body string
		status     int
		field      string
		words      string
	}{
		{"dotdot", `{"job_type":"docker","dockerfile":` + df + `,"build_context":{"../x":"a"}}`, 400, "build_context", "leaves the context"},
		{"absolute", `{"job_type":"docker","dockerfile":` + df + `,"build_context":{"/etc/passwd":"a"}}`, 400, "build_context", "absolute path"},
		{"oversized", `{"job_type":"docker","dockerfile":` + df + `,"build_context":{"big":"` + strings.Repeat("x", 1<<20+1) + `"}}`, 413, "build_context", "over the limit"},
		{"too many files", `{"job_type":"docker","dockerfile":` + df + `,"build_context":` + string(manyJSON) + `}`, 413, "build_context", "10"},
		{"FROM outside allow-list", `{"job_type":"docker","dockerfile":"FROM evil/miner:latest\nRUN true"}`, 403, "dockerfile", "not allowed"},
		{"ADD https", `{"job_type":"docker","dockerfile":"FROM python:3.11\nADD https://example.com/x.tgz /x"}`, 400, "dockerfile", "line 2: ADD from a URL"},
		{"syntax error", `{"job_type":"docker","dockerfile":"FROM python:3.11\nRUN true\nENV ONLYNAME"}`, 400, "dockerfile", "line 3: syntax error"},
		{"RUN --mount", `{"job_type":"docker","dockerfile":"FROM python:3.11\nRUN --mount=type=bind,target=/x true"}`, 400, "dockerfile", "RUN --mount is not allowed"},
		{"git", `{"job_type":"docker","dockerfile":"FROM python:3.11","build_from_git":{"url":"https://github.com/user/repo"}}`, 400, "build_from_git", "not supported"},
		{"bad tag", `{"job_type":"docker","dockerfile":"FROM python:3.11","image_tag":"Registry:5000/X@sha256:00"}`, 400, "image_tag", "not a valid"},
		{"unknown context", `{"job_type":"docker","dockerfile":"FROM python:3.11","build_context_id":"` + strings.Repeat("a", 64) + `"}`, 400, "build_context_id", "not found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, raw := postJob(t, srv, c.body)
			var e api.ErrorBody
			json.Unmarshal(raw, &e)
			if code != c.status || e.Field != c.field || !strings.Contains(e.Error, c.words) {
				t.Fatalf("got %d %s, want %d field %s with %q", code, raw, c.status, c.field, c.words)
			}
		})
	}
	uploads := []struct {
		name  string
		data  []byte
		words string
	}{
		{"symlink to /", tarOf(t, &tar.Header{Name: "root", Typeflag: tar.TypeSymlink, Linkname: "/"}), "outside the context"},
		{"dotdot", tarOf(t, file("../x", "a")), "leaves the context"},
		{"absolute", tarOf(t, file("/etc/passwd", "a")), "absolute path"},
		{"device", tarOf(t, &tar.Header{Name: "null", Typeflag: tar.TypeChar, Mode: 0o666}), "device file"},
	}
	for _, u := range uploads {
		t.Run("upload "+u.name, func(t *testing.T) {
			resp, err := authPost(srv, srv.URL()+"/api/build-contexts", "application/x-tar", bytes.NewReader(u.data))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 || !strings.Contains(string(raw), u.words) || !strings.Contains(string(raw), `"field":"build_context"`) {
				t.Fatalf("got %d %s, want 400 with %q", resp.StatusCode, raw, u.words)
			}
		})
	}
	var big bytes.Buffer
	zw := gzip.NewWriter(&big)
	zw.Write(tarOf(t, file("big", strings.Repeat("z", 2<<20))))
	zw.Close()
	resp, err := authPost(srv, srv.URL()+"/api/build-contexts", "application/gzip", &big)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("oversized gzip upload (%d bytes compressed): %d %s", big.Len(), resp.StatusCode, raw)
	}
	if st, _ := srv.Orchestrator().Stats(context.Background()); st.Jobs[job.StatusPending] != 0 {
		t.Fatalf("a refused job was queued: %+v", st.Jobs)
	}
}

// TestBuildTimeout: a build past its build timeout ends as timeout and
// leaves no container and no dangling image behind.
func TestBuildTimeout(t *testing.T) {
	base := fakeImage(t, fmt.Sprintf("zerverless-test/busybox:timeout-%d", time.Now().UnixNano()), nil)
	ctx := context.Background()
	baseInfo, err := testEngine(t).ImageInspect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	srv, c := startServer(t, buildServerConfig(t))
	began := time.Now()
	v := postWait(t, srv, c, `{"job_type": "docker", "build_timeout_seconds": 5, "image_tag": "sleepy:1",
	  "dockerfile": "FROM `+base+`\nENV STEP=one\nRUN sleep 1000"}`)
	t.Logf("timed out build ended after %s", time.Since(began).Round(time.Millisecond))
	if v.Status != job.StatusTimeout || !strings.Contains(v.Error, "build timed out after 5s") {
		t.Fatalf("got %s %q", v.Status, v.Error)
	}
	eventually(t, 20*time.Second, func() error {
		cs, err := testEngine(t).ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("ancestor", baseInfo.ID))})
		if err != nil || len(cs) > 0 {
			return fmt.Errorf("%d containers from the build remain (%v)", len(cs), err)
		}
		dangling, err := testEngine(t).ImageList(ctx, image.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("dangling", "true"))})
		if err != nil {
			return err
		}
		for _, img := range dangling {
			if img.ParentID == baseInfo.ID {
				return fmt.Errorf("dangling image %s from the build remains", img.ID)
			}
		}
		return nil
	})
	if _, err := testEngine(t).ImageInspect(ctx, "zerverless/default/sleepy:1"); err == nil {
		t.Fatal("the timed-out build left its tag")
	}
}

// TestBuildUploadedContext uploads a tar.gz context and builds it by
// build_context_id, with the Dockerfile named by its path in the context.
func TestBuildUploadedContext(t *testing.T) {
	fakeImage(t, "zerverless-test/busybox:build", nil)
	srv, c := startServer(t, buildServerConfig(t))
	var gzb bytes.Buffer
	zw := gzip.NewWriter(&gzb)
	zw.Write(tarOf(t,
		&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		file("Dockerfile", "FROM zerverless-test/busybox:build\nCOPY . /ctx\nCMD [\"sh\", \"-c\", \"ls /ctx; cat /ctx/data/msg\"]\n"),
		&tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755},
		file("data/msg", "from an uploaded context\n"),
		&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "data/msg"},
	))
	zw.Close()
	up, err := c.UploadContext(context.Background(), &gzb, "application/gzip")
	if err != nil {
		t.Fatal(err)
	}
	if len(up.BuildContextID) != 64 || up.SHA256 != up.BuildContextID || up.Files != 4 {
		t.Fatalf("upload: %+v", up)
	}
	// Only a worker holding a lease on a job that builds it may fetch it.
	resp, err := http.Get(srv.URL() + "/api/build-contexts/" + up.BuildContextID + "/archive")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("fetch without a lease: %d", resp.StatusCode)
	}
	v := postWait(t, srv, c, `{"job_type": "docker", "dockerfile": "Dockerfile", "build_context_id": "`+up.BuildContextID+`"}`)
	if v.Status != job.StatusCompleted || v.Output != "Dockerfile\ndata\nlink\nfrom an uploaded context\n" {
		t.Fatalf("got %s %q %q %+v", v.Status, v.Output, v.Error, v.Build)
	}
}

// TestBuildCLI: `zerverless build` tars a directory without what
// .dockerignore excludes, builds it with an argument, and runs a command in
// it; --only prints the namespaced tag.
func TestBuildCLI(t *testing.T) {
	fakeImage(t, "zerverless-test/busybox:build", nil)
	srv, _ := startServer(t, buildServerConfig(t))
	dir := t.TempDir()
	for name, content := range map[string]string{
		"Dockerfile":     "FROM zerverless-test/busybox:build\nARG WHO\nCOPY . /app\nRUN echo \"built for $WHO\" > /app/who\n",
		".dockerignore":  "secret.txt\nlogs/\n",
		"main.sh":        "echo main",
		"secret.txt":     "do not send",
		"logs/today.log": "noise",
		"sub/keep.txt":   "kept",
	} {
		p := dir + "/" + name
		os.MkdirAll(p[:strings.LastIndex(p, "/")], 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"build", "--server", srv.URL(), "--token", srv.AdminToken(), "-t", "cli:1", "--build-arg", "WHO=cli", dir,
		"--", "sh", "-c", "cd /app; ls -A; cat who"}, &out, &errOut, func(string) string { return "" })
	want := "Dockerfile\nmain.sh\nsub\nwho\nbuilt for cli\n"
	if code != 0 || out.String() != want || !strings.Contains(errOut.String(), "zerverless/default/cli:1") {
		t.Fatalf("exit %d stdout %q stderr %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code = run(context.Background(), []string{"build", "--server", srv.URL(), "--token", srv.AdminToken(), "--only", "-t", "cli:1", "--build-arg", "WHO=cli", dir},
		&out, &errOut, func(string) string { return "" })
	if code != 0 || !strings.HasPrefix(out.String(), "zerverless/default/cli:1\nsha256:") || !strings.Contains(errOut.String(), "cache hit") {
		t.Fatalf("--only: exit %d stdout %q stderr %q", code, out.String(), errOut.String())
	}
}

// TestBuildProxyArgCannotChooseTheBase: the builder substitutes its
// predefined proxy arguments in FROM without an ARG; namespace alice
// cannot use that to build from namespace bob's image and read its secret.
func TestBuildProxyArgCannotChooseTheBase(t *testing.T) {
	fakeImage(t, "zerverless-test/busybox:build", nil)
	srv, c := startServer(t, buildServerConfig(t))
	secret := fmt.Sprintf("bob-secret-%d", time.Now().UnixNano())
	b := postWait(t, srv, c, `{"job_type": "docker", "namespace": "bob", "image_tag": "secret:1", "build_only": true,
	  "dockerfile": "FROM zerverless-test/busybox:build\nRUN echo `+secret+` > /secret"}`)
	if b.Status != job.StatusCompleted || b.Build.Image != "zerverless/bob/secret:1" {
		t.Fatalf("bob's build: %s %q", b.Status, b.Error)
	}
	a := postWait(t, srv, c, `{"job_type": "docker", "namespace": "alice",
	  "dockerfile": "FROM ${HTTP_PROXY:-zerverless-test/busybox:build}\nRUN cat /secret; true",
	  "build_args": {"HTTP_PROXY": "zerverless/bob/secret:1"},
	  "docker_command": ["sh", "-c", "cat /secret; echo done"]}`)
	out := a.Output + a.Error
	if a.Build != nil {
		out += a.Build.Log
	}
	if strings.Contains(out, secret) {
		t.Fatalf("alice read bob's secret: %s", out)
	}
	if a.Status != job.StatusCompleted || !strings.Contains(a.Output, "done") {
		t.Fatalf("alice's build from the allowed base: %s %q %q", a.Status, a.Output, a.Error)
	}
}
