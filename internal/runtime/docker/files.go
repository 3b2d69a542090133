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

// readOutput reads the regular files under the stopped container's
// /output, by path relative to it, up to Config.MaxOutputFiles files and
// Config.MaxOutputBytes bytes in all; truncated reports that anything was
// left out. The archive is streamed: what is past the caps is skipped, not
// held. Symbolic links and other special files are not followed or
// returned.
func (d *Docker) readOutput(ctx context.Context, id string) (files map[string][]byte, truncated bool, err error) {
	rc, _, err := d.engine.CopyFromContainer(ctx, id, "/output")
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("read /output: %w", err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	budget := d.cfg.MaxOutputBytes
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, truncated, nil
		}
		if err != nil {
			return files, true, nil
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		// The archive's names start with the directory's own name, "output/".
		_, rel, ok := strings.Cut(path.Clean(h.Name), "/")
		if !ok || rel == "" {
			continue
		}
		if len(files) >= d.cfg.MaxOutputFiles || h.Size > budget {
			truncated = true
			continue
		}
		data := make([]byte, h.Size)
		if _, err := io.ReadFull(tr, data); err != nil {
			return files, true, nil
		}
		budget -= h.Size
		if files == nil {
			files = map[string][]byte{}
		}
		files[rel] = data
	}
}
