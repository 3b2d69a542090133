package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeFlagsRefuseNonsense starts serve with each setting that would
// break the platform: each is refused at start, with status 2 and the
// flag's name, before anything is created in the data directory.
func TestServeFlagsRefuseNonsense(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string // the flag the refusal must name
	}{
		{[]string{"--heartbeat", "0"}, "--heartbeat"},
		{[]string{"--heartbeat", "-1s"}, "--heartbeat"},
		{[]string{"--max-queued", "0"}, "--max-queued"},
		{[]string{"--ended-jobs", "-1"}, "--ended-jobs"},
		{[]string{"--ended-jobs-bytes", "-5"}, "--ended-jobs-bytes"},
		{[]string{"--lease-grace", "0"}, "--lease-grace"},
		{[]string{"--max-body-bytes", "-1"}, "--max-body-bytes"},
		{[]string{"--build-context-ttl", "0"}, "--build-context-ttl"},
		{[]string{"--workers", "-1"}, "--workers"},
		{[]string{"--job-retention", "0"}, "--job-retention"},
		{[]string{"--job-storage-mb", "-7"}, "--job-storage-mb"},
		{[]string{"--namespace-max-instances", "-2"}, "--namespace-max-instances"},
		{[]string{"--idle-timeout", "0"}, "--idle-timeout"},
		{[]string{"--read-header-timeout", "0"}, "--read-header-timeout"},
		{[]string{"--min-body-rate", "0"}, "--min-body-rate"},
		{[]string{"--body-grace", "0"}, "--body-grace"},
		{[]string{"--max-conns", "-1"}, "--max-conns"},
		{[]string{"--max-conns-per-addr", "-1"}, "--max-conns-per-addr"},
		{[]string{"--max-conns", "100000000"}, "--max-conns"},
		{[]string{"--max-conns", "100", "--max-conns-per-addr", "101"}, "--max-conns-per-addr"},
		{[]string{"--max-worker-sessions", "-3"}, "--max-worker-sessions"},
		{[]string{"--max-register-bytes", "-5"}, "--max-register-bytes"},
		{[]string{"--addr", ""}, "--addr"},
		{[]string{"--max-register-bytes", "0"}, "--max-register-bytes"},
		{[]string{"--functions-domain", "no_dots"}, "--functions-domain"},
		{[]string{"--addr", "nonsense"}, "--addr"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--concurrency", "0"}, "--concurrency"},
		// The docker runtime's settings, refused before the worker id is
		// claimed in the data directory.
		{[]string{"--docker", "--docker-memory-mb", "0"}, "--docker-memory-mb"},
		{[]string{"--docker", "--docker-max-pids", "0"}, "--docker-max-pids"},
		{[]string{"--docker", "--docker-image-budget-mb", "-1"}, "--docker-image-budget-mb"},
		{[]string{"--docker", "--docker-pool-ttl", "0"}, "--docker-pool-ttl"},
		{[]string{"--docker", "--docker-build", "--docker-build-pids", "0"}, "--docker-build-pids"},
		{[]string{"--docker", "--docker-build", "--docker-build-cpus", "-1"}, "--docker-build-cpus"},
		{[]string{"--docker", "--docker-build", "--docker-build-disk-mb", "-1"}, "--docker-build-disk-mb"},
	} {
		t.Run(strings.Join(tc.args, "="), func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", data}, tc.args...)
			var out, errOut bytes.Buffer
			code := run(context.Background(), args, &out, &errOut, func(string) string { return "" })
			if code != 2 || !strings.Contains(errOut.String(), tc.flag+":") && !strings.Contains(errOut.String(), tc.flag+" ") {
				t.Fatalf("status %d, stderr %q: want 2 and a refusal naming %s", code, errOut.String(), tc.flag)
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Errorf("the data directory was created (%v) for a refused start", err)
			}
		})
	}

	// Two at once: both are named.
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--heartbeat", "0", "--max-queued", "0"},
		&out, &errOut, func(string) string { return "" })
	if code != 2 || !strings.Contains(errOut.String(), "--heartbeat:") || !strings.Contains(errOut.String(), "--max-queued:") {
		t.Fatalf("status %d, stderr %q: want both settings named", code, errOut.String())
	}
}

// TestWorkerFlagsRefuseNonsense: the worker refuses nonsense at start with
// status 2, naming the flag, before it dials or creates anything.
func TestWorkerFlagsRefuseNonsense(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--orchestrator", "nonsense"}, "--orchestrator"},
		{[]string{"--orchestrator", "http://localhost:8000/ws/volunteer"}, "--orchestrator"},
		{[]string{"--reconnect-max", "-1s"}, "--reconnect-max"},
		{[]string{"--concurrency", "0"}, "--concurrency"},
		{[]string{"--memory-mb", "0"}, "--memory-mb"},
		{[]string{"--runtimes", "nope"}, "--runtimes"},
		{[]string{"--docker", "--docker-volume-mb", "0"}, "--docker-volume-mb"},
		{[]string{"--docker-services", "2"}, "--docker-services"},
		{[]string{"--docker", "--docker-services", "-1"}, "--docker-services"},
		{[]string{"--docker", "--docker-service-streams", "0"}, "--docker-service-streams"},
		{[]string{"--docker", "--docker-service-start-timeout", "0"}, "--docker-service-start-timeout"},
		{[]string{"--docker", "--docker-egress", "pypi.org"}, "--docker-egress"},
		{[]string{"--docker", "--docker-egress", "*:443"}, "--docker-egress"},
		{[]string{"--docker", "--docker-egress-bytes", "-1"}, "--docker-egress-bytes"},
		{[]string{"--docker", "--docker-max-memory-mb", "0"}, "--docker-max-memory-mb"},
		{[]string{"--docker", "--docker-pids", "-1"}, "--docker-pids"},
		{[]string{"--docker", "--docker-namespace-image-mb", "-1"}, "--docker-namespace-image-mb"},
		{[]string{"--docker", "--docker-pool-max", "-1"}, "--docker-pool-max"},
		{[]string{"--docker", "--docker-build", "--docker-build-timeout", "0"}, "--docker-build-timeout"},
		{[]string{"--docker", "--docker-build", "--docker-build-memory-mb", "1"}, "--docker-build-memory-mb"},
		{[]string{"--docker", "--docker-build", "--docker-build-network", "host"}, "--docker-build-network"},
	} {
		t.Run(strings.Join(tc.args, "="), func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			args := append([]string{"worker", "--data", data}, tc.args...)
			var out, errOut bytes.Buffer
			code := run(context.Background(), args, &out, &errOut, func(string) string { return "" })
			if code != 2 || !strings.Contains(errOut.String(), tc.flag) {
				t.Fatalf("status %d, stderr %q: want 2 and a refusal naming %s", code, errOut.String(), tc.flag)
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Errorf("the data directory was created (%v) for a refused start", err)
			}
		})
	}
}
