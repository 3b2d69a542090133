// Package dockertest builds the images Zerverless's tests run, offline:
// a root filesystem with Debian's static busybox, imported into the
// engine. It is imported only by tests.
package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
)

// Importer is the engine call ImportBusybox needs.
type Importer interface {
	ImageImport(ctx context.Context, source image.ImportSource, ref string, options image.ImportOptions) (io.ReadCloser, error)
}

// BusyboxRootfs returns a tar of a root filesystem with Debian's static
// busybox and its applets, /tmp with mode 1777 (a tmpfs mounted there takes
// the mode of the directory it covers), and /etc/passwd and /etc/group with
// root and nobody (65534).
func BusyboxRootfs() ([]byte, error) {
	bin, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox-static is not installed (.ci/run installs it): %w", err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(bin, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	mt := time.Unix(1700000000, 0)
	dir := func(name string, mode int64) {
		_ = tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: mode, ModTime: mt})
	}
	file := func(name string, mode int64, content []byte) {
		_ = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(content)), ModTime: mt})
		_, _ = tw.Write(content)
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "root"} {
		dir(d, 0o755)
	}
	dir("tmp", 0o1777)
	file("bin/busybox", 0o755, data)
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		_ = tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: mt})
	}
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ImportBusybox imports BusyboxRootfs into the engine as ref, with
// PATH=/bin and sh as its command.
func ImportBusybox(ctx context.Context, c Importer, ref string) error {
	rootfs, err := BusyboxRootfs()
	if err != nil {
		return err
	}
	rc, err := c.ImageImport(ctx, image.ImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"}, ref,
		image.ImportOptions{Changes: []string{"ENV PATH=/bin", `CMD ["sh"]`}})
	if err != nil {
		return err
	}
	return DrainJSON(rc)
}

// DrainJSON reads an engine's JSON message stream to its end and returns
// the first error it reports.
func DrainJSON(rc io.ReadCloser) error {
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.ErrorDetail.Message != "" {
			return fmt.Errorf("engine: %s", m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return fmt.Errorf("engine: %s", m.Error)
		}
	}
}
