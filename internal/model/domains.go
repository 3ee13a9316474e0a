package model

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// Domain names as egress peers (ClusterNetworkPolicy and
// AdminNetworkPolicy domainNames). A pattern is an exact name or "*."
// followed by a name; the wildcard stands for one or more whole labels, so
// "*.example.com" matches "www.example.com" and "a.b.example.com" but not
// "example.com". Names compare without case and without a trailing dot.
//
// Which addresses a name has is not an API object: the agent learns it from
// the DNS answers that the policies' subjects receive and sets it here
// (SetDomain) while the records live. The evaluator and the compiler read
// the same bindings, so they agree on what a domain peer matches.

// domainPattern is the API's validation pattern for a DomainName.
var domainPattern = regexp.MustCompile(`^(\*\.)?([a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$`)

// ParseDomainPattern checks a domainNames entry and returns it in
// canonical form (lower case, no trailing dot).
func ParseDomainPattern(s string) (string, error) {
	if len(s) > 253 || !domainPattern.MatchString(s) {
		return "", fmt.Errorf("domain name %q is not a name or a \"*.\" wildcard of one", s)
	}
	return CanonicalName(s), nil
}

// CanonicalName is a DNS name as the model keeps it: lower case, no
// trailing dot.
func CanonicalName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// DomainMatches reports whether a canonical name matches a canonical
// pattern.
func DomainMatches(pattern, name string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return len(name) > len(suffix) && strings.HasSuffix(name, suffix)
	}
	return pattern == name
}

// dnsBindings are the addresses each name is bound to now, and the names
// bound to each address.
type dnsBindings struct {
	addrs map[string][]netip.Addr
	names map[netip.Addr]map[string]bool
}

// SetDomain binds a canonical name to exactly addrs; none unbinds it.
func (c *Cluster) SetDomain(name string, addrs []netip.Addr) {
	b := &c.dns
	if b.addrs == nil {
		b.addrs = map[string][]netip.Addr{}
		b.names = map[netip.Addr]map[string]bool{}
	}
	for _, a := range b.addrs[name] {
		delete(b.names[a], name)
		if len(b.names[a]) == 0 {
			delete(b.names, a)
		}
	}
	if len(addrs) == 0 {
		delete(b.addrs, name)
		return
	}
	addrs = slices.Clone(addrs)
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	b.addrs[name] = addrs
	for _, a := range addrs {
		if b.names[a] == nil {
			b.names[a] = map[string]bool{}
		}
		b.names[a][name] = true
	}
}

// DomainAddrs are the addresses a name is bound to, sorted.
func (c *Cluster) DomainAddrs(name string) []netip.Addr { return c.dns.addrs[name] }

// DomainNames are the bound names, sorted.
func (c *Cluster) DomainNames() []string { return slices.Sorted(maps.Keys(c.dns.addrs)) }

// DomainBound reports whether addr is bound to a name one of the patterns
// matches.
func (c *Cluster) DomainBound(patterns []string, addr netip.Addr) bool {
	for name := range c.dns.names[addr] {
		for _, p := range patterns {
			if DomainMatches(p, name) {
				return true
			}
		}
	}
	return false
}

// HasDomains reports whether one of the policy's egress rules has domain
// peers: its subjects' DNS answers are what the agent learns from.
func (p *TierPolicy) HasDomains() bool {
	for _, r := range p.Rules[Egress] {
		for _, peer := range r.Peers {
			if len(peer.Domains) > 0 {
				return true
			}
		}
	}
	return false
}
