// Package egress is the worker's egress proxy: what a container that has
// no network may reach, decided and carried on the worker. A container
// opens connections only to a proxy address on its own loopback (its
// relay hands each one to the worker); the proxy reads an HTTP CONNECT or
// an absolute-URI HTTP request from it, allows exactly the destinations
// the job's patterns and the worker owner's list both name, resolves
// names itself, refuses every address of the worker's machine and
// networks unless the owner named that address, dials the address it
// checked (never resolving again), and counts and bounds what passes.
package egress

import (
	"net"
	"net/netip"
)

// Special networks an egress connection never reaches unless the
// worker's owner names the address (see Blocked).
var blockedPrefixes = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "a \"this network\" address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
	{netip.MustParsePrefix("100::/64"), "a discard address"},
	// Deprecated and tunnel forms that carry an IPv4 address or reach a
	// site's own network: never a public destination.
	{netip.MustParsePrefix("::/96"), "an IPv4-compatible IPv6 address (deprecated)"},
	{netip.MustParsePrefix("::ffff:0:0:0/96"), "an IPv4-translated IPv6 address"},
	{netip.MustParsePrefix("fec0::/10"), "a site-local address (deprecated)"},
	{netip.MustParsePrefix("2001::/32"), "a Teredo tunnel address"},
	// Where a local-use translator sends it is the local network's
	// choice, its own addresses among them.
	{netip.MustParsePrefix("64:ff9b:1::/48"), "a local-use NAT64 address"},
	{netip.MustParsePrefix("2001:db8::/32"), "a documentation address"},
}

// Blocked says why addr may not be reached ("" when it may): loopback,
// private (RFC 1918, unique-local), link-local (cloud metadata services
// such as 169.254.169.254 are), carrier-grade NAT, unspecified,
// multicast, broadcast and reserved addresses, IPv4-compatible,
// IPv4-translated, site-local, Teredo and local-use NAT64 IPv6
// addresses, an address embedded in a NAT64 or 6to4 address that is one
// of those, and any address in local (the worker's own interfaces'
// networks).
func Blocked(addr netip.Addr, local []netip.Prefix) string {
	addr = addr.Unmap()
	switch {
	case !addr.IsValid():
		return "not an address"
	case addr.IsLoopback():
		return "a loopback address"
	case addr.IsUnspecified():
		return "an unspecified address"
	case addr.IsPrivate():
		return "a private address"
	case addr.IsLinkLocalUnicast():
		return "a link-local address (cloud metadata services live there)"
	case addr.IsMulticast(), addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "a multicast or broadcast address"
	}
	for _, b := range blockedPrefixes {
		if b.prefix.Contains(addr) {
			return b.why
		}
	}
	for _, v4 := range embeddedIPv4(addr) {
		if why := Blocked(v4, local); why != "" {
			return why + ", embedded in an IPv6 address"
		}
	}
	for _, p := range local {
		if p.Contains(addr) {
			return "an address of this worker's networks"
		}
	}
	return ""
}

// embeddedIPv4 returns the IPv4 addresses a NAT64 or 6to4 address
// carries: at the end of a well-known 64:ff9b::/96 NAT64 address, after
// 2002: in a 6to4 one. An all-zero embedded address is one too (0.0.0.0
// is this network).
func embeddedIPv4(addr netip.Addr) []netip.Addr {
	if !addr.Is6() {
		return nil
	}
	b := addr.As16()
	switch {
	case nat64.Contains(addr):
		return []netip.Addr{netip.AddrFrom4([4]byte(b[12:16]))}
	case sixToFour.Contains(addr):
		return []netip.Addr{netip.AddrFrom4([4]byte(b[2:6]))}
	}
	return nil
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// LocalPrefixes returns the networks of the machine's interfaces (each
// interface address with its mask, so the whole network it is on), the
// engine's bridge among them when the engine runs here.
func LocalPrefixes() []netip.Prefix {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ones, _ := n.Mask.Size()
		if ip.Unmap().Is4() && ones > 32 {
			ones -= 96
		}
		if p, err := ip.Unmap().Prefix(ones); err == nil {
			out = append(out, p)
		}
	}
	return out
}
