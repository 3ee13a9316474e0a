package model_test

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

func sel(l map[string]string) *metav1.LabelSelector { return &metav1.LabelSelector{MatchLabels: l} }

// anp builds an AdminNetworkPolicy whose subject is namespace x and whose
// ingress rules come from namespaces with the given ns label.
func anp(name string, prio int32, rules ...v1alpha1.AdminNetworkPolicyIngressRule) *v1alpha1.AdminNetworkPolicy {
	p := &v1alpha1.AdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	p.Spec.Priority = prio
	p.Spec.Subject.Namespaces = sel(m{"ns": "x"})
	p.Spec.Ingress = rules
	return p
}

func from(action string, ns string) v1alpha1.AdminNetworkPolicyIngressRule {
	return v1alpha1.AdminNetworkPolicyIngressRule{Action: v1alpha1.AdminNetworkPolicyRuleAction(action),
		From: []v1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: sel(m{"ns": ns})}}}
}

func withPorts(r v1alpha1.AdminNetworkPolicyIngressRule, ports ...v1alpha1.AdminNetworkPolicyPort) v1alpha1.AdminNetworkPolicyIngressRule {
	r.Ports = &ports
	return r
}

func banp(name string, rules ...v1alpha1.BaselineAdminNetworkPolicyIngressRule) *v1alpha1.BaselineAdminNetworkPolicy {
	p := &v1alpha1.BaselineAdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	p.Spec.Subject.Namespaces = sel(m{"ns": "x"})
	p.Spec.Ingress = rules
	return p
}

func baseFrom(action string, ns string) v1alpha1.BaselineAdminNetworkPolicyIngressRule {
	return v1alpha1.BaselineAdminNetworkPolicyIngressRule{Action: v1alpha1.BaselineAdminNetworkPolicyRuleAction(action),
		From: []v1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: sel(m{"ns": ns})}}}
}

func cnpEgress(name string, tier v1alpha2.Tier, prio int32, action string, to v1alpha2.ClusterNetworkPolicyEgressPeer, protos ...v1alpha2.ClusterNetworkPolicyProtocol) *v1alpha2.ClusterNetworkPolicy {
	p := &v1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	p.Spec.Tier, p.Spec.Priority = tier, prio
	p.Spec.Subject.Namespaces = sel(m{"ns": "y"})
	p.Spec.Egress = []v1alpha2.ClusterNetworkPolicyEgressRule{{Action: v1alpha2.ClusterNetworkPolicyRuleAction(action),
		To: []v1alpha2.ClusterNetworkPolicyEgressPeer{to}, Protocols: protos}}
	return p
}

func TestTiers(t *testing.T) {
	denyAllX := tu.Policy("x", "deny-all", nil, tu.Types(networkingv1.PolicyTypeIngress))
	allowAllX := tu.Policy("x", "allow-all", nil, tu.Ingress(nil))
	namedHTTP := "http"
	tests := []struct {
		name    string
		objects []any
		flow    model.Flow
		want    bool
		tier    string // the tier that decided
		policy  string
	}{
		{name: "admin allow overrides a NetworkPolicy deny", objects: []any{denyAllX, anp("a", 10, from("Allow", "y"))},
			flow: flow(ya, xa, tcp, 80), want: true, tier: "admin", policy: "AdminNetworkPolicy/a"},
		{name: "admin deny overrides a NetworkPolicy allow", objects: []any{allowAllX, anp("a", 10, from("Deny", "y"))},
			flow: flow(ya, xa, tcp, 80), want: false, tier: "admin"},
		{name: "pass hands over to the NetworkPolicy", objects: []any{denyAllX, anp("a", 10, from("Pass", "y")), anp("b", 20, from("Allow", "y"))},
			flow: flow(ya, xa, tcp, 80), want: false, tier: "networkpolicy"},
		{name: "lower priority number first", objects: []any{anp("a", 20, from("Allow", "y")), anp("b", 10, from("Deny", "y"))},
			flow: flow(ya, xa, tcp, 80), want: false, policy: "AdminNetworkPolicy/b"},
		{name: "rules in order within a policy", objects: []any{anp("a", 10, from("Allow", "y"), from("Deny", "y"))},
			flow: flow(ya, xa, tcp, 80), want: true},
		{name: "equal priorities: ordered by name", objects: []any{anp("b", 10, from("Allow", "y")), anp("a", 10, from("Deny", "y"))},
			flow: flow(ya, xa, tcp, 80), want: false, policy: "AdminNetworkPolicy/a"},
		{name: "no admin match: NetworkPolicy decides", objects: []any{denyAllX, anp("a", 10, from("Allow", "z"))},
			flow: flow(ya, xa, tcp, 80), want: false, tier: "networkpolicy"},
		{name: "baseline denies where no NetworkPolicy isolates", objects: []any{banp("default", baseFrom("Deny", "y"))},
			flow: flow(ya, xa, tcp, 80), want: false, tier: "baseline"},
		{name: "NetworkPolicy isolation hides the baseline", objects: []any{allowAllX, banp("default", baseFrom("Deny", "y"))},
			flow: flow(ya, xa, tcp, 80), want: true, tier: "networkpolicy"},
		{name: "admin pass reaches the baseline", objects: []any{anp("a", 1, from("Pass", "y")), banp("default", baseFrom("Deny", "y"))},
			flow: flow(ya, xa, tcp, 80), want: false, tier: "baseline"},
		{name: "baseline allow", objects: []any{banp("default", baseFrom("Allow", "y"), baseFrom("Deny", "y"))},
			flow: flow(ya, xa, tcp, 80), want: true, tier: "baseline"},
		{name: "a baseline policy not named default is ignored", objects: []any{banp("other", baseFrom("Deny", "y"))},
			flow: flow(ya, xa, tcp, 80), want: true},
		{name: "admin port number", objects: []any{anp("a", 1, withPorts(from("Deny", "y"), v1alpha1.AdminNetworkPolicyPort{PortNumber: &v1alpha1.Port{Protocol: v1.ProtocolTCP, Port: 81}}))},
			flow: flow(ya, xa, tcp, 80), want: true},
		{name: "admin port range", objects: []any{anp("a", 1, withPorts(from("Deny", "y"), v1alpha1.AdminNetworkPolicyPort{PortRange: &v1alpha1.PortRange{Protocol: v1.ProtocolTCP, Start: 79, End: 81}}))},
			flow: flow(ya, xa, tcp, 80), want: false},
		{name: "admin named port of any protocol", objects: []any{anp("a", 1, withPorts(from("Deny", "y"), v1alpha1.AdminNetworkPolicyPort{NamedPort: &namedHTTP}))},
			flow: flow(ya, xa, tcp, 8080), want: false},
		{name: "admin named port: another number", objects: []any{anp("a", 1, withPorts(from("Deny", "y"), v1alpha1.AdminNetworkPolicyPort{NamedPort: &namedHTTP}))},
			flow: flow(ya, xa, tcp, 9090), want: true},
		{name: "an invalid priority keeps only Deny rules", objects: []any{denyAllX, anp("a", 5000, from("Allow", "y"))},
			flow: flow(ya, xa, tcp, 80), want: false, tier: "networkpolicy"},
		{name: "an invalid policy keeps no Allow rule, even a valid one", objects: []any{denyAllX, anp("a", 1, from("Allow", "y"), from("Allow", "bad value!"))},
			flow: flow(ya, xa, tcp, 80), want: false, tier: "networkpolicy"},
		{name: "an invalid policy keeps no Pass rule", objects: []any{anp("a", 1, from("Pass", "y"), from("Allow", "bad value!")), anp("b", 2, from("Deny", "y"))},
			flow: flow(ya, xa, tcp, 80), want: false, tier: "admin", policy: "AdminNetworkPolicy/b"},
		{name: "an invalid policy keeps its valid Deny rules", objects: []any{anp("a", 1, from("Deny", "y"), from("Allow", "bad value!"))},
			flow: flow(ya, xa, tcp, 80), want: false, tier: "admin", policy: "AdminNetworkPolicy/a"},
		{name: "an unknown action denies", objects: []any{anp("a", 1, from("Bogus", "y"))},
			flow: flow(ya, xa, tcp, 80), want: false, tier: "admin"},
		{name: "CNP admin-tier Accept on a network", objects: []any{
			tu.Policy("y", "no-egress", nil, tu.Types(networkingv1.PolicyTypeEgress)),
			cnpEgress("c", v1alpha2.AdminTier, 1, "Accept", v1alpha2.ClusterNetworkPolicyEgressPeer{Networks: []v1alpha2.CIDR{"203.0.113.0/24"}})},
			flow: flow(ya, ext, tcp, 80), want: true, tier: "admin"},
		{name: "CNP invalid network in a Deny fails closed", objects: []any{
			cnpEgress("c", v1alpha2.AdminTier, 1, "Deny", v1alpha2.ClusterNetworkPolicyEgressPeer{Networks: []v1alpha2.CIDR{"bogus"}})},
			flow: flow(ya, ext, udp, 53), want: false, tier: "admin"},
		{name: "CNP invalid network in an Accept matches nothing", objects: []any{
			tu.Policy("y", "no-egress", nil, tu.Types(networkingv1.PolicyTypeEgress)),
			cnpEgress("c", v1alpha2.AdminTier, 1, "Accept", v1alpha2.ClusterNetworkPolicyEgressPeer{Networks: []v1alpha2.CIDR{"bogus"}})},
			flow: flow(ya, ext, tcp, 80), want: false, tier: "networkpolicy"},
		{name: "CNP node peer", objects: []any{
			&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: m{"role": "infra"}}, Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "172.18.0.11"}}}},
			cnpEgress("c", v1alpha2.AdminTier, 1, "Deny", v1alpha2.ClusterNetworkPolicyEgressPeer{Nodes: sel(m{"role": "infra"})})},
			flow: flow(ya, "172.18.0.11", tcp, 10250), want: false, tier: "admin"},
		{name: "CNP protocol without port", objects: []any{
			cnpEgress("c", v1alpha2.BaselineTier, 1, "Deny", v1alpha2.ClusterNetworkPolicyEgressPeer{Namespaces: sel(m{"ns": "x"})},
				v1alpha2.ClusterNetworkPolicyProtocol{UDP: &v1alpha2.ClusterNetworkPolicyProtocolUDP{}})},
			flow: flow(ya, xa, udp, 9999), want: false, tier: "baseline"},
		{name: "CNP baseline Pass means the default: allowed", objects: []any{
			cnpEgress("c", v1alpha2.BaselineTier, 1, "Pass", v1alpha2.ClusterNetworkPolicyEgressPeer{Namespaces: sel(m{"ns": "x"})}),
			cnpEgress("d", v1alpha2.BaselineTier, 2, "Deny", v1alpha2.ClusterNetworkPolicyEgressPeer{Namespaces: sel(m{"ns": "x"})})},
			flow: flow(ya, xa, tcp, 80), want: true, tier: "baseline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cluster(t, tt.objects...)
			d := model.NewEvaluator(c).Evaluate(tt.flow)
			if got := d.Allowed(); got != tt.want {
				t.Fatalf("%v: allowed = %v, want %v (egress: %v; ingress: %v)", tt.flow, got, tt.want, d.Egress, d.Ingress)
			}
			decided := d.Ingress
			if d.Egress.Tier != "" {
				decided = d.Egress
			}
			if tt.tier != "" && decided.Tier != tt.tier {
				t.Errorf("decided by tier %q (%v), want %q", decided.Tier, decided, tt.tier)
			}
			if tt.policy != "" && decided.Policy != tt.policy {
				t.Errorf("decided by %q, want %q", decided.Policy, tt.policy)
			}
		})
	}
}
