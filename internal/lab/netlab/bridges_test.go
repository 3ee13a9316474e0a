package netlab

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/netns"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// The hook that judges a secondary network's traffic (docs/multinetwork.md):
// bridged between two pods of a network on one node and across nodes, IPv4
// packets reach the node's inet forward hook through bridge netfilter,
// with the network's bridge as input and output interface, and conntrack
// sees the flow (its reply is established). Turning the node's
// bridge-nf-call-iptables off makes the same rules see nothing: that is
// the hook, and nothing else, that judges them.
func TestBridgedTrafficReachesTheForwardHook(t *testing.T) {
	l := newLab(t)
	must(t, l.AddNode("n1", nil))
	must(t, l.AddNode("n2", nil))
	must(t, l.AddNetwork(Network{Name: "vlan10", Bridge: "br-vlan10", VLAN: 10}))
	pods := map[string]struct {
		node string
		addr string
	}{"x/a": {"n1", "192.168.10.1"}, "x/b": {"n1", "192.168.10.2"}, "x/c": {"n2", "192.168.10.3"}}
	for id, p := range pods {
		must(t, l.AddPod(id, p.node, addrs("10.244.0."+p.addr[len(p.addr)-1:], "", true, false)))
		must(t, l.AttachPod(id, "vlan10", "net1", []netip.Prefix{netip.MustParsePrefix(p.addr + "/24")}))
		must(t, l.Listen(id, "TCP", 80))
	}
	probe := func(from, to string) Verdict {
		o := l.ProbeFrom(context.Background(), from, netip.MustParseAddr(pods[from].addr), netip.MustParseAddr(pods[to].addr), "TCP", 80, 500*time.Millisecond)
		return o.Verdict
	}

	// n1's table: new bridged connections to x/b are dropped; replies and
	// established flows pass. So x/a -> x/b is denied and x/b -> x/a
	// allowed: its reply, from x/a to x/b, is established.
	rs := nft.NewRuleset()
	set := rs.AddSet(nft.NewSet("b", nft.SetIPv4, "x/b on vlan10"))
	set.Add(nft.Elem{Addr: netip.MustParseAddr(pods["x/b"].addr)})
	rs.AddChain(&nft.Chain{Name: "fwd", Hook: &nft.Hook{Hook: "forward", Priority: 10}, Rules: []*nft.Rule{
		{Matches: []nft.Match{nft.MatchIfname{Name: "br-vlan10", Not: true}}, Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "not bridged on br-vlan10"},
		{Matches: []nft.Match{nft.MatchCtState{States: []string{"established", "related"}}}, Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "replies"},
		{Matches: []nft.Match{nft.MatchIfname{Name: "br-vlan10", Out: true}, nft.MatchAddrInSet{Family: nft.IPv4, Set: "b"}}, Counter: true, Verdict: nft.Verdict{Kind: nft.Drop}, Comment: "new bridged flows to x/b"},
	}})
	f, err := os.Open(l.NodeNetNSPath("n1"))
	must(t, err)
	defer f.Close()
	k := nft.NewNetlinkTable(int(f.Fd()), "nftpolicy-net-test")
	defer k.Close()
	must(t, k.Apply(context.Background(), diff.Diff(nil, rs)))
	got, err := k.Dump(context.Background())
	must(t, err)
	if tx := diff.Diff(got, rs); !tx.Empty() {
		t.Fatalf("the table read back differs from what was programmed:\n%s", tx)
	}

	for _, c := range []struct {
		from, to string
		want     Verdict
	}{
		{"x/a", "x/b", Denied},  // bridged on n1: dropped
		{"x/c", "x/b", Denied},  // from n2, bridged on n1: dropped
		{"x/b", "x/a", Allowed}, // its reply to x/b is established
		{"x/b", "x/c", Allowed}, // the same across nodes
		{"x/a", "x/c", Allowed},
	} {
		if got := probe(c.from, c.to); got != c.want {
			t.Errorf("bridge netfilter on: %s -> %s: %s, want %s", c.from, c.to, got, c.want)
		}
	}

	// With bridge netfilter off in n1, its forward hook sees no bridged
	// packet: the same table lets everything through.
	must(t, writeSysctls(netns.Path(netnsName(l, "node/n1")), []sysctl{{"bridge/bridge-nf-call-iptables", "0"}}))
	for _, c := range [][2]string{{"x/a", "x/b"}, {"x/c", "x/b"}} {
		if got := probe(c[0], c[1]); got != Allowed {
			t.Errorf("bridge netfilter off: %s -> %s: %s, want allowed", c[0], c[1], got)
		}
	}
}

// netnsName is an endpoint's namespace name.
func netnsName(l *Lab, endpoint string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ns, _, _ := l.lookup(endpoint)
	return ns
}
