package compile

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

type m = map[string]string

// goldenCluster exercises every construct the compiler emits: classes shared
// by pods, pod peers in and across namespaces, ipBlocks with holes in both
// families, numeric ports, ranges, protocol-only ports and named ports both
// ways, a default deny and an empty (allow-all) rule.
func goldenCluster(t *testing.T) *model.Cluster {
	c := model.NewCluster()
	for _, o := range []any{
		tu.Namespace("x", m{"ns": "x"}),
		tu.Namespace("y", m{"ns": "y", "team": "blue"}),
		tu.Pod("x", "a", "node-1", m{"pod": "a", "app": "web"}, []string{"10.244.1.10", "fd00:10:244:1::10"}, tu.WithPort("http", v1.ProtocolTCP, 8080)),
		tu.Pod("x", "b", "node-1", m{"pod": "b", "app": "web"}, []string{"10.244.1.11", "fd00:10:244:1::11"}, tu.WithPort("http", v1.ProtocolTCP, 9090)),
		tu.Pod("x", "c", "node-2", m{"pod": "c"}, []string{"10.244.2.10"}),
		tu.Pod("y", "a", "node-2", m{"pod": "a"}, []string{"10.244.2.20"}, tu.WithPort("dns", v1.ProtocolUDP, 53)),
		tu.Policy("x", "default-deny", nil, tu.Types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)),
		tu.Policy("x", "web", m{"app": "web"},
			tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(m{"pod": "c"}), tu.NSPeer(m{"team": "blue"}, nil)}, tu.NamedPort(v1.ProtocolTCP, "http"), tu.Port(v1.ProtocolTCP, 80, 0)),
			tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.Block("203.0.113.0/24", "203.0.113.128/25", "203.0.113.0/28"), tu.Block("2001:db8::/32")}, tu.Port(v1.ProtocolTCP, 8000, 8100), tu.ProtoOnly(v1.ProtocolUDP)),
			tu.Egress([]networkingv1.NetworkPolicyPeer{tu.NSPeer(m{}, m{"pod": "a"})}, tu.NamedPort(v1.ProtocolUDP, "dns")),
			tu.Egress(nil),
		),
	} {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func TestGolden(t *testing.T) {
	for _, node := range []string{"node-1", "node-2"} {
		t.Run(node, func(t *testing.T) {
			got := Node(goldenCluster(t), node).Text()
			path := filepath.Join("testdata", node+".nft")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("compiled ruleset differs from %s (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestGoldenLoadsIntoKernel checks that the text form is valid nft: the
// kernel takes it as it is, in a throwaway namespace.
func TestGoldenLoadsIntoKernel(t *testing.T) {
	ns := tu.NetNS(t)
	for _, node := range []string{"node-1", "node-2"} {
		text := Node(goldenCluster(t), node).Text()
		if out, err := tu.NftIn(t, ns, text, "-f", "-"); err != nil {
			t.Fatalf("%s: nft -f: %v\n%s", node, err, out)
		}
		if out, err := tu.NftIn(t, ns, "", "delete", "table", "inet", "nftpolicy"); err != nil {
			t.Fatalf("delete table: %v\n%s", err, out)
		}
	}
}
