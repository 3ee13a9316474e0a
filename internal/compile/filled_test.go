package compile

import (
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestFillBudget: policies name 20 distinct namespace selectors, each over
// all 1,200 pods of the cluster. The engine keeps sets filled only until
// their members reach the budget (2 × 1,200 + 10,000), so it keeps 11 of
// them, not 20; a local pod whose policy names a selector it did not keep
// still gets exactly the ruleset of a compile from scratch, and deleting
// the policies lets every kept set go.
func TestFillBudget(t *testing.T) {
	const selectors = 20
	labels := m{"team": "blue"}
	for i := range selectors {
		labels[fmt.Sprintf("k%d", i)] = "v"
	}
	c, all := blueTeam(t, labels)
	members := len(all)
	set := func(o any) {
		t.Helper()
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	for i := range selectors {
		set(tu.Policy("x", fmt.Sprintf("from-%d", i), m{"app": fmt.Sprintf("web-%d", i)},
			tu.Ingress(peers{tu.NSPeer(m{fmt.Sprintf("k%d", i): "v"}, nil)}, tu.Port(v1.ProtocolTCP, 80, 0))))
	}
	e := NewEngine(c, "n1")
	budget := 2*len(c.Pods) + minFillBudget
	// Each selector has an IPv4 set of 1,200 members and an empty IPv6 one.
	kept4 := 0
	for name, k := range e.kept {
		if k.members > 0 {
			kept4++
			if k.members != members {
				t.Errorf("kept set %s counted %d members, want %d", name, k.members, members)
			}
		}
	}
	if want := (budget + members - 1) / members; kept4 != want {
		t.Errorf("%d selectors' IPv4 sets kept filled, want %d: the first ones until %d members reach the budget of %d", kept4, want, e.keptMembers, budget)
	}
	if e.keptMembers != kept4*members {
		t.Errorf("kept members %d, want %d", e.keptMembers, kept4*members)
	}
	// A local pod of every policy: each selector's set is used, kept or not.
	for i := range selectors {
		if err := e.Set(tu.Pod("x", fmt.Sprintf("web-%d", i), "n1", m{"app": fmt.Sprintf("web-%d", i)}, []string{fmt.Sprintf("10.0.1.%d", i+1)})); err != nil {
			t.Fatal(err)
		}
		if want := Node(c, "n1").Text(); e.Ruleset().Text() != want {
			t.Fatalf("with the local pod of from-%d: the engine's ruleset differs from a compile from scratch", i)
		}
	}
	for i := range selectors {
		if err := e.Delete("NetworkPolicy", "x", fmt.Sprintf("from-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if len(e.kept) != 0 || e.keptMembers != 0 {
		t.Errorf("after every policy's delete: %d sets kept, %d members, want none", len(e.kept), e.keptMembers)
	}
	if want := Node(c, "n1").Text(); e.Ruleset().Text() != want {
		t.Errorf("after every policy's delete: the engine's ruleset differs from a compile from scratch")
	}
}

// TestKeptSetsBounded: 200 policies name distinct namespace selectors that
// select no namespace: their 400 sets (one per family) have no members,
// but each would be matched against every pod event of the cluster, so
// the engine keeps maxKeptSets of them.
func TestKeptSetsBounded(t *testing.T) {
	c := model.NewCluster()
	for i := range 200 {
		err := c.Set(tu.Policy("x", fmt.Sprintf("from-%d", i), m{"app": "web"},
			tu.Ingress(peers{tu.NSPeer(m{fmt.Sprintf("k%d", i): "v"}, nil)}, tu.Port(v1.ProtocolTCP, 80, 0))))
		if err != nil {
			t.Fatal(err)
		}
	}
	e := NewEngine(c, "n1")
	if len(e.kept) != maxKeptSets || e.keptMembers != 0 {
		t.Errorf("%d sets kept with %d members, want %d with none", len(e.kept), e.keptMembers, maxKeptSets)
	}
}
