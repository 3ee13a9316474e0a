package bench

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// BenchmarkKernelRevalidation measures why an event's commit costs more at L
// than at S although its batch is as small: a batch that adds a jump or
// goto (a rule, or an element of a verdict map) makes the kernel validate
// the whole table at commit, walking every element of every verdict map
// it can reach. It times a one-element add to a verdict map (goto) and to
// a plain set in a table whose verdict map holds n elements, each to one
// of 200 chains, like the ids maps (at L one node's table has 55,620 ids
// elements). Each add is followed, untimed, by its delete.
//
// A chain is walked once per hook that reaches it: with 50,000 elements
// the table is also tried with a second base chain jumping to the same
// lookups from the output hook (measured: 5.0 ms against 2.6–3.5 ms; the
// agent's output chains, which only IPVS needs, were such a second hook)
// and from the forward hook (2.6 ms: no second walk).
//
//	go test -run '^$' -bench KernelRevalidation ./perf/bench -benchtime 200x
func BenchmarkKernelRevalidation(b *testing.B) {
	testutil.NeedKernel(b)
	j := testJanitor(b)
	for _, t := range []struct {
		n     int
		hooks []string
	}{{0, []string{"forward"}}, {10000, []string{"forward"}}, {50000, []string{"forward"}},
		{50000, []string{"forward", "output"}}, {50000, []string{"forward", "forward"}}} {
		n := t.n
		name := fmt.Sprint(n)
		if len(t.hooks) > 1 {
			name += "-" + strings.Join(t.hooks, "+")
		}
		ns, err := j.NetNS("reval" + name)
		if err != nil {
			b.Fatal(err)
		}
		kernel := nft.NewNetlink(ns.FD())
		if err := kernel.Apply(context.Background(), diff.Diff(nil, revalidationTable(n, t.hooks))); err != nil {
			b.Fatal(err)
		}
		extra := netip.MustParseAddr("10.200.0.1")
		for _, kind := range []struct {
			name string
			set  string
			typ  nft.SetType
			el   nft.Elem
		}{
			{"goto-element", "big", nft.MapIPv4Verdict, nft.Elem{Addr: extra, Chain: "c1"}},
			{"plain-element", "plain", nft.SetIPv4, nft.Elem{Addr: extra}},
		} {
			b.Run(fmt.Sprintf("%s/vmap-%s", kind.name, name), func(b *testing.B) {
				add := &nft.Transaction{Ops: []nft.Op{{Kind: nft.OpAddElements, Name: kind.set, SetType: kind.typ, Elems: []nft.Elem{kind.el}}}}
				del := &nft.Transaction{Ops: []nft.Op{{Kind: nft.OpDeleteElements, Name: kind.set, SetType: kind.typ, Elems: []nft.Elem{kind.el}}}}
				for range b.N {
					if err := kernel.Apply(context.Background(), add); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if err := kernel.Apply(context.Background(), del); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			})
		}
	}
}

// revalidationTable: a base chain on each of hooks that jumps to a chain
// that looks the source up in a verdict map of n addresses (to 200
// chains) and in a plain set, as the class chains jump to the peer chain.
func revalidationTable(n int, hooks []string) *nft.Ruleset {
	rs := nft.NewRuleset()
	for i := range 200 {
		rs.AddChain(&nft.Chain{Name: fmt.Sprintf("c%d", i), Rules: []*nft.Rule{{Counter: true, Verdict: nft.Verdict{Kind: nft.Accept}}}})
	}
	big := rs.AddSet(nft.NewSet("big", nft.MapIPv4Verdict, "n addresses to 200 chains"))
	base := netip.MustParseAddr("10.100.0.0").As4()
	for i := range n {
		a := base
		a[2], a[3] = byte(i>>8), byte(i)
		a[1] += byte(i >> 16)
		big.Add(nft.Elem{Addr: netip.AddrFrom4(a), Chain: fmt.Sprintf("c%d", i%200)})
	}
	rs.AddSet(nft.NewSet("plain", nft.SetIPv4, "addresses"))
	rs.AddChain(&nft.Chain{Name: "peer", Rules: []*nft.Rule{
		{Verdict: nft.Verdict{Kind: nft.Vmap, Map: "big", Family: nft.IPv4, Src: true}},
		{Matches: []nft.Match{nft.MatchAddrInSet{Family: nft.IPv4, Src: true, Set: "plain"}}, Verdict: nft.Verdict{Kind: nft.Accept}},
	}})
	for i, hook := range hooks {
		rs.AddChain(&nft.Chain{Name: fmt.Sprintf("base%d", i), Hook: &nft.Hook{Hook: hook, Priority: i},
			Rules: []*nft.Rule{{Verdict: nft.Verdict{Kind: nft.Jump, Chain: "peer"}}}})
	}
	return rs
}
