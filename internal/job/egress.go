package job

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Network is what a container job asks of the network. Without it (or
// with an empty Egress) a container reaches nothing.
type Network struct {
	// Egress are the host:port patterns (ParseEgressPattern) the job's
	// containers, its build's RUN steps included, may open connections
	// to, through the worker's egress proxy.
	Egress []string `json:"egress,omitempty"`
}

// EgressProxyPort is where a container with egress finds its worker's
// egress proxy: 127.0.0.1:EgressProxyPort, on its own loopback. A
// service with egress cannot listen there.
const EgressProxyPort = 3128

// Limits of an egress list, in a request, a namespace's policy and a
// worker's configuration alike.
const (
	// MaxEgressPatterns bounds the patterns of one list.
	MaxEgressPatterns = 64
	// MaxEgressPatternLen bounds one pattern: a DNS name's 253 bytes,
	// "*." and a port.
	MaxEgressPatternLen = 262
)

// EgressPattern is one parsed host:port pattern: an exact host name, a
// "*.suffix" that matches every name under suffix (not suffix itself),
// or an IP address, always with one port.
type EgressPattern struct {
	// Host is the lowercase name or suffix (without "*."), or empty for
	// an address.
	Host string
	// Wildcard is set for "*.suffix".
	Wildcard bool
	// Addr is the address of an IP pattern.
	Addr netip.Addr
	Port uint16
}

// String is the pattern's canonical form.
func (p EgressPattern) String() string {
	port := strconv.Itoa(int(p.Port))
	switch {
	case p.Addr.IsValid():
		return netip.AddrPortFrom(p.Addr, p.Port).String()
	case p.Wildcard:
		return "*." + p.Host + ":" + port
	}
	return p.Host + ":" + port
}

// ParseEgressPattern parses "host:port", "*.suffix:port", "1.2.3.4:port"
// or "[::1]:port". Names are DNS names of letters, digits, '-' and '.'
// (case does not matter; a trailing dot is dropped); the port is required
// and 1-65535.
func ParseEgressPattern(s string) (EgressPattern, error) {
	if len(s) > MaxEgressPatternLen {
		return EgressPattern{}, fmt.Errorf("%.40q...: longer than %d bytes", s, MaxEgressPatternLen)
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return EgressPattern{}, fmt.Errorf("%q: a port is required (host:port)", s)
	}
	host, portStr := s[:i], s[i+1:]
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 || portStr[0] == '+' || (len(portStr) > 1 && portStr[0] == '0') {
		return EgressPattern{}, fmt.Errorf("%q: the port must be 1-65535", s)
	}
	p := EgressPattern{Port: uint16(port)}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() || a.Zone() != "" || a.Is4In6() {
			return EgressPattern{}, fmt.Errorf("%q: not an IPv6 address", s)
		}
		p.Addr = a
		return p, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !a.Is4() {
			return EgressPattern{}, fmt.Errorf("%q: write an IPv6 address in brackets", s)
		}
		p.Addr = a
		return p, nil
	}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		p.Wildcard = true
		host = rest
	}
	name, ok := canonicalName(host)
	if !ok {
		return EgressPattern{}, fmt.Errorf("%q: %q is not a host name, *.suffix or IP address", s, host)
	}
	if looksNumeric(name) {
		return EgressPattern{}, fmt.Errorf("%q: %q is neither a host name nor an IP address", s, host)
	}
	p.Host = name
	return p, nil
}

// canonicalName lowercases a DNS name and drops one trailing dot; it
// reports false for anything that is not one.
func canonicalName(h string) (string, bool) {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" || len(h) > 253 {
		return "", false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", false
			}
		}
	}
	return h, true
}

// looksNumeric reports whether a name's last label is all digits: such a
// name ("1.2.3", "010.0.0.1") is read as an address by some resolvers.
func looksNumeric(name string) bool {
	last := name[strings.LastIndexByte(name, '.')+1:]
	return strings.Trim(last, "0123456789") == ""
}

// ParseEgress parses a list of patterns; the error names the first bad
// one. More than MaxEgressPatterns is an error.
func ParseEgress(list []string) ([]EgressPattern, error) {
	if len(list) > MaxEgressPatterns {
		return nil, fmt.Errorf("at most %d patterns, not %d", MaxEgressPatterns, len(list))
	}
	out := make([]EgressPattern, 0, len(list))
	for _, s := range list {
		p, err := ParseEgressPattern(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Covers reports whether every destination p allows is allowed by q too.
func (q EgressPattern) Covers(p EgressPattern) bool {
	if q.Port != p.Port {
		return false
	}
	switch {
	case q.Addr.IsValid() || p.Addr.IsValid():
		return q.Addr == p.Addr
	case !q.Wildcard:
		return !p.Wildcard && q.Host == p.Host
	}
	return strings.HasSuffix(p.Host, "."+q.Host) || p.Wildcard && p.Host == q.Host
}

// Matches reports whether the destination host:port (a name, or an
// address) is allowed by p.
func (p EgressPattern) Matches(host string, port uint16) bool {
	if p.Port != port {
		return false
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return p.Addr.IsValid() && p.Addr == a.Unmap()
	}
	name, ok := canonicalName(host)
	if !ok || p.Addr.IsValid() {
		return false
	}
	if p.Wildcard {
		return strings.HasSuffix(name, "."+p.Host)
	}
	return name == p.Host
}

// EgressUncovered returns the first pattern of want that no pattern of
// allowed covers, or "" when allowed covers them all. Patterns that do
// not parse are uncovered.
func EgressUncovered(allowed, want []string) string {
	ap := parseLenient(allowed)
	for _, w := range want {
		p, err := ParseEgressPattern(w)
		if err != nil || !slices.ContainsFunc(ap, func(a EgressPattern) bool { return a.Covers(p) }) {
			return w
		}
	}
	return ""
}

// parseLenient parses what parses and skips the rest.
func parseLenient(list []string) []EgressPattern {
	out := make([]EgressPattern, 0, len(list))
	for _, s := range list {
		if p, err := ParseEgressPattern(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// CanonicalEgress returns list parsed, in canonical form, sorted and
// without duplicates, or the parse error.
func CanonicalEgress(list []string) ([]string, error) {
	ps, err := ParseEgress(list)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// EgressOf returns the egress patterns a job's spec asks for (nil when
// none).
func (s Spec) EgressOf() []string {
	if s.Docker == nil || s.Docker.Network == nil {
		return nil
	}
	return s.Docker.Network.Egress
}

// EgressRecord is what a job's containers exchanged with one destination
// through the egress proxy.
type EgressRecord struct {
	Host          string `json:"host"`
	Port          int    `json:"port"`
	BytesSent     int64  `json:"bytes_sent"`
	BytesReceived int64  `json:"bytes_received"`
	Connections   int    `json:"connections"`
}
