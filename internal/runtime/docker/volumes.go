package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"

	"github.com/zerverless/zerverless/internal/job"
)

// Volumes and why they are made this way.
//
// The container's root filesystem is read-only and its /tmp is a tmpfs
// (Config.TmpMB, Config.VolumeInodes), so everything a job can write is a
// volume the runtime made: /output, /input and the job's scratch volumes.
// Each is a tmpfs volume of the engine's local driver (type=tmpfs) with
// size=Config.VolumeMB and nr_inodes=Config.VolumeInodes: a job that
// writes more gets ENOSPC from the kernel at once, and nothing it writes
// touches the volunteer's disk. The mount options also set the owner and
// mode of the volume's root (65534, 0755; 0777 with AllowImageUser; root
// for /input), which a fresh volume of the local driver would otherwise
// give to root. tmpfs pages are charged to the memory cgroup of the
// process that writes them, so what a job keeps in its volumes counts
// against its memory limit too (MemorySwap equals Memory: they are never
// swapped to disk either).
//
// A tmpfs volume is mounted while a running container uses it and its
// content is lost when the last one stops: before the runtime could read
// /output back. So each run has a holder: a container of the runtime's
// own tiny image, provisionImage, whose only program is a 129-byte static
// executable that calls pause(2) for ever (pauseELF). The holder mounts
// every volume of the run at /v00, /v01, … and runs from before the job's
// container is created until its files are read back; the input is copied
// in, and /output read, through it. It runs as 65534 with no capability,
// no network, a read-only root, 64 MiB and 4 processes.
//
// The holder, the volumes and the job's container carry the job's
// deadline (LabelDeadline) and are removed together, off the result's path.
//
// Anonymous volumes that the job's image asks for with VOLUME lines would
// be on the host's disk: each such path gets a tmpfs of the same size and
// inode limits instead.
const (
	provisionImage = "zerverless/provision:2"
	// provisionSlots is the most scratch volumes a job may have.
	provisionSlots = 16
	// holderSlots are the mount points of a holder: /output, /input and
	// the scratch volumes.
	holderSlots = provisionSlots + 2
	// holderMemory bounds a holder; the engine's container set-up (runc's
	// init) runs in its cgroup before the pause, and needs tens of MiB.
	holderMemory = 64 << 20
	// holderPids bounds a holder's tasks. The pause program is one thread,
	// but the engine's set-up (runc's init, a Go program with threads of
	// its own) runs in the holder's cgroup before it: a tighter limit makes
	// that set-up fail at random ("cannot start a stopped process").
	holderPids = 32
)

// provisionTar is the layer of provisionImage for the engine's
// architecture: /pause and the holder's empty mount points.
func provisionTar(arch string) ([]byte, error) {
	pause, err := pauseELF(arch)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := range holderSlots {
		_ = tw.WriteHeader(&tar.Header{
			Name: fmt.Sprintf("v%02d/", i), Typeflag: tar.TypeDir,
			Mode: 0o755, ModTime: time.Unix(0, 0),
		})
	}
	_ = tw.WriteHeader(&tar.Header{Name: "pause", Typeflag: tar.TypeReg, Mode: 0o555, Size: int64(len(pause)), ModTime: time.Unix(0, 0)})
	_, _ = tw.Write(pause)
	_ = tw.Close()
	return b.Bytes(), nil
}

// pauseELF returns a static Linux executable for arch ("amd64" or
// "arm64", as the engine names it) that waits for a signal for ever: an
// ELF header, one loadable segment, and a loop around the pause (amd64)
// or ppoll (arm64, which has no pause) system call.
func pauseELF(arch string) ([]byte, error) {
	var machine uint16
	var code []byte
	switch arch {
	case "amd64", "x86_64":
		machine = 0x3e
		// mov eax, 34 (pause); syscall; jmp back to the mov
		code = []byte{0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7}
	case "arm64", "aarch64":
		machine = 0xb7
		for _, ins := range []uint32{
			0xd2800000, // mov x0, #0
			0xd2800001, // mov x1, #0
			0xd2800002, // mov x2, #0
			0xd2800003, // mov x3, #0
			0xd2800928, // mov x8, #73 (ppoll)
			0xd4000001, // svc #0
			0x17fffffa, // b back to the first mov
		} {
			code = binary.LittleEndian.AppendUint32(code, ins)
		}
	default:
		return nil, fmt.Errorf("docker engine architecture %q is not supported (amd64, arm64)", arch)
	}
	const base = 0x400000
	const hdr = 64 + 56
	le := binary.LittleEndian
	b := make([]byte, hdr, hdr+len(code))
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1}) // 64-bit, little-endian, version 1
	le.PutUint16(b[16:], 2)                       // ET_EXEC
	le.PutUint16(b[18:], machine)                 // e_machine
	le.PutUint32(b[20:], 1)                       // e_version
	le.PutUint64(b[24:], base+hdr)                // e_entry
	le.PutUint64(b[32:], 64)                      // e_phoff
	le.PutUint16(b[52:], 64)                      // e_ehsize
	le.PutUint16(b[54:], 56)                      // e_phentsize
	le.PutUint16(b[56:], 1)                       // e_phnum
	ph := b[64:]
	le.PutUint32(ph[0:], 1)                      // PT_LOAD
	le.PutUint32(ph[4:], 5)                      // PF_R|PF_X
	le.PutUint64(ph[16:], base)                  // p_vaddr
	le.PutUint64(ph[24:], base)                  // p_paddr
	le.PutUint64(ph[32:], uint64(hdr+len(code))) // p_filesz
	le.PutUint64(ph[40:], uint64(hdr+len(code))) // p_memsz
	le.PutUint64(ph[48:], 0x1000)                // p_align
	return append(b, code...), nil
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
	v, err := d.engine.ServerVersion(ctx)
	if err != nil {
		return fmt.Errorf("docker engine version: %w", err)
	}
	layer, err := provisionTar(v.Arch)
	if err != nil {
		return err
	}
	rc, err := d.engine.ImageImport(ctx,
		image.ImportSource{Source: bytes.NewReader(layer), SourceName: "-"},
		provisionImage,
		image.ImportOptions{Changes: []string{`CMD ["/pause"]`, "LABEL " + LabelManagedBy + "=" + managedBy}})
	if err != nil {
		return fmt.Errorf("import %s: %w", provisionImage, err)
	}
	if err := drainJSON(rc); err != nil {
		return fmt.Errorf("import %s: %w", provisionImage, err)
	}
	d.provReady = true
	return nil
}

// kit is the volumes of one run and the holder that keeps them mounted.
type kit struct {
	holder  string            // the holder container's id
	made    time.Time         // when the holder was made
	output  string            // the /output volume
	input   string            // the /input volume
	scratch map[string]string // scratch mount path → volume
	slot    map[string]string // volume → the holder's mount point of it
	vols    []string          // every volume
}

// prepareKit returns the volumes of run t (an /output volume, an /input
// volume, one per scratch path) with their holder running: a warm one
// when t has no scratch volumes and the pool has one, or a new one
// labeled with t's deadline. On error nothing is left (the removal is in
// the background).
func (d *Docker) prepareKit(ctx context.Context, t *job.Task, scratchPaths []string, deadline time.Time) (*kit, error) {
	if len(scratchPaths) == 0 {
		if k := d.takeWarm(); k != nil {
			// An engine restart stops holders; a stopped one holds nothing.
			if err := d.holding(ctx, k); err == nil {
				return k, nil
			}
			d.removeLater("", k)
		}
	}
	return d.makeKit(ctx, t.JobID, scratchPaths, deadline)
}

// makeKit makes a kit for jobID ("" for the pool) labeled with deadline.
func (d *Docker) makeKit(ctx context.Context, jobID string, scratchPaths []string, deadline time.Time) (*kit, error) {
	if err := d.ensureProvisionImage(ctx); err != nil {
		return nil, err
	}
	k := &kit{scratch: map[string]string{}, slot: map[string]string{}, made: time.Now()}
	mode := "0755"
	if d.cfg.AllowImageUser {
		mode = "0777"
	}
	var mounts []mount.Mount
	add := func(role, opts string) string {
		name := "zerverless-" + randomHex(8)
		target := fmt.Sprintf("/v%02d", len(mounts))
		mounts = append(mounts, mount.Mount{
			Type: mount.TypeVolume, Source: name, Target: target,
			VolumeOptions: &mount.VolumeOptions{
				NoCopy: true,
				Labels: d.labelsUntil(role, jobID, deadline),
				DriverConfig: &mount.Driver{Name: "local", Options: map[string]string{
					"type": "tmpfs", "device": "tmpfs", "o": opts,
				}},
			},
		})
		k.vols = append(k.vols, name)
		k.slot[name] = target
		return name
	}
	vol := fmt.Sprintf("size=%d,nr_inodes=%d,uid=%d,gid=%d,mode=%s,nosuid,nodev",
		d.volumeBytes(), d.cfg.VolumeInodes, nobody, nobody, mode)
	k.output = add("output", vol)
	// Root's: user 65534 reads the input and cannot change it.
	k.input = add("input", fmt.Sprintf("size=%d,nr_inodes=%d,uid=0,gid=0,mode=0755,nosuid,nodev,noexec", d.volumeBytes(), d.cfg.VolumeInodes))
	for _, p := range scratchPaths {
		k.scratch[p] = add("scratch", vol)
	}
	// Not interrupted half-way, so that no container is created unseen.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	user := strconv.Itoa(nobody) + ":" + strconv.Itoa(nobody)
	pids := int64(holderPids)
	create := func() (container.CreateResponse, error) {
		return d.engine.ContainerCreate(ctx,
			&container.Config{Image: provisionImage, User: user, Labels: d.labelsUntil("holder", jobID, deadline), NetworkDisabled: true},
			&container.HostConfig{
				NetworkMode: "none", Mounts: mounts, LogConfig: container.LogConfig{Type: "none"},
				ReadonlyRootfs: true, CapDrop: []string{"ALL"}, SecurityOpt: []string{"no-new-privileges"},
				Resources: container.Resources{Memory: holderMemory, MemorySwap: holderMemory, NanoCPUs: 5e8, PidsLimit: &pids},
			},
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
		d.removeVolumes(k.vols)
		return nil, fmt.Errorf("prepare volumes: %w", err)
	}
	k.holder = resp.ID
	if err := d.engine.ContainerStart(ctx, k.holder, container.StartOptions{}); err != nil {
		d.removeLater("", k)
		return nil, fmt.Errorf("start the volumes' holder: %w", err)
	}
	return k, nil
}

// holding returns nil when k's holder runs, and so keeps its volumes.
func (d *Docker) holding(ctx context.Context, k *kit) error {
	info, err := d.engine.ContainerInspect(ctx, k.holder)
	if err != nil {
		return fmt.Errorf("inspect the volumes' holder: %w", err)
	}
	if info.State == nil || !info.State.Running {
		return errors.New("the volumes' holder stopped: the engine restarted or killed it")
	}
	return nil
}

// volumeBytes is the size of one /output or scratch volume.
func (d *Docker) volumeBytes() int64 { return int64(d.cfg.VolumeMB) << 20 }

// Warm kits.
//
// A holder takes a container create and start, which would be on every
// job's path; so Config.WarmHolders kits (holder, /output and /input
// volumes) are kept ready for jobs without scratch volumes. A warm kit is
// labeled with a deadline warmTTL after it was made, and is used only in
// the first half of that; past its deadline, the reaper of any worker
// leaves its holder alone while a container whose deadline has not passed
// uses its volumes (a job that took it), and removes it otherwise.
const warmTTL = 10 * time.Minute

// kitPool keeps warm kits.
type kitPool struct {
	mu      sync.Mutex
	ready   []*kit
	filling bool
	closed  bool
}

// takeWarm returns a warm kit, or nil, and refills the pool in the
// background. Kits past half their life are removed.
func (d *Docker) takeWarm() *kit {
	p := &d.pool
	p.mu.Lock()
	var k *kit
	for len(p.ready) > 0 && k == nil {
		k, p.ready = p.ready[0], p.ready[1:]
		if time.Since(k.made) > warmTTL/2 {
			d.removeLater("", k)
			k = nil
		}
	}
	refill := !p.filling && !p.closed && len(p.ready) < d.cfg.WarmHolders
	if refill {
		p.filling = true
	}
	p.mu.Unlock()
	if refill {
		d.background(d.refillPool)
	}
	return k
}

// refillPool makes kits until the pool holds WarmHolders.
func (d *Docker) refillPool(ctx context.Context) error {
	p := &d.pool
	defer func() {
		p.mu.Lock()
		p.filling = false
		p.mu.Unlock()
	}()
	for {
		p.mu.Lock()
		n := d.cfg.WarmHolders - len(p.ready)
		closed := p.closed
		p.mu.Unlock()
		if n <= 0 || closed {
			return nil
		}
		k, err := d.makeKit(ctx, "", nil, time.Now().Add(warmTTL))
		if err != nil {
			return err
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			d.removeLater("", k)
			return nil
		}
		p.ready = append(p.ready, k)
		p.mu.Unlock()
	}
}

// drainPool removes the warm kits and stops refilling.
func (d *Docker) drainPool() {
	p := &d.pool
	p.mu.Lock()
	p.closed = true
	ready := p.ready
	p.ready = nil
	p.mu.Unlock()
	for _, k := range ready {
		d.removeLater("", k)
	}
}

// removeVolumes removes named volumes in the background.
func (d *Docker) removeVolumes(names []string) {
	for _, name := range names {
		d.background(func(ctx context.Context) error {
			return d.engine.VolumeRemove(ctx, name, true)
		})
	}
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
