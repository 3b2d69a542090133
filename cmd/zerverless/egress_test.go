package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/job"
)

// TestNamespaceEgressPolicy: a namespace's jobs get no egress until an
// admin turns on allow_egress, and then only within the policy's
// patterns; bad patterns are refused, naming the field.
func TestNamespaceEgressPolicy(t *testing.T) {
	tn := startTenants(t)
	base := tn.srv.URL()
	submit := func(egress string) answer {
		return send(t, "POST", base+"/api/jobs", tn.alice, "application/json",
			[]byte(`{"job_type":"docker","docker_image":"busybox","network":{"egress":[`+egress+`]}}`))
	}
	field := func(a answer) string {
		var e struct{ Error, Field string }
		_ = json.Unmarshal(a.body, &e)
		return e.Field
	}
	if a := submit(`"deb.debian.org:80"`); a.status != 403 || field(a) != "network.egress" || !strings.Contains(string(a.body), "allow_egress is off") {
		t.Fatalf("egress without allow_egress: %v", a)
	}
	if a := submit(`"deb.debian.org"`); a.status != 400 || field(a) != "network.egress" {
		t.Fatalf("a pattern without a port: %v", a)
	}
	if a := send(t, "PUT", base+"/api/namespaces/alice", tn.alice, "application/json", []byte(`{"allow_egress":true}`)); a.status != 403 {
		t.Fatalf("a namespace token sets its own policy: %v", a)
	}
	if a := send(t, "PUT", base+"/api/namespaces/alice", tn.adminSecret, "application/json",
		[]byte(`{"allow_egress":true,"egress":["*.debian.org"]}`)); a.status != 400 || field(a) != "egress" {
		t.Fatalf("a bad pattern in a policy: %v", a)
	}
	if a := send(t, "PUT", base+"/api/namespaces/alice", tn.adminSecret, "application/json",
		[]byte(`{"allow_egress":true,"egress":["*.debian.org:80"]}`)); a.status != 200 {
		t.Fatalf("set alice's policy: %v", a)
	}
	if a := submit(`"deb.debian.org:80"`); a.status/100 != 2 {
		t.Fatalf("egress the policy allows: %v", a)
	}
	if a := submit(`"pypi.org:443"`); a.status != 403 || field(a) != "network.egress" || !strings.Contains(string(a.body), "pypi.org:443") {
		t.Fatalf("egress outside the policy: %v", a)
	}
	// Bob's namespace is still off.
	a := send(t, "POST", base+"/api/jobs", tn.bob, "application/json",
		[]byte(`{"job_type":"docker","docker_image":"busybox","network":{"egress":["deb.debian.org:80"]}}`))
	if a.status != 403 || field(a) != "network.egress" {
		t.Fatalf("another namespace: %v", a)
	}
}

// TestEgressEndToEnd: with the namespace allowing egress, a job that
// asks for it waits for the worker whose owner allows it, passing by a
// docker worker that allows none, and fetches from a server of this
// machine through that worker's proxy; the result lists the destination.
func TestEgressEndToEnd(t *testing.T) {
	img := testImage(t, "zerverless-test/busybox:e2e")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mirror := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "from the mirror\n") })}
	go mirror.Serve(l)
	defer mirror.Close()
	dest := l.Addr().String()

	srv, c := startServer(t, testServerConfig(t, t.TempDir(), 0))
	if a := send(t, "PUT", srv.URL()+"/api/namespaces/default", srv.AdminToken(), "application/json", []byte(`{"allow_egress":true}`)); a.status != 200 {
		t.Fatalf("policy: %v", a)
	}
	agent, err := dockertest.AgentBinary()
	if err != nil {
		t.Fatal(err)
	}
	worker := func(name string, egress ...string) {
		ro := DefaultRuntimeOptions()
		ro.Only = []job.Type{job.TypeDocker}
		ro.Docker = true
		ro.DockerConfig.WorkerID = fmt.Sprintf("zvtest-%s-%d", name, time.Now().UnixNano())
		ro.DockerConfig.Pull = false
		ro.DockerConfig.AgentBinary = agent
		ro.DockerConfig.Egress = egress
		startWorkerWith(t, srv.WorkerURL(), name, ro)
	}
	worker("closed")
	ctx := context.Background()
	v, err := c.Submit(ctx, job.Request{Type: job.TypeDocker, DockerImage: img,
		DockerCommand: []string{"wget", "-q", "-O", "-", "http://" + dest + "/file"}, Network: &job.Network{Egress: []string{dest}}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		got, _ := c.Job(ctx, v.ID, 0)
		if got.Status != job.StatusPending || !strings.Contains(got.Reason, "allows no egress") {
			return fmt.Errorf("%s %q", got.Status, got.Reason)
		}
		return nil
	})
	worker("open", dest)
	done := waitDone(t, c, v.ID, 60*time.Second)
	if done.Status != job.StatusCompleted || done.Output != "from the mirror\n" {
		t.Fatalf("%s %q %q %q", done.Status, done.Output, done.Error, done.Stderr)
	}
	ws, _ := c.Workers(ctx)
	for _, w := range ws {
		if w.ID == done.WorkerID && w.Name != "open" {
			t.Fatalf("the job ran on %s", w.Name)
		}
	}
	if len(done.Egress) != 1 || net.JoinHostPort(done.Egress[0].Host, strconv.Itoa(done.Egress[0].Port)) != dest || done.Egress[0].BytesReceived == 0 {
		t.Fatalf("egress records %+v", done.Egress)
	}
}
