package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/zerverless/zerverless/internal/job"
)

func buildTask(ns, dockerfile string, files map[string]job.ContextFile) job.Task {
	b := &job.BuildSpec{Dockerfile: dockerfile, Context: files, Tag: "zerverless/" + ns + "/t:1", Only: true, SourceKey: "k"}
	return job.Task{JobID: "build-" + randomHex(4), Namespace: ns, Type: job.TypeDocker, Timeout: time.Minute,
		Spec: job.Spec{TimeoutSeconds: 30, Docker: &job.DockerSpec{Image: b.Tag, Build: b}}}
}

// TestBuildWorkerChecks: the worker refuses, before building, what the
// orchestrator should have refused — a worker never trusts the task.
func TestBuildWorkerChecks(t *testing.T) {
	d := newTestRuntime(t, func(c *Config) { c.Build = true; c.AllowImages = []string{testImage} })
	off := newTestRuntime(t, nil)
	ctx := context.Background()
	outside := buildTask("alice", "FROM "+testImage, nil)
	outside.Spec.Docker.Build.Tag = "alpine:latest"
	cases := []struct {
		d     *Docker
		task  job.Task
		words string
	}{
		{off, buildTask("alice", "FROM "+testImage, nil), "does not build images"},
		{d, outside, "must be tagged under zerverless/alice/"},
		{d, buildTask("alice", "FROM "+testImage+"\nADD https://example.com/x /x", nil), "ADD from a URL"},
		{d, buildTask("alice", "FROM alpine:latest", nil), "base image alpine:latest is not allowed"},
		{d, buildTask("alice", "FROM zerverless/bob/app:1", nil), "another namespace"},
		{d, buildTask("alice", "FROM "+testImage, map[string]job.ContextFile{"../x": {Content: "a"}}), "leaves the context"},
		{d, buildTask("alice", "FROM "+testImage+"\nRUN --network=host true", nil), "RUN --network"},
	}
	for i, c := range cases {
		res, err := c.d.Run(ctx, c.task)
		if err != nil || res.Status != job.StatusFailed || !strings.Contains(res.Error, c.words) {
			t.Errorf("case %d: %s %q %v, want %q", i, res.Status, res.Error, err, c.words)
		}
	}
}

// TestBuildLayerLimit: an image over the layer limit is removed and the
// job fails.
func TestBuildLayerLimit(t *testing.T) {
	d := newTestRuntime(t, func(c *Config) { c.Build = true; c.MaxLayers = 1 })
	task := buildTask("alice", "FROM "+testImage+"\nRUN echo one > /one\nRUN echo two > /two", nil)
	res, err := d.Run(context.Background(), task)
	if err != nil || res.Status != job.StatusFailed || !strings.Contains(res.Error, "layers, over this worker's limit of 1") {
		t.Fatalf("%s %q %v", res.Status, res.Error, err)
	}
	if _, err := testEngine.ImageInspect(context.Background(), task.Spec.Docker.Build.Tag); err == nil {
		t.Fatal("the image over the limit was kept")
	}
	imgs, _ := testEngine.ImageList(context.Background(), image.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelWorkerID+"="+d.cfg.WorkerID))})
	for _, img := range imgs {
		testEngine.ImageRemove(context.Background(), img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
	}
}

// TestBuildSteps: the executor's instructions do what the Dockerfile
// reference says: stages, COPY of files and directories (relative to
// WORKDIR, --chown, .dockerignore, --from a stage by name and by index),
// ADD of a local archive, ENV, ARG (in RUN, not in the image), USER, CMD.
// After the build no container of it is left, and no image of it that is
// not a layer of the result.
func TestBuildSteps(t *testing.T) {
	ctx := context.Background()
	d := newTestRuntime(t, func(c *Config) { c.Build = true })
	removeBuiltImages(t, d)
	var pack bytes.Buffer
	tw := tar.NewWriter(&pack)
	tw.WriteHeader(&tar.Header{Name: "inner.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 6})
	tw.Write([]byte("inner\n"))
	tw.Close()
	files := map[string]job.ContextFile{
		"hello.txt":     {Content: "hello\n"},
		"dir/f":         {Content: "f\n"},
		"secret.txt":    {Content: "ignored\n"},
		".dockerignore": {Content: "secret.txt\n"},
		"pack.tar":      {Content: base64.StdEncoding.EncodeToString(pack.Bytes()), Encoding: "base64"},
	}
	df := "FROM " + testImage + " AS base\nARG SECRET\nENV KEEP=kept\nWORKDIR /app\nCOPY hello.txt .\nCOPY dir/ /d/\n" +
		"COPY --chown=65534:65534 dir /owned\nCOPY . /ctx\nADD pack.tar /unpacked/\n" +
		"RUN echo \"secret=$SECRET\" > arg && id -u > uid\n" +
		"FROM " + testImage + " AS other\nRUN echo other > /other\n" +
		"FROM base\nCOPY --from=other /other /app/\nCOPY --from=1 /other /app/other2\nUSER 65534\n" +
		`CMD ["sh", "-c", "cat hello.txt arg uid other other2 /unpacked/inner.txt; ls /d /ctx; stat -c %u /owned/f; echo env=$KEEP,${SECRET-unset}; pwd"]`
	task := buildTask("alice"+randomHex(4), df, files)
	task.Spec.Docker.Build.Only = false
	task.Spec.Docker.Build.Args = map[string]string{"SECRET": "s3"}
	res, err := d.Run(ctx, task)
	if err != nil || res.Status != job.StatusCompleted {
		t.Fatalf("%s %q %v %q %s", res.Status, res.Error, err, res.Stderr, res.Build.Log)
	}
	want := "hello\nsecret=s3\n0\nother\nother\ninner\n/ctx:\ndir\nhello.txt\npack.tar\n\n/d:\nf\n65534\nenv=kept,unset\n/app\n"
	if res.Output != want {
		t.Fatalf("output %q, want %q\n%s", res.Output, want, res.Build.Log)
	}
	info, err := testEngine.ImageInspect(ctx, task.Spec.Docker.Build.Tag)
	if err != nil {
		t.Fatal(err)
	}
	if env := strings.Join(info.Config.Env, " "); strings.Contains(env, "s3") || !strings.Contains(env, "KEEP=kept") {
		t.Fatalf("image environment %q", env)
	}
	if info.Config.User != "65534" || info.Config.WorkingDir != "/app" || info.Config.Labels[LabelDeadline] != "" {
		t.Fatalf("image config %+v", info.Config)
	}
	cs, _ := testEngine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelJobID+"="+task.JobID), filters.Arg("label", LabelRole+"=build"))})
	if len(cs) != 0 {
		t.Fatalf("%d containers of the build are left", len(cs))
	}
	dangling, _ := testEngine.ImageList(ctx, image.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelWorkerID+"="+d.cfg.WorkerID), filters.Arg("dangling", "true"))})
	if len(dangling) != 0 {
		t.Fatalf("%d dangling images of the build are left", len(dangling))
	}
}

// TestBuildFromScratch: a stage FROM scratch starts empty; COPY --from
// fills it, and the image runs what was copied.
func TestBuildFromScratch(t *testing.T) {
	d := newTestRuntime(t, func(c *Config) { c.Build = true })
	removeBuiltImages(t, d)
	df := "FROM " + testImage + " AS b\nRUN echo from-scratch > /hi\n" +
		"FROM scratch\nCOPY --from=b /hi /hi\nCOPY --from=b /bin/busybox /bin/\n" +
		`ENTRYPOINT ["/bin/busybox"]` + "\n" + `CMD ["cat", "/hi"]`
	task := buildTask("alice"+randomHex(4), df, nil)
	task.Spec.Docker.Build.Only = false
	res, err := d.Run(context.Background(), task)
	if err != nil || res.Status != job.StatusCompleted || res.Output != "from-scratch\n" {
		t.Fatalf("%s %q %v %q %q %s", res.Status, res.Error, err, res.Output, res.Stderr, res.Build.Log)
	}
}
