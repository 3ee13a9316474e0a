package compile

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Domain peers (domainNames). A rule's domain peers share one address set
// per family (`fqdn-v4-…`) whose members are the addresses bound to a name
// one of its patterns matches; the agent binds and unbinds names
// (Engine.SetDomain) as it learns DNS answers and as their records expire.
//
// It learns them from answers the kernel copies to it: while a local pod is
// the subject of a policy with domain peers, its addresses are in
// `dns-clients-v4/v6`, and a base chain at prerouting copies every DNS answer
// to them (UDP from port 53, in the reply direction of a connection the pod
// opened) to the NFLOG group model.Options.DNSGroup. A copy: the answer
// goes on at once, and never waits for the agent. Prerouting is the first
// hook the answer meets on the client's node, so the agent starts learning
// as early as the kernel allows; after conntrack (-200), which the
// direction test needs. The chain and its sets exist only while a local
// pod needs them, so a node without such policies pays nothing per packet.

// ChainDNSAnswers is the base chain that copies DNS answers.
const ChainDNSAnswers = "dns-answers"

// PriorityDNSAnswers is its priority relative to filter: mangle, after
// conntrack has set the packet's direction.
const PriorityDNSAnswers = -150

// DNSPrefix is the log prefix of the copies of DNS answers.
const DNSPrefix = "dns"

// DNSClientSet is the set of the local pods whose DNS answers are copied.
func DNSClientSet(fam nft.Family) string { return fmt.Sprintf("dns-clients-v%d", fam) }

// domainSet is the set of the addresses bound to the names the patterns of
// a rule's domain peers match.
func (e *Engine) domainSet(fam nft.Family, peers []model.Peer) string {
	var patterns []string
	for _, p := range peers {
		patterns = append(patterns, p.Domains...)
	}
	slices.Sort(patterns)
	patterns = slices.Compact(patterns)
	return e.addrSet("fqdn", fam, []string{"domains " + strings.Join(patterns, ",")}, &setDef{fam: fam, domains: patterns})
}

// domainElems are the elements the name, bound to addrs, puts in the set.
func (d *setDef) domainElems(name string, addrs []netip.Addr) []nft.Elem {
	if !slices.ContainsFunc(d.domains, func(p string) bool { return model.DomainMatches(p, name) }) {
		return nil
	}
	var out []nft.Elem
	for _, a := range addrs {
		if nft.FamilyOf(a) == d.fam {
			out = append(out, nft.Elem{Addr: a})
		}
	}
	return out
}

// fillDomains adds the members of a new domain set.
func (e *Engine) fillDomains(ls *liveSet) {
	e.domainSets[ls.name] = ls
	for _, name := range e.c.DomainNames() {
		for _, el := range ls.def.domainElems(name, e.c.DomainAddrs(name)) {
			e.addElem(ls.name, el)
		}
	}
}

// SetDomain binds a canonical name to exactly addrs (none: unbinds it), as
// model.Cluster.SetDomain does, and updates the domain sets.
func (e *Engine) SetDomain(name string, addrs []netip.Addr) {
	members := func() []member {
		var out []member
		for set, ls := range e.domainSets {
			for _, el := range ls.def.domainElems(name, e.c.DomainAddrs(name)) {
				out = append(out, member{set, el})
			}
		}
		return out
	}
	before := members()
	e.c.SetDomain(name, addrs)
	e.swap(before, members())
	e.settle() // the addresses' identities follow their sets (identity.go)
}

// isDNSClient reports whether a policy with domain peers selects pod.
func (e *Engine) isDNSClient(pod *model.Pod) bool {
	for _, tier := range e.tiers {
		for _, p := range tier {
			if p.HasDomains() && p.Selects(e.c, pod) {
				return true
			}
		}
	}
	return false
}

// dnsClient makes the DNS client sets hold ips for the local pod key (nil:
// it is no client), creating the sets and the chain with the first client
// and removing them with the last.
func (e *Engine) dnsClient(key string, ips []netip.Addr) {
	if e.opts.DNSGroup == 0 {
		return
	}
	if slices.Equal(e.dnsClients[key], ips) {
		return
	}
	if len(e.dnsClients) == 0 && len(ips) > 0 {
		e.dnsChain(true)
	}
	e.hold(e.dnsClients, DNSClientSet, key, ips)
	if len(e.dnsClients) == 0 {
		e.dnsChain(false)
	}
}

// dnsChain adds (or removes) the DNS answer chain and its sets.
func (e *Engine) dnsChain(add bool) {
	e.touched.Chain(ChainDNSAnswers)
	if !add {
		delete(e.rs.Chains, ChainDNSAnswers)
		for _, fam := range families {
			delete(e.rs.Sets, DNSClientSet(fam))
			delete(e.counts, DNSClientSet(fam))
			e.touched.Set(DNSClientSet(fam))
		}
		return
	}
	ch := &nft.Chain{Name: ChainDNSAnswers, Hook: &nft.Hook{Hook: "prerouting", Priority: PriorityDNSAnswers}}
	for _, fam := range families {
		t := nft.SetIPv4
		if fam == nft.IPv6 {
			t = nft.SetIPv6
		}
		e.rs.AddSet(nft.NewSet(DNSClientSet(fam), t, "local pods that domainNames policies select: their DNS answers are copied"))
		e.touched.Set(DNSClientSet(fam))
		ch.Rules = append(ch.Rules, &nft.Rule{
			Matches: []nft.Match{nft.MatchDNSAnswer{}, nft.MatchAddrInSet{Family: fam, Set: DNSClientSet(fam)}},
			Counter: true, Log: &nft.Log{Group: e.opts.DNSGroup, Prefix: DNSPrefix},
			Comment: "copy DNS answers to the agent",
		})
	}
	e.rs.AddChain(ch)
}
