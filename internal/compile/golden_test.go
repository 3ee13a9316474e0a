package compile

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

// Short names for the test clusters' labels and peers.
type (
	m     = map[string]string
	peers = []networkingv1.NetworkPolicyPeer
)

// goldenCluster exercises every construct the compiler emits: classes shared
// by pods, pod peers in and across namespaces, ipBlocks with holes in both
// families, numeric ports, ranges, protocol-only ports and named ports both
// ways, a default deny and an empty (allow-all) rule.
func goldenCluster(t *testing.T) *model.Cluster {
	c := model.NewCluster()
	for _, o := range []any{
		tu.Namespace("x", m{"ns": "x"}),
		tu.Namespace("y", m{"ns": "y", "team": "blue"}),
		withPodCIDRs(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, "10.244.1.0/24", "fd00:10:244:1::/64"),
		withPodCIDRs(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}}, "10.244.2.0/24", "fd00:10:244:2::/64"),
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

// tiersCluster adds admin and baseline policies of both API versions to
// goldenCluster: priorities, Allow/Deny/Pass, named ports of any protocol,
// node and network peers.
func tiersCluster(t *testing.T) *model.Cluster {
	c := goldenCluster(t)
	http := "http"
	anp := &v1alpha1.AdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "guard"}}
	anp.Spec.Priority = 10
	anp.Spec.Subject.Namespaces = &metav1.LabelSelector{MatchLabels: m{"ns": "x"}}
	anp.Spec.Ingress = []v1alpha1.AdminNetworkPolicyIngressRule{
		{Name: "monitoring", Action: "Allow", From: []v1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: m{"team": "blue"}}}},
			Ports: &[]v1alpha1.AdminNetworkPolicyPort{{NamedPort: &http}}},
		{Name: "delegate", Action: "Pass", From: []v1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}},
	}
	anp.Spec.Egress = []v1alpha1.AdminNetworkPolicyEgressRule{
		{Name: "no-kubelet", Action: "Deny", To: []v1alpha1.AdminNetworkPolicyEgressPeer{{Nodes: &metav1.LabelSelector{}}},
			Ports: &[]v1alpha1.AdminNetworkPolicyPort{{PortNumber: &v1alpha1.Port{Protocol: v1.ProtocolTCP, Port: 10250}}}},
		{Name: "no-metadata", Action: "Deny", To: []v1alpha1.AdminNetworkPolicyEgressPeer{{Networks: []v1alpha1.CIDR{"169.254.169.254/32"}}}},
	}
	banp := &v1alpha1.BaselineAdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	banp.Spec.Subject.Namespaces = &metav1.LabelSelector{}
	banp.Spec.Ingress = []v1alpha1.BaselineAdminNetworkPolicyIngressRule{
		{Name: "isolate-namespaces", Action: "Deny", From: []v1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}},
	}
	// It asks for its accepts to be logged (nftpolicy.io/log-accepts).
	cnp := &v1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "dns", Annotations: m{model.AnnotationLogAccepts: "true"}}}
	cnp.Spec.Tier, cnp.Spec.Priority = v1alpha2.AdminTier, 5
	cnp.Spec.Subject.Namespaces = &metav1.LabelSelector{}
	cnp.Spec.Egress = []v1alpha2.ClusterNetworkPolicyEgressRule{
		{Name: "dns", Action: "Accept", To: []v1alpha2.ClusterNetworkPolicyEgressPeer{{Pods: &v1alpha2.NamespacedPod{PodSelector: metav1.LabelSelector{MatchLabels: m{"pod": "a"}}}}},
			Protocols: []v1alpha2.ClusterNetworkPolicyProtocol{{UDP: &v1alpha2.ClusterNetworkPolicyProtocolUDP{DestinationPort: &v1alpha2.Port{Number: 53}}}}},
	}
	node := withPodCIDRs(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}, Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "172.18.0.11"}}}},
		"10.244.1.0/24", "fd00:10:244:1::/64")
	for _, o := range []any{anp, banp, cnp, node} {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// auditCluster adds policies in audit mode to goldenCluster: a
// NetworkPolicy that alone isolates y/a (node-2), one in x that enforced
// policies already isolate (it adds nothing), and an admin policy.
func auditCluster(t *testing.T) *model.Cluster {
	c := goldenCluster(t)
	audit := func(o metav1.Object) {
		o.SetAnnotations(m{model.AnnotationEnforcement: model.EnforcementAudit})
	}
	trial := tu.Policy("y", "trial", m{"pod": "a"}, tu.Types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress),
		tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.NSPeer(m{"ns": "x"}, m{"pod": "c"})}, tu.Port(v1.ProtocolTCP, 80, 0)),
		tu.Egress(nil, tu.Port(v1.ProtocolUDP, 53, 0)))
	audit(trial)
	extra := tu.Policy("x", "trial", nil, tu.Types(networkingv1.PolicyTypeIngress))
	audit(extra)
	anp := &v1alpha1.AdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "trial"}}
	audit(anp)
	anp.Spec.Priority = 20
	anp.Spec.Subject.Namespaces = &metav1.LabelSelector{MatchLabels: m{"ns": "y"}}
	anp.Spec.Egress = []v1alpha1.AdminNetworkPolicyEgressRule{
		{Name: "docs", Action: "Allow", To: []v1alpha1.AdminNetworkPolicyEgressPeer{{Networks: []v1alpha1.CIDR{"192.0.2.128/25"}}}},
		{Name: "no-docs", Action: "Deny", To: []v1alpha1.AdminNetworkPolicyEgressPeer{{Networks: []v1alpha1.CIDR{"192.0.2.0/24"}}}},
	}
	for _, o := range []any{trial, extra, anp} {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func withPodCIDRs(n *v1.Node, cidrs ...string) *v1.Node {
	n.Spec.PodCIDRs = cidrs
	n.Spec.PodCIDR = cidrs[0]
	return n
}

var goldenCases = []struct {
	name    string
	node    string
	cluster func(*testing.T) *model.Cluster
	opts    model.Options
}{
	{"node-1", "node-1", goldenCluster, model.Options{}},
	{"node-2", "node-2", goldenCluster, model.Options{}},
	{"tiers-node-1", "node-1", tiersCluster, model.Options{}},
	{"tiers-node-2", "node-2", tiersCluster, model.Options{}},
	// --protect-new-pods=false: the layout before the class of pods not
	// yet known, byte for byte.
	// and no verdict logs.
	{"open-node-1", "node-1", goldenCluster, model.Options{OpenUnknown: true, Logs: model.LogNone}},
	// Audit mode; accepts logged too (--verdict-logs=all).
	{"audit-node-2", "node-2", auditCluster, model.Options{}},
	{"logs-all-tiers-node-1", "node-1", tiersCluster, model.Options{Logs: model.LogAll}},
	// --ipvs: the output hook's chains too, for what IPVS re-sends.
	{"ipvs-tiers-node-1", "node-1", tiersCluster, model.Options{IPVS: true}},
}

func TestGolden(t *testing.T) {
	for _, gc := range goldenCases {
		t.Run(gc.name, func(t *testing.T) {
			got := NodeWith(gc.cluster(t), gc.node, gc.opts).Text()
			path := filepath.Join("testdata", gc.name+".nft")
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

// longNamesCluster has the longest names the API allows: comments and set
// names must still fit what nft accepts.
func longNamesCluster(t *testing.T) *model.Cluster {
	c := model.NewCluster()
	ns := strings.Repeat("n", 63)
	name := strings.Repeat("p", 253)
	key, value := "example.com/"+strings.Repeat("k", 63), strings.Repeat("v", 63)
	for _, o := range []any{
		tu.Namespace(ns, m{key: value}),
		tu.Pod(ns, name, "node-1", m{key: value}, []string{"10.244.1.10"}, tu.WithPort(strings.Repeat("h", 15), v1.ProtocolTCP, 80)),
		tu.Policy(ns, name, m{key: value},
			tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.NSPeer(m{key: value}, m{key: value}), tu.Block("10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16")},
				tu.NamedPort(v1.ProtocolTCP, strings.Repeat("h", 15)), tu.Port(v1.ProtocolTCP, 1000, 2000), tu.Port(v1.ProtocolUDP, 3000, 4000), tu.ProtoOnly(v1.ProtocolSCTP))),
	} {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestGoldenLoadsIntoKernel checks that the text form is valid nft: the
// kernel takes it as it is, in a throwaway namespace.
func TestGoldenLoadsIntoKernel(t *testing.T) {
	ns := tu.NetNS(t)
	cases := append(goldenCases, struct {
		name    string
		node    string
		cluster func(*testing.T) *model.Cluster
		opts    model.Options
	}{"long-names", "node-1", longNamesCluster, model.Options{}})
	for _, gc := range cases {
		text := NodeWith(gc.cluster(t), gc.node, gc.opts).Text()
		if out, err := tu.NftIn(t, ns, text, "-f", "-"); err != nil {
			t.Fatalf("%s: nft -f: %v\n%s", gc.name, err, out)
		}
		if out, err := tu.NftIn(t, ns, "", "delete", "table", "inet", "nftpolicy"); err != nil {
			t.Fatalf("delete table: %v\n%s", err, out)
		}
	}
}
