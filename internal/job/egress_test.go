package job

import (
	"strings"
	"testing"
	"time"
)

func TestParseEgressPattern(t *testing.T) {
	for _, c := range []struct {
		in, want string // want "": refused
	}{
		{"pypi.org:443", "pypi.org:443"},
		{"PyPI.org.:443", "pypi.org:443"},
		{"*.pythonhosted.org:443", "*.pythonhosted.org:443"},
		{"deb.debian.org:80", "deb.debian.org:80"},
		{"127.0.0.1:8081", "127.0.0.1:8081"},
		{"[::1]:8081", "[::1]:8081"},
		{"[fd00:ec2::254]:80", "[fd00:ec2::254]:80"},
		{"pypi.org", ""},
		{"pypi.org:", ""},
		{"pypi.org:0", ""},
		{"pypi.org:65536", ""},
		{"pypi.org:+80", ""},
		{"pypi.org:080", ""},
		{"*:443", ""},
		{"*.:443", ""},
		{"a.*.org:443", ""},
		{"**.org:443", ""},
		{"-a.org:443", ""},
		{"a_b.org:443", ""},
		{"a..org:443", ""},
		{"::1:80", ""},
		{"[::ffff:127.0.0.1]:80", ""},
		{"[fe80::1%eth0]:80", ""},
		{"1.2.3:80", ""},
		{"0x7f.1:80", ""}, // read as an address by some resolvers
		{"2130706433:80", ""},
		{"a.org:80 ", ""},
		{"a.org:80/x", ""},
		{strings.Repeat("a", 64) + ".org:443", ""},
		{strings.Repeat("a.", 130) + "org:443", ""},
		{":443", ""},
	} {
		p, err := ParseEgressPattern(c.in)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("%q: accepted as %s", c.in, p)
		case c.want != "" && err != nil:
			t.Errorf("%q: %v", c.in, err)
		case c.want != "" && p.String() != c.want:
			t.Errorf("%q: %s, want %s", c.in, p, c.want)
		}
	}
	if _, err := ParseEgress(make([]string, MaxEgressPatterns+1)); err == nil {
		t.Error("too many patterns accepted")
	}
}

func TestEgressCoversAndMatches(t *testing.T) {
	for _, c := range []struct {
		allowed []string
		want    string
		covered bool
	}{
		{[]string{"pypi.org:443"}, "pypi.org:443", true},
		{[]string{"pypi.org:443"}, "pypi.org:80", false},
		{[]string{"pypi.org:443"}, "evilpypi.org:443", false},
		{[]string{"*.pythonhosted.org:443"}, "files.pythonhosted.org:443", true},
		{[]string{"*.pythonhosted.org:443"}, "*.files.pythonhosted.org:443", true},
		{[]string{"*.pythonhosted.org:443"}, "*.pythonhosted.org:443", true},
		{[]string{"*.pythonhosted.org:443"}, "pythonhosted.org:443", false},
		{[]string{"*.pythonhosted.org:443"}, "evilpythonhosted.org:443", false},
		{[]string{"files.pythonhosted.org:443"}, "*.pythonhosted.org:443", false},
		{[]string{"*.org:443"}, "127.0.0.1:443", false},
		{[]string{"127.0.0.1:8081"}, "127.0.0.1:8081", true},
		{[]string{"127.0.0.1:8081"}, "localhost:8081", false},
		{nil, "pypi.org:443", false},
		{[]string{"pypi.org:443"}, "not a pattern", false},
	} {
		got := EgressUncovered(c.allowed, []string{c.want}) == ""
		if got != c.covered {
			t.Errorf("%v covers %s: %v, want %v", c.allowed, c.want, got, c.covered)
		}
	}
	p, _ := ParseEgressPattern("*.test:80")
	for host, want := range map[string]bool{"a.test": true, "A.TEST.": true, "test": false, "a.test.evil": false, "127.0.0.1": false} {
		if p.Matches(host, 80) != want || p.Matches(host, 81) {
			t.Errorf("*.test:80 matches %s: %v", host, !want)
		}
	}
	a, _ := ParseEgressPattern("127.0.0.1:80")
	if !a.Matches("127.0.0.1", 80) || !a.Matches("::ffff:127.0.0.1", 80) || a.Matches("localhost", 80) {
		t.Error("an address pattern matches by address only")
	}
}

func TestNamespaceEgressPolicy(t *testing.T) {
	off := NamespacePolicy{Namespace: "a"}
	if off.EgressRefusal(nil) != "" || !strings.Contains(off.EgressRefusal([]string{"pypi.org:443"}), "allow_egress is off") {
		t.Error("egress off by default")
	}
	any := NamespacePolicy{Namespace: "a", AllowEgress: true}
	if any.EgressRefusal([]string{"pypi.org:443"}) != "" {
		t.Error("allow_egress without patterns leaves the bound to workers")
	}
	some := NamespacePolicy{Namespace: "a", AllowEgress: true, Egress: []string{"*.debian.org:80"}}
	if some.EgressRefusal([]string{"deb.debian.org:80"}) != "" || !strings.Contains(some.EgressRefusal([]string{"pypi.org:443"}), "pypi.org:443") {
		t.Error("the policy's patterns bound the job's")
	}
	if (NamespacePolicy{Egress: []string{"nope"}}).Validate() == nil {
		t.Error("a bad pattern in a policy is accepted")
	}
}

func TestEgressRequest(t *testing.T) {
	for body, field := range map[string]string{
		`{"job_type":"docker","docker_image":"a","network":{"egress":["pypi.org"]}}`:   "network.egress",
		`{"job_type":"docker","docker_image":"a","network":{"egress":"pypi.org:443"}}`: "network.egress",
		`{"job_type":"docker","docker_image":"a","network":{"ingress":[]}}`:            "network.ingress",
		`{"job_type":"lua","code":"x","network":{"egress":["pypi.org:443"]}}`:          "network",
		`{"job_type":"docker","docker_image":"a","network":{"egress":["a.org:1", 2]}}`: "network.egress",
	} {
		_, err := DecodeRequest([]byte(body), DefaultRequestLimits())
		if ErrorCode(err) != CodeInvalid || ErrorField(err) != field {
			t.Errorf("%s: %v (field %q), want field %q", body, err, ErrorField(err), field)
		}
	}
	r, err := DecodeRequest([]byte(`{"job_type":"docker","docker_image":"a","network":{"egress":["PyPI.org:443","pypi.org:443","*.b.org:80"]}}`), DefaultRequestLimits())
	if err != nil {
		t.Fatal(err)
	}
	j := r.NewJob("j", time.Unix(0, 0), DefaultRequestLimits(), make([]byte, 32))
	if got := strings.Join(j.Spec.EgressOf(), ","); got != "*.b.org:80,pypi.org:443" {
		t.Errorf("egress of the job: %s", got)
	}
	// The same build with other egress is another build.
	build := func(egress string) string {
		r, err := DecodeRequest([]byte(`{"job_type":"docker","dockerfile":"FROM a","network":{"egress":[`+egress+`]}}`), DefaultRequestLimits())
		if err != nil {
			t.Fatal(err)
		}
		return r.NewJob("j", time.Unix(0, 0), DefaultRequestLimits(), make([]byte, 32)).Spec.Docker.Build.SourceKey
	}
	if build(`"a.org:443"`) == build(`"b.org:443"`) {
		t.Error("the source key does not depend on the egress list")
	}
}

func FuzzParseEgressPattern(f *testing.F) {
	for _, s := range []string{"pypi.org:443", "*.a.b:1", "[::1]:80", "1.2.3.4:5", "*.:0", "a:65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseEgressPattern(s)
		if err != nil {
			return
		}
		// The canonical form parses to the same pattern, covers itself,
		// and a name it matches is a name.
		q, err := ParseEgressPattern(p.String())
		if err != nil || q != p || !p.Covers(q) {
			t.Fatalf("%q -> %s -> %v %v", s, p, q, err)
		}
		if !p.Wildcard && !p.Addr.IsValid() && !p.Matches(p.Host, p.Port) {
			t.Fatalf("%s does not match its own host", p)
		}
	})
}
