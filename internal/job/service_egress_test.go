package job

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestServiceEgress: a service's network is validated as a job's, stored
// canonical, refused on functions and on the proxy's port, and placed
// only where the owner's list covers it.
func TestServiceEgress(t *testing.T) {
	lim := DefaultDeployLimits()
	for body, field := range map[string]string{
		`{"runtime":"docker","docker_image":"a","network":{"egress":["a.example"]}}`:                        "network.egress",
		`{"runtime":"docker","docker_image":"a","network":{"egress":["a.example:65536"]}}`:                  "network.egress",
		`{"runtime":"docker","docker_image":"a","network":{"egress":["a..example:1"]}}`:                     "network.egress",
		`{"runtime":"docker","docker_image":"a","network":{"egress":["1.2.3:80"]}}`:                         "network.egress",
		`{"runtime":"docker","docker_image":"a","port":3128,"network":{"egress":["a.example:1"]}}`:          "port",
		`{"runtime":"js","code":"x","network":{"egress":["a.example:443"]}}`:                                "runtime",
		`{"runtime":"docker","docker_image":"a","network":{"egress":["` + strings.Repeat("a", 300) + `"]}}`: "network.egress",
	} {
		_, err := DecodeDeployRequest([]byte(body), lim)
		var e *Error
		if !errors.As(err, &e) || e.Field != field {
			t.Errorf("%s: %v, want a refusal naming %s", body, err, field)
		}
	}
	_, err := DecodeDeployRequest([]byte(`{"runtime":"docker","docker_image":"a","port":3128}`), lim)
	if err != nil {
		t.Fatalf("port 3128 without egress: %v", err)
	}
	r, err := DecodeDeployRequest([]byte(`{"runtime":"docker","docker_image":"a","network":{"egress":["B.example:443","*.a.example:443","b.example.:443"]}}`), lim)
	if err != nil {
		t.Fatal(err)
	}
	d := r.NewDeployment("ns", "svc", "", time.Now(), lim)
	sp := d.Service.ServiceSpec
	if got := strings.Join(sp.EgressOf(), " "); got != "*.a.example:443 b.example:443" {
		t.Fatalf("stored %q", got)
	}
	caps := Capabilities{Docker: &DockerCapabilities{Services: 1}}
	if ok, why := caps.RunsService(sp); ok || !strings.Contains(why, "allows no egress") {
		t.Errorf("no owner list: %v %q", ok, why)
	}
	caps.Docker.Egress = []string{"b.example:443"}
	if ok, why := caps.RunsService(sp); ok || !strings.Contains(why, "does not allow egress to *.a.example:443") {
		t.Errorf("a partial owner list: %v %q", ok, why)
	}
	caps.Docker.Egress = []string{"*.example:443"}
	if ok, why := caps.RunsService(sp); !ok {
		t.Errorf("a covering owner list: %q", why)
	}
	if ok, _ := caps.RunsService(ServiceSpec{Image: "a"}); !ok {
		t.Error("a service without egress")
	}
}
