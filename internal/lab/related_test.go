package lab

import (
	"context"
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	policyfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestRepliesOfAllowedFlowsPass: what the network answers to an allowed
// packet reaches its sender even where policy isolates every other packet
// of those two pods (network-policy-api v0.3.0: "Accept accepts the
// selected traffic, including replies to that traffic and related ICMP
// traffic"). x/c may only send to x/s on UDP 9999 and TCP 9998, nothing
// may enter x/c, and nothing may leave x/s; no one listens on x/s. So x/s
// answers a TCP SYN with a reset (a reply of the allowed connection) and
// a UDP datagram with an ICMP port unreachable (related to it), and both
// must reach x/c: the probe sees a reset, not a timeout. A port x/s's
// policy does not allow times out, which shows the isolation is in force.
// The same with NetworkPolicies and with admin-tier ClusterNetworkPolicies
// (Deny everything, Accept the one flow), in IPv4 and IPv6.
func TestRepliesOfAllowedFlowsPass(t *testing.T) {
	c, s := map[string]string{"app": "c"}, map[string]string{"app": "s"}
	for _, tc := range []struct {
		name     string
		policies []runtime.Object // NetworkPolicies through the core client, the rest through the policy client
	}{{
		name: "NetworkPolicy",
		policies: []runtime.Object{
			tu.Policy("x", "client", c, tu.Types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress),
				tu.Egress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(s)}, tu.Port(v1.ProtocolUDP, 9999, 0), tu.Port(v1.ProtocolTCP, 9998, 0))),
			tu.Policy("x", "server", s, tu.Types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress),
				tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(c)}, tu.Port(v1.ProtocolUDP, 9999, 0), tu.Port(v1.ProtocolTCP, 9998, 0))),
		},
	}, {
		name: "ClusterNetworkPolicy",
		policies: []runtime.Object{
			relatedCNP("deny-all", 20, nil, v1alpha2.ClusterNetworkPolicyRuleActionDeny, nil, nil),
			relatedCNP("client-to-server", 10, c, v1alpha2.ClusterNetworkPolicyRuleActionAccept, nil, s),
			relatedCNP("server-from-client", 10, s, v1alpha2.ClusterNetworkPolicyRuleActionAccept, c, nil),
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := relatedLab(t, tc.policies)
			ctx := context.Background()
			for _, family := range []int{4, 6} {
				for _, p := range []struct {
					proto  string
					port   uint16
					reason netlab.Reason
				}{{"UDP", 9999, netlab.Reset}, {"TCP", 9998, netlab.Reset}, {"UDP", 9997, netlab.Timeout}, {"TCP", 9996, netlab.Timeout}} {
					o := f.Net.Probe(ctx, "x/c", "x/s", family, p.proto, p.port, time.Second)
					if o.Verdict != netlab.Denied || o.Reason != p.reason {
						t.Errorf("IPv%d %s %d from x/c to x/s, where no one listens: %v, want denied (%v)", family, p.proto, p.port, o, p.reason)
					}
				}
			}
		})
	}
}

// relatedCNP is an admin-tier policy whose subject is the pods of x with
// labels subject (nil: all), with one ingress rule from the pods labelled
// from and one egress rule to the pods labelled to, each on UDP 9999 and
// TCP 9998 (both rules, on every port, when from and to are nil).
func relatedCNP(name string, priority int32, subject map[string]string, action v1alpha2.ClusterNetworkPolicyRuleAction, from, to map[string]string) *v1alpha2.ClusterNetworkPolicy {
	pods := func(labels map[string]string) *v1alpha2.NamespacedPod {
		return &v1alpha2.NamespacedPod{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "x"}},
			PodSelector:       metav1.LabelSelector{MatchLabels: labels},
		}
	}
	p := &v1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	p.Spec.Tier, p.Spec.Priority = v1alpha2.AdminTier, priority
	p.Spec.Subject.Pods = pods(subject)
	ports := []v1alpha2.ClusterNetworkPolicyProtocol{
		{UDP: &v1alpha2.ClusterNetworkPolicyProtocolUDP{DestinationPort: &v1alpha2.Port{Number: 9999}}},
		{TCP: &v1alpha2.ClusterNetworkPolicyProtocolTCP{DestinationPort: &v1alpha2.Port{Number: 9998}}},
	}
	if from == nil && to == nil {
		ports = nil
	}
	if from != nil || to == nil {
		p.Spec.Ingress = []v1alpha2.ClusterNetworkPolicyIngressRule{{Action: action, From: []v1alpha2.ClusterNetworkPolicyIngressPeer{{Pods: pods(from)}}, Protocols: ports}}
	}
	if to != nil || from == nil {
		p.Spec.Egress = []v1alpha2.ClusterNetworkPolicyEgressRule{{Action: action, To: []v1alpha2.ClusterNetworkPolicyEgressPeer{{Pods: pods(to)}}, Protocols: ports}}
	}
	return p
}

// relatedLab builds x/c on node n1 and x/s on n2 (dual-stack), starts an
// agent per node and applies policies.
func relatedLab(t *testing.T, policies []runtime.Object) *Fixture {
	tu.NeedKernel(t)
	f := NewFixture()
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.Create(tu.Namespace("x", nil)))
	for _, n := range []string{"n1", "n2"} {
		must(f.AddNode(n))
	}
	for _, p := range []struct{ name, node, v4, v6 string }{
		{"c", "n1", "10.244.1.10", "fd00:10:244:1::10"},
		{"s", "n2", "10.244.2.10", "fd00:10:244:2::10"},
	} {
		must(f.Net.AddPod("x/"+p.name, p.node, []netip.Addr{netip.MustParseAddr(p.v4), netip.MustParseAddr(p.v6)}))
		must(f.Create(tu.Pod("x", p.name, p.node, map[string]string{"app": p.name}, []string{p.v4, p.v6})))
	}
	var admin []runtime.Object
	for _, p := range policies {
		if _, ok := p.(*networkingv1.NetworkPolicy); ok {
			must(f.Create(p))
			continue
		}
		p.(metav1.Object).SetResourceVersion("1")
		f.Expect(p)
		admin = append(admin, p)
	}
	must(f.StartAgents(context.Background(), []string{"n1", "n2"}, func(cfg *agent.Config, _ int) {
		if len(admin) > 0 {
			cfg.PolicyClient = policyfake.NewSimpleClientset(admin...)
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(f.Barrier(ctx))
	return f
}
