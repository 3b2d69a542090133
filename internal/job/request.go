package job

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Request is the body of POST /api/jobs: the flat shape of the design.
type Request struct {
	// AnonymousWorkers lets a function invocation run on workers without
	// a join token (set from its deployment's anonymous_workers); an
	// invocation goes only to trusted workers otherwise. It is never
	// decoded from a request body and does not apply to jobs.
	AnonymousWorkers bool `json:"-"`
	// Waited says that the submitter holds its request open for the
	// job's end (POST /api/jobs?wait=), so that nothing is promised about
	// the job until it is answered: it need not be stored before it runs,
	// only before it is reported unfinished. It is never decoded from a
	// request body.
	Waited bool `json:"-"`

	Type           Type              `json:"job_type"`
	Namespace      string            `json:"namespace,omitempty"`
	MaxAttempts    int               `json:"max_attempts,omitempty"`
	Code           string            `json:"code,omitempty"`
	Wasm           []byte            `json:"wasm,omitempty"`
	Args           []string          `json:"args,omitempty"`
	Input          json.RawMessage   `json:"input_data,omitempty"`
	TimeoutSeconds *float64          `json:"timeout_seconds,omitempty"`
	MemoryMB       int               `json:"memory_mb,omitempty"`
	DockerImage    string            `json:"docker_image,omitempty"`
	DockerCommand  []string          `json:"docker_command,omitempty"`
	DockerEnv      map[string]string `json:"docker_env,omitempty"`
	DockerVolumes  map[string]string `json:"docker_volumes,omitempty"`
	Resources      *Resources        `json:"resources,omitempty"`
	// Network asks for egress: {"egress": ["pypi.org:443", ...]}.
	Network *Network `json:"network,omitempty"`
	// Replicas runs the job on this many distinct workers (default 1);
	// the result is accepted when Quorum of them agree.
	Replicas int `json:"replicas,omitempty"`
	Quorum   int `json:"quorum,omitempty"`

	// Build fields: a docker job with a dockerfile builds its image.
	Dockerfile           string                 `json:"dockerfile,omitempty"`
	BuildContext         map[string]ContextFile `json:"build_context,omitempty"`
	BuildContextEncoding string                 `json:"build_context_encoding,omitempty"`
	BuildContextID       string                 `json:"build_context_id,omitempty"`
	BuildArgs            map[string]string      `json:"build_args,omitempty"`
	ImageTag             string                 `json:"image_tag,omitempty"`
	BuildOnly            bool                   `json:"build_only,omitempty"`
	BuildTimeoutSeconds  *float64               `json:"build_timeout_seconds,omitempty"`
	BuildFromGit         json.RawMessage        `json:"build_from_git,omitempty"`
	// BaseImages are the FROM images of the Dockerfile, filled by the
	// HTTP adapter after it parsed the Dockerfile; never read from JSON.
	BaseImages []string `json:"-"`

	// Fields that a container platform might accept and Zerverless never
	// does. They are decoded only to be refused by name.
	Privileged  *bool    `json:"privileged,omitempty"`
	CapAdd      []string `json:"cap_add,omitempty"`
	Devices     []string `json:"devices,omitempty"`
	NetworkMode string   `json:"network_mode,omitempty"`
	Binds       []string `json:"binds,omitempty"`
}

// Limits on what a client may submit. Every field has a documented default
// in DefaultRequestLimits; an operator may change any of them.
type RequestLimits struct {
	// MaxCodeBytes caps `code` (default 1 MiB).
	MaxCodeBytes int
	// MaxWasmBytes caps the decoded `wasm` module (default 32 MiB).
	MaxWasmBytes int
	// MaxInputBytes caps `input_data` (default 16 MiB).
	MaxInputBytes int
	// DefaultTimeout applies when `timeout_seconds` is absent (default 30 s).
	DefaultTimeout time.Duration
	// MaxTimeout caps `timeout_seconds` (default 1 h).
	MaxTimeout time.Duration
	// DefaultMaxAttempts applies when `max_attempts` is absent (default 3).
	DefaultMaxAttempts int
	// MaxMaxAttempts caps `max_attempts` (default 10).
	MaxMaxAttempts int
	// MaxMemoryMB caps `memory_mb` and `resources.memory_mb` (default 16384).
	MaxMemoryMB int
	// MaxReplicas caps `replicas` (default 5).
	MaxReplicas int
}

// DefaultRequestLimits returns the documented defaults.
func DefaultRequestLimits() RequestLimits {
	return RequestLimits{
		MaxCodeBytes:       1 << 20,
		MaxWasmBytes:       32 << 20,
		MaxInputBytes:      16 << 20,
		DefaultTimeout:     30 * time.Second,
		MaxTimeout:         time.Hour,
		DefaultMaxAttempts: 3,
		MaxMaxAttempts:     10,
		MaxMemoryMB:        16384,
		MaxReplicas:        5,
	}
}

// Validate refuses limits that would refuse every job or contradict
// themselves: every field must be positive, and each default within its
// maximum.
func (l RequestLimits) Validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxCodeBytes", int64(l.MaxCodeBytes)}, {"MaxWasmBytes", int64(l.MaxWasmBytes)},
		{"MaxInputBytes", int64(l.MaxInputBytes)}, {"DefaultTimeout", int64(l.DefaultTimeout)},
		{"MaxTimeout", int64(l.MaxTimeout)}, {"DefaultMaxAttempts", int64(l.DefaultMaxAttempts)},
		{"MaxMaxAttempts", int64(l.MaxMaxAttempts)}, {"MaxMemoryMB", int64(l.MaxMemoryMB)},
		{"MaxReplicas", int64(l.MaxReplicas)},
	} {
		if f.v <= 0 {
			return fmt.Errorf("%s must be positive", f.name)
		}
	}
	switch {
	case l.DefaultTimeout > l.MaxTimeout:
		return fmt.Errorf("DefaultTimeout %s is over MaxTimeout %s", l.DefaultTimeout, l.MaxTimeout)
	case l.DefaultMaxAttempts > l.MaxMaxAttempts:
		return fmt.Errorf("DefaultMaxAttempts %d is over MaxMaxAttempts %d", l.DefaultMaxAttempts, l.MaxMaxAttempts)
	}
	return nil
}

// DefaultNamespace is used when a request names none.
const DefaultNamespace = "default"

var namespaceRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidNamespace reports whether ns is a valid namespace name: 1 to 63
// lowercase letters, digits and inner dashes.
func ValidNamespace(ns string) bool { return namespaceRE.MatchString(ns) }

// DecodeRequest decodes and validates a job request. Every failure is an
// *Error with CodeInvalid and, where one is at fault, the field's name.
func DecodeRequest(data []byte, lim RequestLimits) (Request, error) {
	var r Request
	if err := CheckNumbers(data); err != nil {
		return Request{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Request{}, decodeError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Request{}, Invalid("", "request body must be a single JSON object")
	}
	if err := r.Validate(lim); err != nil {
		return Request{}, err
	}
	return r, nil
}

// CheckNumbers refuses a JSON document holding a number that does not fit
// a float64 (1e999999999): every runtime reads numbers as float64, and
// such a number would fail only on the worker. The error is invalid and
// names the field by its path (input_data.a.b[2]). A document that is not
// valid JSON passes: the decoder that follows reports it.
func CheckNumbers(data []byte) error {
	if !mayOverflow(data) {
		return nil
	}
	return scanNumbers(data)
}

// scanNumbers is CheckNumbers reading every token of data.
func scanNumbers(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	// level is one open object (key: the member being read) or array
	// (index: values begun, so the current one is index-1).
	type level struct {
		object bool
		key    string
		index  int
	}
	var stack []level
	where := func() string {
		var b strings.Builder
		for i, l := range stack {
			switch {
			case l.object && i > 0:
				b.WriteString("." + l.key)
			case l.object:
				b.WriteString(l.key)
			default:
				fmt.Fprintf(&b, "[%d]", l.index-1)
			}
		}
		return b.String()
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the end, or not JSON: the decoder says which
		}
		n := len(stack)
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:n-1]
			if n > 1 && stack[n-2].object {
				stack[n-2].key = "\x00" // the member's value ended
			}
			continue
		}
		// In an object, keys and values alternate; "\x00" (never a
		// key of a valid document read here) marks that a key is next.
		if n > 0 && stack[n-1].object && stack[n-1].key == "\x00" {
			stack[n-1].key = tok.(string)
			continue
		}
		if n > 0 && !stack[n-1].object {
			stack[n-1].index++
		}
		switch t := tok.(type) {
		case json.Delim:
			l := level{object: t == '{'}
			if l.object {
				l.key = "\x00"
			}
			stack = append(stack, l)
			continue
		case json.Number:
			if _, err := strconv.ParseFloat(string(t), 64); err != nil {
				return Invalid(where(), "the number %.40s does not fit a 64-bit float", t)
			}
		}
		if n > 0 && stack[n-1].object {
			stack[n-1].key = "\x00"
		}
	}
}

// mayOverflow reports whether data may hold a JSON number that does not
// fit a float64. Only a number too large fails strconv.ParseFloat (one too
// small rounds to zero), and that takes an exponent, which in a JSON number
// follows a digit ("1e400", "1.5E+400"), or an integer part of more than
// 308 digits. data without either, even inside strings, needs no scan.
func mayOverflow(data []byte) bool {
	run := 0
	for i, c := range data {
		switch {
		case c >= '0' && c <= '9':
			if run++; run > 308 {
				return true
			}
		case (c == 'e' || c == 'E') && run > 0:
			if j := i + 1; j < len(data) && (data[j] == '+' || data[j] == '-' || data[j] >= '0' && data[j] <= '9') {
				return true
			}
			run = 0
		default:
			run = 0
		}
	}
	return false
}

// decodeError turns an encoding/json error into an *Error naming the field.
// data is the body that failed to decode.
func decodeError(data []byte, err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return Invalid("", "request body must be a JSON object")
		}
		if field == "wasm" || strings.HasPrefix(field, "wasm.") {
			return Invalid("wasm", "must be a base64 string")
		}
		return Invalid(field, "must be %s, not %s", jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return Invalid("", "malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	case errors.Is(err, io.EOF):
		return Invalid("", "request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Invalid("", "malformed JSON: unexpected end of body")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return Invalid(unknownFieldPath(data, strings.Trim(f, `"`)), "unknown field")
	}
	var b64 interface{ Error() string }
	if errors.As(err, &b64) && strings.Contains(msg, "illegal base64") {
		return Invalid("wasm", "invalid base64: %v", err)
	}
	return Invalid("", "malformed JSON: %v", err)
}

// unknownFieldPath names an unknown field with its path: encoding/json
// reports only the key, which may sit in the one nested object of a
// request, resources.
func unknownFieldPath(data []byte, key string) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		return key
	}
	if _, ok := top[key]; ok {
		return key
	}
	for k := range top {
		if strings.EqualFold(k, "resources") || strings.EqualFold(k, "network") {
			return strings.ToLower(k) + "." + key
		}
	}
	return key
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	case "bool":
		return "a boolean"
	case "float64", "float32":
		return "a number"
	}
	if strings.HasPrefix(k, "int") || strings.HasPrefix(k, "uint") {
		return "an integer"
	}
	return k
}

// Validate checks r against lim and the rules of its job type.
func (r *Request) Validate(lim RequestLimits) error {
	if r.Type == "" {
		return Invalid("job_type", "is required (one of lua, js, wasm, python, docker)")
	}
	if !r.Type.Known() {
		return Invalid("job_type", "unknown job type %q (one of lua, js, wasm, python, docker)", r.Type)
	}
	if r.Namespace != "" && !ValidNamespace(r.Namespace) {
		return Invalid("namespace", "must be 1-63 lowercase letters, digits or inner dashes")
	}
	if r.MaxAttempts < 0 || r.MaxAttempts > lim.MaxMaxAttempts {
		return Invalid("max_attempts", "must be between 1 and %d", lim.MaxMaxAttempts)
	}
	if t := r.TimeoutSeconds; t != nil {
		if math.IsNaN(*t) || *t <= 0 {
			return Invalid("timeout_seconds", "must be a positive number of seconds")
		}
		if *t > lim.MaxTimeout.Seconds() {
			return Invalid("timeout_seconds", "must be at most %g", lim.MaxTimeout.Seconds())
		}
	}
	if r.Replicas < 0 || r.Replicas > max(lim.MaxReplicas, 1) {
		return Invalid("replicas", "must be between 1 and %d", max(lim.MaxReplicas, 1))
	}
	if r.Quorum < 0 || r.Quorum > max(r.Replicas, 1) {
		return Invalid("quorum", "must be between 1 and replicas (%d)", max(r.Replicas, 1))
	}
	if r.MemoryMB < 0 || r.MemoryMB > lim.MaxMemoryMB {
		return Invalid("memory_mb", "must be between 1 and %d", lim.MaxMemoryMB)
	}
	if len(r.Input) > lim.MaxInputBytes {
		return Invalid("input_data", "is %d bytes, over the limit of %d", len(r.Input), lim.MaxInputBytes)
	}
	if !utf8.Valid(r.Input) {
		// JSON is UTF-8; input_data goes to the worker as it came, and a
		// browser worker closes its connection, with every job on it, at
		// invalid UTF-8 in a message.
		return Invalid("input_data", "is not valid UTF-8")
	}
	if len(r.Code) > lim.MaxCodeBytes {
		return Invalid("code", "is %d bytes, over the limit of %d", len(r.Code), lim.MaxCodeBytes)
	}
	if err := r.refuseUnsafe(); err != nil {
		return err
	}
	switch r.Type {
	case TypeLua, TypeJS, TypePython:
		if strings.TrimSpace(r.Code) == "" {
			return Invalid("code", "is required for %s jobs", r.Type)
		}
		if err := r.onlyFields(); err != nil {
			return err
		}
	case TypeWasm:
		if len(r.Wasm) == 0 {
			return Invalid("wasm", "is required for wasm jobs (base64 of a WebAssembly module)")
		}
		if len(r.Wasm) > lim.MaxWasmBytes {
			return Invalid("wasm", "module is %d bytes, over the limit of %d", len(r.Wasm), lim.MaxWasmBytes)
		}
		if !IsWasmModule(r.Wasm) {
			return Invalid("wasm", "is not a WebAssembly module (no \\0asm header)")
		}
		if err := r.onlyFields(); err != nil {
			return err
		}
	case TypeDocker:
		if err := r.validateDocker(lim); err != nil {
			return err
		}
	}
	return nil
}

// onlyFields refuses docker fields on a sandboxed-runtime job.
func (r *Request) onlyFields() error {
	switch {
	case r.Type != TypeWasm && len(r.Wasm) > 0:
		return Invalid("wasm", "is only for wasm jobs")
	case r.Type != TypeWasm && len(r.Args) > 0:
		return Invalid("args", "is only for wasm jobs")
	case r.Type == TypeWasm && r.Code != "":
		return Invalid("code", "is not used by wasm jobs; send the module in wasm")
	case r.DockerImage != "":
		return Invalid("docker_image", "is only for docker jobs")
	case len(r.DockerCommand) > 0:
		return Invalid("docker_command", "is only for docker jobs")
	case len(r.DockerEnv) > 0:
		return Invalid("docker_env", "is only for docker jobs")
	case len(r.DockerVolumes) > 0:
		return Invalid("docker_volumes", "is only for docker jobs")
	case r.Resources != nil:
		return Invalid("resources", "is only for docker jobs; use memory_mb")
	case r.Network != nil:
		return Invalid("network", "is only for docker jobs")
	case r.Dockerfile != "" || len(r.BuildContext) > 0 || r.BuildContextID != "" || len(r.BuildArgs) > 0 ||
		r.ImageTag != "" || r.BuildOnly || r.BuildContextEncoding != "" || r.BuildTimeoutSeconds != nil || len(r.BuildFromGit) > 0:
		return Invalid("dockerfile", "image builds are only for docker jobs")
	}
	return nil
}

// refuseUnsafe refuses the container options Zerverless never grants.
func (r *Request) refuseUnsafe() error {
	switch {
	case r.Privileged != nil && *r.Privileged:
		return Invalid("privileged", "privileged containers are never allowed")
	case len(r.CapAdd) > 0:
		return Invalid("cap_add", "extra capabilities are never granted; containers run with none")
	case len(r.Devices) > 0:
		return Invalid("devices", "host devices are never exposed to containers")
	case r.NetworkMode != "" && r.NetworkMode != "none":
		return Invalid("network_mode", "containers run without network")
	case len(r.Binds) > 0:
		return Invalid("binds", "host bind mounts are never allowed")
	}
	return nil
}

var (
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	volumeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
)

func (r *Request) validateDocker(lim RequestLimits) error {
	if r.Code != "" {
		return Invalid("code", "is not used by docker jobs")
	}
	if len(r.Wasm) > 0 {
		return Invalid("wasm", "is only for wasm jobs")
	}
	if err := r.validateBuild(lim); err != nil {
		return err
	}
	if r.DockerImage == "" && r.Dockerfile == "" {
		return Invalid("docker_image", "is required for docker jobs (or a dockerfile to build one)")
	}
	if r.DockerImage != "" {
		if err := ValidateImageRef(r.DockerImage); err != nil {
			return Invalid("docker_image", "%v", err)
		}
	}
	for i, a := range r.DockerCommand {
		if strings.IndexByte(a, 0) >= 0 {
			return Invalid(fmt.Sprintf("docker_command[%d]", i), "must not contain NUL bytes")
		}
	}
	for k, v := range r.DockerEnv {
		if !envNameRE.MatchString(k) {
			return Invalid("docker_env", "%q is not a valid environment variable name", k)
		}
		if k == "INPUT_DATA" {
			return Invalid("docker_env", "INPUT_DATA is set by Zerverless from input_data")
		}
		if strings.IndexByte(v, 0) >= 0 {
			return Invalid("docker_env", "value of %s must not contain NUL bytes", k)
		}
	}
	for name, target := range r.DockerVolumes {
		if strings.ContainsAny(name, "/\\") || strings.HasPrefix(name, ".") {
			return Invalid("docker_volumes", "%q: host bind mounts are never allowed; give a scratch volume name", name)
		}
		if !volumeNameRE.MatchString(name) {
			return Invalid("docker_volumes", "%q is not a valid scratch volume name", name)
		}
		if !strings.HasPrefix(target, "/") || strings.Contains(target, "..") || strings.ContainsAny(target, ":,") {
			return Invalid("docker_volumes", "mount path %q must be an absolute path", target)
		}
		if ReservedMountPath(target) {
			return Invalid("docker_volumes", "mount path %q is reserved", target)
		}
	}
	if n := r.Network; n != nil {
		if _, err := ParseEgress(n.Egress); err != nil {
			return Invalid("network.egress", "%v", err)
		}
	}
	if res := r.Resources; res != nil {
		if res.MemoryMB < 0 || res.MemoryMB > lim.MaxMemoryMB {
			return Invalid("resources.memory_mb", "must be between 6 and %d", lim.MaxMemoryMB)
		}
		if res.MemoryMB > 0 && res.MemoryMB < 6 {
			return Invalid("resources.memory_mb", "must be at least 6 (the engine's minimum)")
		}
		if math.IsNaN(res.CPUs) || res.CPUs < 0 || res.CPUs > 1024 {
			return Invalid("resources.cpus", "must be a positive number of CPUs")
		}
		if res.Pids < 0 {
			return Invalid("resources.pids", "must be positive")
		}
	}
	return nil
}

// ReservedMountPath reports whether a scratch volume may not be mounted at
// target: the root, the runtime's own mounts (/input, /output and below
// them, /tmp), and what the kernel or the engine provides (/proc, /sys,
// /dev and below them; /etc, /etc/hosts, /etc/hostname, /etc/resolv.conf,
// /sbin/docker-init).
func ReservedMountPath(target string) bool {
	clean := path.Clean(target)
	switch clean {
	case "/", "/tmp", "/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/sbin/docker-init":
		return true
	}
	for _, p := range []string{"/input", "/output", "/proc", "/sys", "/dev"} {
		if clean == p || strings.HasPrefix(clean, p+"/") {
			return true
		}
	}
	return false
}

var imageRefRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._/:@+-]*$`)

// ValidateImageRef checks the shape of an image reference such as
// "alpine:3.20", "127.0.0.1:5000/x/y@sha256:...". It does not resolve it.
func ValidateImageRef(ref string) error {
	if len(ref) > 512 {
		return errors.New("image reference is too long")
	}
	if !imageRefRE.MatchString(ref) || strings.Contains(ref, "//") {
		return fmt.Errorf("%q is not a valid image reference", ref)
	}
	// The engine reads docker.io/zerverless/... and index.docker.io/zerverless/...
	// as the local zerverless/... images; only that spelling is checked
	// and routed as a built image.
	for _, alias := range dockerHubAliases {
		if strings.HasPrefix(ref, alias+BuiltImagePrefix) {
			return fmt.Errorf("%q: name a built image %s<namespace>/..., without a registry", ref, BuiltImagePrefix)
		}
	}
	if name, digest, ok := strings.Cut(ref, "@"); ok {
		if name == "" || !regexp.MustCompile(`^sha256:[a-f0-9]{64}$`).MatchString(digest) {
			return fmt.Errorf("%q: a digest must be sha256: and 64 hex digits", ref)
		}
	}
	return nil
}

// IsWasmModule reports whether b starts with the WebAssembly binary magic
// and version 1.
func IsWasmModule(b []byte) bool {
	return len(b) >= 8 && bytes.Equal(b[:8], []byte{0, 'a', 's', 'm', 1, 0, 0, 0})
}

// NewJob turns a validated request into a pending job. buildKey keys a
// build's source key and default tag (see BuildSpec.SourceKey); the
// orchestrator passes its secret of at least MinBuildKeyBytes.
func (r *Request) NewJob(id string, now time.Time, lim RequestLimits, buildKey []byte) *Job {
	ns := r.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	attempts := r.MaxAttempts
	if attempts == 0 {
		attempts = lim.DefaultMaxAttempts
	}
	timeout := lim.DefaultTimeout.Seconds()
	if r.TimeoutSeconds != nil {
		timeout = *r.TimeoutSeconds
	}
	spec := Spec{
		Code:           r.Code,
		Wasm:           r.Wasm,
		Args:           r.Args,
		Input:          r.Input,
		TimeoutSeconds: timeout,
		MemoryMB:       r.MemoryMB,
	}
	if r.Replicas > 1 {
		spec.Replicas = r.Replicas
		spec.Quorum = r.Quorum
		if spec.Quorum == 0 {
			spec.Quorum = spec.QuorumOrMajority()
		}
	}
	if r.Type == TypeDocker {
		d := &DockerSpec{
			Image:   r.DockerImage,
			Command: r.DockerCommand,
			Env:     r.DockerEnv,
			Volumes: r.DockerVolumes,
		}
		if r.Resources != nil {
			d.Resources = *r.Resources
		}
		if r.Network != nil && len(r.Network.Egress) > 0 {
			egress, _ := CanonicalEgress(r.Network.Egress)
			d.Network = &Network{Egress: egress}
		}
		if r.Dockerfile != "" {
			d.Build = r.newBuildSpec(ns, buildKey)
			d.Image = d.Build.Tag
		}
		spec.Docker = d
	}
	return &Job{
		ID:          id,
		Namespace:   ns,
		Type:        r.Type,
		Status:      StatusPending,
		Attempt:     1,
		MaxAttempts: attempts,
		Spec:        spec,
		CreatedAt:   now,
	}
}

// Timeout returns the job's run timeout.
func (s Spec) Timeout() time.Duration {
	return time.Duration(s.TimeoutSeconds * float64(time.Second))
}
