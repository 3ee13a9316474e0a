package compile

import (
	"math/rand"
	"net/netip"
	"slices"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/conntrack"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestCutScopeHoldsChangedVerdicts: after each random event, every flow
// whose verdict the engine's transaction changed is in the transaction's
// conntrack scope (conntrack.ScopeOf), which is all the agent's cut judges.
// Flows are tried between the addresses of the pods before and after the
// event, the nodes and outside hosts, on flowPorts, through the hook each
// takes on the node; both rulesets are judged as if every address were a
// local pod's, so no flow is skipped.
func TestCutScopeHoldsChangedVerdicts(t *testing.T) {
	seeds, steps := 12, 40
	if testing.Short() {
		seeds = 4
	}
	var scoped, outside int
	for seed := range tu.Seeds(t, int64(seeds)) {
		r := rand.New(rand.NewSource(seed))
		w := newWorld(t, r)
		for _, node := range []string{"n1", "n2"} {
			e := NewEngine(w.cluster(t), node)
			e.TakeTouched()
			before := e.Ruleset().Clone()
			w2 := w.clone(r.Int63())
			for step := 0; step < steps; step++ {
				ev := w2.event()
				addrs := cutAddrs(e.Cluster())
				if err := ev.apply(e); err != nil {
					t.Fatalf("seed %d node %s step %d %s: %v", seed, node, step, ev, err)
				}
				tx := diff.Partial(before, e.Ruleset(), e.TakeTouched())
				scope := conntrack.ScopeOf(before, tx)
				after := e.Ruleset()
				if !scope.All() {
					scoped++
					addrs = append(addrs, cutAddrs(e.Cluster())...)
					slices.SortFunc(addrs, netip.Addr.Compare)
					addrs = slices.Compact(addrs)
					local := map[netip.Addr]bool{}
					if n := e.Cluster().Nodes[node]; n != nil {
						for _, a := range n.Addresses {
							local[a] = true
						}
					}
					// Every address counts as a pod of the node: each flow
					// is judged, from whichever side.
					pods := map[netip.Addr]bool{}
					for _, a := range addrs {
						pods[a] = true
					}
					nodeBefore, nodeAfter := conntrack.NewNode(before, local, pods), conntrack.NewNode(after, local, pods)
					judge := func(n conntrack.Node, en conntrack.Entry) bool {
						d, err := n.Denies(en)
						if err != nil {
							t.Fatal(err)
						}
						return d
					}
					for _, src := range addrs {
						for _, dst := range addrs {
							if src == dst || src.Is4() != dst.Is4() {
								continue
							}
							for _, pp := range flowPorts {
								en := conntrack.Entry{Proto: pp.Proto, Src: src, Dst: dst, Port: pp.Port}
								if scope.Has(en) {
									continue
								}
								outside++
								if was, is := judge(nodeBefore, en), judge(nodeAfter, en); was != is {
									t.Fatalf("seed %d node %s step %d %s: %v is outside the scope, but its verdict changed (denied: %v -> %v)\n%s",
										seed, node, step, ev, en, was, is, tx)
								}
							}
						}
					}
				}
				before.ApplyOps(tx)
			}
		}
	}
	// Not vacuous: most events change elements only.
	if scoped == 0 || outside == 0 {
		t.Fatalf("%d events with a narrow scope, %d flows outside one: nothing was checked", scoped, outside)
	}
	t.Logf("%d events with a narrow scope; %d flows outside it kept their verdicts", scoped, outside)
}

// cutAddrs are the addresses flows are tried between: every pod's (active
// or not), every node's and the outside hosts.
func cutAddrs(c *model.Cluster) []netip.Addr {
	out := append([]netip.Addr(nil), outsideHosts...)
	for _, p := range c.SortedPods() {
		out = append(out, p.IPs...)
	}
	for _, n := range c.Nodes {
		out = append(out, n.Addresses...)
	}
	return out
}
