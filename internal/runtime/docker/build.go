package docker

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/errdefs"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/zerverless/zerverless/internal/buildctx"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime"
)

// Builds.
//
// A task whose spec carries a Build is built before it runs. In order:
//
//  1. The worker's policy: Config.Build must be on; the Dockerfile is
//     checked again with buildctx.CheckDockerfile against Config.AllowImages
//     and the task's namespace; the tag must lie under
//     zerverless/<namespace>/.
//  2. The context (inline files, or fetched through Config.Contexts for an
//     uploaded one) is validated again while it streams and normalized
//     into a temporary file.
//  3. The base images are made present under the same policy as a job's
//     image, and each is verified by the image the engine resolved it to
//     (checkBase): a name the policy allows, no ONBUILD triggers. The
//     Dockerfile that is built is pinned (buildctx.Dockerfile.Pin): every
//     FROM and COPY --from names the verified image id or a stage, so
//     nothing is substituted in them.
//  4. The cache key hashes the namespace, the Dockerfile, the context's
//     digest, the build arguments, the base image ids, the build network
//     and the build limits. An image this worker built with that key
//     (label LabelBuildKey) is tagged and used: no build.
//  5. Otherwise the runtime builds it step by step with the engine's
//     container primitives (executor.go): every RUN in a container with
//     only BuildCaps, no new privileges, network Config.BuildNetwork
//     ("none" by default), memory and CPU limits, inside the cgroup of an
//     anchor container that bounds the pids, memory and CPU of all steps
//     together, with their disk writes measured (buildlimits.go), under
//     the build timeout. The steps' output is the build log; a failed step
//     is the job's error. Every step's container is removed, and after a
//     failed or stopped build every image it committed.
//  6. The image's size and layer count are checked (the image is removed
//     when over), and it joins the images this runtime manages, within
//     its namespace's share and the disk budget (images.go).

// Labels of built images.
const (
	// LabelBuildKey is the cache key of a built image.
	LabelBuildKey = "io.zerverless.build-key"
	// LabelSourceKey is the job.BuildSpec.SourceKey the image was built for.
	LabelSourceKey = "io.zerverless.source-key"
	// LabelNamespace is the namespace that built the image.
	LabelNamespace = "io.zerverless.namespace"
)

// ContextFetcher opens the uploaded build context of a task. The worker
// implements it over HTTP with the task's lease; the stream is validated
// again as it is read.
type ContextFetcher interface {
	FetchBuildContext(ctx context.Context, t *job.Task) (io.ReadCloser, error)
}

// Run runs t: for a build task, the build first (its own timeout), then,
// unless build_only, the container under the strict profile with the run
// timeout. See runContainer for the run.
func (d *Docker) Run(ctx context.Context, t job.Task) (job.Result, error) {
	ds := t.Spec.Docker
	if ds == nil || ds.Build == nil {
		return d.runContainer(ctx, t)
	}
	began := time.Now()
	br, res := d.build(ctx, &t)
	if res != nil {
		res.Build = br
		res.DurationMS = time.Since(began).Milliseconds()
		if res.ExitCode == 0 && res.Status != job.StatusCompleted {
			res.ExitCode = -1
		}
		return *res, nil
	}
	if ds.Build.Only {
		return job.Result{Status: job.StatusCompleted, Build: br, DurationMS: time.Since(began).Milliseconds(),
			Output: fmt.Sprintf("built %s (%s)\n", br.Image, br.ImageID)}, nil
	}
	t.Timeout = t.Spec.Timeout()
	release := d.images.use(br.Image)
	defer release()
	out, err := d.runContainer(ctx, t)
	out.Build = br
	out.DurationMS += br.DurationMS // the job's time on the worker: build and run
	return out, err
}

// build builds t's image. It returns the build's report and, when the
// task ends here (refused, failed, timed out, canceled), its result.
func (d *Docker) build(ctx context.Context, t *job.Task) (*job.BuildResult, *job.Result) {
	b := t.Spec.Docker.Build
	fail := func(format string, args ...any) *job.Result {
		return &job.Result{Status: job.StatusFailed, ExitCode: -1, Error: fmt.Sprintf(format, args...)}
	}
	if !d.cfg.Build {
		return nil, fail("this worker does not build images")
	}
	if want := job.BuiltImagePrefix + t.Namespace + "/"; !strings.HasPrefix(b.Tag, want) || job.ValidateImageRef(b.Tag) != nil {
		return nil, fail("image_tag: a build of namespace %s must be tagged under %s", t.Namespace, want)
	}
	timeout := b.Timeout()
	if d.cfg.BuildTimeout > 0 && timeout > d.cfg.BuildTimeout {
		timeout = d.cfg.BuildTimeout
	}
	bctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	interrupted := func() *job.Result {
		st := runtime.Interrupted(bctx)
		msg := "canceled"
		if st == job.StatusTimeout {
			msg = fmt.Sprintf("build timed out after %s", timeout)
		}
		return &job.Result{Status: st, Error: msg, ExitCode: -1}
	}

	if err := d.checkEgress(t.Spec.EgressOf()); err != nil {
		return nil, fail("%v", err)
	}
	df, err := buildctx.CheckDockerfile(b.Dockerfile, buildctx.Policy{
		AllowImages: d.cfg.AllowImages, Namespace: t.Namespace, BuildArgs: b.Args,
		MaxInstructions: d.cfg.MaxInstructions,
	})
	if err != nil {
		return nil, fail("%v", err)
	}
	ctxFile, info, err := d.buildContext(bctx, t)
	if err != nil {
		if runtime.Interrupted(bctx) != "" {
			return nil, interrupted()
		}
		var je *job.Error
		if errors.As(err, &je) {
			return nil, fail("%v", err)
		}
		return nil, fail("build context: %v", err)
	}
	defer os.Remove(ctxFile.Name())
	defer ctxFile.Close()

	baseIDs := make([]string, 0, len(df.BaseImages))
	pins := make(map[string]string, len(df.BaseImages))
	for _, ref := range df.BaseImages {
		id, release, err := d.baseImage(bctx, t.Namespace, ref)
		if err != nil {
			if runtime.Interrupted(bctx) != "" {
				return nil, interrupted()
			}
			var se *specError
			if errors.As(err, &se) {
				return nil, fail("base image: %s", se.msg)
			}
			return nil, fail("base image %s: %v", ref, err)
		}
		defer release()
		baseIDs = append(baseIDs, id)
		pins[ref] = id
	}
	// What the engine builds from is exactly what was checked: every FROM
	// and COPY --from by the id just verified, nothing left to substitute.
	pinned, err := df.Pin(pins)
	if err != nil {
		return nil, fail("dockerfile: %v", err)
	}
	key := d.buildKey(t.Namespace, b, info.SHA256, baseIDs, t.Spec.EgressOf())
	br := &job.BuildResult{Image: b.Tag, CacheKey: key}
	began := time.Now()

	if id, ok := d.cachedBuild(bctx, key, t.Namespace); ok {
		if err := d.tagBuilt(bctx, id, b.Tag); err == nil {
			br.CacheHit, br.ImageID = true, id
			br.Log = "cache hit: image " + shortID(id) + " was built from the same inputs\n"
			d.fillImageInfo(bctx, br)
			d.rememberBuilt(b.Tag, b.SourceKey, br.SizeBytes)
			br.DurationMS = time.Since(began).Milliseconds()
			if why := d.admitBuilt(bctx, b.Tag, t.Namespace); why != "" {
				d.removeImage(b.Tag)
				return br, fail("%s; the image was removed", why)
			}
			return br, nil
		}
	}

	res := d.engineBuild(bctx, t, key, pinned, ctxFile, info.SHA256, br)
	br.DurationMS = time.Since(began).Milliseconds()
	if res != nil {
		if runtime.Interrupted(bctx) != "" {
			r := interrupted()
			return br, r
		}
		return br, res
	}
	info2, err := d.engine.ImageInspect(bctx, br.ImageID)
	if err != nil {
		return br, fail("inspect built image: %v", err)
	}
	br.SizeBytes, br.Layers = info2.Size, len(info2.RootFS.Layers)
	over := ""
	switch {
	case d.cfg.MaxBuiltImageMB > 0 && br.SizeBytes > int64(d.cfg.MaxBuiltImageMB)<<20:
		over = fmt.Sprintf("the built image is %.1f MiB, over this worker's limit of %d MiB", float64(br.SizeBytes)/(1<<20), d.cfg.MaxBuiltImageMB)
	case d.cfg.MaxLayers > 0 && br.Layers > d.cfg.MaxLayers:
		over = fmt.Sprintf("the built image has %d layers, over this worker's limit of %d", br.Layers, d.cfg.MaxLayers)
	}
	if over != "" {
		d.removeImage(b.Tag)
		return br, fail("%s; it was removed", over)
	}
	d.rememberBuilt(b.Tag, b.SourceKey, br.SizeBytes)
	if why := d.admitBuilt(bctx, b.Tag, t.Namespace); why != "" {
		d.removeImage(b.Tag)
		return br, fail("%s; the image was removed", why)
	}
	return br, nil
}

// buildContext writes t's context, validated and normalized, to a
// temporary file positioned at its start. The caller removes it.
func (d *Docker) buildContext(ctx context.Context, t *job.Task) (*os.File, buildctx.Info, error) {
	b := t.Spec.Docker.Build
	f, err := os.CreateTemp("", "zerverless-context-*.tar")
	if err != nil {
		return nil, buildctx.Info{}, err
	}
	fail := func(err error) (*os.File, buildctx.Info, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, buildctx.Info{}, err
	}
	var info buildctx.Info
	switch {
	case b.ContextID != "":
		if d.cfg.Contexts == nil {
			return fail(errors.New("this worker cannot fetch uploaded build contexts"))
		}
		rc, err := d.cfg.Contexts.FetchBuildContext(ctx, t)
		if err != nil {
			return fail(err)
		}
		info, err = buildctx.FromTar(rc, d.cfg.ContextLimits, f)
		rc.Close()
		if err != nil {
			return fail(err)
		}
		if info.SHA256 != b.ContextID {
			return fail(fmt.Errorf("the fetched context's digest %s is not %s", info.SHA256, b.ContextID))
		}
	default:
		info, err = buildctx.FromFiles(b.Context, "", d.cfg.ContextLimits, f)
		if err != nil {
			return fail(err)
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	return f, info, nil
}

// baseImage makes a base image present, verifies the image the engine
// resolves ref to, and returns its id; release ends its use.
func (d *Docker) baseImage(ctx context.Context, namespace, ref string) (string, func(), error) {
	if err := d.checkImageNamespace(ctx, "FROM", ref, namespace); err != nil {
		return "", nil, err
	}
	release, err := d.ensureImage(ctx, ref)
	if err != nil {
		return "", nil, err
	}
	info, err := d.engine.ImageInspect(ctx, ref)
	if err == nil {
		err = d.checkBase(info, namespace, ref)
	}
	if err != nil {
		release()
		return "", nil, err
	}
	return info.ID, release, nil
}

// checkBase verifies, by the image itself rather than by the name it was
// asked for, that a build may start from it: one of its names must be one
// the policy allows (a tag or digest outside zerverless/ that
// Config.AllowImages admits, or a tag of the build's own namespace), so
// that no spelling, id prefix or alias reaches an untagged layer, another
// namespace's image or an image outside the allow-list; and it must carry
// no ONBUILD triggers, which the builder would run as if the Dockerfile
// had them.
func (d *Docker) checkBase(info image.InspectResponse, namespace, ref string) error {
	if !imageIDFullRE.MatchString(info.ID) {
		return fmt.Errorf("the engine gave %s the id %q", ref, info.ID)
	}
	if info.Config != nil && len(info.Config.OnBuild) > 0 {
		return refuse("%s has ONBUILD triggers; build from an image without them", ref)
	}
	for _, name := range slices.Concat(info.RepoTags, info.RepoDigests) {
		if ns, built := job.ImageNamespace(name); built {
			if ns == namespace {
				return nil
			}
			continue
		}
		if len(d.cfg.AllowImages) == 0 || job.MatchImage(d.cfg.AllowImages, name) {
			return nil
		}
	}
	if len(info.RepoTags) == 0 && len(info.RepoDigests) == 0 {
		return refuse("%s is an untagged image; name images by tag", ref)
	}
	return refuse("%s is %s, which this build may not use", ref, shortID(info.ID))
}

var imageIDFullRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// buildKey hashes everything that decides what a build produces.
func (d *Docker) buildKey(namespace string, b *job.BuildSpec, contextDigest string, baseIDs, egress []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "zerverless build v2\nns %q\nnetwork %q\nlimits %d %g %d %d\ncontext %s\ndockerfile %q\n",
		namespace, d.cfg.BuildNetwork, d.cfg.BuildMemoryMB, d.cfg.BuildCPUs, d.cfg.BuildPids, d.cfg.BuildDiskMB, contextDigest, b.Dockerfile)
	for _, k := range sortedKeys(b.Args) {
		fmt.Fprintf(h, "arg %q %q\n", k, b.Args[k])
	}
	for _, id := range baseIDs {
		fmt.Fprintf(h, "base %s\n", id)
	}
	for _, e := range egress {
		fmt.Fprintf(h, "egress %q\n", e)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// cachedBuild finds an image this worker built with key.
func (d *Docker) cachedBuild(ctx context.Context, key, namespace string) (string, bool) {
	f := d.ownFilter()
	f.Add("label", LabelBuildKey+"="+key)
	f.Add("label", LabelNamespace+"="+namespace)
	imgs, err := d.engine.ImageList(ctx, image.ListOptions{Filters: f})
	if err != nil || len(imgs) == 0 {
		return "", false
	}
	return imgs[0].ID, true
}

// tagBuilt points tag at image id.
func (d *Docker) tagBuilt(ctx context.Context, id, tag string) error {
	if info, err := d.engine.ImageInspect(ctx, tag); err == nil && info.ID == id {
		return nil
	}
	return d.engine.ImageTag(ctx, id, tag)
}

func (d *Docker) fillImageInfo(ctx context.Context, br *job.BuildResult) {
	if info, err := d.engine.ImageInspect(ctx, br.ImageID); err == nil {
		br.SizeBytes, br.Layers = info.Size, len(info.RootFS.Layers)
	}
}

var (
	runningInRE = regexp.MustCompile(`(?m)^ ---> Running in ([0-9a-f]{12,64})\s*$`)
	layerRE     = regexp.MustCompile(`(?m)^ ---> ([0-9a-f]{12,64})\s*$`)
)

// engineBuild runs the build's steps (executor.go) under the anchor's
// limits and the disk watch, and writes its log. It returns nil when the
// image was built (br.ImageID set, tagged b.Tag), else the failed result;
// whatever failed, the steps' containers and the images they committed
// are gone.
func (d *Docker) engineBuild(ctx context.Context, t *job.Task, key, dockerfile string, ctxFile *os.File, contextDigest string, br *job.BuildResult) *job.Result {
	b := t.Spec.Docker.Build
	failed := func(msg string) *job.Result { return &job.Result{Status: job.StatusFailed, ExitCode: -1, Error: msg} }
	cgroup, removeAnchor, err := d.startAnchor(ctx, t.JobID)
	if err != nil {
		var se *specError
		if errors.As(err, &se) {
			return failed(se.msg)
		}
		return failed(fmt.Sprintf("build: %v", err))
	}
	defer removeAnchor()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(d.cfg.MaxRunTime)
	}
	ctx, stopBuild := context.WithCancel(ctx)
	defer stopBuild()
	logBuf := runtime.Output(ctx, job.LogStderr, d.cfg.BuildLogBytes)
	var egressNotes string
	defer func() { br.Log = appendLines(logBuf.String(), egressNotes) }()
	x := &executor{d: d, t: t, cgroup: cgroup, deadline: deadline, disk: d.newDiskWatch(ctx, stopBuild),
		log: logBuf, ctxFile: ctxFile, contextDigest: contextDigest}
	if x.egress, err = d.startEgress(ctx, t.JobID, t.Spec.EgressOf(), "build-relay", deadline); err != nil {
		var se *specError
		if errors.As(err, &se) {
			return failed(se.msg)
		}
		return failed(fmt.Sprintf("build: %v", err))
	}
	defer func() { egressNotes = x.endEgress(br) }()
	if x.ignore, err = contextIgnore(ctxFile); err != nil {
		return failed(fmt.Sprintf("build context: .dockerignore: %v", err))
	}
	labels := d.labels("build", t.JobID)
	labels[LabelBuildKey] = key
	labels[LabelSourceKey] = b.SourceKey
	labels[LabelNamespace] = t.Namespace
	id, err := x.execute(ctx, dockerfile, labels)
	if over := x.disk.result(); over != "" {
		x.cleanup("")
		logBuf.Write([]byte(over + "\n"))
		return failed(over)
	}
	if err == nil && ctx.Err() == nil {
		err = d.engine.ImageTag(ctx, id, b.Tag)
	}
	if err != nil || ctx.Err() != nil {
		x.cleanup("")
		if ctx.Err() != nil {
			return &job.Result{Status: job.StatusFailed}
		}
		logBuf.Write([]byte(err.Error() + "\n"))
		var se *stepError
		if errors.As(err, &se) {
			return failed("build failed: " + se.msg + x.egressCut())
		}
		return failed(fmt.Sprintf("build: %v", err))
	}
	x.cleanup(id)
	fmt.Fprintf(logBuf, "Successfully built %s\nSuccessfully tagged %s\n", shortID(id), b.Tag)
	br.ImageID = id
	return nil
}

// contextIgnore reads the .dockerignore of a normalized context, if it
// has one.
func contextIgnore(ctxFile *os.File) (*patternmatcher.PatternMatcher, error) {
	if _, err := ctxFile.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	tr := tar.NewReader(ctxFile)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Name == ".dockerignore" && h.Typeflag == tar.TypeReg {
			patterns, err := ignorefile.ReadAll(io.LimitReader(tr, 1<<20))
			if err != nil {
				return nil, err
			}
			return patternmatcher.New(patterns)
		}
	}
}

// removeImage removes a tag this runtime built.
func (d *Docker) removeImage(ref string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.engine.ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true}); err != nil && !errdefs.IsNotFound(err) {
		d.cfg.Logger.Warn("docker image removal failed", "worker_id", d.cfg.WorkerID, "image", ref, "err", err)
	}
}

// rememberBuilt records a built image in the cache of managed images.
func (d *Docker) rememberBuilt(tag, sourceKey string, size int64) {
	d.images.mu.Lock()
	defer d.images.mu.Unlock()
	ci := d.images.pulled[tag]
	if ci == nil {
		ci = &cachedImage{ref: tag}
		d.images.pulled[tag] = ci
	}
	ci.size, ci.lastUsed, ci.built, ci.sourceKey = size, time.Now(), true, sourceKey
	ci.namespace, _ = job.ImageNamespace(tag)
}

// LoadBuilt adopts the images this worker id built in an earlier run
// (found by their labels), so that they count in the disk budget, serve as
// cache and are advertised. Call it at start, after Check.
func (d *Docker) LoadBuilt(ctx context.Context) error {
	f := d.ownFilter()
	f.Add("label", LabelRole+"=build")
	imgs, err := d.engine.ImageList(ctx, image.ListOptions{Filters: f})
	if err != nil {
		return fmt.Errorf("list built images: %w", err)
	}
	for _, img := range imgs {
		for _, tag := range img.RepoTags {
			if _, built := job.ImageNamespace(tag); built {
				d.rememberBuilt(tag, img.Labels[LabelSourceKey], img.Size)
			}
		}
	}
	return nil
}

// BuildCache returns the source keys of the builds this runtime holds and
// the tags of its built images, most recently used first, at most max of
// each.
func (d *Docker) BuildCache(max int) (keys, tags []string) {
	d.images.mu.Lock()
	defer d.images.mu.Unlock()
	var cs []*cachedImage
	for _, ci := range d.images.pulled {
		if ci.built {
			cs = append(cs, ci)
		}
	}
	slices.SortFunc(cs, func(a, b *cachedImage) int { return b.lastUsed.Compare(a.lastUsed) })
	for _, ci := range cs {
		if len(tags) < max {
			tags = append(tags, ci.ref)
		}
		if ci.sourceKey != "" && len(keys) < max && !slices.Contains(keys, ci.sourceKey) {
			keys = append(keys, ci.sourceKey)
		}
	}
	return keys, tags
}

// checkImageNamespace refuses an image that belongs to another namespace:
// a zerverless/<ns>/ reference of another ns, or a reference the engine
// may resolve as an image id (any hex prefix of one, with or without
// "sha256:") whose image carries such a tag or no tag at all — an
// untagged image may be a layer of another namespace's build. field names
// the job's field in the refusal.
func (d *Docker) checkImageNamespace(ctx context.Context, field, ref, namespace string) error {
	if ns, built := job.ImageNamespace(ref); built {
		if ns != namespace {
			return refuse("%s: %s belongs to another namespace", field, ref)
		}
		return nil
	}
	if !imageIDRE.MatchString(ref) {
		return nil
	}
	info, err := d.engine.ImageInspect(ctx, ref)
	if err != nil {
		return nil // the run reports a missing image
	}
	if len(info.RepoTags) == 0 {
		return refuse("%s: %s is an untagged image; name images by tag", field, ref)
	}
	for _, tag := range info.RepoTags {
		if ns, built := job.ImageNamespace(tag); built && ns != namespace {
			return refuse("%s: %s is an image of another namespace", field, ref)
		}
	}
	return nil
}

// imageIDRE matches what the engine may look up as an image id: it
// resolves any unambiguous hex prefix, however short.
var imageIDRE = regexp.MustCompile(`^(sha256:)?[0-9a-f]{1,64}$`)

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
