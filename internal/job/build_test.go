package job

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestBuildRequestValidation(t *testing.T) {
	lim := DefaultRequestLimits()
	bad := map[string]struct{ field, words string }{
		`{"job_type":"docker","dockerfile":"FROM x","docker_image":"alpine"}`:                                     {"docker_image", "not used with a dockerfile"},
		`{"job_type":"docker","docker_image":"alpine","image_tag":"x"}`:                                           {"image_tag", "needs a dockerfile"},
		`{"job_type":"docker","dockerfile":"FROM x","image_tag":"UPPER:1"}`:                                       {"image_tag", "not a valid image name"},
		`{"job_type":"docker","dockerfile":"FROM x","image_tag":"a@sha256:00"}`:                                   {"image_tag", ""},
		`{"job_type":"docker","dockerfile":"FROM x","build_args":{"1x":"v"}}`:                                     {"build_args", "not a valid build argument name"},
		`{"job_type":"docker","dockerfile":"FROM x","build_context":{"a":"!"},"build_context_encoding":"base64"}`: {"build_context", "illegal base64"},
		`{"job_type":"docker","dockerfile":"FROM x","build_context_id":"nope"}`:                                   {"build_context_id", "64 hex digits"},
		`{"job_type":"docker","dockerfile":"FROM x","build_from_git":{"url":"u"}}`:                                {"build_from_git", "not supported"},
		`{"job_type":"docker","dockerfile":"FROM x","build_only":true,"docker_command":["x"]}`:                    {"docker_command", "not used with build_only"},
		`{"job_type":"lua","code":"x","dockerfile":"FROM x"}`:                                                     {"dockerfile", "only for docker jobs"},
		`{"job_type":"docker","dockerfile":"FROM x","build_context":{"a":{"content":"x","mode":1}}}`:              {"", "build_context"},
	}
	for body, want := range bad {
		_, err := DecodeRequest([]byte(body), lim)
		if err == nil || ErrorField(err) != want.field || !strings.Contains(err.Error(), want.words) {
			t.Errorf("%s: got %v (field %q), want field %q with %q", body, err, ErrorField(err), want.field, want.words)
		}
	}
	r, err := DecodeRequest([]byte(`{"job_type":"docker","namespace":"alice","dockerfile":"FROM x","image_tag":"alpine:latest",
		"build_context":{"a.bin":"AAE=","t.txt":{"content":"hi","encoding":"text"}},"build_context_encoding":"base64","build_timeout_seconds":5}`), lim)
	if err != nil {
		t.Fatal(err)
	}
	j := r.NewJob("id", time.Now(), lim, testBuildKey)
	b := j.Spec.Docker.Build
	if j.Spec.Docker.Image != "zerverless/alice/alpine:latest" || b.Tag != j.Spec.Docker.Image || len(b.SourceKey) != 64 {
		t.Fatalf("spec %+v build %+v", j.Spec.Docker, b)
	}
	if data, _ := b.Context["a.bin"].Bytes(""); string(data) != "\x00\x01" {
		t.Fatalf("base64 file: %q", data)
	}
	if j.Spec.TaskTimeout() != 35*time.Second {
		t.Fatalf("task timeout %s", j.Spec.TaskTimeout())
	}
	if got := NamespacedTag("ns", "", strings.Repeat("f", 64)); got != "zerverless/ns/build:ffffffffffffffff" {
		t.Fatal(got)
	}
}

var testBuildKey = []byte(strings.Repeat("k", MinBuildKeyBytes))

// TestSourceKeyIsKeyed: the source key and the default tag made from it
// are keyed with the orchestrator's secret: they differ from the unsalted
// SHA-256 of the inputs and between secrets, so that guessing the build
// arguments and hashing them finds nothing.
func TestSourceKeyIsKeyed(t *testing.T) {
	r := Request{Type: TypeDocker, Namespace: "alice", Dockerfile: "FROM x\nARG PIN\n", BuildArgs: map[string]string{"PIN": "4711"}}
	b1 := r.NewJob("a", time.Now(), DefaultRequestLimits(), testBuildKey).Spec.Docker.Build
	b2 := r.NewJob("b", time.Now(), DefaultRequestLimits(), []byte(strings.Repeat("x", MinBuildKeyBytes))).Spec.Docker.Build
	unsalted := sha256.New()
	fmt.Fprintf(unsalted, "ns %q\ndockerfile %q\ncontext-id %q\n", "alice", r.Dockerfile, "")
	fmt.Fprintf(unsalted, "arg %q %q\n", "PIN", "4711")
	plain := hex.EncodeToString(unsalted.Sum(nil))
	switch {
	case len(b1.SourceKey) != 64:
		t.Fatalf("key %q", b1.SourceKey)
	case b1.SourceKey == plain:
		t.Fatal("the source key is the unsalted SHA-256 of the inputs")
	case b1.SourceKey == b2.SourceKey || b1.Tag == b2.Tag:
		t.Fatalf("two secrets give the same key or tag: %s %s", b1.Tag, b2.Tag)
	case strings.Contains(b1.Tag, plain[:16]):
		t.Fatalf("default tag %s carries the unsalted hash", b1.Tag)
	}
}

func TestAcceptsBuilds(t *testing.T) {
	build := &Job{Type: TypeDocker, Namespace: "alice", Spec: Spec{Docker: &DockerSpec{Image: "zerverless/alice/app:1",
		Build: &BuildSpec{Tag: "zerverless/alice/app:1", BaseImages: []string{"python:3.11"}}}}}
	runBuilt := &Job{Type: TypeDocker, Namespace: "alice", Spec: Spec{Docker: &DockerSpec{Image: "zerverless/alice/app:1"}}}
	caps := func(dc DockerCapabilities) Capabilities {
		return Capabilities{Runtimes: []Type{TypeDocker}, Concurrency: 1, Docker: &dc}
	}
	cases := []struct {
		j     *Job
		c     Capabilities
		ok    bool
		words string
	}{
		{build, caps(DockerCapabilities{}), false, "does not build"},
		{build, caps(DockerCapabilities{Build: true, AllowImages: []string{"alpine:*"}}), false, "base image python:3.11"},
		{build, caps(DockerCapabilities{Build: true, AllowImages: []string{"python:*"}}), true, ""},
		{runBuilt, caps(DockerCapabilities{Build: true}), false, "does not hold image"},
		{runBuilt, caps(DockerCapabilities{Build: true, AllowImages: []string{"alpine:*"}, BuiltImages: []string{"zerverless/alice/app:1"}}), true, ""},
	}
	for i, c := range cases {
		ok, why := c.c.Accepts(c.j)
		if ok != c.ok || !strings.Contains(why, c.words) {
			t.Errorf("case %d: %v %q", i, ok, why)
		}
	}
}
