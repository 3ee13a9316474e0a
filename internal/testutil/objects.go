// Package testutil builds Kubernetes objects for tests: small constructors
// with tweak functions, as in kube-proxy's tests.
package testutil

import (
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Namespace makes a namespace with labels.
func Namespace(name string, labels map[string]string) *v1.Namespace {
	return &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// Pod makes a running pod on node with addresses and labels.
func Pod(ns, name, node string, labels map[string]string, ips []string, tweaks ...func(*v1.Pod)) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c"}}},
		Status:     v1.PodStatus{Phase: v1.PodRunning},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, v1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	for _, t := range tweaks {
		t(p)
	}
	return p
}

// WithPort declares a named container port.
func WithPort(name string, proto v1.Protocol, port int32) func(*v1.Pod) {
	return func(p *v1.Pod) {
		c := &p.Spec.Containers[0]
		c.Ports = append(c.Ports, v1.ContainerPort{Name: name, Protocol: proto, ContainerPort: port})
	}
}

// Policy makes a NetworkPolicy selecting podSelector in ns.
func Policy(ns, name string, podSelector map[string]string, tweaks ...func(*networkingv1.NetworkPolicy)) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: podSelector}},
	}
	for _, t := range tweaks {
		t(np)
	}
	return np
}

// Types sets policyTypes.
func Types(types ...networkingv1.PolicyType) func(*networkingv1.NetworkPolicy) {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.PolicyTypes = types }
}

// Ingress appends an ingress rule.
func Ingress(from []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) func(*networkingv1.NetworkPolicy) {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: from, Ports: ports})
	}
}

// Egress appends an egress rule.
func Egress(to []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) func(*networkingv1.NetworkPolicy) {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: to, Ports: ports})
	}
}

// PodPeer selects pods by labels in the policy's namespace.
func PodPeer(labels map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: labels}}
}

// NSPeer selects namespaces by labels (and, if pods is not nil, pods in them).
func NSPeer(ns map[string]string, pods map[string]string) networkingv1.NetworkPolicyPeer {
	p := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: ns}}
	if pods != nil {
		p.PodSelector = &metav1.LabelSelector{MatchLabels: pods}
	}
	return p
}

// Block is an ipBlock peer.
func Block(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

// Port is a numeric port (endPort 0: single port).
func Port(proto v1.Protocol, port, endPort int32) networkingv1.NetworkPolicyPort {
	p := intstr.FromInt32(port)
	out := networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
	if endPort != 0 {
		out.EndPort = &endPort
	}
	return out
}

// NamedPort is a port by name.
func NamedPort(proto v1.Protocol, name string) networkingv1.NetworkPolicyPort {
	p := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

// ProtoOnly matches every port of a protocol.
func ProtoOnly(proto v1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto}
}
