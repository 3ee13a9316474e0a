package conntrack

import (
	"fmt"
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// BenchmarkDenies judges 10,000 entries on a node of 110 pods (the kubelet's
// default maximum), each isolated by a policy of its own: the cost of one
// cut besides the dump.
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
	n := Node{Ruleset: compile.Node(c, "n1"), Local: map[netip.Addr]bool{node1: true}, Pods: pods}
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
