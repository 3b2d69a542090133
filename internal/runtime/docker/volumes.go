package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"
)

// Volumes and why they are made this way.
//
// The container's root filesystem is read-only and its /tmp is a tmpfs
// that vanishes when it stops, so /output and the job's scratch volumes
// are named volumes: their content outlives the container long enough to
// be read back with CopyFromContainer. A fresh volume's root belongs to
// root with mode 0755, which user 65534 cannot write, and the archive API
// cannot change the owner of a volume's root. The engine does, however,
// copy the owner and mode of the image's directory onto an empty volume
// mounted over it when a container is created. So the runtime imports a
// tiny image of its own, provisionImage, whose directories /o00../o15 are
// owned by 65534 with mode 0755 (and /w00../w15 with mode 0777 for
// AllowImageUser, where the user is not known), and creates — never
// starts — a container of it with new named volumes mounted there. One
// create prepares up to 16 volumes; the container is removed at once and
// the volumes stay, labeled, until the job that uses them is removed.
//
// The engine's local volume driver sets no size quota, so while it runs a
// container can write to /output and its scratch volumes as much as the
// engine's disk allows; its timeout bounds how long. What is read back is
// capped (Config.MaxOutputFiles, MaxOutputBytes), and the volumes are
// removed with the container. A tmpfs-backed volume would bound the size
// but loses its content when the container stops, before it can be read.
// Anonymous volumes that an image's own VOLUME lines ask for are removed
// with the container too.
//
// Volumes are prepared for each job, with its deadline as a label, so
// that the upkeep of any worker removes them should this one die; none is
// kept ready ahead without a deadline.
//
// /input is an anonymous volume of the job's container filled with
// CopyToContainer before start: input.json owned by root, mode 0444, in a
// root-owned 0755 directory, so user 65534 can read and not change it. It
// is made only when the job has input_data, and goes with the container.
const (
	provisionImage = "zerverless/provision:1"
	provisionSlots = 16
)

// provisionTar is the layer of provisionImage.
func provisionTar() []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := range provisionSlots {
		for _, d := range []struct {
			prefix string
			mode   int64
		}{{"o", 0o755}, {"w", 0o777}} {
			_ = tw.WriteHeader(&tar.Header{
				Name: fmt.Sprintf("%s%02d/", d.prefix, i), Typeflag: tar.TypeDir,
				Mode: d.mode, Uid: nobody, Gid: nobody, ModTime: time.Unix(0, 0),
			})
		}
	}
	_ = tw.Close()
	return b.Bytes()
}

const nobody = 65534

// ensureProvisionImage imports provisionImage once.
func (d *Docker) ensureProvisionImage(ctx context.Context) error {
	d.provMu.Lock()
	defer d.provMu.Unlock()
	if d.provReady {
		return nil
	}
	if _, err := d.engine.ImageInspect(ctx, provisionImage); err == nil {
		d.provReady = true
		return nil
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("inspect %s: %w", provisionImage, err)
	}
	rc, err := d.engine.ImageImport(ctx,
		image.ImportSource{Source: bytes.NewReader(provisionTar()), SourceName: "-"},
		provisionImage,
		image.ImportOptions{Changes: []string{`CMD ["/none"]`, "LABEL " + LabelManagedBy + "=" + managedBy}})
	if err != nil {
		return fmt.Errorf("import %s: %w", provisionImage, err)
	}
	if err := drainJSON(rc); err != nil {
		return fmt.Errorf("import %s: %w", provisionImage, err)
	}
	d.provReady = true
	return nil
}

// provision makes n new named volumes (n ≤ provisionSlots) whose root
// user 65534 can write, labeled with role, jobID and deadline.
func (d *Docker) provision(ctx context.Context, n int, role, jobID string, deadline time.Time) ([]string, error) {
	if err := d.ensureProvisionImage(ctx); err != nil {
		return nil, err
	}
	prefix := "o"
	if d.cfg.AllowImageUser {
		prefix = "w"
	}
	names := make([]string, n)
	mounts := make([]mount.Mount, n)
	for i := range n {
		names[i] = "zerverless-" + randomHex(8)
		mounts[i] = mount.Mount{
			Type: mount.TypeVolume, Source: names[i], Target: fmt.Sprintf("/%s%02d", prefix, i),
			VolumeOptions: &mount.VolumeOptions{Labels: d.labelsUntil(role, jobID, deadline)},
		}
	}
	// Not interrupted half-way, so that no container is created unseen.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	create := func() (container.CreateResponse, error) {
		return d.engine.ContainerCreate(ctx,
			&container.Config{Image: provisionImage, Labels: d.labelsUntil("provision", jobID, time.Now().Add(2*time.Minute)), NetworkDisabled: true},
			&container.HostConfig{NetworkMode: "none", Mounts: mounts, LogConfig: container.LogConfig{Type: "none"}},
			nil, nil, "")
	}
	resp, err := create()
	if errdefs.IsNotFound(err) {
		// Someone removed the image since it was imported.
		d.provMu.Lock()
		d.provReady = false
		d.provMu.Unlock()
		if err = d.ensureProvisionImage(ctx); err == nil {
			resp, err = create()
		}
	}
	if err != nil {
		d.removeVolumes(names)
		return nil, fmt.Errorf("prepare volumes: %w", err)
	}
	d.background(func(ctx context.Context) error {
		return d.engine.ContainerRemove(ctx, resp.ID, container.RemoveOptions{Force: true})
	})
	return names, nil
}

// removeVolumes removes named volumes in the background.
func (d *Docker) removeVolumes(names []string) {
	for _, name := range names {
		d.background(func(ctx context.Context) error {
			return d.engine.VolumeRemove(ctx, name, true)
		})
	}
}

// outputVolume prepares the /output volume of a job.
func (d *Docker) outputVolume(ctx context.Context, jobID string, deadline time.Time) (string, error) {
	names, err := d.provision(ctx, 1, "output", jobID, deadline)
	if err != nil {
		return "", err
	}
	return names[0], nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// drainJSON reads a JSON message stream of the engine (import, pull) to
// its end and returns the first error message in it.
func drainJSON(rc io.ReadCloser) error {
	defer rc.Close()
	return readJSONMessages(rc)
}
