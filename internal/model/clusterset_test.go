package model_test

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"

	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// remoteObjects: cluster two has its own namespace x (team=blue, like the
// local x, and a label claiming the local cluster) and namespace beta; its
// pods two:x/a (10.0.9.1, on a node named like a local one) and
// two:beta/b (10.0.9.2); its node n1 (172.18.1.1).
func remoteObjects() []any {
	r := func(ns string) string { return model.RemoteName("two", ns) }
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: r("n1"), Labels: m{"role": "worker"}},
		Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "172.18.1.1"}}}}
	return []any{
		tu.Namespace(r("x"), m{"ns": "x", "team": "blue", model.ClusterLabel: "one"}),
		tu.Namespace(r("beta"), m{"ns": "beta"}),
		tu.Pod(r("x"), "a", "n1", m{"pod": "a", "app": "web"}, []string{"10.0.9.1"}),
		tu.Pod(r("beta"), "b", "n1", m{"pod": "b"}, []string{"10.0.9.2"}),
		node,
	}
}

const (
	rxa   = "10.0.9.1" // two: x/a
	rbb   = "10.0.9.2" // two: beta/b
	rnode = "172.18.1.1"
)

func clusterSetCluster(t *testing.T, cs model.ClusterSet, objs ...any) *model.Cluster {
	t.Helper()
	c := model.NewCluster()
	c.ClusterSet = cs
	for _, o := range append(append(baseObjects(), remoteObjects()...), objs...) {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func nsSel(l m) *metav1.LabelSelector { return &metav1.LabelSelector{MatchLabels: l} }

func TestClusterSet(t *testing.T) {
	ingressOnly := tu.Types(networkingv1.PolicyTypeIngress)
	from := func(peers ...networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
		return tu.Policy("x", "p", nil, ingressOnly, tu.Ingress(peers))
	}
	allNS := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}}
	named := func(cluster, ns string) networkingv1.NetworkPolicyPeer {
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel(m{model.ClusterLabel: cluster, "kubernetes.io/metadata.name": ns})}
	}
	denyTwo := &v1alpha1.AdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny-two"}, Spec: v1alpha1.AdminNetworkPolicySpec{
		Priority: 1, Subject: v1alpha1.AdminNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
		Ingress: []v1alpha1.AdminNetworkPolicyIngressRule{{Action: v1alpha1.AdminNetworkPolicyRuleActionDeny,
			From: []v1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: nsSel(m{model.ClusterLabel: "two"})}}}},
	}}
	allowAllNS := &v1alpha1.AdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "all"}, Spec: v1alpha1.AdminNetworkPolicySpec{
		Priority: 1, Subject: v1alpha1.AdminNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
		Ingress: []v1alpha1.AdminNetworkPolicyIngressRule{{Action: v1alpha1.AdminNetworkPolicyRuleActionDeny,
			From: []v1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}}},
	}}
	toNodes := func(sel *metav1.LabelSelector) *v1alpha1.AdminNetworkPolicy {
		return &v1alpha1.AdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "nodes"}, Spec: v1alpha1.AdminNetworkPolicySpec{
			Priority: 1, Subject: v1alpha1.AdminNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
			Egress: []v1alpha1.AdminNetworkPolicyEgressRule{{Action: v1alpha1.AdminNetworkPolicyRuleActionDeny,
				To: []v1alpha1.AdminNetworkPolicyEgressPeer{{Nodes: sel}}}},
		}}
	}
	tests := []struct {
		name     string
		cs       model.ClusterSet
		policies []any
		flow     model.Flow
		want     bool
	}{
		{"no policy: remote pods reach local ones", model.ClusterSet{}, nil, flow(rxa, xa, tcp, 80), true},
		{"all namespaces: not remote ones", model.ClusterSet{}, []any{from(allNS)}, flow(rbb, xa, tcp, 80), false},
		{"all namespaces: the local ones still", model.ClusterSet{}, []any{from(allNS)}, flow(ya, xa, tcp, 80), true},
		{"all namespaces with sameness: remote ones too", model.ClusterSet{Sameness: true}, []any{from(allNS)}, flow(rbb, xa, tcp, 80), true},
		{"a label both clusters' x have: not remote by default", model.ClusterSet{},
			[]any{from(networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel(m{"team": "blue"})})}, flow(rxa, xa, tcp, 80), false},
		{"named remote namespace", model.ClusterSet{}, []any{from(named("two", "beta"))}, flow(rbb, xa, tcp, 80), true},
		{"named remote namespace: not the other", model.ClusterSet{}, []any{from(named("two", "beta"))}, flow(rxa, xa, tcp, 80), false},
		{"named remote namespace: not the local one of that name", model.ClusterSet{}, []any{from(named("two", "x"))}, flow(xb, xa, tcp, 80), false},
		{"remote x is not local x", model.ClusterSet{}, []any{from(named("two", "x"))}, flow(rxa, xa, tcp, 80), true},
		{"a remote label claiming the local cluster is overridden", model.ClusterSet{LocalID: "one"}, []any{from(named("one", "x"))}, flow(rxa, xa, tcp, 80), false},
		{"local namespaces get the local id", model.ClusterSet{LocalID: "one"}, []any{from(named("one", "y"))}, flow(ya, xa, tcp, 80), true},
		{"without a local id they do not", model.ClusterSet{}, []any{from(named("one", "y"))}, flow(ya, xa, tcp, 80), false},
		{"a pod selector alone is the local namespace only", model.ClusterSet{Sameness: true},
			[]any{from(tu.PodPeer(m{"pod": "a"}))}, flow(rxa, xb, tcp, 80), false},
		{"remote pods are never subjects", model.ClusterSet{Sameness: true},
			[]any{tu.Policy("x", "deny", nil, ingressOnly), denyTwo}, flow(xa, rxa, tcp, 80), true},
		{"admin deny of a remote cluster", model.ClusterSet{}, []any{denyTwo}, flow(rbb, ya, tcp, 80), false},
		{"admin deny of a remote cluster: local peers pass", model.ClusterSet{}, []any{denyTwo}, flow(xa, ya, tcp, 80), true},
		{"admin all namespaces: not remote ones by default", model.ClusterSet{}, []any{allowAllNS}, flow(rbb, ya, tcp, 80), true},
		{"admin all namespaces with sameness", model.ClusterSet{Sameness: true}, []any{allowAllNS}, flow(rbb, ya, tcp, 80), false},
		{"node peer: remote node only when named", model.ClusterSet{}, []any{toNodes(&metav1.LabelSelector{})}, flow(xa, rnode, tcp, 80), true},
		{"node peer naming the cluster", model.ClusterSet{}, []any{toNodes(nsSel(m{model.ClusterLabel: "two"}))}, flow(xa, rnode, tcp, 80), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clusterSetCluster(t, tt.cs, tt.policies...)
			if got := model.NewEvaluator(c).Evaluate(tt.flow).Allowed(); got != tt.want {
				t.Fatalf("allowed = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRemoteNames: a remote object's model name, labels and node.
func TestRemoteNames(t *testing.T) {
	c := clusterSetCluster(t, model.ClusterSet{LocalID: "one"})
	ns := c.Namespaces["two/x"]
	if ns == nil || ns.Cluster != "two" || ns.Labels[model.ClusterLabel] != "two" || ns.Labels["kubernetes.io/metadata.name"] != "x" {
		t.Fatalf("remote namespace: %+v", ns)
	}
	if l := c.Namespaces["x"].Labels[model.ClusterLabel]; l != "one" {
		t.Fatalf("local namespace's cluster label: %q", l)
	}
	p := c.Pods["two/x/a"]
	if p == nil || !p.Remote() || p.Node != "two/n1" || len(c.PodsOn("n1")) != 2 {
		t.Fatalf("remote pod: %+v; local n1 has %d pods", p, len(c.PodsOn("n1")))
	}
	if n := c.Nodes["two/n1"]; n == nil || n.Cluster != "two" || n.Labels[model.ClusterLabel] != "two" {
		t.Fatalf("remote node: %+v", n)
	}
	if cl, name := model.SplitRemote("two/x"); cl != "two" || name != "x" {
		t.Fatal(cl, name)
	}
}
