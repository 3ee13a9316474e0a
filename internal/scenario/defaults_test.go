package scenario

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
)

func ptr[T any](v T) *T { return &v }

func TestSetDefaults(t *testing.T) {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	port80 := intstr.FromInt32(80)
	tests := []struct {
		name    string
		in, out runtime.Object
	}{{
		name: "namespace label overwritten, as the API server does",
		in:   &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"kubernetes.io/metadata.name": "lie", "ns": "x"}}},
		out: &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"kubernetes.io/metadata.name": "x", "ns": "x"}},
			Spec:       corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{"kubernetes"}},
			Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
		},
	}, {
		name: "pod namespace, port protocol, podIP",
		in: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "a"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: 80}, {Name: "dns", ContainerPort: 53, Protocol: udp},
			}}}},
			Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}, {IP: "fd00::1"}}},
		},
		out: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "default"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: 80, Protocol: tcp}, {Name: "dns", ContainerPort: 53, Protocol: udp},
			}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}, {IP: "fd00::1"}}},
		},
	}, {
		name: "hostNetwork pod gets hostPorts; podIP alone fills podIPs",
		in: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "h", Namespace: "x"},
			Spec:       corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{ContainerPort: 9000}}}}},
			Status:     corev1.PodStatus{PodIP: "10.0.0.2"},
		},
		out: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "h", Namespace: "x"},
			Spec:       corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{ContainerPort: 9000, HostPort: 9000, Protocol: tcp}}}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.2", PodIPs: []corev1.PodIP{{IP: "10.0.0.2"}}},
		},
	}, {
		name: "node labels added, given ones kept",
		in:   &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"kubernetes.io/arch": "arm64"}}},
		out: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{
			"kubernetes.io/arch": "arm64", "kubernetes.io/hostname": "n1", "kubernetes.io/os": "linux",
		}}},
	}, {
		name: "policyTypes Ingress when there are no egress rules; port protocol TCP",
		in: &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port80}, {Protocol: &udp}}}},
		}},
		out: &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port80, Protocol: &tcp}, {Protocol: &udp}}}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		}},
	}, {
		name: "policyTypes Ingress and Egress when there are egress rules",
		in: &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			Egress: []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port80}}}},
		}},
		out: &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			Egress:      []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port80, Protocol: &tcp}}}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		}},
	}, {
		name: "policyTypes given are kept",
		in: &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		}},
		out: &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		}},
	}, {
		name: "AdminNetworkPolicy port protocols (kubebuilder:default=TCP)",
		in: &v1alpha1.AdminNetworkPolicy{Spec: v1alpha1.AdminNetworkPolicySpec{
			Ingress: []v1alpha1.AdminNetworkPolicyIngressRule{{Ports: &[]v1alpha1.AdminNetworkPolicyPort{
				{PortNumber: &v1alpha1.Port{Port: 80}},
				{PortRange: &v1alpha1.PortRange{Start: 1, End: 2, Protocol: udp}},
				{NamedPort: ptr("http")},
			}}},
			Egress: []v1alpha1.AdminNetworkPolicyEgressRule{{Ports: &[]v1alpha1.AdminNetworkPolicyPort{
				{PortRange: &v1alpha1.PortRange{Start: 1, End: 2}},
			}}},
		}},
		out: &v1alpha1.AdminNetworkPolicy{Spec: v1alpha1.AdminNetworkPolicySpec{
			Ingress: []v1alpha1.AdminNetworkPolicyIngressRule{{Ports: &[]v1alpha1.AdminNetworkPolicyPort{
				{PortNumber: &v1alpha1.Port{Port: 80, Protocol: tcp}},
				{PortRange: &v1alpha1.PortRange{Start: 1, End: 2, Protocol: udp}},
				{NamedPort: ptr("http")},
			}}},
			Egress: []v1alpha1.AdminNetworkPolicyEgressRule{{Ports: &[]v1alpha1.AdminNetworkPolicyPort{
				{PortRange: &v1alpha1.PortRange{Start: 1, End: 2, Protocol: tcp}},
			}}},
		}},
	}, {
		name: "BaselineAdminNetworkPolicy port protocols",
		in: &v1alpha1.BaselineAdminNetworkPolicy{Spec: v1alpha1.BaselineAdminNetworkPolicySpec{
			Egress: []v1alpha1.BaselineAdminNetworkPolicyEgressRule{{Ports: &[]v1alpha1.AdminNetworkPolicyPort{
				{PortNumber: &v1alpha1.Port{Port: 53}},
			}}},
		}},
		out: &v1alpha1.BaselineAdminNetworkPolicy{Spec: v1alpha1.BaselineAdminNetworkPolicySpec{
			Egress: []v1alpha1.BaselineAdminNetworkPolicyEgressRule{{Ports: &[]v1alpha1.AdminNetworkPolicyPort{
				{PortNumber: &v1alpha1.Port{Port: 53, Protocol: tcp}},
			}}},
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.DeepCopyObject()
			SetDefaults(got)
			if diff := cmp.Diff(tt.out, got); diff != "" {
				t.Errorf("SetDefaults (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadDefaults(t *testing.T) {
	const file = `name: defaults
nodes: [b-node]
objects:
  - apiVersion: v1
    kind: Node
    metadata: {name: a-node, labels: {zone: z1}}
    status: {addresses: [{type: InternalIP, address: 192.168.0.7}]}
  - {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c}]}, status: {podIPs: [{ip: 10.0.0.5}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: q}, spec: {containers: [{name: c}]}}
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: np}
    spec: {podSelector: {}, egress: [{ports: [{port: 53}]}]}
steps:
  - apply:
      - {apiVersion: v1, kind: Pod, metadata: {name: p, labels: {new: label}}, spec: {containers: [{name: c}]}}
      - {apiVersion: v1, kind: Pod, metadata: {name: r}, spec: {containers: [{name: c}]}}
  - probe:
      port: 53
      protocol: UDP
      expect: ["*/* -> */*: allowed"]
`
	s, err := Parse("defaults.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Family{IPv4}, s.IPFamilies); diff != "" {
		t.Errorf("IPFamilies (-want +got):\n%s", diff)
	}
	// Listed nodes first, then Node objects not listed.
	if diff := cmp.Diff([]string{"b-node", "a-node"}, s.Nodes); diff != "" {
		t.Errorf("Nodes (-want +got):\n%s", diff)
	}
	var refs []string
	for _, o := range s.Objects {
		refs = append(refs, RefOf(o).String())
	}
	want := []string{"Node b-node", "Node a-node", "Namespace default", "Pod default/p", "Pod default/q", "NetworkPolicy default/np"}
	if diff := cmp.Diff(want, refs); diff != "" {
		t.Fatalf("Objects (-want +got):\n%s", diff)
	}

	b := s.Objects[0].(*corev1.Node)
	wantB := &corev1.Node{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: "b-node", Labels: map[string]string{
			"kubernetes.io/hostname": "b-node", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		}},
	}
	if diff := cmp.Diff(wantB, b); diff != "" {
		t.Errorf("default Node (-want +got):\n%s", diff)
	}
	a := s.Objects[1].(*corev1.Node)
	if a.Labels["zone"] != "z1" || a.Labels["kubernetes.io/hostname"] != "a-node" || a.Status.Addresses[0].Address != "192.168.0.7" {
		t.Errorf("given Node = %+v", a)
	}
	ns := s.Objects[2].(*corev1.Namespace)
	if ns.Labels["kubernetes.io/metadata.name"] != "default" {
		t.Errorf("default Namespace = %+v", ns)
	}
	np := s.Objects[5].(*networkingv1.NetworkPolicy)
	if diff := cmp.Diff([]networkingv1.PolicyType{"Ingress", "Egress"}, np.Spec.PolicyTypes); diff != "" {
		t.Errorf("policyTypes (-want +got):\n%s", diff)
	}
	if *np.Spec.Egress[0].Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("port protocol = %v", *np.Spec.Egress[0].Ports[0].Protocol)
	}

	// Round-robin in nodes order; a re-applied pod keeps its node and the
	// addresses the file gave it; a new pod continues the round.
	p, q := s.Objects[3].(*corev1.Pod), s.Objects[4].(*corev1.Pod)
	p2, r := s.Steps[0].Apply[0].(*corev1.Pod), s.Steps[0].Apply[1].(*corev1.Pod)
	got := []string{p.Spec.NodeName, q.Spec.NodeName, p2.Spec.NodeName, r.Spec.NodeName, p2.Status.PodIP}
	if diff := cmp.Diff([]string{"b-node", "a-node", "b-node", "b-node", "10.0.0.5"}, got); diff != "" {
		t.Errorf("placement (-want +got):\n%s", diff)
	}
}

func TestNoDefaultNamespaceUnlessUsed(t *testing.T) {
	s, err := Load("testdata/examples/01-default-deny-ingress.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range s.Objects {
		if RefOf(o) == (ObjectRef{Kind: "Namespace", Name: "default"}) {
			t.Errorf("a default Namespace was added to a scenario that does not use it")
		}
	}
}

func TestStateDelete(t *testing.T) {
	st := NewState()
	objs := []runtime.Object{
		defaultNode("n1"), defaultNode("n2"),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "a"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "b"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "h"}, Spec: corev1.PodSpec{HostNetwork: true}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "p"}},
	}
	for _, o := range objs {
		if err := st.Apply(o); err != nil {
			t.Fatal(err)
		}
	}
	eps := st.Endpoints([]External{{Name: "ext"}})
	wantEps := []Endpoint{PodEndpoint("x", "a"), PodEndpoint("x", "b"), NodeEndpoint("n1"), NodeEndpoint("n2"), ExternalEndpoint("ext")}
	if diff := cmp.Diff(wantEps, eps); diff != "" {
		t.Errorf("Endpoints (-want +got):\n%s", diff)
	}

	removed, err := st.Delete(ObjectRef{Kind: "Node", Name: "n2"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ObjectRef{{Kind: "Node", Name: "n2"}, {Kind: "Pod", Namespace: "x", Name: "b"}}, removed); diff != "" {
		t.Errorf("Delete(node) (-want +got):\n%s", diff)
	}
	removed, err = st.Delete(ObjectRef{Kind: "Namespace", Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	want := []ObjectRef{{Kind: "Namespace", Name: "x"}, {Kind: "Pod", Namespace: "x", Name: "a"}, {Kind: "Pod", Namespace: "x", Name: "h"}, {Kind: "NetworkPolicy", Namespace: "x", Name: "p"}}
	if diff := cmp.Diff(want, removed); diff != "" {
		t.Errorf("Delete(namespace) (-want +got):\n%s", diff)
	}
	if len(st.Objects()) != 1 || st.Get(ObjectRef{Kind: "Node", Name: "n1"}) == nil {
		t.Errorf("left %v, want node n1", st.Objects())
	}
	if _, err := st.Delete(ObjectRef{Kind: "Namespace", Name: "x"}); err == nil {
		t.Error("deleting a deleted namespace succeeded")
	}
}
