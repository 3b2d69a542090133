// Package buildctx validates image build inputs that come from outside:
// build contexts (a tar or tar.gz stream, or a JSON map of files) and
// Dockerfiles (parsed with BuildKit's own parser). It does no I/O of its
// own beyond the readers and writers it is given; the HTTP API runs it at
// submission and the worker runs it again before a build.
//
// A context is validated while it streams: the limits on total size and
// file count are checked from each tar header before its content is read,
// so an archive bomb stops at the first entry that would pass a limit.
// Accepted contexts are rewritten as a normalized tar (owner root, fixed
// modification time, modes 0644/0755/0777, no extended attributes), whose
// SHA-256 is the context's identity.
package buildctx

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// Limits bound one build context. DefaultLimits documents the defaults.
type Limits struct {
	// MaxBytes caps the total size of the files, uncompressed (default
	// 100 MiB).
	MaxBytes int64
	// MaxFiles caps the number of entries: files, directories and links
	// (default 1,000).
	MaxFiles int
	// MaxPathBytes caps one path (default 1,024).
	MaxPathBytes int
}

// DefaultLimits returns the documented defaults.
func DefaultLimits() Limits {
	return Limits{MaxBytes: 100 << 20, MaxFiles: 1000, MaxPathBytes: 1024}
}

// Info describes a normalized context.
type Info struct {
	// SHA256 is the hex SHA-256 of the normalized tar.
	SHA256 string `json:"sha256"`
	// Files counts entries; Bytes is the total size of the files.
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// TarBytes is the size of the normalized tar.
	TarBytes int64 `json:"tar_bytes"`
}

// field is the request field errors name.
const field = "build_context"

// normTime is the modification time of every normalized entry.
var normTime = time.Unix(0, 0).UTC()

// FromTar validates the tar stream r (plain or gzip-compressed, detected
// from its first bytes) and writes its normalized form to w. Every refusal
// is a *job.Error: too_large for a limit, invalid otherwise, naming the
// entry at fault. It reads r only as far as it must.
func FromTar(r io.Reader, lim Limits, w io.Writer) (Info, error) {
	lim = lim.withDefaults()
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return Info{}, job.Invalid(field, "not a gzip stream: %v", err)
		}
		zr.Multistream(false)
		defer zr.Close()
		src = zr
	}
	nw := newNormWriter(w, lim)
	tr := tar.NewReader(src)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Info{}, job.Invalid(field, "not a valid tar archive: %v", err)
		}
		if err := nw.add(h, tr); err != nil {
			return Info{}, err
		}
	}
	return nw.close()
}

// FromFiles validates an inline context (path → file, as in a job's
// build_context; enc is the request's build_context_encoding) and writes
// it to w as a normalized tar, in path order.
func FromFiles(files map[string]job.ContextFile, enc string, lim Limits, w io.Writer) (Info, error) {
	lim = lim.withDefaults()
	if len(files) > lim.MaxFiles {
		return Info{}, tooLarge("has %d files, over the limit of %d", len(files), lim.MaxFiles)
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	nw := newNormWriter(w, lim)
	for _, p := range paths {
		f := files[p]
		data, err := f.Bytes(enc)
		if err != nil {
			return Info{}, job.Invalid(field, "%q: %v", p, err)
		}
		mode := int64(0o644)
		if f.Executable {
			mode = 0o755
		}
		h := &tar.Header{Name: p, Typeflag: tar.TypeReg, Size: int64(len(data)), Mode: mode}
		if err := nw.add(h, strings.NewReader(string(data))); err != nil {
			return Info{}, err
		}
	}
	return nw.close()
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = d.MaxFiles
	}
	if l.MaxPathBytes <= 0 {
		l.MaxPathBytes = d.MaxPathBytes
	}
	return l
}

func tooLarge(format string, args ...any) error {
	return &job.Error{Code: job.CodeTooLarge, Field: field, Message: fmt.Sprintf(format, args...)}
}

// normWriter checks entries and writes them normalized, hashing the
// output.
type normWriter struct {
	lim   Limits
	tw    *tar.Writer
	hash  hashCounter
	seen  map[string]byte // path → type flag
	dirs  map[string]bool // parents of the entries so far
	files int
	bytes int64
}

type hashCounter struct {
	w   io.Writer
	h   interface{ Sum([]byte) []byte }
	hw  io.Writer
	len int64
}

func (c *hashCounter) Write(p []byte) (int, error) {
	c.hw.Write(p)
	c.len += int64(len(p))
	return c.w.Write(p)
}

func newNormWriter(w io.Writer, lim Limits) *normWriter {
	h := sha256.New()
	nw := &normWriter{lim: lim, seen: map[string]byte{}, dirs: map[string]bool{}}
	nw.hash = hashCounter{w: w, h: h, hw: h}
	nw.tw = tar.NewWriter(&nw.hash)
	return nw
}

// CleanPath checks that name is a local relative path and returns its
// clean form without a trailing slash; the error says what is wrong.
func CleanPath(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("contains a NUL byte")
	}
	if strings.HasPrefix(name, "/") {
		return "", errors.New("is an absolute path")
	}
	trimmed := strings.TrimSuffix(name, "/")
	for _, part := range strings.Split(trimmed, "/") {
		if part == ".." {
			return "", errors.New("leaves the context with ..")
		}
	}
	clean := path.Clean(trimmed)
	if clean == "." || clean == "" {
		return ".", nil
	}
	if !filepath.IsLocal(clean) {
		return "", errors.New("is not a local path")
	}
	return clean, nil
}

// add checks h and copies its content from r.
func (nw *normWriter) add(h *tar.Header, r io.Reader) error {
	switch h.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	}
	if len(h.Name) > nw.lim.MaxPathBytes {
		return job.Invalid(field, "a path is %d bytes, over the limit of %d", len(h.Name), nw.lim.MaxPathBytes)
	}
	name, err := CleanPath(h.Name)
	if err != nil {
		return job.Invalid(field, "%q %v; only paths inside the context are allowed", h.Name, err)
	}
	if name == "." {
		if h.Typeflag == tar.TypeDir {
			return nil // the context's own root
		}
		return job.Invalid(field, "%q is not a file name", h.Name)
	}
	if _, dup := nw.seen[name]; dup {
		return job.Invalid(field, "%q appears twice", name)
	}
	// A path below a symlink could be written through it; a path below a
	// file, or a file where entries below it are, is two things at once
	// and would be resolved by whichever the extraction meets last.
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		switch typ, ok := nw.seen[dir]; {
		case !ok || typ == tar.TypeDir:
		case typ == tar.TypeSymlink:
			return job.Invalid(field, "%q lies below the symlink %q", name, dir)
		default:
			return job.Invalid(field, "%q lies below the file %q", name, dir)
		}
	}
	if h.Typeflag != tar.TypeDir && nw.dirs[name] {
		if h.Typeflag == tar.TypeSymlink {
			return job.Invalid(field, "symlink %q replaces a directory with entries", name)
		}
		return job.Invalid(field, "%q is a file, but entries lie below it", name)
	}
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		nw.dirs[dir] = true
	}
	nw.files++
	if nw.files > nw.lim.MaxFiles {
		return tooLarge("has more than %d files", nw.lim.MaxFiles)
	}
	out := &tar.Header{Name: name, ModTime: normTime, Format: tar.FormatPAX}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		if h.Size < 0 {
			return job.Invalid(field, "%q has a negative size", name)
		}
		nw.bytes += h.Size
		if nw.bytes > nw.lim.MaxBytes {
			return tooLarge("is over the limit of %d bytes (at %q)", nw.lim.MaxBytes, name)
		}
		out.Typeflag, out.Size, out.Mode = tar.TypeReg, h.Size, 0o644
		if h.Mode&0o111 != 0 {
			out.Mode = 0o755
		}
	case tar.TypeDir:
		out.Typeflag, out.Mode, out.Name = tar.TypeDir, 0o755, name+"/"
	case tar.TypeSymlink:
		if err := checkLink(name, h.Linkname); err != nil {
			return job.Invalid(field, "symlink %q → %q %v", name, h.Linkname, err)
		}
		out.Typeflag, out.Mode, out.Linkname = tar.TypeSymlink, 0o777, h.Linkname
	case tar.TypeLink:
		target, err := CleanPath(h.Linkname)
		if err != nil || nw.seen[target] != tar.TypeReg {
			return job.Invalid(field, "hard link %q must point to a file earlier in the context, not %q", name, h.Linkname)
		}
		out.Typeflag, out.Mode, out.Linkname = tar.TypeLink, 0o644, target
	case tar.TypeChar, tar.TypeBlock:
		return job.Invalid(field, "%q is a device file; only files, directories and links are allowed", name)
	case tar.TypeFifo:
		return job.Invalid(field, "%q is a named pipe; only files, directories and links are allowed", name)
	default:
		return job.Invalid(field, "%q has entry type %q; only files, directories and links are allowed", name, string(h.Typeflag))
	}
	nw.seen[name] = out.Typeflag
	if err := nw.tw.WriteHeader(out); err != nil {
		return fmt.Errorf("write context: %w", err)
	}
	if out.Typeflag == tar.TypeReg && out.Size > 0 {
		n, err := io.CopyN(nw.tw, r, out.Size)
		if err != nil {
			if n < out.Size && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				return job.Invalid(field, "%q: the archive ends inside the file", name)
			}
			var je *job.Error
			if errors.As(err, &je) {
				return err
			}
			return job.Invalid(field, "%q: %v", name, err)
		}
	}
	return nil
}

// checkLink refuses a symlink whose target is absolute or leaves the
// context from the link's directory.
func checkLink(name, target string) error {
	if target == "" {
		return errors.New("has no target")
	}
	if strings.IndexByte(target, 0) >= 0 {
		return errors.New("has a NUL byte in its target")
	}
	if path.IsAbs(target) {
		return errors.New("points outside the context (absolute target)")
	}
	// ".." only at the start: "d/l/.." would climb from wherever the
	// symlink d/l points, which a lexical check cannot see.
	climbing := true
	for _, part := range strings.Split(target, "/") {
		switch {
		case part == ".." && !climbing:
			return errors.New("has .. after a name; write the target without it")
		case part != "..":
			climbing = false
		}
	}
	joined := path.Join(path.Dir(name), target)
	if joined == ".." || strings.HasPrefix(joined, "../") {
		return errors.New("points outside the context")
	}
	return nil
}

func (nw *normWriter) close() (Info, error) {
	if err := nw.tw.Close(); err != nil {
		return Info{}, fmt.Errorf("write context: %w", err)
	}
	return Info{
		SHA256:   hex.EncodeToString(nw.hash.h.Sum(nil)),
		Files:    nw.files,
		Bytes:    nw.bytes,
		TarBytes: nw.hash.len,
	}, nil
}

// ReadFile returns the content of the regular file name in the normalized
// tar r, at most max bytes, or false when it is not there.
func ReadFile(r io.Reader, name string, max int64) ([]byte, bool, error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if h.Name != name || h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Size > max {
			return nil, true, fmt.Errorf("%s is %d bytes, over the limit of %d", name, h.Size, max)
		}
		b, err := io.ReadAll(tr)
		return b, true, err
	}
}

// FilesBody is the JSON form of POST /api/build-contexts.
type FilesBody struct {
	Files map[string]job.ContextFile `json:"files"`
	// Encoding applies to files that name none: "" (text) or "base64".
	Encoding string `json:"build_context_encoding,omitempty"`
}

// FromJSON validates a FilesBody read from r and writes the normalized
// tar to w.
func FromJSON(r io.Reader, lim Limits, w io.Writer) (Info, error) {
	var body FilesBody
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return Info{}, job.Invalid("files", "must be a JSON object {\"files\": {\"path\": \"content\", ...}}: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Info{}, job.Invalid("", "request body must be a single JSON object")
	}
	if len(body.Files) == 0 {
		return Info{}, job.Invalid("files", "is required and must name at least one file")
	}
	return FromFiles(body.Files, body.Encoding, lim, w)
}
