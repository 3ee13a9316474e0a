package conntrack

import (
	"net/netip"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// TestScopeOf: element changes scope the flows of their keys; rules in a
// chain that stays, base chains and the table scope every flow; objects
// only created or deleted scope none. The property that the scope holds
// every flow whose verdict changed is checked on random clusters by
// compile's TestCutScopeHoldsChangedVerdicts.
func TestScopeOf(t *testing.T) {
	old := nft.NewRuleset()
	old.AddChain(&nft.Chain{Name: "kept"})
	old.AddChain(&nft.Chain{Name: "going"})
	a, b := netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("10.244.2.20")
	elems := func(kind nft.OpKind, t nft.SetType, es ...nft.Elem) nft.Op {
		return nft.Op{Kind: kind, Name: "s", SetType: t, Elems: es}
	}
	flows := map[string]Entry{
		"a out":       tcp(a, netip.MustParseAddr("10.244.9.9"), 80),
		"a in":        tcp(netip.MustParseAddr("10.244.9.9"), a, 443),
		"b":           tcp(b, netip.MustParseAddr("10.244.9.9"), 80),
		"in range":    tcp(netip.MustParseAddr("203.0.113.200"), netip.MustParseAddr("10.244.9.9"), 22),
		"udp 53":      {Proto: protoUDP, Src: netip.MustParseAddr("10.244.9.8"), Dst: netip.MustParseAddr("10.244.9.9"), Port: 53},
		"tcp 8080":    tcp(netip.MustParseAddr("10.244.9.8"), netip.MustParseAddr("10.244.9.9"), 8080),
		"unrelated":   tcp(netip.MustParseAddr("10.244.9.8"), netip.MustParseAddr("10.244.9.9"), 9000),
		"other v6":    tcp(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fd00::9"), 80),
		"v4-mapped a": tcp(netip.MustParseAddr("::ffff:10.244.1.10"), netip.MustParseAddr("fd00::9"), 1),
	}
	for _, tc := range []struct {
		name string
		old  *nft.Ruleset
		ops  []nft.Op
		all  bool
		has  []string // the flows in scope when not all
	}{
		{"no table before", nil, []nft.Op{{Kind: nft.OpAddTable}}, true, nil},
		{"only new objects: nothing refers to them", old, []nft.Op{
			{Kind: nft.OpAddTable}, {Kind: nft.OpAddSet, Name: "new-set", SetType: nft.SetIPv4}, {Kind: nft.OpAddChain, Name: "new"},
		}, false, nil},
		{"address keys, added and deleted", old, []nft.Op{
			elems(nft.OpAddElements, nft.MapIPv4Verdict, nft.Elem{Addr: a, Chain: "kept"}),
			elems(nft.OpDeleteElements, nft.SetIPv4, nft.Elem{Addr: b}),
		}, false, []string{"a out", "a in", "b"}},
		{"named port keys, by address", old, []nft.Op{
			elems(nft.OpAddElements, nft.SetIPv4ProtoPort, nft.Elem{Addr: a, Proto: protoTCP, Port: 8080}),
		}, false, []string{"a out", "a in"}},
		{"ranges", old, []nft.Op{
			elems(nft.OpAddElements, nft.MapIPv4IntervalVerdict, nft.Elem{Addr: netip.MustParseAddr("203.0.113.128"), AddrEnd: netip.MustParseAddr("203.0.113.255"), Chain: "kept"}),
		}, false, []string{"in range"}},
		{"protocol and port ranges", old, []nft.Op{
			elems(nft.OpDeleteElements, nft.MapProtoPortVerdict, nft.Elem{Proto: protoUDP, Port: 53}),
			elems(nft.OpAddElements, nft.SetProtoPortInterval, nft.Elem{Proto: protoTCP, Port: 8000, PortEnd: 8100}),
		}, false, []string{"udp 53", "tcp 8080"}},
		{"new objects and their rules, reached through a new element", old, []nft.Op{
			{Kind: nft.OpAddSet, Name: "new-set", SetType: nft.SetIPv4},
			{Kind: nft.OpAddChain, Name: "new"},
			{Kind: nft.OpAddRule, Name: "new", Rule: &nft.Rule{}},
			elems(nft.OpAddElements, nft.MapIPv4Verdict, nft.Elem{Addr: b, Chain: "new"}),
		}, false, []string{"b"}},
		{"a chain flushed and deleted, with the set its rules read", old, []nft.Op{
			elems(nft.OpDeleteElements, nft.MapIPv4Verdict, nft.Elem{Addr: a, Chain: "going"}),
			{Kind: nft.OpFlushChain, Name: "going"},
			{Kind: nft.OpDeleteChain, Name: "going"},
			{Kind: nft.OpDeleteSet, Name: "gone-set"},
		}, false, []string{"a out", "a in"}},
		{"a rule added to a chain that stays", old, []nft.Op{{Kind: nft.OpAddRule, Name: "kept", Rule: &nft.Rule{}}}, true, nil},
		{"a chain that stays flushed", old, []nft.Op{{Kind: nft.OpFlushChain, Name: "kept"}}, true, nil},
		{"a base chain", old, []nft.Op{{Kind: nft.OpAddChain, Name: "forward", Hook: &nft.Hook{Hook: "forward"}}}, true, nil},
		{"the table deleted", old, []nft.Op{{Kind: nft.OpDeleteTable}}, true, nil},
		{"a set type it does not know", old, []nft.Op{elems(nft.OpAddElements, nft.SetType(99), nft.Elem{Addr: a})}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ScopeOf(tc.old, &nft.Transaction{Ops: tc.ops})
			if s.All() != tc.all {
				t.Fatalf("All() = %v, want %v", s.All(), tc.all)
			}
			if tc.all {
				return
			}
			if s.Empty() != (len(tc.has) == 0) {
				t.Errorf("Empty() = %v with %d flows in scope", s.Empty(), len(tc.has))
			}
			want := map[string]bool{}
			for _, f := range tc.has {
				want[f] = true
			}
			for name, e := range flows {
				if got := s.Has(e); got != want[name] {
					t.Errorf("Has(%s: %v) = %v, want %v", name, e, got, want[name])
				}
			}
		})
	}
}

func TestScopeMerge(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	s := ScopeOf(nft.NewRuleset(), &nft.Transaction{Ops: []nft.Op{{Kind: nft.OpAddElements, SetType: nft.SetIPv4, Elems: []nft.Elem{{Addr: a}}}}})
	o := ScopeOf(nft.NewRuleset(), &nft.Transaction{Ops: []nft.Op{{Kind: nft.OpAddElements, SetType: nft.SetProtoPortInterval, Elems: []nft.Elem{{Proto: protoUDP, Port: 53}}}}})
	var empty Scope
	if !empty.Empty() || s.Empty() {
		t.Fatalf("Empty: zero scope %v, one address %v", empty.Empty(), s.Empty())
	}
	empty.Merge(&s)
	empty.Merge(&o)
	for e, want := range map[Entry]bool{
		tcp(a, b, 80): true,
		{Proto: protoUDP, Src: b, Dst: b, Port: 53}: true,
		tcp(b, b, 53): false,
	} {
		if got := empty.Has(e); got != want {
			t.Errorf("merged Has(%v) = %v, want %v", e, got, want)
		}
	}
	all := Everything()
	empty.Merge(&all)
	if !empty.All() {
		t.Error("a merge with every flow is not every flow")
	}
}
