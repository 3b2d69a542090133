package job

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Image builds.
//
// A docker job with a `dockerfile` builds an image on a worker that opted
// in to builds, then runs it under the strict profile unless `build_only`.
// The image is always tagged under the job's namespace,
// zerverless/<namespace>/<name>:<tag>, whatever `image_tag` says, so that
// no job can replace another namespace's image or a base image.

// BuiltImagePrefix starts the reference of every image Zerverless builds.
const BuiltImagePrefix = "zerverless/"

// dockerHubAliases are the registry names the engine drops from a
// reference: "index.docker.io/x/y" and "docker.io/x/y" are the image "x/y".
var dockerHubAliases = []string{"docker.io/", "index.docker.io/"}

// DefaultBuildTimeout bounds a build when the job names no
// build_timeout_seconds.
const DefaultBuildTimeout = 10 * time.Minute

// ContextFile is one file of an inline build context. In JSON it is either
// a string (the file's text, or base64 when the request's
// build_context_encoding is "base64") or an object
// {"content": "...", "encoding": "base64", "executable": true}.
type ContextFile struct {
	Content string `json:"content"`
	// Encoding is "" (the content is the file's text) or "base64".
	Encoding string `json:"encoding,omitempty"`
	// Executable gives the file mode 0755 instead of 0644.
	Executable bool `json:"executable,omitempty"`
}

// UnmarshalJSON accepts a bare string or the object form.
func (f *ContextFile) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		*f = ContextFile{}
		return json.Unmarshal(b, &f.Content)
	}
	type plain ContextFile
	var p plain
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("a build_context file must be a string or {\"content\", \"encoding\", \"executable\"}: %w", err)
	}
	*f = ContextFile(p)
	return nil
}

// Bytes returns the file's content, decoding base64 when the file's own
// encoding, or def when it has none, says so.
func (f ContextFile) Bytes(def string) ([]byte, error) {
	enc := f.Encoding
	if enc == "" {
		enc = def
	}
	switch enc {
	case "", "utf-8", "text":
		return []byte(f.Content), nil
	case "base64":
		return base64.StdEncoding.DecodeString(f.Content)
	}
	return nil, fmt.Errorf("unknown encoding %q (text or base64)", enc)
}

// BuildSpec is the build part of a docker job.
type BuildSpec struct {
	// Dockerfile is the Dockerfile's content.
	Dockerfile string `json:"dockerfile"`
	// Context is an inline build context, by relative path.
	Context map[string]ContextFile `json:"build_context,omitempty"`
	// ContextID names an uploaded build context (its SHA-256).
	ContextID string `json:"build_context_id,omitempty"`
	// ContextURL is the path on the orchestrator where the worker holding
	// the job's lease fetches the uploaded context (set on the task only).
	ContextURL string            `json:"build_context_url,omitempty"`
	Args       map[string]string `json:"build_args,omitempty"`
	// Tag is the full tag the image gets: zerverless/<namespace>/<name>:<tag>.
	Tag string `json:"image_tag"`
	// Only ends the job after the build, without running the image.
	Only bool `json:"build_only,omitempty"`
	// TimeoutSeconds bounds the build, separately from the run.
	TimeoutSeconds float64 `json:"build_timeout_seconds,omitempty"`
	// BaseImages are the FROM images the orchestrator found in the
	// Dockerfile, for routing; the worker finds them again itself.
	BaseImages []string `json:"base_images,omitempty"`
	// SourceKey identifies the build's inputs as the orchestrator sees
	// them (namespace, Dockerfile, context, arguments): an HMAC-SHA-256
	// keyed with the orchestrator's build key, so that a key (or a default
	// tag made from it) seen by anyone says nothing of the inputs. Workers
	// report the keys of the builds they hold, and the scheduler prefers
	// them.
	SourceKey string `json:"source_key,omitempty"`
}

// Timeout returns the build's timeout.
func (b *BuildSpec) Timeout() time.Duration {
	if b == nil {
		return 0
	}
	if b.TimeoutSeconds <= 0 {
		return DefaultBuildTimeout
	}
	return time.Duration(b.TimeoutSeconds * float64(time.Second))
}

// BuildResult is what a build reports, in Result.Build.
type BuildResult struct {
	// Image is the full tag and ImageID the engine's id of the image.
	Image   string `json:"image"`
	ImageID string `json:"image_id"`
	// CacheHit is set when the worker already held an image built from
	// the same inputs and skipped the build.
	CacheHit   bool   `json:"cache_hit"`
	CacheKey   string `json:"cache_key,omitempty"`
	SizeBytes  int64  `json:"size_bytes,omitempty"`
	Layers     int    `json:"layers,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	// Log is the build's output, capped.
	Log string `json:"log,omitempty"`
	// Egress lists each destination the build's RUN steps reached
	// through the egress proxy.
	Egress []EgressRecord `json:"egress,omitempty"`
}

// TaskTimeout is how long a worker may hold the job: the run timeout, plus
// the build timeout for a build job.
func (s Spec) TaskTimeout() time.Duration {
	t := s.Timeout()
	if s.Docker != nil && s.Docker.Build != nil {
		t += s.Docker.Build.Timeout()
	}
	return t
}

// IsBuild reports whether the job builds an image.
func (j *Job) IsBuild() bool { return j.Spec.Docker != nil && j.Spec.Docker.Build != nil }

var (
	imageTagNameRE = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)
	imageTagTagRE  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	buildArgNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	contextIDRE    = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

// NamespacedTag returns the tag a build of namespace gets for imageTag
// ("myapp:v1" → "zerverless/<ns>/myapp:v1"); an empty imageTag gets a
// name from key. imageTag must have passed ValidateImageTag.
func NamespacedTag(namespace, imageTag, key string) string {
	name, tag := imageTag, "latest"
	if i := strings.LastIndexByte(imageTag, ':'); i >= 0 {
		name, tag = imageTag[:i], imageTag[i+1:]
	}
	if name == "" {
		name, tag = "build", key
		if len(tag) > 16 {
			tag = tag[:16]
		}
	}
	return BuiltImagePrefix + namespace + "/" + name + ":" + tag
}

// ValidateImageTag checks an image_tag: a lowercase repository path and an
// optional tag, no registry port, no digest.
func ValidateImageTag(s string) error {
	if len(s) > 200 {
		return fmt.Errorf("is too long")
	}
	name, tag := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		name, tag = s[:i], s[i+1:]
		if !imageTagTagRE.MatchString(tag) {
			return fmt.Errorf("%q: the tag must be letters, digits, '_', '.' or '-'", s)
		}
	}
	if !imageTagNameRE.MatchString(name) {
		return fmt.Errorf("%q is not a valid image name (lowercase letters, digits, separators and '/'; no digest)", s)
	}
	return nil
}

// ImageNamespace returns the namespace of a built image reference
// (zerverless/<ns>/...) and whether ref is one.
func ImageNamespace(ref string) (string, bool) {
	rest, ok := strings.CutPrefix(ref, BuiltImagePrefix)
	for _, alias := range dockerHubAliases {
		if !ok {
			rest, ok = strings.CutPrefix(ref, alias+BuiltImagePrefix)
		}
	}
	if !ok {
		return "", false
	}
	ns, _, _ := strings.Cut(rest, "/")
	return ns, true
}

// validateBuild checks the build fields of a docker request.
func (r *Request) validateBuild(lim RequestLimits) error {
	if len(r.BuildFromGit) > 0 && string(r.BuildFromGit) != "null" {
		return Invalid("build_from_git", "is not supported: upload the context with POST /api/build-contexts and pass build_context_id")
	}
	building := r.Dockerfile != ""
	if !building {
		switch {
		case len(r.BuildContext) > 0:
			return Invalid("build_context", "needs a dockerfile")
		case r.BuildContextID != "":
			return Invalid("build_context_id", "needs a dockerfile")
		case len(r.BuildArgs) > 0:
			return Invalid("build_args", "needs a dockerfile")
		case r.ImageTag != "":
			return Invalid("image_tag", "needs a dockerfile")
		case r.BuildOnly:
			return Invalid("build_only", "needs a dockerfile")
		case r.BuildContextEncoding != "":
			return Invalid("build_context_encoding", "needs a build_context")
		case r.BuildTimeoutSeconds != nil:
			return Invalid("build_timeout_seconds", "needs a dockerfile")
		}
		return nil
	}
	if r.DockerImage != "" {
		return Invalid("docker_image", "is not used with a dockerfile: the built image runs (docker_command runs in it)")
	}
	if len(r.Dockerfile) > lim.MaxCodeBytes {
		return Invalid("dockerfile", "is %d bytes, over the limit of %d", len(r.Dockerfile), lim.MaxCodeBytes)
	}
	if len(r.BuildContext) > 0 && r.BuildContextID != "" {
		return Invalid("build_context_id", "give either build_context or build_context_id, not both")
	}
	if r.BuildContextID != "" && !contextIDRE.MatchString(r.BuildContextID) {
		return Invalid("build_context_id", "must be the 64 hex digits returned by POST /api/build-contexts")
	}
	switch r.BuildContextEncoding {
	case "", "text", "utf-8", "base64":
	default:
		return Invalid("build_context_encoding", "unknown encoding %q (text or base64)", r.BuildContextEncoding)
	}
	for _, p := range sortedMapKeys(r.BuildContext) {
		if _, err := r.BuildContext[p].Bytes(r.BuildContextEncoding); err != nil {
			return Invalid("build_context", "%q: %v", p, err)
		}
	}
	for k, v := range r.BuildArgs {
		if !buildArgNameRE.MatchString(k) {
			return Invalid("build_args", "%q is not a valid build argument name", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return Invalid("build_args", "value of %s must not contain NUL bytes", k)
		}
	}
	if r.ImageTag != "" {
		if err := ValidateImageTag(r.ImageTag); err != nil {
			return Invalid("image_tag", "%v", err)
		}
	}
	if t := r.BuildTimeoutSeconds; t != nil && (*t <= 0 || *t > lim.MaxTimeout.Seconds() || *t != *t) {
		return Invalid("build_timeout_seconds", "must be a positive number of seconds, at most %g", lim.MaxTimeout.Seconds())
	}
	if r.BuildOnly && len(r.DockerCommand) > 0 {
		return Invalid("docker_command", "is not used with build_only")
	}
	return nil
}

// newBuildSpec returns the build part of a job of namespace ns, its
// source key made with secret (see BuildSpec.SourceKey).
func (r *Request) newBuildSpec(ns string, secret []byte) *BuildSpec {
	b := &BuildSpec{
		Dockerfile: r.Dockerfile,
		ContextID:  r.BuildContextID,
		Args:       r.BuildArgs,
		Only:       r.BuildOnly,
		BaseImages: r.BaseImages,
	}
	if t := r.BuildTimeoutSeconds; t != nil {
		b.TimeoutSeconds = *t
	}
	if len(r.BuildContext) > 0 {
		b.Context = make(map[string]ContextFile, len(r.BuildContext))
		for p, f := range r.BuildContext {
			if f.Encoding == "" && r.BuildContextEncoding == "base64" {
				f.Encoding = "base64"
			}
			b.Context[p] = f
		}
	}
	egress := []string(nil)
	if r.Network != nil {
		egress, _ = CanonicalEgress(r.Network.Egress)
	}
	b.SourceKey = b.sourceKey(ns, secret, egress)
	b.Tag = NamespacedTag(ns, r.ImageTag, b.SourceKey)
	return b
}

// MinBuildKeyBytes is the shortest build key an orchestrator may use.
const MinBuildKeyBytes = 32

// sourceKey is the HMAC-SHA-256, keyed with secret, of what the
// orchestrator knows of a build's inputs. Without the secret neither the
// key nor a default tag made from it can be tested against guessed inputs.
func (b *BuildSpec) sourceKey(ns string, secret []byte, egress []string) string {
	h := hmac.New(sha256.New, secret)
	fmt.Fprintf(h, "ns %q\ndockerfile %q\ncontext-id %q\n", ns, b.Dockerfile, b.ContextID)
	for _, p := range sortedMapKeys(b.Context) {
		f := b.Context[p]
		data, _ := f.Bytes("")
		sum := sha256.Sum256(data)
		fmt.Fprintf(h, "file %q %x %v\n", p, sum, f.Executable)
	}
	for _, k := range sortedMapKeys(b.Args) {
		fmt.Fprintf(h, "arg %q %q\n", k, b.Args[k])
	}
	// The same steps with other egress may fetch other things.
	for _, e := range egress {
		fmt.Fprintf(h, "egress %q\n", e)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sortedMapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
