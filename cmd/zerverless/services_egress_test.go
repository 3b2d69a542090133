package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/dockertest"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/protocol/protocoltest"
)

// TestServiceEgressPolicyAndPlacement: a docker service's egress is
// validated as a job's, refused (403) unless the namespace's policy
// allows it, started only on a worker whose owner's --docker-egress
// covers it while the deployment says why it waits, shows what the
// instance's proxy reported, and stops when the policy no longer allows
// it; a redeploy without egress starts instances without it.
func TestServiceEgressPolicyAndPlacement(t *testing.T) {
	srv := serviceServer(t, nil)
	admin := srv.AdminToken()
	errOf := func(a answer) (msg, field string) {
		var e struct{ Error, Field string }
		_ = json.Unmarshal(a.body, &e)
		return e.Error, e.Field
	}
	for body, want := range map[string]struct {
		status int
		field  string
	}{
		`{"runtime":"docker","docker_image":"a:1","network":{"egress":["api.example.com"]}}`:             {400, "network.egress"},
		`{"runtime":"docker","docker_image":"a:1","network":{"egress":["*.*.example.com:443"]}}`:         {400, "network.egress"},
		`{"runtime":"docker","docker_image":"a:1","network":{"egress":["api.example.com:0"]}}`:           {400, "network.egress"},
		`{"runtime":"docker","docker_image":"a:1","port":3128,"network":{"egress":["a.example.com:1"]}}`: {400, "port"},
		`{"runtime":"lua","code":"return 1","network":{"egress":["a.example.com:443"]}}`:                 {400, "runtime"},
		`{"runtime":"docker","docker_image":"a:1","network":{"egress":["api.example.com:443"]}}`:         {403, "network.egress"},
	} {
		a := deployService(t, srv, admin, "alice/bad", body)
		if msg, field := errOf(a); a.status != want.status || field != want.field || msg == "" {
			t.Errorf("%s: %v, want %d naming %s", body, a, want.status, want.field)
		}
	}
	many := make([]string, job.MaxEgressPatterns+1)
	for i := range many {
		many[i] = fmt.Sprintf(`"h%d.example.com:443"`, i)
	}
	if a := deployService(t, srv, admin, "alice/bad", `{"runtime":"docker","docker_image":"a:1","network":{"egress":[`+strings.Join(many, ",")+`]}}`); a.status != 400 {
		t.Errorf("%d patterns: %v", len(many), a)
	}

	if a := send(t, "PUT", srv.URL()+"/api/namespaces/alice", admin, "application/json",
		[]byte(`{"allow_egress":true,"egress":["api.example.com:443","*.example.org:443"]}`)); a.status != 200 {
		t.Fatalf("policy: %v", a)
	}
	if a := deployService(t, srv, admin, "alice/app", `{"runtime":"docker","docker_image":"a:1","network":{"egress":["evil.example.net:443"]}}`); a.status != 403 {
		t.Fatalf("egress outside the policy: %v", a)
	}
	a := deployService(t, srv, admin, "alice/app", `{"runtime":"docker","docker_image":"a:1","min_instances":1,
		"network":{"egress":["API.example.com:443","*.example.org:443","api.example.com:443"]}}`)
	if a.status != 201 {
		t.Fatalf("deploy: %v", a)
	}
	var v api.DeploymentView
	_ = json.Unmarshal(a.body, &v)
	if n := v.Service.Network; n == nil || strings.Join(n.Egress, " ") != "*.example.org:443 api.example.com:443" {
		t.Fatalf("stored egress %+v", n)
	}
	view := func() api.DeploymentView {
		a := send(t, "GET", srv.URL()+"/api/deploy/alice/app", admin, "", nil)
		var v api.DeploymentView
		if err := json.Unmarshal(a.body, &v); err != nil || a.status != 200 {
			t.Fatalf("GET: %v", a)
		}
		return v
	}
	pending := func(want string) {
		t.Helper()
		eventually(t, 15*time.Second, func() error {
			if p := view().Pending; !strings.Contains(p, want) {
				return fmt.Errorf("pending %q, want %q", p, want)
			}
			return nil
		})
	}

	closed := serviceWorker(t, srv, "", 4, echoService)
	pending("allows no egress (its owner did not set --docker-egress)")
	caps := serviceCaps(4)
	caps.Docker.Egress = []string{"api.example.com:443"}
	partial := protocoltest.ServeServices(protocoltest.RegisterFrom(t, srv.WorkerURL(), "", testWorkerSecret, caps), srv.URL(), echoService)
	pending("does not allow egress to *.example.org:443")

	caps = serviceCaps(4)
	caps.Docker.Egress = []string{"*.example.org:443", "*.example.com:443"}
	open := protocoltest.ServeServices(protocoltest.RegisterFrom(t, srv.WorkerURL(), "", testWorkerSecret, caps), srv.URL(), echoService)
	in := open.NextStart(t, "no start on the worker whose owner allows the egress")
	if n := in.Spec.Network; n == nil || len(n.Egress) != 2 {
		t.Fatalf("started with %+v", in.Spec.Network)
	}
	if len(closed.Starts()) != 0 || len(partial.Starts()) != 0 {
		t.Fatal("a worker whose owner does not allow the egress was given an instance")
	}
	// What the instance's proxy reports shows in the deployment and its logs.
	rec := job.EgressRecord{Host: "api.example.com", Port: 443, BytesSent: 10, BytesReceived: 20, Connections: 1}
	if err := open.Conn.Write(context.Background(), protocol.Message{Type: protocol.TypeServiceState, Report: &job.InstanceReport{
		ID: in.ID, State: job.InstanceReady, Output: "egress: refused evil.example.net:443: not on the allow-list of this instance\n",
		Egress: []job.EgressRecord{rec}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		v := view()
		if v.Pending != "" || len(v.Instances) != 1 || len(v.Instances[0].Egress) != 1 || v.Instances[0].Egress[0] != rec {
			return fmt.Errorf("pending %q, instances %+v", v.Pending, v.Instances)
		}
		return nil
	})
	if a := send(t, "GET", srv.URL()+"/api/deploy/alice/app/logs", admin, "", nil); !strings.Contains(string(a.body), "refused evil.example.net:443") {
		t.Fatalf("logs: %v", a)
	}

	// The policy no longer allows egress: the instance stops and none
	// starts again, saying why.
	if a := send(t, "PUT", srv.URL()+"/api/namespaces/alice", admin, "application/json", []byte(`{"allow_egress":false}`)); a.status != 200 {
		t.Fatalf("policy: %v", a)
	}
	select {
	case id := <-open.Stopped():
		if id != in.ID {
			t.Fatalf("stopped %s", id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the instance was not stopped when the policy stopped allowing its egress")
	}
	pending("namespace alice does not allow egress")

	// A redeploy without egress runs without it, on any worker.
	mustDeployService(t, srv, "alice/app", `{"runtime":"docker","docker_image":"a:1","min_instances":1}`)
	var next *job.ServiceInstance
	select {
	case next = <-open.Starts():
	case next = <-closed.Starts():
	case next = <-partial.Starts():
	case <-time.After(30 * time.Second):
		t.Fatal("no instance started after the redeploy without egress")
	}
	if next.Spec.Network != nil {
		t.Fatalf("the redeploy without egress started %+v", next.Spec.Network)
	}
}

// TestServiceEgressEndToEnd: with the real engine, a service deployed
// with egress to a server of this machine (an address the worker's owner
// names) reaches it through its instance's proxy on every request, and
// not another port; the deployment shows the destination and the logs
// the refusal. Redeployed without egress, its instances have no proxy,
// no proxy variables and reach nothing.
func TestServiceEgressEndToEnd(t *testing.T) {
	img := testImage(t, "zerverless-test/busybox:e2e")
	mirrorAt := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "from the mirror\n") })}
		go s.Serve(l)
		t.Cleanup(func() { s.Close() })
		return l.Addr().String()
	}
	dest, other := mirrorAt(), mirrorAt()
	srv, _ := startServer(t, testServerConfig(t, t.TempDir(), 0))
	admin := srv.AdminToken()
	if a := send(t, "PUT", srv.URL()+"/api/namespaces/default", admin, "application/json", []byte(`{"allow_egress":true}`)); a.status != 200 {
		t.Fatalf("policy: %v", a)
	}
	agent, err := dockertest.AgentBinary()
	if err != nil {
		t.Fatal(err)
	}
	ro := DefaultRuntimeOptions()
	ro.Only = []job.Type{job.TypeDocker}
	ro.Docker = true
	ro.DockerConfig.WorkerID = fmt.Sprintf("zvtest-svcegress-%d", time.Now().UnixNano())
	ro.DockerConfig.Pull = false
	ro.DockerConfig.AgentBinary = agent
	ro.DockerConfig.Services = 2
	ro.DockerConfig.Egress = []string{dest}
	startWorkerWith(t, srv.WorkerURL(), "open", ro)

	// Each request runs the handler: through the proxy to dest, then to
	// the other server, then directly to dest.
	// A connection that sends no request (the readiness check) runs
	// nothing.
	handler := `read -r line || exit 0
		while read -r h; do case "$h" in "$(printf '\r')"|"") break;; esac; done
		printf 'HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n'
		echo "== fetch"; wget -q -O - http://DEST/file 2>&1
		echo "== other"; wget -q -O - http://OTHER/file 2>&1
		echo "== direct"; wget -q -Y off -O - http://DEST/file 2>&1
		echo "== orchestrator"; wget -q -O - http://ORCH/health 2>&1; wget -q -Y off -O - http://ORCH/health 2>&1
		echo "== vars $(env | grep -ci '^[a-z]*_proxy=')"
		echo "== listeners"; awk '$4=="0A"{print $2}' /proc/net/tcp
		echo "== end"`
	orch := strings.TrimPrefix(srv.URL(), "http://")
	handler = strings.NewReplacer("OTHER", other, "DEST", dest, "ORCH", orch).Replace(handler)
	deploy := func(network string) {
		body, _ := json.Marshal(map[string]any{"runtime": "docker", "docker_image": img, "docker_env": map[string]string{"H": handler},
			"docker_command": []string{"sh", "-c", `while true; do nc -l -p 8080 -e sh -c "$H"; done`}})
		body = []byte(strings.TrimSuffix(string(body), "}") + network + "}")
		if a := send(t, "POST", srv.URL()+"/api/deploy/default/app", admin, "application/json", body); a.status/100 != 2 {
			t.Fatalf("deploy: %v", a)
		}
	}
	call := func(want string) string {
		t.Helper()
		var out string
		eventually(t, 30*time.Second, func() error {
			status, body, err := callService("GET", srv.URL()+"/default/app/", nil)
			if err != nil || status != 200 || !strings.Contains(body, "== end") || !strings.Contains(body, want) {
				logs := send(t, "GET", srv.URL()+"/api/deploy/default/app/logs", admin, "", nil)
				return fmt.Errorf("%d %q %v; logs %s", status, body, err, logs.body)
			}
			out = body
			return nil
		})
		return out
	}
	deploy(`,"network":{"egress":["` + dest + `"]}`)
	out := call("== vars 6")
	t.Logf("with egress:\n%s", out)
	sec := func(out, name string) string {
		_, rest, _ := strings.Cut(out, "== "+name)
		s, _, _ := strings.Cut(rest, "== ")
		return s
	}
	if !strings.Contains(sec(out, "fetch"), "from the mirror") || strings.Contains(sec(out, "other"), "from the mirror") ||
		strings.Contains(sec(out, "direct"), "from the mirror") || !strings.Contains(sec(out, "listeners"), "0100007F:0C38") ||
		!strings.Contains(sec(out, "orchestrator"), "403 Forbidden") || !strings.Contains(sec(out, "orchestrator"), "can't connect") {
		t.Fatalf("with egress:\n%s", out)
	}
	host, port, _ := net.SplitHostPort(dest)
	eventually(t, time.Minute, func() error {
		a := send(t, "GET", srv.URL()+"/api/deploy/default/app", admin, "", nil)
		var v api.DeploymentView
		_ = json.Unmarshal(a.body, &v)
		for _, in := range v.Instances {
			for _, e := range in.Egress {
				if e.Host == host && fmt.Sprint(e.Port) == port && e.BytesReceived > 0 {
					return nil
				}
			}
		}
		return fmt.Errorf("no record of %s: %s", dest, a.body)
	})
	eventually(t, time.Minute, func() error {
		a := send(t, "GET", srv.URL()+"/api/deploy/default/app/logs", admin, "", nil)
		if !strings.Contains(string(a.body), "egress: refused "+other+": not on the allow-list of this instance") {
			return fmt.Errorf("logs: %s", a.body)
		}
		return nil
	})

	// Redeployed without egress: no proxy at all.
	deploy("")
	out = call("== vars 0")
	t.Logf("without egress:\n%s", out)
	if strings.Contains(out, "from the mirror") || strings.Contains(sec(out, "listeners"), "0C38") {
		t.Fatalf("without egress:\n%s", out)
	}
}

// TestServiceEgressCLI: `zerverless deploy --egress` (repeated) asks for
// egress; another namespace, whose policy is off, cannot deploy the same
// patterns.
func TestServiceEgressCLI(t *testing.T) {
	srv := serviceServer(t, nil)
	if a := send(t, "PUT", srv.URL()+"/api/namespaces/alice", srv.AdminToken(), "application/json", []byte(`{"allow_egress":true}`)); a.status != 200 {
		t.Fatalf("policy: %v", a)
	}
	cli := cliAgainst(srv)
	code, out, errs := cli("deploy", "alice/svc", "--image", "a:1", "--egress", "api.example.com:443", "--egress", "*.example.org:443", "--json")
	if code != 0 {
		t.Fatalf("deploy --egress: %d %q %q", code, out, errs)
	}
	var v api.DeploymentView
	_ = json.Unmarshal([]byte(out), &v)
	if n := v.Service.Network; n == nil || strings.Join(n.Egress, " ") != "*.example.org:443 api.example.com:443" {
		t.Fatalf("deployed %s", out)
	}
	if code, _, errs := cli("deploy", "alice/bad", "--image", "a:1", "--egress", "api.example.com"); code == 0 || !strings.Contains(errs, "network.egress") {
		t.Fatalf("a pattern without a port: %d %q", code, errs)
	}
	c := client.New(srv.URL(), nil).WithToken(srv.AdminToken())
	bob := newToken(t, c, api.TokenRequest{Namespace: "bob", Name: "bob"}).Token
	a := deployService(t, srv, bob, "bob/svc", `{"runtime":"docker","docker_image":"a:1","network":{"egress":["api.example.com:443"]}}`)
	if msg, _ := errOfAnswer(a); a.status != 403 || !strings.Contains(msg, "namespace bob does not allow egress") {
		t.Fatalf("bob asks for alice's egress: %v", a)
	}
}

func errOfAnswer(a answer) (msg, field string) {
	var e struct{ Error, Field string }
	_ = json.Unmarshal(a.body, &e)
	return e.Error, e.Field
}
