package docker

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/testutil"
)

// Shared by the package's tests: a real engine and an image built
// offline from Debian's busybox-static.
var (
	testEngine *client.Client
	testImage  string // "zerverless-test/busybox:<run>"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		return
	}
	if os.Getenv(serviceChildEnv) != "" {
		serviceChild()
		return
	}
	os.Exit(mainWithEngine(m))
}

func mainWithEngine(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := NewClient()
	if err != nil {
		fmt.Fprintln(os.Stderr, "docker client:", err)
		return 1
	}
	defer c.Close()
	if _, err := c.Ping(ctx); err != nil {
		// The Docker tests run in CI and never skip: no engine is a failure.
		fmt.Fprintln(os.Stderr, "docker engine did not answer; these tests need one:", err)
		return 1
	}
	testEngine = c
	testImage = "zerverless-test/busybox:run-" + randomHex(4)
	if err := importBusybox(ctx, c, testImage); err != nil {
		fmt.Fprintln(os.Stderr, "build test image:", err)
		return 1
	}
	code := m.Run()
	cleanupEngine(c)
	return code
}

func importBusybox(ctx context.Context, c *client.Client, ref string) error {
	return dockertest.ImportBusybox(ctx, c, ref)
}

// cleanupEngine removes what the tests made: containers and volumes of
// test worker ids, the test image, and the runtime's provisioning image
// when no other runtime is using it.
func cleanupEngine(c *client.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", LabelManagedBy+"="+managedBy))
	cs, _ := c.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	for _, ct := range cs {
		if strings.HasPrefix(ct.Labels[LabelWorkerID], testWorkerPrefix) {
			_ = c.ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		}
	}
	vs, _ := c.VolumeList(ctx, volume.ListOptions{Filters: f})
	for _, v := range vs.Volumes {
		if strings.HasPrefix(v.Labels[LabelWorkerID], testWorkerPrefix) {
			_ = c.VolumeRemove(ctx, v.Name, true)
		}
	}
	_, _ = c.ImageRemove(ctx, testImage, image.RemoveOptions{PruneChildren: true})
	cleanupServiceImage(ctx)
	if others, err := c.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("ancestor", provisionImage))}); err == nil && len(others) == 0 {
		_, _ = c.ImageRemove(ctx, provisionImage, image.RemoveOptions{PruneChildren: true})
	}
}

// testWorkerPrefix starts every worker id this test process uses, so that
// cleanup touches nothing else on the engine: not even the containers of
// another package's tests running at the same time ("zvtest-" is theirs
// too).
var testWorkerPrefix = "zvtest-" + randomHex(3) + "-"

// newTestRuntime returns a runtime with the defaults, a worker id of its
// own and tweak applied; it is closed, and its leftovers checked, at the
// end of the test.
func newTestRuntime(t testing.TB, tweak func(*Config)) *Docker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.WorkerID = testWorkerPrefix + randomHex(4)
	if tweak != nil {
		tweak(&cfg)
	}
	d, err := New(cfg, testEngine)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if n := leftovers(t, cfg.WorkerID); n > 0 {
			t.Errorf("%d containers or volumes of worker %s left after Close", n, cfg.WorkerID)
			_, _ = d.Sweep(ctx)
		}
	})
	return d
}

// leftovers counts the containers and volumes labeled with workerID.
func leftovers(t testing.TB, workerID string) int {
	t.Helper()
	ctx := context.Background()
	f := filters.NewArgs(filters.Arg("label", LabelWorkerID+"="+workerID))
	cs, err := testEngine.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := testEngine.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	return len(cs) + len(vs.Volumes)
}

// jobContainers lists the containers that run jobID (not its holder): the
// one created for it, or the prewarmed one it took, renamed for it.
func jobContainers(t testing.TB, jobID string) []container.Summary {
	t.Helper()
	cs, err := testEngine.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelJobID+"="+jobID), filters.Arg("label", LabelRole+"=job"))})
	if err != nil {
		t.Fatal(err)
	}
	warm, err := testEngine.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelPool), filters.Arg("name", containerName(jobID)[:len(containerName(jobID))-8]))})
	if err != nil {
		t.Fatal(err)
	}
	return append(cs, warm...)
}

// eventually polls f until it returns nil or d passes.
func eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	testutil.Eventually(t, d, f)
}

// crashChild is the body of a worker process that a test kills mid-job.
const crashChildEnv = "ZERVERLESS_DOCKER_TEST_CRASH_WORKER"

// crashChildWarmEnv names the agent of a crash child whose job runs in a
// prewarmed container.
const crashChildWarmEnv = "ZERVERLESS_DOCKER_TEST_CRASH_AGENT"

func crashChild() {
	c, err := NewClient()
	if err != nil {
		os.Exit(3)
	}
	cfg := DefaultConfig()
	cfg.WorkerID = os.Getenv(crashChildEnv)
	cfg.AgentBinary = os.Getenv(crashChildWarmEnv)
	d, err := New(cfg, c)
	if err != nil {
		os.Exit(3)
	}
	d.poolSync = cfg.AgentBinary != ""
	t := testTask("crash-"+cfg.WorkerID, os.Getenv("ZERVERLESS_DOCKER_TEST_IMAGE"), "sleep", "600")
	if s := os.Getenv("ZERVERLESS_DOCKER_TEST_TIMEOUT"); s != "" {
		t.Timeout, _ = time.ParseDuration(s)
	}
	_, _ = d.Run(context.Background(), t)
	os.Exit(4)
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var errNotYet = errors.New("not yet")

type tarW struct{ *tar.Writer }

func tarWriter(w io.Writer) tarW { return tarW{tar.NewWriter(w)} }

func (t tarW) file(name string, data []byte) error {
	if err := t.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}); err != nil {
		return err
	}
	_, err := t.Write(data)
	return err
}
