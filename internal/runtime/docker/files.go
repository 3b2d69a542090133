package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/docker/docker/errdefs"
)

// resultFile, when the container writes valid JSON to /output/result.json,
// becomes the Result's returned value (and stays among its files).
const resultFile = "result.json"

// inputTar is the archive copied to /input: input.json, owned by root,
// mode 0444.
func inputTar(input []byte) io.Reader {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	_ = tw.WriteHeader(&tar.Header{Name: "input.json", Typeflag: tar.TypeReg, Mode: 0o444, Size: int64(len(input)), ModTime: time.Now()})
	_, _ = tw.Write(input)
	_ = tw.Close()
	return &b
}

// use is what a volume holds, as read from its archive.
type use struct {
	bytes   int64 // of regular files, each rounded up to whole pages
	entries int   // files, directories and links, the root included
}

// full reports whether u is at a volume's limits (Config.VolumeMB,
// VolumeInodes), within a few pages: a write there fails with ENOSPC.
func (d *Docker) full(u use) bool {
	return u.bytes+16<<10 >= d.volumeBytes() || u.entries >= d.cfg.VolumeInodes-1
}

const page = 4096

// volumeUse reads the archive of dir in container id and counts what it
// holds, keeping nothing.
func (d *Docker) volumeUse(ctx context.Context, id, dir string) (use, error) {
	rc, _, err := d.engine.CopyFromContainer(ctx, id, dir)
	if err != nil {
		return use{}, err
	}
	defer rc.Close()
	var u use
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			return u, nil
		}
		u.entries++
		if h.Typeflag == tar.TypeReg {
			u.bytes += (h.Size + page - 1) / page * page
		}
	}
}

// readOutput reads the regular files under dir (the /output volume, as
// the holder id mounts it), by path relative to it, up to
// Config.MaxOutputFiles files and Config.MaxOutputBytes bytes in all;
// truncated reports that anything was left out, u what the volume holds,
// skipped how many files were left out for their names (safeName).
// The archive is streamed: what is past the caps is skipped, not held.
// Symbolic links and other special files are not followed or returned.
func (d *Docker) readOutput(ctx context.Context, id, dir string) (files map[string][]byte, truncated bool, u use, skipped int, err error) {
	rc, _, err := d.engine.CopyFromContainer(ctx, id, dir)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, false, u, 0, nil
		}
		return nil, false, u, 0, fmt.Errorf("read /output: %w", err)
	}
	defer rc.Close()
	files, truncated, u, skipped = d.parseOutput(rc)
	return files, truncated, u, skipped, nil
}

// parseOutput reads an archive of the /output directory as readOutput
// does (names begin with the directory's own name).
func (d *Docker) parseOutput(r io.Reader) (files map[string][]byte, truncated bool, u use, skipped int) {
	tr := tar.NewReader(r)
	budget := d.cfg.MaxOutputBytes
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, truncated, u, skipped
		}
		if err != nil {
			return files, true, u, skipped
		}
		u.entries++
		if h.Typeflag != tar.TypeReg {
			continue
		}
		u.bytes += (h.Size + page - 1) / page * page
		// The archive's names start with the directory's own name.
		_, rel, ok := strings.Cut(path.Clean(h.Name), "/")
		if !ok || rel == "" {
			continue
		}
		if !safeName(rel) {
			skipped++
			continue
		}
		if len(files) >= d.cfg.MaxOutputFiles || h.Size > budget {
			truncated = true
			continue
		}
		data := make([]byte, h.Size)
		if _, err := io.ReadFull(tr, data); err != nil {
			return files, true, u, skipped
		}
		budget -= h.Size
		if files == nil {
			files = map[string][]byte{}
		}
		files[rel] = data
	}
}

// safeName reports whether an /output path may be a key of Result.Files:
// valid UTF-8 without a backslash or a control character (a newline, for
// one), which clients would split, print or join into paths wrongly.
func safeName(rel string) bool {
	if !utf8.ValidString(rel) {
		return false
	}
	for _, r := range rel {
		if r == '\\' || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}
