package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log"
	"net/http/httptest"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/job"
)

// startRegistry serves an in-process registry on 127.0.0.1, which the
// engine treats as insecure (plain HTTP) by default.
func startRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushBusybox pushes the busybox image to ref, with an extra layer of
// extraBytes random bytes when extraBytes > 0, and returns its digest.
// Every pushed image's refs are removed from the engine after the test.
func pushBusybox(t *testing.T, ref string, extraBytes int) string {
	t.Helper()
	rootfs, err := dockertest.BusyboxRootfs()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(rootfs)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	if extraBytes > 0 {
		junk := make([]byte, extraBytes)
		_, _ = rand.Read(junk)
		var b bytes.Buffer
		if err := tarFile(&b, "junk", junk); err != nil {
			t.Fatal(err)
		}
		extra, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b.Bytes())), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, extra); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goruntime.GOARCH
	cf.Config = v1.Config{Env: []string{"PATH=/bin"}, Cmd: []string{"sh"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	dg, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	repo := r.Context().Name()
	t.Cleanup(func() {
		for _, ref := range []string{ref, repo + "@" + dg.String()} {
			_, _ = testEngine.ImageRemove(context.Background(), ref, image.RemoveOptions{PruneChildren: true})
		}
	})
	return dg.String()
}

func tarFile(w io.Writer, name string, data []byte) error {
	tw := tarWriter(w)
	if err := tw.file(name, data); err != nil {
		return err
	}
	return tw.Close()
}

func present(t *testing.T, ref string) bool {
	t.Helper()
	_, err := testEngine.ImageInspect(context.Background(), ref)
	return err == nil
}

func TestPullByTagAndDigest(t *testing.T) {
	host := startRegistry(t)
	tagRef := host + "/zerverless/busybox:v1"
	dg := pushBusybox(t, tagRef, 0)
	pushBusybox(t, host+"/zerverless/other:v1", 0)
	// Created after the pushes, so that it is closed (its containers
	// removed) before the pushed images are.
	d := newTestRuntime(t, func(c *Config) { c.AllowImages = []string{host + "/zerverless/*"} })
	if present(t, tagRef) {
		t.Fatal("image present before the pull")
	}
	res := run(t, d, testTask(newJobID(), tagRef, "echo", "pulled"))
	wantStatus(t, res, job.StatusCompleted)
	if res.Output != "pulled\n" {
		t.Errorf("output %q", res.Output)
	}

	digestRef := host + "/zerverless/other@" + dg
	res = run(t, d, testTask(newJobID(), digestRef, "echo", "pinned"))
	wantStatus(t, res, job.StatusCompleted)
	if got := d.PulledImages(); len(got) != 2 {
		t.Errorf("pulled images %v, want both", got)
	}

	// A digest that the registry does not have is refused clearly.
	bad := host + "/zerverless/other@sha256:" + strings.Repeat("0", 64)
	res = run(t, d, testTask(newJobID(), bad, "true"))
	wantStatus(t, res, job.StatusFailed)
	t.Logf("unknown digest: %s", res.Error)
}

func TestOversizeImageRefusedBeforePull(t *testing.T) {
	host := startRegistry(t)
	ref := host + "/zerverless/big:v1"
	pushBusybox(t, ref, 3<<20)
	d := newTestRuntime(t, func(c *Config) { c.MaxImageMB = 2; c.AllowImages = []string{host + "/*"} })
	jobID := newJobID()
	res := run(t, d, testTask(jobID, ref, "true"))
	wantStatus(t, res, job.StatusFailed)
	if !strings.Contains(res.Error, "over this worker's limit of 2 MiB") {
		t.Errorf("error %q", res.Error)
	}
	if present(t, ref) {
		t.Error("the oversize image was pulled")
	}
	if n := len(jobContainers(t, jobID)); n != 0 {
		t.Errorf("%d containers created", n)
	}
}

func TestImagePolicyRefusesBeforePull(t *testing.T) {
	host := startRegistry(t)
	ref := host + "/elsewhere/busybox:v1"
	pushBusybox(t, ref, 0)
	d := newTestRuntime(t, func(c *Config) { c.AllowImages = []string{host + "/zerverless/*"} })
	res := run(t, d, testTask(newJobID(), ref, "true"))
	wantStatus(t, res, job.StatusFailed)
	if present(t, ref) {
		t.Error("an image outside the policy was pulled")
	}
	d2 := newTestRuntime(t, func(c *Config) { c.Pull = false })
	res = run(t, d2, testTask(newJobID(), ref, "true"))
	wantStatus(t, res, job.StatusFailed)
	if present(t, ref) {
		t.Error("pulled with pulls off")
	}
}

// The disk budget evicts the least recently used image this runtime
// pulled, and never an image it did not pull.
func TestPrepullAndEviction(t *testing.T) {
	host := startRegistry(t)
	a, b := host+"/zerverless/a:v1", host+"/zerverless/b:v1"
	pushBusybox(t, a, 0)
	pushBusybox(t, b, 1000)
	d := newTestRuntime(t, func(c *Config) {
		c.AllowImages = []string{host + "/*"}
		c.Prepull = []string{a}
		c.ImageBudgetMB = 3 // one busybox image (about 2 MB) fits, two do not
	})
	if err := d.Prepull(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !present(t, a) {
		t.Fatal("prepull did not pull")
	}
	res := run(t, d, testTask(newJobID(), b, "true"))
	wantStatus(t, res, job.StatusCompleted)
	if present(t, a) {
		t.Error("the least recently used pulled image was kept over the budget")
	}
	if !present(t, b) || !present(t, testImage) {
		t.Error("an image in use or not pulled by the runtime was removed")
	}
	if got := d.PulledImages(); len(got) != 1 || got[0] != b {
		t.Errorf("pulled images %v", got)
	}
}

// TestLocalRegistryNeedsExplicitAllow: with the default allow-any policy, a
// job cannot make the worker pull from a registry on its own machine or
// network; naming that registry in the allow-list permits it.
func TestLocalRegistryNeedsExplicitAllow(t *testing.T) {
	host := startRegistry(t)
	ref := host + "/zerverless/local:v1"
	pushBusybox(t, ref, 0)
	d := newTestRuntime(t, nil)
	res := run(t, d, testTask(newJobID(), ref, "true"))
	wantStatus(t, res, job.StatusFailed)
	if !strings.Contains(res.Error, "own machine or network") {
		t.Fatalf("error %q", res.Error)
	}
	if present(t, ref) {
		t.Fatal("pulled from a local registry without the owner's leave")
	}
	for _, h := range []string{"localhost:5000", "10.1.2.3", "192.168.0.1:80", "[::1]:5000", "169.254.169.254", "100.64.1.1"} {
		if !localRegistry(context.Background(), h) {
			t.Errorf("%s is not seen as local", h)
		}
	}
	for _, h := range []string{"8.8.8.8", "registry.invalid"} {
		if localRegistry(context.Background(), h) {
			t.Errorf("%s is seen as local", h)
		}
	}
	allowed := newTestRuntime(t, func(c *Config) { c.AllowImages = []string{host + "/*"} })
	wantStatus(t, run(t, allowed, testTask(newJobID(), ref, "true")), job.StatusCompleted)
}
