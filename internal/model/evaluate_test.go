package model_test

import (
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

type m = map[string]string

// baseCluster: namespaces x (team=blue) and y; pods x/a, x/b, y/a, y/c
// (y/c has no "pod" label), one per address, plus a finished pod and a
// hostNetwork pod.
func baseObjects() []any {
	return []any{
		tu.Namespace("x", m{"ns": "x", "team": "blue"}),
		tu.Namespace("y", m{"ns": "y"}),
		tu.Pod("x", "a", "n1", m{"pod": "a", "app": "web"}, []string{"10.0.1.1", "fd00::1:1"},
			tu.WithPort("http", v1.ProtocolTCP, 8080), tu.WithPort("dns", v1.ProtocolUDP, 5353)),
		tu.Pod("x", "b", "n1", m{"pod": "b"}, []string{"10.0.1.2"}, tu.WithPort("http", v1.ProtocolTCP, 9090)),
		tu.Pod("y", "a", "n2", m{"pod": "a"}, []string{"10.0.2.1"}),
		tu.Pod("y", "c", "n2", m{"role": "db"}, []string{"10.0.2.3"}),
		tu.Pod("y", "done", "n2", m{"pod": "b"}, []string{"10.0.2.9"}, func(p *v1.Pod) { p.Status.Phase = v1.PodSucceeded }),
		tu.Pod("y", "host", "n2", m{"pod": "a"}, []string{"192.0.2.2"}, func(p *v1.Pod) { p.Spec.HostNetwork = true }),
	}
}

func cluster(t *testing.T, objs ...any) *model.Cluster {
	t.Helper()
	c := model.NewCluster()
	for _, o := range append(baseObjects(), objs...) {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func flow(src, dst string, proto uint8, port uint16) model.Flow {
	return model.Flow{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: proto, Port: port}
}

const (
	xa  = "10.0.1.1"
	xb  = "10.0.1.2"
	ya  = "10.0.2.1"
	yc  = "10.0.2.3"
	ext = "203.0.113.7"
	tcp = model.ProtoTCP
	udp = model.ProtoUDP
)

func expr(key string, op metav1.LabelSelectorOperator, values ...string) func(*networkingv1.NetworkPolicy) {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{{
			PodSelector:       &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}},
			NamespaceSelector: &metav1.LabelSelector{},
		}}})
	}
}

func TestEvaluate(t *testing.T) {
	ingressOnly := tu.Types(networkingv1.PolicyTypeIngress)
	egressOnly := tu.Types(networkingv1.PolicyTypeEgress)
	tests := []struct {
		name     string
		policies []any
		flow     model.Flow
		want     bool
		// wantRule, when set, is "policy#rule" of the rule that allowed, or
		// "isolated:<pod>" for a denial.
		wantRule string
	}{
		{name: "no policy allows", flow: flow(ya, xa, tcp, 80), want: true},
		{name: "deny all ingress", policies: []any{tu.Policy("x", "deny", nil, ingressOnly)},
			flow: flow(ya, xa, tcp, 80), want: false, wantRule: "isolated:x/a"},
		{name: "deny all ingress leaves egress", policies: []any{tu.Policy("x", "deny", nil, ingressOnly)},
			flow: flow(xa, ya, tcp, 80), want: true},
		{name: "policyTypes default from egress rules", policies: []any{tu.Policy("x", "p", m{"pod": "a"}, tu.Egress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(m{"pod": "b"})}))},
			flow: flow(xa, ya, tcp, 80), want: false, wantRule: "isolated:x/a"},
		{name: "policyTypes default isolates ingress too", policies: []any{tu.Policy("x", "p", m{"pod": "a"}, tu.Egress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(m{"pod": "b"})}))},
			flow: flow(ya, xa, tcp, 80), want: false},
		{name: "empty rule allows all", policies: []any{tu.Policy("x", "p", nil, tu.Ingress(nil))},
			flow: flow(ext, xa, udp, 1), want: true, wantRule: "x/p#0"},
		{name: "pod peer is in the policy's namespace only", policies: []any{tu.Policy("x", "p", nil, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(m{"pod": "a"})}))},
			flow: flow(ya, xb, tcp, 80), want: false},
		{name: "pod peer same namespace", policies: []any{tu.Policy("x", "p", nil, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(m{"pod": "a"})}))},
			flow: flow(xa, xb, tcp, 80), want: true, wantRule: "x/p#0"},
		{name: "namespace and pod selector AND", policies: []any{tu.Policy("x", "p", nil, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.NSPeer(m{"ns": "y"}, m{"pod": "a"})}))},
			flow: flow(yc, xa, tcp, 80), want: false},
		{name: "namespace and pod selector AND matches", policies: []any{tu.Policy("x", "p", nil, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.NSPeer(m{"ns": "y"}, m{"pod": "a"})}))},
			flow: flow(ya, xa, tcp, 80), want: true},
		{name: "two peers OR", policies: []any{tu.Policy("x", "p", nil, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.NSPeer(m{"ns": "y"}, nil), tu.PodPeer(m{"pod": "a"})}))},
			flow: flow(yc, xb, tcp, 80), want: true},
		{name: "NotIn matches a pod lacking the key", policies: []any{tu.Policy("x", "p", nil, expr("pod", metav1.LabelSelectorOpNotIn, "a"))},
			flow: flow(yc, xa, tcp, 80), want: true},
		{name: "NotIn excludes", policies: []any{tu.Policy("x", "p", nil, expr("pod", metav1.LabelSelectorOpNotIn, "a"))},
			flow: flow(ya, xb, tcp, 80), want: false},
		{name: "DoesNotExist matches a pod lacking the key", policies: []any{tu.Policy("x", "p", nil, expr("pod", metav1.LabelSelectorOpDoesNotExist))},
			flow: flow(yc, xa, tcp, 80), want: true},
		{name: "Exists", policies: []any{tu.Policy("x", "p", nil, expr("role", metav1.LabelSelectorOpExists))},
			flow: flow(ya, xa, tcp, 80), want: false},
		{name: "In", policies: []any{tu.Policy("x", "p", nil, expr("role", metav1.LabelSelectorOpIn, "db", "cache"))},
			flow: flow(yc, xa, tcp, 80), want: true},
		{name: "ipBlock allows external", policies: []any{tu.Policy("x", "p", nil, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.Block("203.0.113.0/24")}))},
			flow: flow(ext, xa, tcp, 80), want: true},
		{name: "ipBlock except hole", policies: []any{tu.Policy("x", "p", nil, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.Block("203.0.113.0/24", "203.0.113.0/29")}))},
			flow: flow(ext, xa, tcp, 80), want: false},
		{name: "ipBlock second except", policies: []any{tu.Policy("x", "p", nil, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.Block("10.0.0.0/16", "10.0.1.0/24", "10.0.2.0/30")}))},
			flow: flow(ya, xa, tcp, 80), want: false},
		{name: "ipBlock matches pod addresses", policies: []any{tu.Policy("x", "p", nil, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.Block("10.0.2.0/24")}))},
			flow: flow(ya, xa, tcp, 80), want: true},
		{name: "ipBlock of the other family", policies: []any{tu.Policy("x", "p", nil, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.Block("fd00::/16")}))},
			flow: flow(ya, xa, tcp, 80), want: false},
		{name: "numeric port", policies: []any{tu.Policy("x", "p", nil, tu.Ingress(nil, tu.Port(v1.ProtocolTCP, 80, 0)))},
			flow: flow(ya, xa, tcp, 81), want: false},
		{name: "port protocol must match", policies: []any{tu.Policy("x", "p", nil, tu.Ingress(nil, tu.Port(v1.ProtocolTCP, 80, 0)))},
			flow: flow(ya, xa, udp, 80), want: false},
		{name: "endPort range", policies: []any{tu.Policy("x", "p", nil, tu.Ingress(nil, tu.Port(v1.ProtocolTCP, 80, 90)))},
			flow: flow(ya, xa, tcp, 90), want: true},
		{name: "endPort range end", policies: []any{tu.Policy("x", "p", nil, tu.Ingress(nil, tu.Port(v1.ProtocolTCP, 80, 90)))},
			flow: flow(ya, xa, tcp, 91), want: false},
		{name: "protocol only", policies: []any{tu.Policy("x", "p", nil, tu.Ingress(nil, tu.ProtoOnly(v1.ProtocolUDP)))},
			flow: flow(ya, xa, udp, 12345), want: true},
		{name: "named port ingress resolves on the subject", policies: []any{tu.Policy("x", "p", nil, tu.Ingress(nil, tu.NamedPort(v1.ProtocolTCP, "http")))},
			flow: flow(ya, xb, tcp, 9090), want: true},
		{name: "named port ingress other pod's number", policies: []any{tu.Policy("x", "p", nil, tu.Ingress(nil, tu.NamedPort(v1.ProtocolTCP, "http")))},
			flow: flow(ya, xb, tcp, 8080), want: false},
		{name: "named port protocol must match", policies: []any{tu.Policy("x", "p", nil, tu.Ingress(nil, tu.NamedPort(v1.ProtocolTCP, "dns")))},
			flow: flow(ya, xa, tcp, 5353), want: false},
		{name: "named port egress resolves on the peer", policies: []any{tu.Policy("x", "p", m{"pod": "b"}, egressOnly, tu.Egress(nil, tu.NamedPort(v1.ProtocolTCP, "http")))},
			flow: flow(xb, xa, tcp, 8080), want: true},
		{name: "named port egress to a non-pod", policies: []any{tu.Policy("x", "p", m{"pod": "b"}, egressOnly, tu.Egress(nil, tu.NamedPort(v1.ProtocolTCP, "http")))},
			flow: flow(xb, ext, tcp, 8080), want: false},
		{name: "policies are additive", policies: []any{
			tu.Policy("x", "deny", nil, ingressOnly),
			tu.Policy("x", "web", m{"app": "web"}, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.NSPeer(m{"ns": "y"}, nil)}))},
			flow: flow(ya, xa, tcp, 80), want: true, wantRule: "x/web#0"},
		{name: "egress denial wins over ingress allow", policies: []any{
			tu.Policy("y", "no-egress", nil, egressOnly),
			tu.Policy("x", "web", nil, tu.Ingress(nil))},
			flow: flow(ya, xa, tcp, 80), want: false, wantRule: "isolated:y/a"},
		{name: "finished pod is no peer", policies: []any{tu.Policy("x", "p", nil, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.NSPeer(m{"ns": "y"}, m{"pod": "b"})}))},
			flow: flow("10.0.2.9", xa, tcp, 80), want: false},
		{name: "hostNetwork pod is no subject", policies: []any{tu.Policy("y", "deny", nil, ingressOnly)},
			flow: flow(xa, "192.0.2.2", tcp, 80), want: true},
		{name: "hostNetwork pod is no peer", policies: []any{tu.Policy("x", "p", nil, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.NSPeer(m{"ns": "y"}, nil)}))},
			flow: flow("192.0.2.2", xa, tcp, 80), want: false},
		{name: "ingress list empty isolates", policies: []any{tu.Policy("x", "p", nil, ingressOnly, func(np *networkingv1.NetworkPolicy) {
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}}
		})}, flow: flow(ya, xa, tcp, 80), want: false},
		{name: "IPv6 address of a dual-stack pod", policies: []any{tu.Policy("x", "p", nil, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.Block("fd00::/16")}))},
			flow: flow("fd00::9", "fd00::1:1", tcp, 80), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cluster(t, tt.policies...)
			ev := model.NewEvaluator(c)
			d := ev.Evaluate(tt.flow)
			// Judge is one direction of Evaluate, the same verdict.
			if e, i := ev.Judge(model.Egress, tt.flow), ev.Judge(model.Ingress, tt.flow); e != d.Egress || i != d.Ingress {
				t.Errorf("Judge: egress %+v, ingress %+v; Evaluate: %+v", e, i, d)
			}
			if got := d.Allowed(); got != tt.want {
				t.Fatalf("%v: allowed = %v, want %v (egress: %v; ingress: %v)", tt.flow, got, tt.want, d.Egress, d.Ingress)
			}
			if tt.wantRule == "" {
				return
			}
			var got string
			dirs := []model.Direction{model.Egress, model.Ingress}
			for i, v := range []model.Verdict{d.Egress, d.Ingress} {
				if !v.Allowed {
					got = "isolated:" + v.Pod
					if len(c.Isolating(c.Pods[v.Pod], dirs[i])) == 0 {
						t.Errorf("%s is denied by isolation but Isolating names no policy", v.Pod)
					}
					break
				}
				if v.Policy != "" {
					got = v.Policy + "#" + string(rune('0'+v.Rule))
				}
			}
			if got != tt.wantRule {
				t.Errorf("decided by %q, want %q", got, tt.wantRule)
			}
		})
	}
}

func TestInvalidInputNarrowsAccess(t *testing.T) {
	bad := func(np *networkingv1.NetworkPolicy) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
			From: []networkingv1.NetworkPolicyPeer{tu.Block("not-a-cidr"), tu.Block("10.0.0.0/8", "bogus")},
		})
	}
	c := cluster(t, tu.Policy("x", "p", nil, tu.Types(networkingv1.PolicyTypeIngress), bad))
	if got := len(c.Policies["x/p"].Problems); got != 3 {
		t.Errorf("problems = %v, want 3 (two peers and the policy)", c.Policies["x/p"].Problems)
	}
	if model.NewEvaluator(c).Evaluate(flow(ya, xa, tcp, 80)).Allowed() {
		t.Error("an invalid ipBlock opened traffic")
	}

	badSelector := tu.Policy("x", "q", nil, tu.Types(networkingv1.PolicyTypeIngress))
	badSelector.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}}
	c = cluster(t, badSelector)
	if model.NewEvaluator(c).Evaluate(flow(ya, xb, tcp, 80)).Allowed() {
		t.Error("a policy with an invalid podSelector must isolate its namespace, not open it")
	}

	badPort := tu.Policy("x", "r", nil, tu.Ingress(nil, tu.Port(v1.ProtocolTCP, 0, 0)))
	c = cluster(t, badPort)
	if model.NewEvaluator(c).Evaluate(flow(ya, xb, tcp, 80)).Allowed() {
		t.Error("a rule whose only port is invalid must match nothing")
	}
}

// TestInvalidPolicyAllowsNothing: a NetworkPolicy with any problem
// isolates its pods and allows nothing, not even what its valid rules say,
// because its rules would add to what the pods' other policies allow.
func TestInvalidPolicyAllowsNothing(t *testing.T) {
	denyAll := tu.Policy("x", "deny-all", nil, tu.Types(networkingv1.PolicyTypeIngress))
	fromY := tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.NSPeer(m{"ns": "y"}, nil)})
	valid := tu.Policy("x", "from-y", nil, fromY)
	badPeer := tu.Policy("x", "from-y", nil, fromY, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.Block("10.0.0.0/33")}))
	badSelector := tu.Policy("x", "from-y", nil, fromY, expr("pod", "Bogus"))
	badType := tu.Policy("x", "from-y", nil, fromY, tu.Types(networkingv1.PolicyTypeIngress, "Sideways"))
	if !model.NewEvaluator(cluster(t, denyAll, valid)).Evaluate(flow(ya, xa, tcp, 80)).Allowed() {
		t.Fatal("the valid policy does not allow y/a -> x/a: the cases below prove nothing")
	}
	for name, np := range map[string]*networkingv1.NetworkPolicy{"bad peer": badPeer, "bad podSelector": badSelector, "bad policyType": badType} {
		c := cluster(t, denyAll, np)
		p := c.Policies["x/from-y"]
		if p.Valid() || len(p.Rules[model.Ingress])+len(p.Rules[model.Egress]) != 0 {
			t.Errorf("%s: valid=%v, rules %+v: want invalid with no rules", name, p.Valid(), p.Rules)
		}
		if d := model.NewEvaluator(c).Evaluate(flow(ya, xa, tcp, 80)); d.Allowed() {
			t.Errorf("%s: y/a -> x/a allowed (%v): an invalid policy's rules must not add to deny-all", name, d.Ingress)
		}
	}
	// An unknown policyType isolates both directions.
	if d := model.NewEvaluator(cluster(t, badType)).Evaluate(flow(xa, ya, tcp, 80)); d.Allowed() {
		t.Errorf("bad policyType: x/a -> y/a allowed (%v), want egress isolated", d.Egress)
	}
}

func TestOwnNodeAlwaysAllowedByNetworkPolicy(t *testing.T) {
	node := func(name, ip string) *v1.Node {
		return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: ip}}}}
	}
	c := cluster(t, node("n1", "172.18.0.11"), node("n2", "172.18.0.12"),
		tu.Policy("x", "no-egress", nil, tu.Types(networkingv1.PolicyTypeEgress)))
	ev := model.NewEvaluator(c)
	if d := ev.Evaluate(flow(xa, "172.18.0.11", tcp, 10250)); !d.Allowed() {
		t.Errorf("x/a to its own node: %v, want allowed", d.Egress)
	}
	if d := ev.Evaluate(flow(xa, "172.18.0.12", tcp, 10250)); d.Allowed() {
		t.Errorf("x/a to another node: %v, want denied", d.Egress)
	}

	// An invalid policy's isolation does not bring the exception: it would
	// open what a baseline policy (hidden by the isolation) denies.
	invalid := tu.Policy("x", "no-egress", nil, tu.Types(networkingv1.PolicyTypeEgress), tu.Egress([]networkingv1.NetworkPolicyPeer{tu.Block("bogus")}))
	c = cluster(t, node("n1", "172.18.0.11"), invalid)
	if d := model.NewEvaluator(c).Evaluate(flow(xa, "172.18.0.11", tcp, 10250)); d.Allowed() {
		t.Errorf("x/a to its own node, isolated by an invalid policy only: %v, want denied", d.Egress)
	}
	c = cluster(t, node("n1", "172.18.0.11"), invalid, tu.Policy("x", "valid", nil, tu.Types(networkingv1.PolicyTypeEgress)))
	if d := model.NewEvaluator(c).Evaluate(flow(xa, "172.18.0.11", tcp, 10250)); !d.Allowed() {
		t.Errorf("x/a to its own node, isolated by a valid policy too: %v, want allowed", d.Egress)
	}
}

// TestNodeListingAPodAddress: a Node object that lists a pod's address (a
// misconfiguration the fuzzer found) takes it only for packets from that
// node's own pods, as the kernel does (the address is local there); from
// anywhere else the packet goes to the pod, whose ingress judges it.
func TestNodeListingAPodAddress(t *testing.T) {
	n2 := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}, Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: xa}}}}
	c := cluster(t, n2, tu.Policy("x", "deny-ingress", nil, tu.Types(networkingv1.PolicyTypeIngress)))
	ev := model.NewEvaluator(c)
	for _, tc := range []struct {
		from    string
		allowed bool
	}{
		{"203.0.113.5", false}, // outside the cluster: to the pod
		{xb, false},            // a pod of the pod's own node
		{ya, true},             // a pod of n2: n2 takes the address as local
	} {
		if d := ev.Evaluate(flow(tc.from, xa, tcp, 80)); d.Allowed() != tc.allowed {
			t.Errorf("%s -> %s (listed by node n2): %v, want allowed=%v", tc.from, xa, d.Ingress, tc.allowed)
		}
	}
}

// TestPodsNotYetKnown: an address of a node's pod CIDRs that no active pod
// of that node has (a new pod, a finished one's) is denied both ways, but
// not with its own node; a known pod no policy selects stays allowed, and
// addresses outside the pod CIDRs are unaffected. Off, nothing changes.
func TestPodsNotYetKnown(t *testing.T) {
	node := func(name, ip string, cidrs ...string) *v1.Node {
		return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.NodeSpec{PodCIDRs: cidrs},
			Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: ip}}}}
	}
	// n1 holds 10.0.1.0/24 (x/a, x/b); n2 holds 10.0.2.0/24 (y/a, y/c,
	// and the finished y/done's 10.0.2.9).
	c := cluster(t, node("n1", "172.18.0.11", "10.0.1.0/24", "fd00::1:0/112"), node("n2", "172.18.0.12", "10.0.2.0/24"))
	const newOnN1, outside = "10.0.1.99", "203.0.113.5"
	tests := []struct {
		name         string
		flow         model.Flow
		allowed      bool
		egress, ingr string // the node in Verdict.Unknown, "" for none
		openAllowed  bool   // with the protection off
	}{
		{"known to new", flow(xa, newOnN1, tcp, 80), false, "", "n1", true},
		{"new to known", flow(newOnN1, xb, tcp, 80), false, "n1", "", true},
		{"new to another node's pod", flow(newOnN1, ya, tcp, 80), false, "n1", "", true},
		{"outside to new", flow(outside, newOnN1, tcp, 80), false, "", "n1", true},
		{"new to its own node", flow(newOnN1, "172.18.0.11", tcp, 10250), true, "n1", "", true},
		{"its own node to new", flow("172.18.0.11", newOnN1, tcp, 8080), true, "", "n1", true},
		{"another node to new", flow("172.18.0.12", newOnN1, tcp, 8080), false, "", "n1", true},
		{"to a finished pod's address", flow(xa, "10.0.2.9", tcp, 80), false, "", "n2", true},
		{"known pods, no policy", flow(xa, ya, tcp, 80), true, "", "", true},
		{"new IPv6", flow("fd00::1:1", "fd00::1:63", tcp, 80), false, "", "n1", true},
		{"outside every pod CIDR", flow(outside, "10.0.3.1", tcp, 80), true, "", "", true},
	}
	on, off := model.NewEvaluator(c), model.NewEvaluatorWith(c, model.Options{OpenUnknown: true})
	for _, tt := range tests {
		d := on.Evaluate(tt.flow)
		if d.Allowed() != tt.allowed || d.Egress.Unknown != tt.egress || d.Ingress.Unknown != tt.ingr {
			t.Errorf("%s: allowed=%v (egress: %v; ingress: %v), want %v with unknown %q/%q", tt.name, d.Allowed(), d.Egress, d.Ingress, tt.allowed, tt.egress, tt.ingr)
		}
		if d := off.Evaluate(tt.flow); d.Allowed() != tt.openAllowed || d.Egress.Unknown != "" || d.Ingress.Unknown != "" {
			t.Errorf("%s, protection off: allowed=%v (egress: %v; ingress: %v), want %v", tt.name, d.Allowed(), d.Egress, d.Ingress, tt.openAllowed)
		}
	}
	if got := on.Evaluate(flow(xa, newOnN1, tcp, 80)).Ingress.String(); got != "denied: in n1's pod CIDRs and not a pod n1 knows yet" {
		t.Errorf("verdict text %q", got)
	}
}

// Audit policies (nftpolicy.io/enforcement: audit) do not exist for
// verdicts unless EnforceAudit; any other value of the annotation enforces.
func TestAuditPolicies(t *testing.T) {
	annotated := func(value string) *networkingv1.NetworkPolicy {
		p := tu.Policy("x", "deny-a", m{"pod": "a"}, tu.Types(networkingv1.PolicyTypeIngress))
		p.Annotations = m{model.AnnotationEnforcement: value}
		return p
	}
	f := model.Flow{Src: netip.MustParseAddr("10.0.2.1"), Dst: netip.MustParseAddr("10.0.1.1"), Proto: 6, Port: 80}
	for _, tc := range []struct {
		value               string
		allowed, whenForced bool
	}{
		{"audit", true, false},
		{"Audit", false, false}, // not the value: enforced
		{"enforce", false, false},
	} {
		c := cluster(t, annotated(tc.value))
		if got := model.NewEvaluator(c).Evaluate(f).Allowed(); got != tc.allowed {
			t.Errorf("%q: allowed %v, want %v", tc.value, got, tc.allowed)
		}
		if got := model.NewEvaluatorWith(c, model.Options{EnforceAudit: true}).Evaluate(f).Allowed(); got != tc.whenForced {
			t.Errorf("%q with EnforceAudit: allowed %v, want %v", tc.value, got, tc.whenForced)
		}
	}
}
