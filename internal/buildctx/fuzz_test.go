package buildctx

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// checkNormalized asserts what every accepted context promises: local
// paths, no device files, links inside, limits kept.
func checkNormalized(t *testing.T, data []byte, info Info, lim Limits) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	n, total := 0, int64(0)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("normalized tar does not read back: %v", err)
		}
		n++
		name := strings.TrimSuffix(h.Name, "/")
		if !filepath.IsLocal(name) {
			t.Fatalf("accepted non-local path %q", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			total += h.Size
		case tar.TypeDir, tar.TypeLink:
		case tar.TypeSymlink:
			if err := checkLink(name, h.Linkname); err != nil {
				t.Fatalf("accepted symlink %q → %q: %v", name, h.Linkname, err)
			}
		default:
			t.Fatalf("accepted entry type %q", h.Typeflag)
		}
	}
	if n != info.Files || total != info.Bytes || n > lim.MaxFiles || total > lim.MaxBytes {
		t.Fatalf("counts: %d files %d bytes, info %+v, limits %+v", n, total, info, lim)
	}
}

func FuzzFromTar(f *testing.F) {
	f.Add(makeTar(f, entry{name: "a", body: "x"}, entry{name: "d/", typ: tar.TypeDir}, entry{name: "l", typ: tar.TypeSymlink, link: "a"}))
	f.Add(gz(makeTar(f, entry{name: "../x", body: "x"})))
	f.Add(makeTar(f, entry{name: "h", typ: tar.TypeLink, link: "a"}))
	lim := Limits{MaxBytes: 1 << 16, MaxFiles: 50}
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		info, err := FromTar(bytes.NewReader(data), lim, &out)
		if err != nil {
			return
		}
		checkNormalized(t, out.Bytes(), info, lim)
	})
}

func FuzzFromJSON(f *testing.F) {
	f.Add(`{"files": {"main.py": "print(1)", "x/y": {"content": "AA==", "encoding": "base64"}}}`)
	f.Add(`{"files": {"../a": "x"}}`)
	f.Add(`{"files": {"a": "YQ=="}, "build_context_encoding": "base64"}`)
	lim := Limits{MaxBytes: 1 << 16, MaxFiles: 50}
	f.Fuzz(func(t *testing.T, body string) {
		var out bytes.Buffer
		info, err := FromJSON(strings.NewReader(body), lim, &out)
		if err != nil {
			return
		}
		checkNormalized(t, out.Bytes(), info, lim)
	})
}

func FuzzCheckDockerfile(f *testing.F) {
	f.Add("FROM busybox\nRUN true")
	f.Add("ARG V=1\nFROM python:${V:-2} AS b\nCOPY --from=b /a /b")
	f.Fuzz(func(t *testing.T, src string) {
		df, err := CheckDockerfile(src, Policy{AllowImages: []string{"busybox", "python:*"}, Namespace: "ns"})
		if err != nil {
			return
		}
		for _, b := range df.BaseImages {
			if !strings.HasPrefix(b, "busybox") && !strings.HasPrefix(b, "python:") && !strings.HasPrefix(b, "zerverless/ns/") {
				t.Fatalf("accepted base image %q", b)
			}
		}
		// An accepted Dockerfile pins, and the pin names only the ids given.
		ids := map[string]string{}
		for i, b := range df.BaseImages {
			ids[b] = fmt.Sprintf("sha256:%064x", i)
		}
		pinned, err := df.Pin(ids)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		got, err := PinnedImages(pinned)
		if err != nil || len(got) != len(df.BaseImages) {
			t.Fatalf("%q pinned %q: %v %v", src, pinned, got, err)
		}
	})
}
