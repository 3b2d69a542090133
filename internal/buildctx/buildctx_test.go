package buildctx

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"

	"github.com/zerverless/zerverless/internal/job"
)

type entry struct {
	name, link string
	typ        byte
	body       string
	size       int64 // overrides len(body) in the header when set
}

func makeTar(t testing.TB, entries ...entry) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		size := int64(len(e.body))
		if e.size > 0 {
			size = e.size
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: 0o644}
		if typ == tar.TypeReg {
			h.Size = size
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg && e.size == 0 {
			tw.Write([]byte(e.body))
		}
		if e.size > 0 {
			// A header that promises more than follows: the stream ends.
			tw.Flush()
			return b.Bytes()
		}
	}
	tw.Close()
	return b.Bytes()
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func TestFromTar(t *testing.T) {
	good := makeTar(t, entry{name: "./app/", typ: tar.TypeDir}, entry{name: "app/main.py", body: "print(1)"},
		entry{name: "link", typ: tar.TypeSymlink, link: "app/main.py"}, entry{name: "up", typ: tar.TypeSymlink, link: "app/../app"})
	_ = good
	cases := []struct {
		name  string
		data  []byte
		lim   Limits
		code  job.Code
		words string
	}{
		{"plain", makeTar(t, entry{name: "./app/", typ: tar.TypeDir}, entry{name: "app/main.py", body: "print(1)"}, entry{name: "link", typ: tar.TypeSymlink, link: "app/main.py"}), Limits{}, "", ""},
		{"gzip", gz(makeTar(t, entry{name: "a", body: "x"})), Limits{}, "", ""},
		{"dotdot", makeTar(t, entry{name: "../x", body: "x"}), Limits{}, job.CodeInvalid, "leaves the context"},
		{"inner dotdot", makeTar(t, entry{name: "a/../../x", body: "x"}), Limits{}, job.CodeInvalid, "leaves the context"},
		{"absolute", makeTar(t, entry{name: "/etc/passwd", body: "x"}), Limits{}, job.CodeInvalid, "absolute"},
		{"symlink to root", makeTar(t, entry{name: "root", typ: tar.TypeSymlink, link: "/"}), Limits{}, job.CodeInvalid, "outside"},
		{"symlink up", makeTar(t, entry{name: "a/up", typ: tar.TypeSymlink, link: "../../etc"}), Limits{}, job.CodeInvalid, "outside"},
		{"symlink climb after name", makeTar(t, entry{name: "e", typ: tar.TypeSymlink, link: "d/l/.."}), Limits{}, job.CodeInvalid, "after a name"},
		{"below symlink", makeTar(t, entry{name: "d", typ: tar.TypeSymlink, link: "x"}, entry{name: "d/f", body: "x"}), Limits{}, job.CodeInvalid, "below the symlink"},
		// A path cannot be a file and a directory at once, in either order,
		// at any depth, and a hard link or symlink counts as a file.
		{"file then below it", makeTar(t, entry{name: "a", body: "x"}, entry{name: "a/b", body: "y"}), Limits{}, job.CodeInvalid, "below the file"},
		{"below then file", makeTar(t, entry{name: "a/b", body: "y"}, entry{name: "a", body: "x"}), Limits{}, job.CodeInvalid, "entries lie below it"},
		{"deep below file", makeTar(t, entry{name: "a", body: "x"}, entry{name: "a/b/c/d", body: "y"}), Limits{}, job.CodeInvalid, "below the file"},
		{"dir then file", makeTar(t, entry{name: "a/b/", typ: tar.TypeDir}, entry{name: "a", body: "x"}), Limits{}, job.CodeInvalid, "entries lie below it"},
		{"below hard link", makeTar(t, entry{name: "f", body: "x"}, entry{name: "h", typ: tar.TypeLink, link: "f"}, entry{name: "h/b", body: "y"}), Limits{}, job.CodeInvalid, "below the file"},
		{"symlink over dir", makeTar(t, entry{name: "d/f", body: "x"}, entry{name: "d", typ: tar.TypeSymlink, link: "e"}), Limits{}, job.CodeInvalid, "replaces a directory"},
		{"device", makeTar(t, entry{name: "null", typ: tar.TypeChar}), Limits{}, job.CodeInvalid, "device"},
		{"fifo", makeTar(t, entry{name: "p", typ: tar.TypeFifo}), Limits{}, job.CodeInvalid, "named pipe"},
		{"too many", makeTar(t, entry{name: "a"}, entry{name: "b"}, entry{name: "c"}), Limits{MaxFiles: 2}, job.CodeTooLarge, "more than 2 files"},
		{"too big", makeTar(t, entry{name: "a", body: "12345"}, entry{name: "b", body: "123456"}), Limits{MaxBytes: 10}, job.CodeTooLarge, "over the limit"},
		// The header says 1 GiB: refused from the header, before any content.
		{"bomb", makeTar(t, entry{name: "big", size: 1 << 30}), Limits{}, job.CodeTooLarge, "over the limit"},
		{"duplicate", makeTar(t, entry{name: "a"}, entry{name: "./a"}), Limits{}, job.CodeInvalid, "twice"},
		{"not tar", []byte("hello, this is not a tar archive at all, not even close; padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding"), Limits{}, job.CodeInvalid, "tar"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			info, err := FromTar(bytes.NewReader(c.data), c.lim, &out)
			if c.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(info.SHA256) != 64 || int64(out.Len()) != info.TarBytes {
					t.Fatalf("info %+v, %d bytes written", info, out.Len())
				}
				// Normalizing a normalized context changes nothing.
				var again bytes.Buffer
				info2, err := FromTar(bytes.NewReader(out.Bytes()), c.lim, &again)
				if err != nil || info2.SHA256 != info.SHA256 {
					t.Fatalf("not idempotent: %v %s %s", err, info2.SHA256, info.SHA256)
				}
				return
			}
			if job.ErrorCode(err) != c.code || job.ErrorField(err) != "build_context" || !strings.Contains(err.Error(), c.words) {
				t.Fatalf("got %v (code %s), want %s with %q", err, job.ErrorCode(err), c.code, c.words)
			}
		})
	}
}

// TestBombStopsEarly: an endless stream of small files stops at the file
// limit, having read little of the stream.
func TestBombStopsEarly(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		for i := 0; ; i++ {
			if err := tw.WriteHeader(&tar.Header{Name: strings.Repeat("f", 10) + string(rune('a'+i%26)) + strings.Repeat("x", i%50) + "-" + itoa(i), Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}); err != nil {
				return
			}
			if _, err := tw.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	_, err := FromTar(pr, Limits{MaxFiles: 100}, io.Discard)
	pr.Close()
	if job.ErrorCode(err) != job.CodeTooLarge {
		t.Fatalf("got %v", err)
	}
}

func itoa(i int) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
		if i == 0 {
			return string(b)
		}
	}
}

func TestFromJSON(t *testing.T) {
	var out bytes.Buffer
	info, err := FromJSON(strings.NewReader(`{"files": {"main.py": "print(1)", "bin/run": {"content": "IyEvYmluL3NoCg==", "encoding": "base64", "executable": true}}}`), Limits{}, &out)
	if err != nil || info.Files != 2 {
		t.Fatalf("%+v %v", info, err)
	}
	got, ok, err := ReadFile(bytes.NewReader(out.Bytes()), "bin/run", 100)
	if err != nil || !ok || string(got) != "#!/bin/sh\n" {
		t.Fatalf("%q %v %v", got, ok, err)
	}
	// The same files give the same digest, whatever their order in JSON.
	info2, _ := FromJSON(strings.NewReader(`{"files": {"bin/run": {"content": "IyEvYmluL3NoCg==", "encoding": "base64", "executable": true}, "main.py": "print(1)"}}`), Limits{}, io.Discard)
	if info2.SHA256 != info.SHA256 {
		t.Fatal("digest depends on JSON order")
	}
	for body, words := range map[string]string{
		`{"files": {"../x": "a"}}`:                                   "leaves the context",
		`{"files": {"/etc/passwd": "a"}}`:                            "absolute",
		`{"files": {"a": "!!"}, "build_context_encoding": "base64"}`: "illegal base64",
		`{"files": {}}`:                                              "at least one",
		`{"files": {"a": "x", "a/b": "y"}}`:                          "below the file",
		`{"files": {"a/": "x", "a/b": "y"}}`:                         "below the file",
		`{"nope": 1}`:                                                "unknown field",
	} {
		if _, err := FromJSON(strings.NewReader(body), Limits{}, io.Discard); err == nil || !strings.Contains(err.Error(), words) {
			t.Errorf("%s: got %v, want %q", body, err, words)
		}
	}
}

func TestCheckDockerfile(t *testing.T) {
	pol := Policy{AllowImages: []string{"python:*", "busybox"}, Namespace: "alice", BuildArgs: map[string]string{"V": "3.11"}}
	ok := []struct {
		src   string
		bases []string
	}{
		{"FROM python:3.11-slim\nWORKDIR /app\nCOPY main.py .\nCMD [\"python\", \"main.py\"]", []string{"python:3.11-slim"}},
		{"ARG V=3.10\nFROM python:${V}\nARG VERSION\nENV APP_VERSION=$VERSION\nRUN echo \"Building version $VERSION\"", []string{"python:3.11"}},
		{"ARG X\nFROM python:${X:-3.9} AS build\nRUN true\nFROM scratch\nCOPY --from=build /a /a", []string{"python:3.9"}},
		{"FROM zerverless/alice/app:v1\nRUN true", []string{"zerverless/alice/app:v1"}},
		{"FROM busybox\nADD local.tar.gz /x\nCOPY --chown=1:1 a b", []string{"busybox"}},
	}
	for _, c := range ok {
		df, err := CheckDockerfile(c.src, pol)
		if err != nil || strings.Join(df.BaseImages, ",") != strings.Join(c.bases, ",") {
			t.Errorf("%q: %+v %v", c.src, df, err)
		}
	}
	bad := map[string]string{
		"FROM alpine:latest":                                  "line 1: base image alpine:latest is not allowed",
		"FROM busybox\nADD https://example.com/x /x":          "line 2: ADD from a URL",
		"FROM busybox\nRUN --mount=type=cache,target=/x true": "line 2: RUN --mount is not allowed",
		"FROM busybox\nRUN --network=host true":               "RUN --network is not allowed",
		"FROM busybox\nRUN --security=insecure true":          "RUN --security is not allowed",
		"FROM busybox\nCOPY --from=alpine /x /x":              "base image alpine is not allowed",
		"FROM zerverless/bob/app:v1":                          "belongs to another namespace",
		"FROM busybox\nONBUILD RUN x":                         "ONBUILD",
		"FROM busybox\nFROBNICATE x":                          "line 2: unknown instruction FROBNICATE",
		"RUN true":                                            "before the first FROM",
		"FROM python:$NOPE":                                   "not a global ARG",
		"FROM busybox\nENV A":                                 "line 2: syntax error",
		"# syntax=docker/dockerfile:1\nFROM busybox":          "syntax directive",
		"": "empty",
		"FROM busybox\n" + strings.Repeat("RUN true\n", 100): "more than 100 instructions",
		"FROM busybox\nADD git@github.com:x/y.git /src":      "URL",
	}
	for src, words := range bad {
		_, err := CheckDockerfile(src, pol)
		if job.ErrorCode(err) != job.CodeInvalid || job.ErrorField(err) != "dockerfile" || !strings.Contains(err.Error(), words) {
			t.Errorf("%q: got %v, want %q", src, err, words)
		}
	}
}

// TestPin: the pinned Dockerfile names every image by the id it was
// given and leaves no variable in FROM or COPY --from, whatever the
// original wrote there; everything else parses as it did.
func TestPin(t *testing.T) {
	idA := "sha256:" + strings.Repeat("a", 64)
	idB := "sha256:" + strings.Repeat("b", 64)
	pol := Policy{AllowImages: []string{"busybox", "allowed/*"}, Namespace: "alice", BuildArgs: map[string]string{"V": "busybox", "HTTP_PROXY": "zerverless/bob/secret:1"}}
	cases := []struct {
		src, want string
	}{
		{"FROM busybox\nRUN echo hi", "FROM " + idA + "\nRUN echo hi\n"},
		{"ARG V\nFROM ${V}\nRUN echo \\\n  continued", "ARG V\nFROM " + idA + "\nRUN echo   continued\n"},
		// The builder would substitute HTTP_PROXY here; the pin leaves it nothing.
		{"FROM ${HTTP_PROXY:-allowed/base:1} AS b\nFROM busybox\nCOPY --from=${HTTP_PROXY:-allowed/base:1} /a /a\nCOPY --chown=1:1 --from=b /x /y", "FROM " + idB + " AS b\nFROM " + idA + "\nCOPY --from=" + idB + " /a /a\nCOPY --chown=1:1 --from=b /x /y\n"},
		{"ARG S=b\nFROM busybox AS b\nFROM scratch\nCOPY --from=$S /a /a\nCOPY --from=0 /a /b", "ARG S=b\nFROM " + idA + " AS b\nFROM scratch\nCOPY --from=b /a /a\nCOPY --from=0 /a /b\n"},
		{"# escape=`\nFROM busybox\nRUN echo `\n  x", "# escape=`\nFROM " + idA + "\nRUN echo   x\n"},
		{"FROM busybox\nCMD [\"sh\", \"-c\", \"echo $HOME\"]", "FROM " + idA + "\nCMD [\"sh\", \"-c\", \"echo $HOME\"]\n"},
	}
	ids := map[string]string{"busybox": idA, "allowed/base:1": idB}
	for _, c := range cases {
		df, err := CheckDockerfile(c.src, pol)
		if err != nil {
			t.Fatalf("%q: %v", c.src, err)
		}
		got, err := df.Pin(ids)
		if err != nil || got != c.want {
			t.Errorf("%q: pinned %q %v, want %q", c.src, got, err, c.want)
			continue
		}
		if _, err := PinnedImages(got); err != nil {
			t.Errorf("%q: %v", got, err)
		}
	}
	df, _ := CheckDockerfile("FROM busybox", pol)
	if _, err := df.Pin(map[string]string{"busybox": "busybox"}); err == nil {
		t.Error("pinned to a name, not an id")
	}
	for _, src := range []string{"FROM busybox", "FROM ${X:-" + idA + "}", "FROM " + idA + "\nCOPY --from=alpine /a /a", "FROM " + idA + "\nCOPY --from=1 /a /a", "FROM " + strings.TrimPrefix(idA, "sha256:")} {
		if _, err := PinnedImages(src); err == nil {
			t.Errorf("%q passed as pinned", src)
		}
	}
	for src, words := range map[string]string{
		"FROM busybox\nADD ${HTTP_PROXY} /x":               "variables are not allowed in ADD",
		"FROM --platform=$HTTP_PROXY busybox":              "--platform",
		"FROM busybox\nCOPY --from=0 /a /a":                "not an earlier stage",
		"FROM busybox\nFROM busybox\nCOPY --from=-1 /a /a": "not an earlier stage",
		"FROM busybox AS $X":                               "stage name",
	} {
		if _, err := CheckDockerfile(src, pol); err == nil || !strings.Contains(err.Error(), words) {
			t.Errorf("%q: got %v, want %q", src, err, words)
		}
	}
}
