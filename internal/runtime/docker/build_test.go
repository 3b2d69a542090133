package docker

import (
	"context"
	"strings"
	"testing"
	"time"

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
