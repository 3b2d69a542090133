package docker

import (
	"context"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

	"github.com/zerverless/zerverless/internal/job"
)

// shortestPrefix returns the shortest prefix of the hex id that no other
// image on the engine shares.
func shortestPrefix(t *testing.T, id string) string {
	t.Helper()
	imgs, err := testEngine.ImageList(context.Background(), image.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	id = strings.TrimPrefix(id, "sha256:")
	for n := 1; n < len(id); n++ {
		unique := true
		for _, img := range imgs {
			other := strings.TrimPrefix(img.ID, "sha256:")
			if other != id && strings.HasPrefix(other, id[:n]) {
				unique = false
				break
			}
		}
		if unique {
			return id[:n]
		}
	}
	return id
}

// TestOtherNamespaceImageBySpelling: another namespace's image is refused
// however the job spells it — through a Docker Hub alias of the
// zerverless/ prefix, a short id prefix (with or without sha256:), as a
// FROM, or as an untagged image (a layer of someone's build) by id.
func TestOtherNamespaceImageBySpelling(t *testing.T) {
	poolModes(t, func(c *Config) { c.Build = true }, testOtherNamespaceImageBySpelling)
}

func testOtherNamespaceImageBySpelling(t *testing.T, d *Docker) {
	ctx := context.Background()
	bob := "bob" + randomHex(3)
	alice := "alice" + randomHex(3)
	bobTag := "zerverless/" + bob + "/secret:v1"
	if err := testEngine.ImageTag(ctx, testImage, bobTag); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = testEngine.ImageRemove(context.Background(), bobTag, image.RemoveOptions{}) })
	info, err := testEngine.ImageInspect(ctx, bobTag)
	if err != nil {
		t.Fatal(err)
	}

	// An untagged image, as a build's intermediate layers are.
	created, err := testEngine.ContainerCreate(ctx, &container.Config{Image: testImage, Cmd: []string{"true"},
		Labels: map[string]string{LabelWorkerID: d.cfg.WorkerID, LabelManagedBy: managedBy}}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	committed, err := testEngine.ContainerCommit(ctx, created.ID, container.CommitOptions{Changes: []string{"LABEL layer=bob"}})
	_ = testEngine.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = testEngine.ImageRemove(context.Background(), committed.ID, image.RemoveOptions{Force: true})
	})

	short := shortestPrefix(t, info.ID)
	for _, ref := range []string{
		"index.docker.io/" + bobTag,
		"docker.io/" + bobTag,
		short,
		"sha256:" + short,
		committed.ID,
		shortestPrefix(t, committed.ID),
	} {
		task := testTask(newJobID(), ref, "echo", "ran")
		task.Namespace = alice
		res := run(t, d, task)
		if res.Status != job.StatusFailed || strings.Contains(res.Output, "ran") {
			t.Errorf("docker_image %q in namespace %s: %s %q %q, want refused", ref, alice, res.Status, res.Error, res.Output)
		}
	}

	for _, from := range []string{short, "index.docker.io/" + bobTag, committed.ID} {
		task := buildTask(alice, "FROM "+from+"\nLABEL x=1", nil)
		res := run(t, d, task)
		if res.Status != job.StatusFailed {
			_, _ = testEngine.ImageRemove(ctx, task.Spec.Docker.Build.Tag, image.RemoveOptions{})
			t.Errorf("FROM %s in namespace %s: %s %q, want refused", from, alice, res.Status, res.Error)
		}
	}

	// bob's own image, and alice's images by name, still run.
	task := testTask(newJobID(), bobTag, "echo", "ran")
	task.Namespace = bob
	wantStatus(t, run(t, d, task), job.StatusCompleted)
	task = testTask(newJobID(), testImage, "echo", "ran")
	task.Namespace = alice
	wantStatus(t, run(t, d, task), job.StatusCompleted)
}

// TestBuildLayerCacheIsPerNamespace: the engine's layer cache does not
// hand one namespace the result of another's RUN step. A RUN whose output
// is not a function of its command (a random key here) would otherwise
// give alice bob's secret, or let alice plant a layer in bob's build.
func TestBuildLayerCacheIsPerNamespace(t *testing.T) {
	poolModes(t, func(c *Config) { c.Build = true }, testBuildLayerCacheIsPerNamespace)
}

func testBuildLayerCacheIsPerNamespace(t *testing.T, d *Docker) {
	// Removed after the runtime is closed, when no container uses them.
	var tags []string
	t.Cleanup(func() {
		for _, tag := range tags {
			_, _ = testEngine.ImageRemove(context.Background(), tag, image.RemoveOptions{PruneChildren: true})
		}
	})
	df := "FROM " + testImage + "\nRUN head -c 16 /dev/urandom | od -An -tx1 > /key\nCMD [\"cat\", \"/key\"]"
	keys := map[string]string{}
	for _, ns := range []string{"bob" + randomHex(3), "alice" + randomHex(3)} {
		task := buildTask(ns, df, nil)
		task.Spec.Docker.Build.Only = false
		task.Spec.Docker.Build.SourceKey = "k-" + ns
		tags = append(tags, task.Spec.Docker.Build.Tag)
		res := run(t, d, task)
		wantStatus(t, res, job.StatusCompleted)
		keys[ns] = res.Output
		for other, key := range keys {
			if other != ns && key == res.Output {
				t.Fatalf("namespace %s's build reused namespace %s's RUN layer: both read key %q", ns, other, key)
			}
		}
	}
	// The same namespace still builds from its own cache.
	var bob string
	for ns := range keys {
		if strings.HasPrefix(ns, "bob") {
			bob = ns
		}
	}
	task := buildTask(bob, df+"\nLABEL again=1", nil)
	task.Spec.Docker.Build.Only = false
	task.Spec.Docker.Build.SourceKey = "k2-" + bob
	task.Spec.Docker.Build.Tag = "zerverless/" + bob + "/t:2"
	task.Spec.Docker.Image = task.Spec.Docker.Build.Tag
	tags = append(tags, task.Spec.Docker.Build.Tag)
	res := run(t, d, task)
	wantStatus(t, res, job.StatusCompleted)
	if res.Output != keys[bob] {
		t.Errorf("a second build of namespace %s did not reuse its own RUN layer: key %q, then %q", bob, keys[bob], res.Output)
	}
}

// TestScratchVolumeReservedPaths: a scratch volume is never mounted in or
// below what the kernel, the engine or the runtime provide; the job fails
// with a refusal, before any container, rather than with an engine error.
func TestScratchVolumeReservedPaths(t *testing.T) { poolModes(t, nil, testScratchVolumeReservedPaths) }

func testScratchVolumeReservedPaths(t *testing.T, d *Docker) {
	for _, target := range []string{"/proc/sys", "/sys/fs/cgroup", "/dev/shm", "/etc/hosts", "/etc/resolv.conf", "/input/x", "/output/sub"} {
		tk := testTask(newJobID(), testImage, "echo", "ran")
		tk.Spec.Docker.Volumes = map[string]string{"v": target}
		res := run(t, d, tk)
		if res.Status != job.StatusFailed || !strings.Contains(res.Error, "reserved") {
			t.Errorf("docker_volumes at %s: %s %q %q, want refused as reserved", target, res.Status, res.Error, res.Output)
		}
		if cs := jobContainers(t, tk.JobID); len(cs) > 0 {
			t.Errorf("docker_volumes at %s: a container was created", target)
		}
	}
}
