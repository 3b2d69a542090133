package docker

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// checkRegistry refuses to pull from a registry on the worker's own
// machine or network (loopback, private, link-local or unspecified
// addresses, or a name that resolves to one) unless the owner's allow-list
// names that registry explicitly ("10.0.0.5:5000/*"). Without it, a job
// could make a volunteer's machine send requests into its own network.
func (d *Docker) checkRegistry(ctx context.Context, r name.Reference) error {
	host := r.Context().RegistryStr()
	for _, p := range d.cfg.AllowImages {
		if strings.HasPrefix(p, host+"/") {
			return nil
		}
	}
	if !localRegistry(ctx, host) {
		return nil
	}
	return refuse("docker_image: registry %s is on this worker's own machine or network; pulls from it need the worker's owner to allow it explicitly (--docker-allow '%s/*')", host, host)
}

// localRegistry reports whether host (with an optional port) is, or
// resolves to, an address of the local machine or network.
func localRegistry(ctx context.Context, host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") || strings.HasSuffix(strings.ToLower(h), ".localhost") {
		return true
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return localAddr(a)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", h)
	if err != nil {
		return false // the pull fails on its own
	}
	for _, a := range addrs {
		if localAddr(a) {
			return true
		}
	}
	return false
}

func localAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsUnspecified() || a.IsInterfaceLocalMulticast() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(a) // shared address space (carrier-grade NAT)
}
