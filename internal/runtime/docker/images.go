package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	goruntime "runtime"
	"sort"
	"sync"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/zerverless/zerverless/internal/job"
)

// Images.
//
// A job's image is used as it is on the machine when it is there. When it
// is not, and Config.Pull allows, it is pulled: first its manifest is
// fetched from the registry (with the worker's Docker config credentials,
// authn.DefaultKeychain) and the compressed size of its layers and config
// is compared with Config.MaxImageMB, so that an image over the limit is
// refused before a byte of it is pulled; then the engine pulls it with the
// same credentials. Config.PullTimeout bounds both. A reference with a
// digest ("repo@sha256:...") pins the image: the engine verifies it.
//
// The runtime records the images it pulled itself, in memory, with their
// size and last use, and the images it built, with their namespace.
// Pulled images are shared: when everything recorded takes more than
// Config.ImageBudgetMB, the least recently used pulled images that no run
// is using are removed by the reference they were pulled as (a later job
// pulls them again). Built images cannot be pulled again, so no one
// tenant's work may remove another's: each namespace's built images are
// bounded by Config.NamespaceImageMB, and a build past its namespace's
// share removes that namespace's own least recently used built images
// (never one in use), then pulled images to stay within the budget. A
// build that still does not fit — its image alone over the share, or the
// budget full of other namespaces' built images and images in use — fails
// and its image is removed. Images the runtime did not pull or build —
// present before, or pulled by an earlier process — are never removed.

type cachedImage struct {
	ref      string
	size     int64
	lastUsed time.Time
	inUse    int
	// built images were built by this runtime from sourceKey, for
	// namespace.
	built     bool
	sourceKey string
	namespace string
}

type imageCache struct {
	mu     sync.Mutex
	pulled map[string]*cachedImage // by reference
	pullMu sync.Mutex              // one pull at a time
}

func (c *imageCache) init() { c.pulled = map[string]*cachedImage{} }

// ensureImage makes ref present and marks it in use until release.
func (d *Docker) ensureImage(ctx context.Context, ref string) (release func(), err error) {
	if _, err := d.engine.ImageInspect(ctx, ref); err == nil {
		return d.images.use(ref), nil
	} else if !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("inspect image: %w", err)
	}
	if _, built := job.ImageNamespace(ref); built {
		return nil, refuse("docker_image: %s is not on this worker (built images stay on the worker that built them and are never pulled)", ref)
	}
	if !d.cfg.Pull {
		return nil, refuse("docker_image: %q is not on this worker, and this worker does not pull images", ref)
	}
	if err := d.pull(ctx, ref); err != nil {
		return nil, err
	}
	return d.images.use(ref), nil
}

func (c *imageCache) use(ref string) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	ci := c.pulled[ref]
	if ci == nil {
		return func() {}
	}
	ci.inUse++
	ci.lastUsed = time.Now()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		ci.inUse--
		ci.lastUsed = time.Now()
	}
}

// Prepull pulls every image of Config.Prepull that is not on the machine,
// under the same policy as a job's image. It returns the errors of those
// it could not pull.
func (d *Docker) Prepull(ctx context.Context) error {
	var errs []error
	for _, ref := range d.cfg.Prepull {
		if len(d.cfg.AllowImages) > 0 && !job.MatchImage(d.cfg.AllowImages, ref) {
			errs = append(errs, fmt.Errorf("prepull %s: not allowed by this worker's image policy", ref))
			continue
		}
		release, err := d.ensureImage(ctx, ref)
		if err != nil {
			errs = append(errs, fmt.Errorf("prepull %s: %w", ref, err))
			continue
		}
		release()
	}
	return errors.Join(errs...)
}

// pull checks ref's size in its registry and pulls it.
func (d *Docker) pull(ctx context.Context, ref string) error {
	d.images.pullMu.Lock()
	defer d.images.pullMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, d.cfg.PullTimeout)
	defer cancel()
	if _, err := d.engine.ImageInspect(ctx, ref); err == nil {
		return nil // pulled while this call waited
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return refuse("docker_image: %v", err)
	}
	if err := d.checkRegistry(ctx, r); err != nil {
		return err
	}
	size, err := d.remoteSize(ctx, r)
	if err != nil {
		return err
	}
	if limit := int64(d.cfg.MaxImageMB) << 20; limit > 0 && size > limit {
		return refuse("docker_image: %s is %.1f MiB in its registry, over this worker's limit of %d MiB; not pulled",
			ref, float64(size)/(1<<20), d.cfg.MaxImageMB)
	}
	auth, err := registryAuth(r)
	if err != nil {
		return fmt.Errorf("credentials for %s: %w", r.Context().RegistryStr(), err)
	}
	rc, err := d.engine.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: auth, Platform: "linux/" + goruntime.GOARCH})
	if err != nil {
		if errdefs.IsNotFound(err) || errdefs.IsUnauthorized(err) || errdefs.IsForbidden(err) {
			return refuse("docker_image: pull %s: %v", ref, err)
		}
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := drainJSON(rc); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("pull %s: %w", ref, ctx.Err())
		}
		return refuse("docker_image: pull %s: %v", ref, err)
	}
	info, err := d.engine.ImageInspect(ctx, ref)
	if err != nil {
		return fmt.Errorf("inspect pulled %s: %w", ref, err)
	}
	d.images.mu.Lock()
	d.images.pulled[ref] = &cachedImage{ref: ref, size: info.Size, lastUsed: time.Now()}
	d.images.mu.Unlock()
	d.evict(ctx, ref)
	return nil
}

// remoteSize returns the compressed size of ref's image for this
// machine's platform, from its registry manifest.
func (d *Docker) remoteSize(ctx context.Context, r name.Reference) (int64, error) {
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}),
	}
	desc, err := remote.Get(r, opts...)
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("registry %s: %w", r.Context().RegistryStr(), ctx.Err())
		}
		return 0, refuse("docker_image: cannot read the manifest of %s: %v", r, err)
	}
	img, err := desc.Image()
	if err != nil {
		return 0, refuse("docker_image: %s has no image for linux/%s: %v", r, goruntime.GOARCH, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return 0, refuse("docker_image: manifest of %s: %v", r, err)
	}
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	return size, nil
}

// registryAuth returns the engine's X-Registry-Auth value for r from the
// worker's Docker config, or "" for anonymous access.
func registryAuth(r name.Reference) (string, error) {
	a, err := authn.DefaultKeychain.Resolve(r.Context())
	if err != nil || a == authn.Anonymous {
		return "", err
	}
	c, err := a.Authorization()
	if err != nil {
		return "", err
	}
	if *c == (authn.AuthConfig{}) {
		return "", nil
	}
	return registry.EncodeAuthConfig(registry.AuthConfig{
		Username: c.Username, Password: c.Password, Auth: c.Auth,
		IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken,
		ServerAddress: r.Context().RegistryStr(),
	})
}

// evict removes least recently used pulled images, other than keep and
// those in use, while the images recorded exceed the budget. It never
// removes a built image. It reports whether they now fit.
func (d *Docker) evict(ctx context.Context, keep string) bool {
	budget := int64(d.cfg.ImageBudgetMB) << 20
	if budget <= 0 {
		return true
	}
	d.images.mu.Lock()
	var total int64
	var candidates []*cachedImage
	for _, ci := range d.images.pulled {
		total += ci.size
		if ci.ref != keep && ci.inUse == 0 && !ci.built {
			candidates = append(candidates, ci)
		}
	}
	victims := d.images.takeLRULocked(candidates, &total, budget)
	d.images.mu.Unlock()
	d.removeVictims(ctx, victims)
	return total <= budget
}

// takeLRULocked removes from the cache the least recently used of
// candidates while *total exceeds limit, and returns them. The caller
// holds c.mu and removes them from the engine.
func (c *imageCache) takeLRULocked(candidates []*cachedImage, total *int64, limit int64) []*cachedImage {
	sort.Slice(candidates, func(i, j int) bool { return candidates[i].lastUsed.Before(candidates[j].lastUsed) })
	var victims []*cachedImage
	for _, ci := range candidates {
		if *total <= limit {
			break
		}
		victims = append(victims, ci)
		*total -= ci.size
		delete(c.pulled, ci.ref)
	}
	return victims
}

func (d *Docker) removeVictims(ctx context.Context, victims []*cachedImage) {
	for _, ci := range victims {
		if _, err := d.engine.ImageRemove(ctx, ci.ref, image.RemoveOptions{PruneChildren: true}); err != nil && !errdefs.IsNotFound(err) {
			d.cfg.Logger.Warn("docker image eviction failed", "worker_id", d.cfg.WorkerID, "image", ci.ref, "err", err)
		}
	}
}

// admitBuilt makes room for tag, just built for namespace and recorded:
// first within the namespace's share, from its own least recently used
// built images, then within the budget, from pulled images. It returns
// why the image does not fit, or "" when it does; the caller then removes
// the image.
func (d *Docker) admitBuilt(ctx context.Context, tag, namespace string) string {
	if share := int64(d.cfg.NamespaceImageMB) << 20; share > 0 {
		d.images.mu.Lock()
		var total int64
		var candidates []*cachedImage
		for _, ci := range d.images.pulled {
			if !ci.built || ci.namespace != namespace {
				continue
			}
			total += ci.size
			if ci.ref != tag && ci.inUse == 0 {
				candidates = append(candidates, ci)
			}
		}
		victims := d.images.takeLRULocked(candidates, &total, share)
		d.images.mu.Unlock()
		d.removeVictims(ctx, victims)
		if total > share {
			d.forget(tag)
			return fmt.Sprintf("namespace %s's built images would take %.1f MiB on this worker, over its share of %d MiB", namespace, float64(total)/(1<<20), d.cfg.NamespaceImageMB)
		}
	}
	if !d.evict(ctx, tag) {
		d.forget(tag)
		return fmt.Sprintf("this worker's image budget of %d MiB is taken by images in use and other namespaces' built images", d.cfg.ImageBudgetMB)
	}
	return ""
}

// forget drops ref from the images this runtime manages.
func (d *Docker) forget(ref string) {
	d.images.mu.Lock()
	defer d.images.mu.Unlock()
	delete(d.images.pulled, ref)
}

// PulledImages returns the references of the images this runtime pulled
// and still keeps, least recently used first.
func (d *Docker) PulledImages() []string {
	d.images.mu.Lock()
	defer d.images.mu.Unlock()
	cs := make([]*cachedImage, 0, len(d.images.pulled))
	for _, ci := range d.images.pulled {
		cs = append(cs, ci)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].lastUsed.Before(cs[j].lastUsed) })
	refs := make([]string, len(cs))
	for i, ci := range cs {
		refs[i] = ci.ref
	}
	return refs
}

// readJSONMessages reads an engine progress stream to its end and returns
// the first error it reports.
func readJSONMessages(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error  string `json:"error"`
			Detail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if m.Detail != nil && m.Detail.Message != "" {
			return errors.New(m.Detail.Message)
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}
