// Package docker is the Docker runtime: it runs a docker job as one
// container of the worker's Docker Engine, through the engine's API (the
// official Go client with API version negotiation, so engines from API
// 1.41 up), behind the narrow Engine interface.
//
// A worker builds it with New(cfg, engine) from DefaultConfig and its
// flags and calls Start: the runtime's upkeep (upkeep.go) then runs the
// start-up (Sweep of what a crashed predecessor with the same worker id
// left, LoadBuilt, Prepull) whenever the engine answers, at start or after
// it was away, and reaps the containers of any dead worker past their
// deadline. The worker calls Check before it advertises docker (and
// periodically), and advertises Capabilities. Run runs one task; Close
// stops the upkeep and waits for background removals.
//
// One run, in order:
//
//  1. The spec is checked against the worker's policy (allowed images,
//     resource maximums, scratch volume names and paths, JSON input);
//     anything outside it is a failed Result before any pull or container.
//  2. The image is used if present, or pulled after its registry manifest
//     shows it under the size limit (images.go).
//  3. The run's tmpfs volumes (/output, /input, the job's scratch
//     volumes), each bounded in bytes and files, are taken with their
//     running holder from the warm pool, or prepared when the job asks for
//     scratch volumes (volumes.go explains why they are made this way).
//  4. The container is created under the strict profile (profile.go); the
//     input, when there is some, is copied into its /input volume.
//  5. The runtime attaches to stdout and stderr, registers for the next
//     exit and starts the container. The attach stream is demultiplexed
//     into two buffers capped at exactly the output limit; past the cap
//     the stream is still read and discarded, so the container never
//     blocks on a full pipe and the worker's memory stays bounded. The
//     attach stream carries the bytes as written, not split into lines.
//  6. On exit: exit code, OOM kill and timing from inspect, peak memory and
//     CPU time from the cgroup (stats.go), files from /output
//     (CopyFromContainer through the holder, streamed and capped; names
//     that are not plain text are left out; files.go). A valid
//     /output/result.json becomes the Result's value. A full /output, or
//     a full scratch volume of a job that failed, fails the run saying so.
//  7. The container and its volumes are removed in the background, off
//     the result's path, with retries; a failure is logged and the next
//     Sweep, or any worker's reaper once the deadline label has passed,
//     removes what is left.
//
// When the context's deadline passes or it is canceled, the container is
// killed through the API at once, and the run ends timeout or canceled
// after the container is removed (bounded; the removal falls back to the
// background if the engine is slow).
package docker
