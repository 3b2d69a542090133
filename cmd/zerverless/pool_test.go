package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/testutil"
)

// TestDockerPoolThroughThePlatform: with --docker-prewarm, a docker job
// submitted over HTTP runs in a prewarmed container and says so
// (warm_start); GET /api/workers and /metrics show the worker's pool.
func TestDockerPoolThroughThePlatform(t *testing.T) {
	img := testImage(t, fmt.Sprintf("zerverless-test/busybox:pool-%d", time.Now().UnixNano()))
	cfg := dockerServerConfig(t, 1)
	bin, err := dockertest.AgentBinary()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Runtimes.DockerConfig.AgentBinary = bin
	cfg.Runtimes.DockerConfig.Prewarm = map[string]int{img: 1}
	srv, c := startServer(t, cfg)
	ctx := context.Background()
	testutil.Eventually(t, 2*time.Minute, func() error {
		ws, err := c.Workers(ctx)
		if err != nil {
			return err
		}
		for _, w := range ws {
			if d := w.Capabilities.Docker; d != nil && d.Pool != nil && d.Pool.Ready == 1 && len(d.Pool.WarmImages) == 1 && d.Pool.WarmImages[0] == img {
				return nil
			}
		}
		return fmt.Errorf("no worker reports a ready container for %s yet", img)
	})
	v, err := c.Submit(ctx, job.Request{Type: job.TypeDocker, DockerImage: img, DockerCommand: []string{"echo", "warm"}})
	if err != nil {
		t.Fatal(err)
	}
	if v, err = c.Job(ctx, v.ID, time.Minute); err != nil || v.Status != job.StatusCompleted || v.ResultView == nil || v.Output != "warm\n" || !v.WarmStart {
		t.Fatalf("job: %v %+v %+v", err, v, v.ResultView)
	}
	testutil.Eventually(t, time.Minute, func() error {
		resp, err := authGet(srv, srv.URL()+"/metrics")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{"zerverless_docker_pool_hits 1", "zerverless_docker_pool_ready 1", "zerverless_docker_pool_ready_seconds"} {
			if !bytes.Contains(body, []byte(want)) {
				return fmt.Errorf("/metrics lacks %q", want)
			}
		}
		return nil
	})
}

func TestParsePrewarm(t *testing.T) {
	got, err := parsePrewarm("alpine:latest=2, localhost:5000/x/y:1=1")
	if err != nil || len(got) != 2 || got["alpine:latest"] != 2 || got["localhost:5000/x/y:1"] != 1 {
		t.Errorf("parsePrewarm = %v, %v", got, err)
	}
	for _, bad := range []string{"alpine", "alpine=0", "=2", "alpine=x"} {
		if _, err := parsePrewarm(bad); err == nil {
			t.Errorf("parsePrewarm(%q) accepted", bad)
		}
	}
}
