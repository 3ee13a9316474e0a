package compile

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestSharedAddressHasOneOwner: two running pods listing one address (it
// was reused before the informer saw its previous pod go), with different
// policies, on one node or two. A map holds one verdict per address, so the
// kernel refused both elements (every transaction of the node failed), and
// the evaluator and the kernel judged the address by different pods. Found
// by FuzzPod. Exactly one pod owns it now, the one whose key sorts first.
func TestSharedAddressHasOneOwner(t *testing.T) {
	for _, nodeB := range []string{"n1", "n2"} {
		c := model.NewCluster()
		for _, o := range []any{
			tu.Namespace("x", nil), tu.Namespace("y", nil),
			tu.Pod("x", "a", "n1", map[string]string{"app": "a"}, []string{"10.0.0.2"}),
			tu.Pod("y", "b", nodeB, map[string]string{"app": "b"}, []string{"10.0.0.2", "10.0.0.4"}),
			tu.Pod("y", "c", "n2", map[string]string{"app": "c"}, []string{"10.0.0.3"}),
			tu.Policy("x", "deny", nil),
			tu.Policy("y", "from-c", map[string]string{"app": "b"}, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(map[string]string{"app": "c"})})),
			tu.Policy("y", "to-b", map[string]string{"app": "c"}, tu.Types(networkingv1.PolicyTypeEgress), tu.Egress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(map[string]string{"app": "b"})})),
		} {
			if err := c.Set(o); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range []string{"n1", "n2"} {
			if err := nft.NewFake().Apply(context.Background(), diff.Diff(nil, Node(c, n))); err != nil {
				t.Errorf("y/b on %s: node %s: %v", nodeB, n, err)
			}
		}
		srcs, dsts := flowAddrs(c)
		allowed := agree(t, "y/b on "+nodeB, c, srcs, dsts)
		// x/a owns 10.0.0.2: its deny-all judges it, and y/c's egress to
		// pods labelled b does not reach it; y/b keeps its other address.
		for _, f := range []model.Flow{
			{Src: outsideHosts[0], Dst: addr("10.0.0.2"), Proto: model.ProtoTCP, Port: 80},
			{Src: addr("10.0.0.3"), Dst: addr("10.0.0.2"), Proto: model.ProtoTCP, Port: 80},
		} {
			if allowed[f] {
				t.Errorf("y/b on %s: %v allowed, want denied by x/a's policy", nodeB, f)
			}
		}
		if f := (model.Flow{Src: addr("10.0.0.3"), Dst: addr("10.0.0.4"), Proto: model.ProtoTCP, Port: 80}); !allowed[f] {
			t.Errorf("y/b on %s: %v denied, want allowed to y/b's own address", nodeB, f)
		}
		if got := fmt.Sprint(c.OwnedIPs(c.Pods["y/b"])); got != "[10.0.0.4]" {
			t.Errorf("y/b owns %s, want [10.0.0.4]", got)
		}
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }
