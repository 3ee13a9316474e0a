package compile

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestFirstPacketPathIndependentOfPolicies: a new connection to a pod
// meets the same rules whether 2, 50 or 500 policies select it (issue
// 13): its class's jump, the peer's identity, the identity's map of local
// pods, one port lookup and the rule's verdict chain, never a walk over
// the policies. Decoy policies each select the server and allow other
// peers (a pod selector of their own, a namespace selector with a named
// port, an ipBlock); the allowed client, a client one decoy allows and a
// client nobody allows each take a path of a fixed number of rules: for
// the client's ingress, the base chain's three rules and its pods map,
// the class's jump, the ids map, the identity's map, the named-port lookup
// and the verdict chain's accept (docs/ruleset.md).
func TestFirstPacketPathIndependentOfPolicies(t *testing.T) {
	client, server := netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("10.0.1.2")
	caller, stranger := netip.MustParseAddr("10.0.2.9"), netip.MustParseAddr("10.0.2.8")
	flows := []struct {
		name    string
		src     netip.Addr
		port    uint16
		allowed bool
		// rules met in forward-egress (the client's egress: only the
		// client is isolated there) and in forward-ingress
		egress, ingress int
	}{
		{"the client to the server", client, 8080, true, 10, 9},
		{"caller-0 to the server on its decoy's port", caller, 9000, true, 9, 9},
		{"a stranger to the server", stranger, 8080, false, 9, 14},
	}
	for _, decoys := range []int{1, 49, 499} {
		c := model.NewCluster()
		objs := []any{
			tu.Namespace("x", m{"team": "x"}),
			tu.Namespace("y", m{"team": "platform"}),
			tu.Pod("x", "client", "n1", m{"app": "client"}, []string{client.String()}),
			tu.Pod("x", "server", "n1", m{"app": "server"}, []string{server.String()},
				tu.WithPort("http", v1.ProtocolTCP, 8080), tu.WithPort("metrics", v1.ProtocolTCP, 9100)),
			tu.Pod("x", "caller-0", "n2", m{"app": "caller-0"}, []string{caller.String()}),
			tu.Pod("x", "stranger", "n2", m{"app": "stranger"}, []string{stranger.String()}),
			tu.Policy("x", "client-egress", m{"app": "client"}, tu.Types(networkingv1.PolicyTypeEgress),
				tu.Egress(peers{tu.PodPeer(m{"app": "server"})}, tu.Port(v1.ProtocolTCP, 8080, 0))),
			tu.Policy("x", "zz-allow-client", m{"app": "server"},
				tu.Ingress(peers{tu.PodPeer(m{"app": "client"})}, tu.NamedPort(v1.ProtocolTCP, "http"))),
		}
		for i := range decoys {
			objs = append(objs, tu.Policy("x", fmt.Sprintf("decoy-%03d", i), m{"app": "server"},
				tu.Ingress(peers{tu.PodPeer(m{"app": fmt.Sprintf("caller-%d", i)})}, tu.Port(v1.ProtocolTCP, int32(9000+i), 0)),
				tu.Ingress(peers{tu.NSPeer(m{"team": "platform"}, nil)}, tu.NamedPort(v1.ProtocolTCP, "metrics")),
				tu.Ingress(peers{tu.Block("203.0.113.0/24", "203.0.113.128/25")}, tu.Port(v1.ProtocolTCP, 443, 0))))
		}
		for _, o := range objs {
			if err := c.Set(o); err != nil {
				t.Fatal(err)
			}
		}
		rs := Node(c, "n1")
		for _, f := range flows {
			p := nft.Packet{Src: f.src, Dst: server, Proto: nft.ProtoTCP, Port: f.port, CtState: "new"}
			eg, err := rs.Trace(ChainForwardEgress, p)
			if err != nil {
				t.Fatal(err)
			}
			in, err := rs.Trace(ChainForwardIngress, p)
			if err != nil {
				t.Fatal(err)
			}
			if !eg.Accepted || in.Accepted != f.allowed {
				t.Errorf("%d decoys, %s: egress accepted %v, ingress accepted %v; want allowed %v", decoys, f.name, eg.Accepted, in.Accepted, f.allowed)
			}
			if eg.Evaluated != f.egress || in.Evaluated != f.ingress {
				t.Errorf("%d decoys, %s: met %d rules in egress and %d in ingress, want %d and %d", decoys, f.name, eg.Evaluated, in.Evaluated, f.egress, f.ingress)
			}
		}
	}
}

// TestFirstPacketPathIndependentOfTierPolicies is the same for the admin
// and baseline tiers: the server is the subject of 1, 49 or 499 admin
// policies and an open pod of as many baseline-tier policies, each denying
// one caller on its own port; a flow meets the same rules whatever their
// number. Caller-0 to the server: the base chain's three rules and its pods
// map, the admin class's jump, the admin ids map, the identity's map of
// local pods, one port lookup and the verdict chain's log and drop (10).
// A peer no admin rule names meets the admin peer chain's five lookups and
// the empty identity's two, then the class's rest lookup, and goes on to
// its NetworkPolicy class (18 for the client, 23 for the stranger with its
// default deny's log and drop).
func TestFirstPacketPathIndependentOfTierPolicies(t *testing.T) {
	client, server, open := netip.MustParseAddr("10.0.2.1"), netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("10.0.1.3")
	caller, stranger := netip.MustParseAddr("10.0.2.9"), netip.MustParseAddr("10.0.2.8")
	flows := []struct {
		name     string
		src, dst netip.Addr
		port     uint16
		allowed  bool
		rules    int // met in n1's forward-ingress
	}{
		{"the client to the server (no admin rule, then its NetworkPolicy)", client, server, 8080, true, 18},
		{"caller-0 to the server on its admin deny's port", caller, server, 9000, false, 10},
		{"a stranger to the server", stranger, server, 8080, false, 23},
		{"the client to the open pod (no baseline rule)", client, open, 8080, true, 13},
		{"caller-0 to the open pod on its baseline deny's port", caller, open, 9000, false, 10},
	}
	for _, decoys := range []int{1, 49, 499} {
		c := model.NewCluster()
		objs := []any{
			tu.Namespace("x", m{"team": "x"}),
			tu.Pod("x", "server", "n1", m{"app": "server"}, []string{server.String()}),
			tu.Pod("x", "open", "n1", m{"app": "open"}, []string{open.String()}),
			tu.Pod("x", "client", "n2", m{"app": "client"}, []string{client.String()}),
			tu.Pod("x", "caller-0", "n2", m{"app": "caller-0"}, []string{caller.String()}),
			tu.Pod("x", "stranger", "n2", m{"app": "stranger"}, []string{stranger.String()}),
			tu.Policy("x", "allow-client", m{"app": "server"},
				tu.Ingress(peers{tu.PodPeer(m{"app": "client"})}, tu.Port(v1.ProtocolTCP, 8080, 0))),
		}
		subject := func(app string) *v1alpha2.NamespacedPod {
			return &v1alpha2.NamespacedPod{NamespaceSelector: metav1.LabelSelector{MatchLabels: m{"team": "x"}}, PodSelector: metav1.LabelSelector{MatchLabels: m{"app": app}}}
		}
		for i := range decoys {
			for _, tier := range []v1alpha2.Tier{v1alpha2.AdminTier, v1alpha2.BaselineTier} {
				p := &v1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%03d", strings.ToLower(string(tier)), i)}}
				p.Spec.Tier, p.Spec.Priority = tier, int32(i)
				p.Spec.Subject.Pods = subject(map[v1alpha2.Tier]string{v1alpha2.AdminTier: "server", v1alpha2.BaselineTier: "open"}[tier])
				p.Spec.Ingress = []v1alpha2.ClusterNetworkPolicyIngressRule{{Action: "Deny",
					From:      []v1alpha2.ClusterNetworkPolicyIngressPeer{{Pods: subject(fmt.Sprintf("caller-%d", i))}},
					Protocols: []v1alpha2.ClusterNetworkPolicyProtocol{{TCP: &v1alpha2.ClusterNetworkPolicyProtocolTCP{DestinationPort: &v1alpha2.Port{Number: int32(9000 + i)}}}}}}
				objs = append(objs, p)
			}
		}
		for _, o := range objs {
			if err := c.Set(o); err != nil {
				t.Fatal(err)
			}
		}
		rs := Node(c, "n1")
		for _, f := range flows {
			in, err := rs.Trace(ChainForwardIngress, nft.Packet{Src: f.src, Dst: f.dst, Proto: nft.ProtoTCP, Port: f.port, CtState: "new"})
			if err != nil {
				t.Fatal(err)
			}
			if in.Accepted != f.allowed || in.Evaluated != f.rules {
				t.Errorf("%d decoys, %s: accepted %v after %d rules, want %v after %d", decoys, f.name, in.Accepted, in.Evaluated, f.allowed, f.rules)
			}
		}
	}
}
