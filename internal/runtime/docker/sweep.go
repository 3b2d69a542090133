package docker

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/errdefs"
)

// Labels on everything the runtime creates. An operator can find it all
// with `docker ps -a --filter label=io.zerverless.managed-by=zerverless`.
const (
	LabelManagedBy = "io.zerverless.managed-by"
	LabelWorkerID  = "io.zerverless.worker-id"
	LabelJobID     = "io.zerverless.job-id"
	// LabelRole says what a container or volume is for: "job", "output",
	// "input", "scratch", "holder" for the containers that keep a run's
	// volumes mounted (volumes.go), "build-anchor" for a build's cgroup
	// parent (buildlimits.go), or "build".
	LabelRole = "io.zerverless.role"
	// LabelInstance is random for each runtime (each process): Sweep
	// never removes what its own runtime made, even when a worker id is
	// shared by mistake.
	LabelInstance = "io.zerverless.instance"

	managedBy = "zerverless"
)

var labelValueRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// labelsUntil is labels with the deadline (LabelDeadline) of the object;
// a zero deadline sets none.
func (d *Docker) labelsUntil(role, jobID string, deadline time.Time) map[string]string {
	l := d.labels(role, jobID)
	if !deadline.IsZero() {
		l[LabelDeadline] = strconv.FormatInt(deadline.Unix()+1, 10)
	}
	return l
}

// labels returns the labels of an object of role for job jobID.
func (d *Docker) labels(role, jobID string) map[string]string {
	l := map[string]string{
		LabelManagedBy: managedBy,
		LabelWorkerID:  d.cfg.WorkerID,
		LabelRole:      role,
		LabelInstance:  d.instance,
	}
	if jobID != "" {
		l[LabelJobID] = jobID
	}
	return l
}

// ownFilter matches the objects of this runtime's worker id.
func (d *Docker) ownFilter() filters.Args {
	return filters.NewArgs(
		filters.Arg("label", LabelManagedBy+"="+managedBy),
		filters.Arg("label", LabelWorkerID+"="+d.cfg.WorkerID),
	)
}

// Sweep force-removes every container and volume labeled with this
// runtime's worker id, running or not, that this runtime did not make
// (LabelInstance): what a crashed predecessor with the same worker id left
// behind. Objects of other worker ids on the same engine are left alone,
// so workers sharing an engine do not disturb each other; this is why
// WorkerID must be stable across restarts and never shared by two live
// workers (ClaimWorkerID). Runs of this runtime in progress are never
// touched, so it is safe at any time; the runtime's upkeep (Start) calls
// it whenever the engine answers after being away. It returns the number
// of objects removed and the errors of those it could not remove.
func (d *Docker) Sweep(ctx context.Context) (int, error) {
	f := d.ownFilter()
	cs, err := d.engine.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	n := 0
	var errs []error
	for _, c := range cs {
		if c.Labels[LabelInstance] == d.instance {
			continue
		}
		err := d.engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID[:12], err))
			continue
		}
		n++
	}
	if err := d.sweepRelaySockets(); err != nil {
		errs = append(errs, fmt.Errorf("remove relay sockets: %w", err))
	}
	vs, err := d.engine.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return n, errors.Join(append(errs, fmt.Errorf("list volumes: %w", err))...)
	}
	for _, v := range vs.Volumes {
		if v.Labels[LabelInstance] == d.instance {
			continue
		}
		err := d.engine.VolumeRemove(ctx, v.Name, true)
		if err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
