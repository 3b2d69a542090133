package docker

import (
	"context"
	"testing"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/runtime/runtimetest"
)

func TestConformance(t *testing.T) { poolModes(t, nil, testConformance) }

func testConformance(t *testing.T, d *Docker) {
	spec := func(argv ...string) job.Spec {
		return job.Spec{Docker: &job.DockerSpec{Image: testImage, Command: argv}}
	}
	if d.poolSync { // containers ready before the suite's clocks start
		for range 3 {
			d.prefill(context.Background(), runtimetest.Task(spec("true")), 3)
		}
	}
	runtimetest.Run(t, d, runtimetest.Programs{
		Success: spec("sh", "-c",
			`echo hello; x=$(sed 's/[^0-9]//g' /input/input.json); echo $((x*2)) > /output/result.json`),
		Error:     spec("sh", "-c", "echo boom-error >&2; exit 1"),
		ErrorText: "boom-error",
		Loop:      spec("sh", "-c", "while :; do :; done"),
		Flood:     spec("sh", "-c", `head -c 2000000 /dev/zero | tr '\0' x`),
		MemoryHog: spec("sh", "-c", `x=aaaaaaaaaaaaaaaa; while :; do x="$x$x"; done`),
		Invalid:   spec("/no/such/program"),
		Live:      spec("sh", "-c", "echo first; while :; do sleep 1; done"),
	})
}
