package docker

import (
	"context"
	"errors"
	"fmt"
	"regexp"

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
	// "input", "scratch", "build-anchor" (a build's cgroup parent), or
	// "provision" for the short-lived containers
	// that prepare volumes.
	LabelRole = "io.zerverless.role"

	managedBy = "zerverless"
)

var labelValueRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// labels returns the labels of an object of role for job jobID.
func (d *Docker) labels(role, jobID string) map[string]string {
	l := map[string]string{
		LabelManagedBy: managedBy,
		LabelWorkerID:  d.cfg.WorkerID,
		LabelRole:      role,
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
// runtime's worker id, running or not: what a crashed predecessor with the
// same worker id left behind. Objects of other worker ids on the same
// engine are left alone, so workers sharing an engine do not disturb each
// other; this is why WorkerID must be stable across restarts. Call it at
// worker start, before Run; it would also remove the containers of runs in
// progress. It returns the number of objects removed and the errors of
// those it could not remove.
func (d *Docker) Sweep(ctx context.Context) (int, error) {
	f := d.ownFilter()
	cs, err := d.engine.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	n := 0
	var errs []error
	for _, c := range cs {
		err := d.engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID[:12], err))
			continue
		}
		n++
	}
	vs, err := d.engine.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return n, errors.Join(append(errs, fmt.Errorf("list volumes: %w", err))...)
	}
	for _, v := range vs.Volumes {
		err := d.engine.VolumeRemove(ctx, v.Name, true)
		if err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
