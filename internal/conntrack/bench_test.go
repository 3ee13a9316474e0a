package conntrack

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	ct "github.com/ti-mo/conntrack"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// BenchmarkDenies judges 10,000 entries on a node of 110 pods (the kubelet's
// default maximum), each isolated by a policy of its own: the cost of one
// cut besides the dump. Three alternations on this project's 2-core
// machine: 86–87 ms with a Trace per entry and the base chains found for
// each, 19–20 ms with NewNode's Node and Drops.
func BenchmarkDenies(b *testing.B) {
	c := model.NewCluster()
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(c.Set(k8sNode("n1", node1.String())))
	must(c.Set(tu.Namespace("x", nil)))
	pods := map[netip.Addr]bool{}
	var addrs []netip.Addr
	for i := range 110 {
		a := netip.AddrFrom4([4]byte{10, 244, 1, byte(i + 1)})
		name := fmt.Sprintf("p%d", i)
		must(c.Set(tu.Pod("x", name, "n1", map[string]string{"app": name}, []string{a.String()})))
		must(c.Set(tu.Policy("x", name, map[string]string{"app": name},
			tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(map[string]string{"app": fmt.Sprintf("p%d", (i+1)%110)})}, tu.Port(v1.ProtocolTCP, 80, 0)))))
		pods[a] = true
		addrs = append(addrs, a)
	}
	n := NewNode(compile.Node(c, "n1"), map[netip.Addr]bool{node1: true}, pods)
	entries := make([]Entry, 10000)
	for i := range entries {
		entries[i] = tcp(addrs[i%110], addrs[(i*7+3)%110], uint16(80+i)) // distinct flows: no memo
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Select(entries, n.Denies); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDump dumps a table of 1,000 and of 10,000 TCP entries in a
// throwaway namespace, whole and the entries of one address (two dumps the
// kernel filters): what a cut costs before it judges anything. On this
// project's 2-core machine: whole, 14 ms and 62–65 ms (20 and 90 ms while
// other tests ran; 50,000 entries took 340 ms then); one address, 18 ms
// and 22 ms. Decoding the answers with the library's Flow took a fifth to a
// third of the whole dump; with decodeEntry, three alternations while CI
// ran beside: 10,000 entries 64–82 ms before, 47–56 ms after. Every dump
// walks the kernel's conntrack hash, shared by all namespaces: about 9 ms
// here even for a handful of entries.
func BenchmarkDump(b *testing.B) {
	tbl, c := throwawayTable(b)
	made := 0
	for _, n := range []int{1000, 10000} {
		for ; made < n; made++ {
			src := netip.AddrFrom4([4]byte{10, 1, byte(made >> 8), byte(made)})
			fl := ct.NewFlow(protoTCP, ct.StatusConfirmed|ct.StatusAssured, src, netip.MustParseAddr("10.2.0.1"), 40000, 80, 600, 0)
			fl.ProtoInfo.TCP = &ct.ProtoInfoTCP{State: 3} // established
			if err := c.Create(fl); err != nil {
				b.Fatalf("creating entry %d: %v", made, err)
			}
		}
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			for b.Loop() {
				es, err := tbl.Dump(context.Background(), nil)
				if err != nil || len(es) != n {
					b.Fatalf("dumped %d entries (%v), want %d", len(es), err, n)
				}
			}
		})
		// A pod's event: the entries of one address, filtered by the kernel.
		var one Scope
		one.addAddr(netip.AddrFrom4([4]byte{10, 1, 0, 7}))
		b.Run(fmt.Sprintf("entries=%d/one-address", n), func(b *testing.B) {
			for b.Loop() {
				es, err := tbl.dumpAddrs(context.Background(), []netip.Addr{netip.AddrFrom4([4]byte{10, 1, 0, 7})})
				if err != nil || len(es) != 1 {
					b.Fatalf("dumped %d entries (%v), want 1", len(es), err)
				}
			}
		})
	}
}
