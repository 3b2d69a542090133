package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/job"
)

// predefinedBuildArgs are the arguments the engine's builder substitutes
// without an ARG (its builtinAllowedBuildArgs).
var predefinedBuildArgs = []string{
	"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
	"NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
}

// removeBuiltImages removes every image that d's worker id built, at the
// end of the test.
func removeBuiltImages(t *testing.T, d *Docker) {
	t.Cleanup(func() {
		ctx := context.Background()
		imgs, _ := testEngine.ImageList(ctx, image.ListOptions{All: true, Filters: filters.NewArgs(
			filters.Arg("label", LabelWorkerID+"="+d.cfg.WorkerID))})
		for _, img := range imgs {
			testEngine.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
		}
	})
}

// buildAs builds dockerfile for namespace ns, tagged tag, with args.
func buildAs(t *testing.T, d *Docker, ns, tag, dockerfile string, args map[string]string) job.Result {
	t.Helper()
	task := buildTask(ns, dockerfile, nil)
	task.Spec.Docker.Build.Tag, task.Spec.Docker.Image = tag, tag
	task.Spec.Docker.Build.Args = args
	res, err := d.Run(context.Background(), task)
	if err != nil {
		t.Fatalf("%q: %v", dockerfile, err)
	}
	return res
}

// TestBuildBaseIsTheCheckedOne: a build starts from the image the policy
// checked and from nothing else. Namespace bob builds an image holding a
// secret; namespace alice tries to start from it, from its untagged
// layer, or from an image outside the allow-list, by every spelling and
// by every variable the builder would substitute on its own. Each is
// refused, or builds from the allowed image with no trace of the secret.
func TestBuildBaseIsTheCheckedOne(t *testing.T) {
	ctx := context.Background()
	run := randomHex(4)
	alice, bob := "alice"+run, "bob"+run
	disallowed := "zvtest-disallowed/img:" + run
	if err := dockertest.ImportBusybox(ctx, testEngine, disallowed); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testEngine.ImageRemove(ctx, disallowed, image.RemoveOptions{PruneChildren: true}) })
	d := newTestRuntime(t, func(c *Config) { c.Build = true; c.AllowImages = []string{testImage} })
	removeBuiltImages(t, d)

	secret := "s3cret-" + randomHex(8)
	bobTag := "zerverless/" + bob + "/secret:1"
	res := buildAs(t, d, bob, bobTag, "FROM "+testImage+"\nRUN echo "+secret+" > /secret\nCMD [\"cat\", \"/secret\"]", nil)
	if res.Status != job.StatusCompleted {
		t.Fatalf("bob's build: %s %s", res.Error, res.Build.Log)
	}
	bobImg, err := testEngine.ImageInspect(ctx, bobTag)
	if err != nil {
		t.Fatal(err)
	}
	layer := bobImg.Parent // the untagged image of the RUN step
	if layer == "" {
		t.Fatal("bob's image has no parent layer to attack")
	}
	allowedImg, err := testEngine.ImageInspect(ctx, testImage)
	if err != nil {
		t.Fatal(err)
	}
	secretLayer := bobImg.RootFS.Layers[len(bobImg.RootFS.Layers)-1]
	disImg, _ := testEngine.ImageInspect(ctx, disallowed)

	// harmless: refused, or built from the allowed image alone.
	n := 0
	harmless := func(t *testing.T, dockerfile string, args map[string]string) {
		t.Helper()
		n++
		tag := "zerverless/" + alice + "/t:" + randomHex(3)
		res := buildAs(t, d, alice, tag, dockerfile, args)
		out := res.Output + res.Error
		if res.Build != nil {
			out += res.Build.Log
		}
		if strings.Contains(out, secret) {
			t.Fatalf("%q %v printed bob's secret: %s", dockerfile, args, out)
		}
		if res.Status != job.StatusCompleted {
			t.Logf("%q %v: %s %s", dockerfile, args, res.Status, res.Error)
			return
		}
		built, err := testEngine.ImageInspect(ctx, tag)
		if err != nil {
			t.Fatal(err)
		}
		// The secret is in no file of the image.
		for _, p := range []string{"/secret", "/s", "/s/secret"} {
			if b, ok := fileOfImage(t, tag, p); ok && strings.Contains(string(b), secret) {
				t.Fatalf("%q %v: %s holds bob's secret", dockerfile, args, p)
			}
		}
		if slices.Contains(built.RootFS.Layers, secretLayer) {
			t.Fatalf("%q %v: built on bob's layer", dockerfile, args)
		}
		if disImg.RootFS.Layers[0] != allowedImg.RootFS.Layers[0] && slices.Contains(built.RootFS.Layers, disImg.RootFS.Layers[0]) {
			t.Fatalf("%q %v: built on the disallowed image", dockerfile, args)
		}
		if len(built.RootFS.Layers) < len(allowedImg.RootFS.Layers) || !slices.Equal(built.RootFS.Layers[:len(allowedImg.RootFS.Layers)], allowedImg.RootFS.Layers) {
			t.Fatalf("%q %v: not built on the allowed image", dockerfile, args)
		}
	}
	refused := func(t *testing.T, dockerfile string) {
		t.Helper()
		n++
		res := buildAs(t, d, alice, "zerverless/"+alice+"/t:1", dockerfile, nil)
		if res.Status != job.StatusFailed || res.Build != nil || strings.Contains(res.Error, secret) {
			t.Fatalf("%q: %s %q, want refused before building", dockerfile, res.Status, res.Error)
		}
	}

	t.Run("predefined args", func(t *testing.T) {
		// Each argument the builder would substitute on its own, in FROM
		// and in COPY --from, in each form of substitution, set to bob's
		// image, its layer, a disallowed image and a registry on this
		// machine: refused, or built from the allowed image alone.
		values := []string{bobTag, layer, disallowed, "127.0.0.1:5000/" + bob + "/secret:1"}
		for _, arg := range predefinedBuildArgs {
			words := []string{"${" + arg + ":-" + testImage + "}"}
			if strings.EqualFold(arg, "HTTP_PROXY") {
				// The other forms of substitution, for one argument in
				// each case: the builder treats every one alike.
				words = append(words, "${"+arg+"-"+testImage+"}", "${"+arg+":+"+testImage+"}", "$"+arg)
			}
			for i, word := range words {
				from := "FROM " + word + "\n"
				// /s* matches /sys of the allowed image, and /secret too
				// were the COPY from bob's image.
				copyFrom := "FROM " + testImage + "\nCOPY --from=" + word + " /s* /s/\n"
				if i == 0 {
					harmless(t, from, nil)
				}
				for _, value := range values {
					harmless(t, from, map[string]string{arg: value})
					harmless(t, copyFrom, map[string]string{arg: value})
					if i > 0 {
						break // the other forms: bob's image alone
					}
				}
			}
			// Declared, the argument is a build argument like any other: the
			// policy sees its value.
			res := buildAs(t, d, alice, "zerverless/"+alice+"/t:1", "ARG "+arg+"\nFROM ${"+arg+"}\n", map[string]string{arg: bobTag})
			if res.Status != job.StatusFailed || !strings.Contains(res.Error, "another namespace") {
				t.Fatalf("declared %s: %s %q", arg, res.Status, res.Error)
			}
		}
	})

	t.Run("spellings", func(t *testing.T) {
		hex := strings.TrimPrefix(bobImg.ID, "sha256:")
		lhex := strings.TrimPrefix(layer, "sha256:")
		dhex := strings.TrimPrefix(disImg.ID, "sha256:")
		refs := []string{
			bobTag, "docker.io/" + bobTag, "index.docker.io/" + bobTag, "docker.io/library/" + bobTag,
			"Zerverless/" + bob + "/secret:1", "zerverless/" + strings.ToUpper(bob) + "/secret:1",
			"zerverless/" + bob + "/secret@" + bobImg.ID,
			bobImg.ID, hex, hex[:12], hex[:6], "sha256:" + hex[:12],
			layer, lhex, lhex[:12], lhex[:5], "sha256:" + lhex[:12],
			disallowed, "docker.io/" + disallowed, disImg.ID, dhex, dhex[:12], "sha256:" + dhex[:12],
			"127.0.0.1:5000/" + testImage, "localhost:5000/" + testImage, "[::1]:5000/" + testImage,
		}
		for _, ref := range refs {
			refused(t, "FROM "+ref+"\nRUN cat /secret")
			refused(t, "FROM "+testImage+"\nCOPY --from="+ref+" /secret /s")
			refused(t, "ARG B="+ref+"\nFROM $B\nRUN cat /secret")
			refused(t, "ARG B="+ref+"\nFROM "+testImage+"\nCOPY --from=${B} /secret /s")
			refused(t, "ARG B="+ref+"\nFROM "+testImage+" AS b\nFROM ${B:-b}\n")
		}
	})

	t.Run("stages", func(t *testing.T) {
		// A stage named like an image, a stage by index and by another
		// case: each resolves to the stage, never to an image.
		harmless(t, "FROM "+testImage+" AS secret\nRUN echo stage > /stage\nFROM secret\nCOPY --from=SECRET /stage /s\nCOPY --from=0 /stage /t\nRUN cat /secret; true", map[string]string{"HTTP_PROXY": bobTag})
		harmless(t, "ARG S=base\nFROM "+testImage+" AS base\nFROM $S\nCOPY --from=${S} /bin/sh /sh", map[string]string{"HTTP_PROXY": bobTag})
	})

	t.Run("onbuild", func(t *testing.T) {
		trig := "zvtest-onbuild/img:" + run
		var layer bytes.Buffer
		tw := tarWriter(&layer)
		if err := tw.file("marker", []byte("x")); err != nil {
			t.Fatal(err)
		}
		tw.Close()
		rc, err := testEngine.ImageImport(ctx, image.ImportSource{SourceName: "-", Source: &layer}, trig,
			image.ImportOptions{Changes: []string{"ONBUILD COPY --from=" + bobTag + " /secret /secret"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := drainJSON(rc); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { testEngine.ImageRemove(ctx, trig, image.RemoveOptions{PruneChildren: true}) })
		od := newTestRuntime(t, func(c *Config) { c.Build = true; c.AllowImages = []string{testImage, trig} })
		res := buildAs(t, od, alice, "zerverless/"+alice+"/t:1", "FROM "+trig+"\n", nil)
		if res.Status != job.StatusFailed || !strings.Contains(res.Error, "ONBUILD") {
			t.Fatalf("%s %q", res.Status, res.Error)
		}
	})
	t.Logf("%d builds attempted", n)
}

// fileOfImage reads path from image ref, without running it.
func fileOfImage(t *testing.T, ref, path string) ([]byte, bool) {
	t.Helper()
	ctx := context.Background()
	c, err := testEngine.ContainerCreate(ctx, &container.Config{Image: ref, Cmd: []string{"none"}}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer testEngine.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	rc, _, err := testEngine.CopyFromContainer(ctx, c.ID, path)
	if err != nil {
		return nil, false
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
	return b, true
}

// TestBuildImageShares: one namespace's builds evict only its own built
// images, never another's, and when the worker's budget is full of other
// namespaces' images its build fails instead.
func TestBuildImageShares(t *testing.T) {
	ctx := context.Background()
	run := randomHex(4)
	alice, bob := "alice"+run, "bob"+run
	present := func(tag string) bool { _, err := testEngine.ImageInspect(ctx, tag); return err == nil }
	build := func(d *Docker, ns string, i int) (string, job.Result) {
		tag := fmt.Sprintf("zerverless/%s/app:%d", ns, i)
		return tag, buildAs(t, d, ns, tag, fmt.Sprintf("FROM %s\nLABEL n=%d", testImage, i), nil)
	}

	// Each image is about 2 MiB (busybox): a 5 MiB share holds two.
	d := newTestRuntime(t, func(c *Config) { c.Build = true; c.NamespaceImageMB = 5; c.ImageBudgetMB = 100 })
	removeBuiltImages(t, d)
	bobTag, res := build(d, bob, 0)
	if res.Status != job.StatusCompleted {
		t.Fatalf("bob: %s %s", res.Status, res.Error)
	}
	var aliceTags []string
	for i := range 4 {
		tag, res := build(d, alice, i)
		if res.Status != job.StatusCompleted {
			t.Fatalf("alice %d: %s %s", i, res.Status, res.Error)
		}
		aliceTags = append(aliceTags, tag)
	}
	if !present(bobTag) {
		t.Fatal("alice's builds evicted bob's image")
	}
	if present(aliceTags[0]) || present(aliceTags[1]) || !present(aliceTags[2]) || !present(aliceTags[3]) {
		t.Fatalf("alice's share: want her two newest images kept, got %v", []bool{present(aliceTags[0]), present(aliceTags[1]), present(aliceTags[2]), present(aliceTags[3])})
	}

	// A budget of 5 MiB with bob's two images in it: alice's build fails
	// and bob keeps both.
	d2 := newTestRuntime(t, func(c *Config) { c.Build = true; c.NamespaceImageMB = 0; c.ImageBudgetMB = 5 })
	removeBuiltImages(t, d2)
	b1, _ := build(d2, bob+"x", 1)
	b2, _ := build(d2, bob+"x", 2)
	tag, res := build(d2, alice+"x", 1)
	if res.Status != job.StatusFailed || !strings.Contains(res.Error, "image budget") || present(tag) {
		t.Fatalf("alice over the budget: %s %q, image kept %v", res.Status, res.Error, present(tag))
	}
	if !present(b1) || !present(b2) {
		t.Fatal("alice's build evicted bob's images")
	}
}

// TestBuildStepPidsLimit: a RUN fork bomb stops at the build's pids
// limit: the shell cannot fork its 500 processes.
func TestBuildStepPidsLimit(t *testing.T) {
	d := newTestRuntime(t, func(c *Config) { c.Build = true; c.BuildPids = 32 })
	removeBuiltImages(t, d)
	ns := "alice" + randomHex(4)
	res := buildAs(t, d, ns, "zerverless/"+ns+"/bomb:1",
		"FROM "+testImage+"\nRUN i=0; while [ $i -lt 500 ]; do sleep 60 & i=$((i+1)); done; echo started-$i; exit 3\n", nil)
	if res.Status != job.StatusFailed || res.Build == nil {
		t.Fatalf("%s %q", res.Status, res.Error)
	}
	if strings.Contains(res.Build.Log, "started-500") || !strings.Contains(res.Build.Log, "fork") {
		t.Fatalf("the fork bomb was not stopped by the pids limit: %s", res.Build.Log)
	}
	assertBuildGone(t, res.Build.Log)
}

// TestBuildStepDiskLimit: a RUN step writing without bound is stopped at
// the build disk limit, the error says so, the free disk of the engine's
// root never drops by more than the limit while it runs, and its
// container and layers are gone.
func TestBuildStepDiskLimit(t *testing.T) {
	d := newTestRuntime(t, func(c *Config) { c.Build = true; c.BuildDiskMB = diskLimitMB })
	removeBuiltImages(t, d)
	ns := "alice" + randomHex(4)
	tag := "zerverless/" + ns + "/fill:1"
	peakDrop := sampleDiskDrop(t)
	res := buildAs(t, d, ns, tag, "FROM "+testImage+"\nRUN echo small > /small\nRUN dd if=/dev/zero of=/fill bs=1M count=100000\n", nil)
	drop := peakDrop()
	t.Logf("%s; the engine root's free disk dropped by at most %d MiB", res.Error, drop>>20)
	if res.Status != job.StatusFailed || !strings.Contains(res.Error, fmt.Sprintf("build disk limit of %d MiB", diskLimitMB)) {
		t.Fatalf("%s %q", res.Status, res.Error)
	}
	if drop > diskLimitMB<<20 {
		t.Errorf("the engine root's free disk dropped by %d MiB during the build, more than the %d MiB limit", drop>>20, diskLimitMB)
	}
	if _, err := testEngine.ImageInspect(context.Background(), tag); err == nil {
		t.Fatal("the image was kept")
	}
	assertBuildGone(t, res.Build.Log)
}

// sampleDiskDrop samples the free disk of the engine's root directory
// every 10 ms until the returned function is called, which returns the
// largest drop from the first reading.
func sampleDiskDrop(t *testing.T) func() int64 {
	t.Helper()
	info, err := testEngine.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	free := func() int64 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(info.DockerRootDir, &st); err != nil {
			t.Error(err)
			return 0
		}
		return int64(st.Bavail) * st.Bsize
	}
	before := free()
	var peak atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if drop := before - free(); drop > peak.Load() {
				peak.Store(drop)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		return peak.Load()
	}
}

// assertBuildGone checks that the containers and the untagged layers a
// build log names are gone.
func assertBuildGone(t *testing.T, log string) {
	t.Helper()
	ctx := context.Background()
	cs := runningInRE.FindAllStringSubmatch(log, -1)
	if len(cs) == 0 {
		t.Fatalf("no step ran: %s", log)
	}
	eventually(t, 30*time.Second, func() error {
		for _, m := range cs {
			if _, err := testEngine.ContainerInspect(ctx, m[1]); err == nil {
				return fmt.Errorf("build container %s is still there", m[1])
			}
		}
		for _, m := range layerRE.FindAllStringSubmatch(log, -1) {
			if info, err := testEngine.ImageInspect(ctx, m[1]); err == nil && len(info.RepoTags) == 0 {
				return fmt.Errorf("build layer %s is still there", m[1])
			}
		}
		return nil
	})
}

// TestBuildLimitsConfig: the build limits are validated like every other
// setting.
func TestBuildLimitsConfig(t *testing.T) {
	for name, tweak := range map[string]func(*Config){
		"pids 0":              func(c *Config) { c.BuildPids = 0 },
		"disk negative":       func(c *Config) { c.BuildDiskMB = -1 },
		"namespace share < 0": func(c *Config) { c.NamespaceImageMB = -1 },
	} {
		cfg := DefaultConfig()
		cfg.Build = true
		tweak(&cfg)
		if _, err := New(cfg, testEngine); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if d := DefaultConfig(); d.BuildPids != 256 || d.BuildDiskMB != 1024 || d.NamespaceImageMB != 2048 {
		t.Fatalf("defaults changed: %d %d %d (update the docs)", d.BuildPids, d.BuildDiskMB, d.NamespaceImageMB)
	}
}

// TestBuildStepCapabilities: a RUN step as root has exactly BuildCaps,
// bounded as well as effective, nothing inherited or ambient, no new
// privileges; it cannot make a device node or open a raw socket. The step
// writes what it saw into the image, and a job of that image reads it.
func TestBuildStepCapabilities(t *testing.T) {
	d := newTestRuntime(t, func(c *Config) { c.Build = true })
	removeBuiltImages(t, d)
	ns := "alice" + randomHex(4)
	task := buildTask(ns, "FROM "+testImage+"\n"+
		"RUN grep -E '^(Cap|NoNewPrivs)' /proc/self/status > /caps\n"+
		"RUN (mknod /dev/zv-null c 1 3 && echo mknod=yes || echo mknod=no) > /mknod 2>/dev/null\n"+
		"RUN (ping -c 1 -W 1 127.0.0.1 >/dev/null 2>&1 && echo raw=yes || echo raw=no) > /raw\n", nil)
	task.Spec.Docker.Build.Only = false
	task.Spec.Docker.Command = []string{"cat", "/caps", "/mknod", "/raw"}
	res, err := d.Run(context.Background(), task)
	if err != nil || res.Status != job.StatusCompleted {
		t.Fatalf("%s %q %v %q %q %s", res.Status, res.Error, err, res.Output, res.Stderr, res.Build.Log)
	}
	var mask uint64
	for _, c := range BuildCaps() {
		bit, ok := capBits[c]
		if !ok {
			t.Fatalf("unknown capability %s", c)
		}
		mask |= 1 << bit
	}
	want := fmt.Sprintf("CapInh:\t%016x\nCapPrm:\t%016x\nCapEff:\t%016x\nCapBnd:\t%016x\nCapAmb:\t%016x\nNoNewPrivs:\t1\nmknod=no\nraw=no\n",
		0, mask, mask, mask, 0)
	if res.Output != want {
		t.Fatalf("a RUN step saw\n%s\nwant\n%s", res.Output, want)
	}
	if want := []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID", "KILL"}; !slices.Equal(BuildCaps(), want) {
		t.Fatalf("BuildCaps is %v; update docs/docker.md and this test", BuildCaps())
	}
}

// capBits are the bits of the capabilities in /proc/<pid>/status.
var capBits = map[string]int{
	"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
	"SETGID": 6, "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_RAW": 13,
	"SYS_CHROOT": 18, "MKNOD": 27, "AUDIT_WRITE": 29, "SETFCAP": 31,
}

// TestBuildStepProfile: a running RUN step's container, as the engine
// has it: all capabilities dropped but BuildCaps, no new privileges, the
// build's limits, inside the anchor's cgroup, with the build's deadline.
// Canceled, the build leaves neither it nor the anchor.
func TestBuildStepProfile(t *testing.T) {
	d := newTestRuntime(t, func(c *Config) { c.Build = true })
	removeBuiltImages(t, d)
	ns := "alice" + randomHex(4)
	task := buildTask(ns, "FROM "+testImage+"\nRUN sleep 600\n", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan job.Result, 1)
	go func() { res, _ := d.Run(ctx, task); done <- res }()
	byJob := func(role string) filters.Args {
		return filters.NewArgs(filters.Arg("label", LabelJobID+"="+task.JobID), filters.Arg("label", LabelRole+"="+role))
	}
	var step container.InspectResponse
	eventually(t, time.Minute, func() error {
		cs, err := testEngine.ContainerList(context.Background(), container.ListOptions{Filters: byJob("build")})
		if err != nil || len(cs) == 0 {
			return fmt.Errorf("no running step yet (%v)", err)
		}
		step, err = testEngine.ContainerInspect(context.Background(), cs[0].ID)
		return err
	})
	anchors, _ := testEngine.ContainerList(context.Background(), container.ListOptions{Filters: byJob("build-anchor")})
	if len(anchors) != 1 {
		t.Fatalf("%d anchors", len(anchors))
	}
	h := step.HostConfig
	var want []string
	for _, c := range BuildCaps() {
		want = append(want, "CAP_"+c)
	}
	slices.Sort(want)
	var added []string // the engine may or may not spell the prefix
	for _, c := range h.CapAdd {
		added = append(added, "CAP_"+strings.TrimPrefix(c, "CAP_"))
	}
	slices.Sort(added)
	if !slices.Equal(h.CapDrop, []string{"ALL"}) || !slices.Equal(added, want) || !slices.Contains(h.SecurityOpt, "no-new-privileges") {
		t.Errorf("capabilities: drop %v add %v security %v", h.CapDrop, h.CapAdd, h.SecurityOpt)
	}
	if h.PidsLimit == nil || *h.PidsLimit != d.cfg.BuildPids || h.Memory != int64(d.cfg.BuildMemoryMB)<<20 || h.MemorySwap != h.Memory || h.CPUQuota == 0 {
		t.Errorf("limits: pids %v memory %d swap %d cpu quota %d", h.PidsLimit, h.Memory, h.MemorySwap, h.CPUQuota)
	}
	if h.CgroupParent != anchorCgroupParent+"/"+anchors[0].ID || string(h.NetworkMode) != "none" {
		t.Errorf("cgroup parent %q network %q", h.CgroupParent, h.NetworkMode)
	}
	if step.Config.Labels[LabelDeadline] == "" {
		t.Errorf("the step carries no deadline: %v", step.Config.Labels)
	}
	cancel()
	if res := <-done; res.Status == job.StatusCompleted {
		t.Fatalf("a canceled build completed")
	}
	cs, _ := testEngine.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelJobID+"="+task.JobID))})
	if len(cs) != 0 {
		t.Fatalf("%d containers of the canceled build are left", len(cs))
	}
}
