package nft

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// Tables of other names are programmed and read back by the same code as
// the primary one, and ListTables finds them by prefix (the secondary
// networks' tables, docs/multinetwork.md).
func TestNamedTables(t *testing.T) {
	ns := newNetns(t)
	ctx := context.Background()
	rs := NewRuleset()
	rs.AddChain(&Chain{Name: "forward-ingress", Hook: &Hook{Hook: "forward", Priority: 20}, Rules: []*Rule{
		{Matches: []Match{MatchIfname{Name: "br-vlan10", Not: true}}, Verdict: Verdict{Kind: Accept}, Comment: "not bridged on br-vlan10"},
		{Matches: []Match{MatchIfname{Name: "br-vlan10", Out: true}}, Verdict: Verdict{Kind: Drop}, Comment: "bridged"},
	}})
	for _, name := range []string{NetworkTablePrefix + "default.vlan10", NetworkTablePrefix + "x.y"} {
		k := NewNetlinkTable(int(ns.file.Fd()), name)
		tx := &Transaction{}
		tx.Add(Op{Kind: OpAddTable})
		ch := rs.Chains["forward-ingress"]
		tx.Add(Op{Kind: OpAddChain, Name: ch.Name, Hook: ch.Hook})
		for _, r := range ch.Rules {
			tx.Add(Op{Kind: OpAddRule, Name: ch.Name, Rule: r})
		}
		if err := k.Apply(ctx, tx); err != nil {
			t.Fatal(err)
		}
		got, err := k.Dump(ctx)
		if err != nil || got == nil {
			t.Fatalf("%s: dump %v, %v", name, got, err)
		}
		if len(got.Chains["forward-ingress"].Rules) != 2 {
			t.Errorf("%s: %d rules read back, want 2", name, len(got.Chains["forward-ingress"].Rules))
		}
		k.Close()
	}
	// The primary table is another table: still absent.
	if rs, err := ns.kernel().Dump(ctx); err != nil || rs != nil {
		t.Errorf("primary table: %v, %v; want none", rs, err)
	}
	ns.nft(t, "", "add", "table", "inet", "other")
	got, err := ListTables(ctx, int(ns.file.Fd()), NetworkTablePrefix)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{NetworkTablePrefix + "default.vlan10", NetworkTablePrefix + "x.y"}; !slices.Equal(got, want) {
		t.Errorf("ListTables = %v, want %v", got, want)
	}
	if out := ns.nft(t, "", "list", "table", "inet", NetworkTablePrefix+"x.y"); !strings.Contains(out, `iifname != "br-vlan10" accept`) || !strings.Contains(out, `oifname "br-vlan10" drop`) {
		t.Errorf("nft lists the guard rules otherwise:\n%s", out)
	}
}
