package main

import (
	"encoding/json"
	"strings"
	"testing"
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
