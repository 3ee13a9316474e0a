package nft

import (
	"fmt"
	"net/netip"
	"testing"
)

// Fixtures shared by the Fake and Netlink tests.

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// elemIP is a single-address element.
func elemIP(s string) Elem { return Elem{Addr: mustAddr(s)} }

// elemRange is an inclusive address range element.
func elemRange(first, last string) Elem { return Elem{Addr: mustAddr(first), AddrEnd: mustAddr(last)} }

// elemPorts is a protocol . port-range element.
func elemPorts(proto uint8, first, last uint16) Elem {
	return Elem{Proto: proto, Port: first, PortEnd: last}
}

// elemNamed is an address . protocol . port element.
func elemNamed(a string, proto uint8, port uint16) Elem {
	return Elem{Addr: mustAddr(a), Proto: proto, Port: port}
}

// elemGoto is a verdict-map element.
func elemGoto(a, chain string) Elem { return Elem{Addr: mustAddr(a), Chain: chain} }

// elemRangeGoto is an interval verdict-map element.
func elemRangeGoto(first, last, chain string) Elem {
	e := elemRange(first, last)
	e.Chain = chain
	return e
}

// elemPortsGoto is a protocol . port-range verdict-map element.
func elemPortsGoto(proto uint8, first, last uint16, chain string) Elem {
	e := elemPorts(proto, first, last)
	e.Chain = chain
	return e
}

func setOf(name string, t SetType, comment string, elems ...Elem) *Set {
	s := NewSet(name, t, comment)
	s.Add(elems...)
	return s
}

func ruleOf(comment string, v Verdict, matches ...Match) *Rule {
	return &Rule{Matches: matches, Verdict: v, Comment: comment}
}

func withCounter(r *Rule) *Rule { r.Counter = true; return r }

// sampleRuleset uses every set type, every match and every verdict kind.
func sampleRuleset() *Ruleset {
	rs := NewRuleset()
	for _, s := range []*Set{
		setOf("pods-v4", SetIPv4, "pod addresses", elemIP("10.0.0.1"), elemIP("10.0.0.2")),
		setOf("pods-v6", SetIPv6, "", elemIP("fd00::1"), elemIP("fd00::2")),
		setOf("dns-clients-v4", SetIPv4, "", elemIP("10.0.0.1")),
		setOf("blocks-v4", SetIPv4Interval, "x/allow ipBlock",
			elemRange("10.1.0.0", "10.1.0.255"), elemRange("192.168.1.5", "192.168.1.5"), elemRange("172.16.0.0", "172.31.255.255")),
		setOf("blocks-v6", SetIPv6Interval, "", elemRange("fd00::", "fd00::ffff:ffff:ffff:ffff"), elemRange("2001:db8::1", "2001:db8::1")),
		setOf("ports", SetProtoPortInterval, "x/allow ports",
			elemPorts(ProtoTCP, 80, 80), elemPorts(ProtoTCP, 8000, 8080), elemPorts(ProtoUDP, 53, 53), elemPorts(ProtoSCTP, 9000, 9001)),
		setOf("named-v4", SetIPv4ProtoPort, "", elemNamed("10.0.0.1", ProtoTCP, 8080), elemNamed("10.0.0.2", ProtoUDP, 53)),
		setOf("named-v6", SetIPv6ProtoPort, "", elemNamed("fd00::1", ProtoTCP, 443)),
		setOf("dispatch-v4", MapIPv4Verdict, "pod dispatch", elemGoto("10.0.0.1", "pod-a"), elemGoto("10.0.0.2", "pod-b")),
		setOf("dispatch-v6", MapIPv6Verdict, "", elemGoto("fd00::1", "pod-a")),
		setOf("ranges-v4", MapIPv4IntervalVerdict, "ipBlocks -> identity",
			elemRangeGoto("10.2.0.0", "10.2.0.127", "pod-a"), elemRangeGoto("10.2.0.128", "10.2.0.255", "verdict-a"),
			elemRangeGoto("192.168.7.7", "192.168.7.7", "verdict-a")),
		setOf("ranges-v6", MapIPv6IntervalVerdict, "", elemRangeGoto("fd01::", "fd01::ffff", "pod-a")),
		setOf("port-verdicts", MapProtoPortVerdict, "first match per port",
			elemPortsGoto(ProtoTCP, 80, 80, "pod-a"), elemPortsGoto(ProtoTCP, 81, 1023, "verdict-a"), elemPortsGoto(ProtoUDP, 53, 53, "verdict-a"),
			elemPortsGoto(ProtoSCTP, 0, 65535, "pod-a")),
	} {
		rs.AddSet(s)
	}
	rs.AddChain(&Chain{Name: "nftpolicy-forward", Hook: &Hook{Hook: "forward"}, Rules: []*Rule{
		ruleOf("conntrack", Verdict{Kind: Accept}, MatchCtState{States: []string{"established", "related"}}),
		ruleOf("", Verdict{Kind: Drop}, MatchCtState{States: []string{"invalid"}}),
		ruleOf("neighbour discovery", Verdict{Kind: Accept}, MatchICMPv6ND{}),
		ruleOf("to the node", Verdict{Kind: Return}, MatchFibSaddrLocal{}),
		withCounter(ruleOf("in a block, not a pod", Verdict{Kind: Drop},
			MatchAddrInSet{Family: IPv6, Src: true, Set: "blocks-v6"}, MatchAddrInSet{Family: IPv6, Src: true, Set: "pods-v6", Not: true})),
		ruleOf("ingress dispatch v4", Verdict{Kind: Vmap, Map: "dispatch-v4", Family: IPv4}),
		ruleOf("ingress dispatch v6", Verdict{Kind: Vmap, Map: "dispatch-v6", Family: IPv6}),
		ruleOf("ranges v4", Verdict{Kind: Vmap, Map: "ranges-v4", Family: IPv4, Src: true}),
		ruleOf("ranges v6", Verdict{Kind: Vmap, Map: "ranges-v6", Family: IPv6}),
		ruleOf("ports", Verdict{Kind: Vmap, Map: "port-verdicts", ProtoPort: true}),
	}})
	rs.AddChain(&Chain{Name: "nftpolicy-input", Hook: &Hook{Hook: "input", Priority: -5}, Rules: []*Rule{
		ruleOf("to pods", Verdict{Kind: Jump, Chain: "pod-b"}, MatchAddrInSet{Family: IPv4, Set: "pods-v4"}),
	}})
	rs.AddChain(&Chain{Name: "nftpolicy-output", Hook: &Hook{Hook: "output", Priority: 10}, Rules: []*Rule{
		ruleOf("egress dispatch v4", Verdict{Kind: Vmap, Map: "dispatch-v4", Family: IPv4, Src: true}),
		ruleOf("egress dispatch v6", Verdict{Kind: Vmap, Map: "dispatch-v6", Family: IPv6, Src: true}),
	}})
	rs.AddChain(&Chain{Name: "nftpolicy-dns", Hook: &Hook{Hook: "prerouting", Priority: -150}, Rules: []*Rule{
		{Matches: []Match{MatchDNSAnswer{}, MatchAddrInSet{Family: IPv4, Set: "dns-clients-v4"}}, Log: &Log{Group: 101, Prefix: "dns"}, Comment: "dns answers"},
	}})
	rs.AddChain(&Chain{Name: "pod-a", Rules: []*Rule{
		withCounter(ruleOf("x/allow ingress rule 0", Verdict{Kind: Accept},
			MatchAddrInSet{Family: IPv4, Src: true, Set: "pods-v4"}, MatchProtoPortInSet{Set: "ports"})),
		ruleOf("x/allow ingress rule 1", Verdict{Kind: Accept}, MatchAddrInSet{Family: IPv6, Src: true, Set: "blocks-v6"}),
		ruleOf("x/allow ingress rule 2", Verdict{Kind: Accept}, MatchAddrInSet{Family: IPv4, Src: true, Set: "blocks-v4"}),
		ruleOf("x/allow ingress rule 3", Verdict{Kind: Accept}, MatchAddrInSet{Family: IPv6, Set: "pods-v6"}),
		ruleOf("named ports v4", Verdict{Kind: Accept}, MatchDaddrProtoPortInSet{Family: IPv4, Set: "named-v4"}),
		ruleOf("named ports v6", Verdict{Kind: Accept}, MatchDaddrProtoPortInSet{Family: IPv6, Set: "named-v6"}),
		ruleOf("peers on named ports", Verdict{Kind: Accept},
			MatchAddrInSet{Family: IPv4, Src: true, Set: "pods-v4"}, MatchDaddrProtoPortInSet{Family: IPv4, Set: "named-v4"}),
		withCounter(ruleOf("count only", Verdict{})),
		{Matches: []Match{MatchAddrInSet{Family: IPv4, Src: true, Set: "pods-v4"}}, Log: &Log{Group: 100, Prefix: "np D 1a2b3c4d", Rate: 10, Burst: 20}, Comment: "log, limited"},
		{Log: &Log{Group: 65535, Prefix: ""}, Comment: "log, no limit"},
		withCounter(ruleOf("default deny", Verdict{Kind: Drop})),
	}})
	rs.AddChain(&Chain{Name: "verdict-a", Rules: []*Rule{
		withCounter(ruleOf("x/allow ingress rule 4", Verdict{Kind: Accept})),
	}})
	rs.AddChain(&Chain{Name: "pod-b", Rules: []*Rule{
		ruleOf("same policy as pod-a", Verdict{Kind: Goto, Chain: "pod-a"}, MatchAddrInSet{Family: IPv4, Src: true, Set: "blocks-v4"}),
	}})
	return rs
}

// buildTx builds rs from an empty kernel: chains first (rules and map
// elements refer to them), then sets with their elements, then rules.
func buildTx(rs *Ruleset) *Transaction {
	tx := &Transaction{}
	tx.Add(Op{Kind: OpAddTable})
	for _, c := range rs.SortedChains() {
		tx.Add(Op{Kind: OpAddChain, Name: c.Name, Hook: c.Hook})
	}
	for _, s := range rs.SortedSets() {
		tx.Add(Op{Kind: OpAddSet, Name: s.Name, SetType: s.Type, Comment: s.Comment})
		if s.Len() > 0 {
			tx.Add(Op{Kind: OpAddElements, Name: s.Name, SetType: s.Type, Elems: s.Sorted()})
		}
	}
	for _, c := range rs.SortedChains() {
		for _, r := range c.Rules {
			tx.Add(Op{Kind: OpAddRule, Name: c.Name, Rule: r})
		}
	}
	return tx
}

func mustApply(t *testing.T, k Kernel, tx *Transaction) {
	t.Helper()
	if err := k.Apply(t.Context(), tx); err != nil {
		t.Fatalf("Apply:\n%s\nerror: %v", txText(tx), err)
	}
}

// txText is the transaction as nft text, cut short for failure messages.
func txText(tx *Transaction) string {
	const limit = 4000
	s := tx.String()
	if len(s) > limit {
		return s[:limit] + fmt.Sprintf("... (%d bytes more)", len(s)-limit)
	}
	return s
}
