package compile

import (
	"math/rand"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
)

// Random tier policies for the agreement test. Priorities come from a small
// range so that ties (ordered by kind and name) occur often.

func randomSubject(r *rand.Rand) v1alpha1.AdminNetworkPolicySubject {
	if r.Intn(2) == 0 {
		return v1alpha1.AdminNetworkPolicySubject{Namespaces: randomSelector(r)}
	}
	return v1alpha1.AdminNetworkPolicySubject{Pods: &v1alpha1.NamespacedPod{NamespaceSelector: *randomSelector(r), PodSelector: *randomSelector(r)}}
}

func randomANPPorts(r *rand.Rand) *[]v1alpha1.AdminNetworkPolicyPort {
	if r.Intn(2) == 0 {
		return nil
	}
	var out []v1alpha1.AdminNetworkPolicyPort
	for i := 1 + r.Intn(2); i > 0; i-- {
		switch r.Intn(4) {
		case 0:
			out = append(out, v1alpha1.AdminNetworkPolicyPort{PortNumber: &v1alpha1.Port{Protocol: v1.ProtocolTCP, Port: 80}})
		case 1:
			out = append(out, v1alpha1.AdminNetworkPolicyPort{PortRange: &v1alpha1.PortRange{Protocol: v1.ProtocolUDP, Start: 50, End: 5400}})
		case 2:
			name := []string{"http", "dns"}[r.Intn(2)]
			out = append(out, v1alpha1.AdminNetworkPolicyPort{NamedPort: &name})
		default:
			out = append(out, v1alpha1.AdminNetworkPolicyPort{PortNumber: &v1alpha1.Port{Protocol: v1.ProtocolSCTP, Port: 80}})
		}
	}
	return &out
}

func randomIngressPeers(r *rand.Rand) []v1alpha1.AdminNetworkPolicyIngressPeer {
	var out []v1alpha1.AdminNetworkPolicyIngressPeer
	for i := 1 + r.Intn(2); i > 0; i-- {
		if r.Intn(2) == 0 {
			out = append(out, v1alpha1.AdminNetworkPolicyIngressPeer{Namespaces: randomSelector(r)})
		} else {
			out = append(out, v1alpha1.AdminNetworkPolicyIngressPeer{Pods: &v1alpha1.NamespacedPod{NamespaceSelector: *randomSelector(r), PodSelector: *randomSelector(r)}})
		}
	}
	return out
}

func randomEgressPeers(r *rand.Rand) []v1alpha1.AdminNetworkPolicyEgressPeer {
	var out []v1alpha1.AdminNetworkPolicyEgressPeer
	for i := 1 + r.Intn(2); i > 0; i-- {
		switch r.Intn(4) {
		case 0:
			out = append(out, v1alpha1.AdminNetworkPolicyEgressPeer{Namespaces: randomSelector(r)})
		case 1:
			out = append(out, v1alpha1.AdminNetworkPolicyEgressPeer{Pods: &v1alpha1.NamespacedPod{NamespaceSelector: *randomSelector(r), PodSelector: *randomSelector(r)}})
		case 2:
			out = append(out, v1alpha1.AdminNetworkPolicyEgressPeer{Nodes: randomSelector(r)})
		default:
			nets := [][]v1alpha1.CIDR{{"10.0.0.0/16"}, {"10.0.1.0/24", "fd00::/64"}, {"0.0.0.0/0"}, {"203.0.113.0/24", "172.18.0.12/32"}}
			out = append(out, v1alpha1.AdminNetworkPolicyEgressPeer{Networks: nets[r.Intn(len(nets))]})
		}
	}
	return out
}

func randomANP(r *rand.Rand, name string) *v1alpha1.AdminNetworkPolicy {
	actions := []v1alpha1.AdminNetworkPolicyRuleAction{"Allow", "Deny", "Pass"}
	p := &v1alpha1.AdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: randomEnforcement(r)}}
	p.Spec.Priority = int32(r.Intn(3))
	p.Spec.Subject = randomSubject(r)
	for i := r.Intn(3); i > 0; i-- {
		p.Spec.Ingress = append(p.Spec.Ingress, v1alpha1.AdminNetworkPolicyIngressRule{Action: actions[r.Intn(3)], From: randomIngressPeers(r), Ports: randomANPPorts(r)})
	}
	for i := r.Intn(3); i > 0; i-- {
		p.Spec.Egress = append(p.Spec.Egress, v1alpha1.AdminNetworkPolicyEgressRule{Action: actions[r.Intn(3)], To: randomEgressPeers(r), Ports: randomANPPorts(r)})
	}
	return p
}

func randomBANP(r *rand.Rand) *v1alpha1.BaselineAdminNetworkPolicy {
	actions := []v1alpha1.BaselineAdminNetworkPolicyRuleAction{"Allow", "Deny"}
	p := &v1alpha1.BaselineAdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default", Annotations: randomEnforcement(r)}}
	p.Spec.Subject = randomSubject(r)
	for i := r.Intn(3); i > 0; i-- {
		p.Spec.Ingress = append(p.Spec.Ingress, v1alpha1.BaselineAdminNetworkPolicyIngressRule{Action: actions[r.Intn(2)], From: randomIngressPeers(r), Ports: randomANPPorts(r)})
	}
	for i := r.Intn(3); i > 0; i-- {
		var to []v1alpha1.BaselineAdminNetworkPolicyEgressPeer
		for _, e := range randomEgressPeers(r) {
			to = append(to, v1alpha1.BaselineAdminNetworkPolicyEgressPeer{Namespaces: e.Namespaces, Pods: e.Pods, Nodes: e.Nodes, Networks: e.Networks})
		}
		p.Spec.Egress = append(p.Spec.Egress, v1alpha1.BaselineAdminNetworkPolicyEgressRule{Action: actions[r.Intn(2)], To: to, Ports: randomANPPorts(r)})
	}
	return p
}

func randomProtocols(r *rand.Rand) []v1alpha2.ClusterNetworkPolicyProtocol {
	var out []v1alpha2.ClusterNetworkPolicyProtocol
	for i := r.Intn(3); i > 0; i-- {
		switch r.Intn(4) {
		case 0:
			out = append(out, v1alpha2.ClusterNetworkPolicyProtocol{TCP: &v1alpha2.ClusterNetworkPolicyProtocolTCP{DestinationPort: &v1alpha2.Port{Number: 80}}})
		case 1:
			out = append(out, v1alpha2.ClusterNetworkPolicyProtocol{UDP: &v1alpha2.ClusterNetworkPolicyProtocolUDP{DestinationPort: &v1alpha2.Port{Range: &v1alpha2.PortRange{Start: 1, End: 1000}}}})
		case 2:
			out = append(out, v1alpha2.ClusterNetworkPolicyProtocol{TCP: &v1alpha2.ClusterNetworkPolicyProtocolTCP{}})
		default:
			out = append(out, v1alpha2.ClusterNetworkPolicyProtocol{DestinationNamedPort: "http"})
		}
	}
	return out
}

func randomCNP(r *rand.Rand, name string) *v1alpha2.ClusterNetworkPolicy {
	actions := []v1alpha2.ClusterNetworkPolicyRuleAction{"Accept", "Deny", "Pass"}
	p := &v1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: randomEnforcement(r)}}
	p.Spec.Tier = []v1alpha2.Tier{v1alpha2.AdminTier, v1alpha2.BaselineTier}[r.Intn(2)]
	p.Spec.Priority = int32(r.Intn(3))
	s := randomSubject(r)
	p.Spec.Subject.Namespaces = s.Namespaces
	if s.Pods != nil {
		p.Spec.Subject.Pods = &v1alpha2.NamespacedPod{NamespaceSelector: s.Pods.NamespaceSelector, PodSelector: s.Pods.PodSelector}
	}
	for i := r.Intn(3); i > 0; i-- {
		var from []v1alpha2.ClusterNetworkPolicyIngressPeer
		for _, e := range randomIngressPeers(r) {
			var pods *v1alpha2.NamespacedPod
			if e.Pods != nil {
				pods = &v1alpha2.NamespacedPod{NamespaceSelector: e.Pods.NamespaceSelector, PodSelector: e.Pods.PodSelector}
			}
			from = append(from, v1alpha2.ClusterNetworkPolicyIngressPeer{Namespaces: e.Namespaces, Pods: pods})
		}
		p.Spec.Ingress = append(p.Spec.Ingress, v1alpha2.ClusterNetworkPolicyIngressRule{Action: actions[r.Intn(3)], From: from, Protocols: randomProtocols(r)})
	}
	for i := r.Intn(3); i > 0; i-- {
		var to []v1alpha2.ClusterNetworkPolicyEgressPeer
		for _, e := range randomEgressPeers(r) {
			var pods *v1alpha2.NamespacedPod
			if e.Pods != nil {
				pods = &v1alpha2.NamespacedPod{NamespaceSelector: e.Pods.NamespaceSelector, PodSelector: e.Pods.PodSelector}
			}
			var nets []v1alpha2.CIDR
			for _, n := range e.Networks {
				nets = append(nets, v1alpha2.CIDR(n))
			}
			to = append(to, v1alpha2.ClusterNetworkPolicyEgressPeer{Namespaces: e.Namespaces, Pods: pods, Nodes: e.Nodes, Networks: nets})
		}
		p.Spec.Egress = append(p.Spec.Egress, v1alpha2.ClusterNetworkPolicyEgressRule{Action: actions[r.Intn(3)], To: to, Protocols: randomProtocols(r)})
	}
	return p
}
