package docker

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/testutil"
)

func agentConfig(t testing.TB) func(*Config) {
	t.Helper()
	bin, err := dockertest.AgentBinary()
	if err != nil {
		t.Fatal(err)
	}
	return func(c *Config) { c.AgentBinary = bin }
}

// startJoined starts a busybox container running script in r's network
// namespace, removed at the end of the test.
func startJoined(t *testing.T, d *Docker, r *netRelay, script string) string {
	t.Helper()
	ctx := context.Background()
	pids := int64(32)
	c, err := testEngine.ContainerCreate(ctx,
		&container.Config{Image: testImage, Cmd: []string{"sh", "-c", script}, User: "65534:65534", Labels: d.labels("test", "")},
		&container.HostConfig{NetworkMode: r.networkMode(), CapDrop: []string{"ALL"}, ReadonlyRootfs: true,
			Resources: container.Resources{PidsLimit: &pids}}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = testEngine.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	})
	if err := testEngine.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// TestRelayCarriesBothWays: the worker dials a port of a container that
// has no network through its relay, and takes the connections the
// container opens to the relay's listening address; nothing else is
// reachable from inside.
func TestRelayCarriesBothWays(t *testing.T) {
	d := newTestRuntime(t, agentConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := d.startRelay(ctx, relayConfig{role: "test-relay", listen: []string{"127.0.0.1:3128"}, deadline: time.Now().Add(5 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()

	// A server inside answers what the worker sends it, upper-cased.
	startJoined(t, d, r, `while true; do nc -l -p 8080 -e tr a-z A-Z; done`)
	var c io.ReadWriteCloser
	testutil.Eventually(t, 20*time.Second, func() error {
		var err error
		var dialed func() error
		if c, dialed, err = r.dial(ctx, 8080); err != nil {
			return err
		}
		return dialed()
	})
	if _, err := io.WriteString(c, "hello relay\n"); err != nil {
		t.Fatal(err)
	}
	c.Close() // a half close: tr answers at the end of its input
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "HELLO RELAY\n" {
		t.Fatalf("through the relay: %q, %v", line, err)
	}
	_, dialed, err := r.dial(ctx, 9)
	if err == nil {
		err = dialed()
	}
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("a closed port: %v", err)
	}

	// A client inside reaches the worker only through the relay's
	// address; the bridge gateway, the engine's host and the internet
	// are unreachable (no route), loopback ports other than the relay's
	// have nothing.
	startJoined(t, d, r, `
		echo ping | nc 127.0.0.1 3128
		for a in 172.17.0.1 10.0.0.1 1.1.1.1 169.254.169.254; do
			if echo x | nc -w 2 $a 80; then echo "reached $a" | nc 127.0.0.1 3128; fi
		done
		ip route 2>/dev/null | nc 127.0.0.1 3128
		echo done | nc 127.0.0.1 3128`)
	var got []string
	for {
		conn, addr, err := r.accept()
		if err != nil {
			t.Fatal(err)
		}
		if addr != "127.0.0.1:3128" {
			t.Fatalf("accepted from %q", addr)
		}
		b, _ := io.ReadAll(conn)
		conn.Close()
		s := strings.TrimSpace(string(b))
		got = append(got, s)
		if s == "done" {
			break
		}
	}
	if got[0] != "ping" || len(got) != 3 || got[1] != "" {
		t.Fatalf("from inside: %q", got)
	}
}

// TestRelayContainerProfile: the relay runs with nothing to give away.
func TestRelayContainerProfile(t *testing.T) {
	d := newTestRuntime(t, agentConfig(t))
	ctx := context.Background()
	r, err := d.startRelay(ctx, relayConfig{role: "test-relay", deadline: time.Now().Add(5 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	info, err := testEngine.ContainerInspect(ctx, r.id)
	if err != nil {
		t.Fatal(err)
	}
	h := info.HostConfig
	if info.Config.User != "65534:65534" || !h.ReadonlyRootfs || len(h.CapDrop) != 1 || h.CapDrop[0] != "ALL" ||
		h.NetworkMode != "none" || h.Memory != relayMemory || h.PidsLimit == nil || *h.PidsLimit != relayPids || h.Privileged {
		t.Fatalf("relay profile: user %q host %+v", info.Config.User, h)
	}
	r.close()
	if _, err := testEngine.ContainerInspect(ctx, r.id); err == nil {
		t.Fatal("the relay is still there after close")
	}
}

// TestAgentMustBeStatic: a dynamically linked agent is refused at once.
func TestAgentMustBeStatic(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AgentBinary = "/bin/sh"
	if _, err := New(cfg, testEngine); err == nil || !strings.Contains(err.Error(), "static") {
		t.Fatalf("New with a dynamic agent: %v", err)
	}
}
