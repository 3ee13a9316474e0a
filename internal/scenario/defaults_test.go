package scenario

import (
	"github.com/nftpolicy/nftpolicy/internal/manifest"

	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

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
		refs = append(refs, manifest.RefOf(o).String())
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
		if manifest.RefOf(o) == (ObjectRef{Kind: "Namespace", Name: "default"}) {
			t.Errorf("a default Namespace was added to a scenario that does not use it")
		}
	}
}

func TestStateDelete(t *testing.T) {
	st := manifest.NewState()
	objs := []runtime.Object{
		testNode("n1"), testNode("n2"),
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
	eps := Endpoints(st, []External{{Name: "ext"}})
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

// testNode is a Node as the loader makes one for a name in nodes.
func testNode(name string) *corev1.Node {
	n := &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: name}}
	manifest.SetDefaults(n)
	return n
}
