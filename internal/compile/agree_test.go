package compile

import (
	"fmt"
	"math/rand"
	"net/netip"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestCompiledRulesetAgreesWithEvaluator is the two-layer check: random
// clusters and policies, every flow between their pods, two outside hosts
// and addresses of the nodes' pod CIDRs that no pod has (pods not yet
// known, finished pods), judged by the model's evaluator and by tracing
// the packet through the compiled rulesets of the nodes it crosses. They
// must agree, with the protection of pods not yet known on (the default)
// and off.
func TestCompiledRulesetAgreesWithEvaluator(t *testing.T) {
	for _, opts := range []model.Options{{}, {OpenUnknown: true}} {
		seeds := int64(300)
		if opts.OpenUnknown {
			seeds = 100
		}
		for seed := range tu.Seeds(t, seeds) {
			r := rand.New(rand.NewSource(seed))
			c := randomCluster(t, r)
			srcs, dsts := flowAddrs(c)
			// A finished pod's addresses are judged too: in a pod CIDR,
			// they are not yet known (their next owner is new).
			extra := append([]netip.Addr{}, unknownAddrs...)
			for _, p := range c.SortedPods() {
				if !p.Active() {
					extra = append(extra, p.IPs...)
				}
			}
			agreeWith(t, fmt.Sprintf("seed %d %+v", seed, opts), c, opts, append(srcs, extra...), append(dsts, extra...))
		}
	}
}

// TestIPVSPathAgreesWithEvaluator checks the output chains (--ipvs): IPVS
// takes a connection to a Service on the node it enters (the client's, or
// for a client outside the cluster the endpoint's) and re-sends it to the
// endpoint pod through that node's output hook, so the output chains judge
// it there, and the endpoint's node, when another, judges it in forward.
// Traced that way through rulesets compiled with IPVS, every pod-to-pod
// and outside-to-pod flow of random clusters gets the evaluator's verdict.
// Without IPVS no chain of the table is on the output hook.
func TestIPVSPathAgreesWithEvaluator(t *testing.T) {
	opts := model.Options{IPVS: true}
	for seed := range tu.Seeds(t, 100) {
		r := rand.New(rand.NewSource(seed))
		c := randomCluster(t, r)
		rulesets := map[string]*nft.Ruleset{}
		for _, n := range nodeNames(c) {
			rulesets[n] = NodeWith(c, n, opts)
			for _, ch := range NodeWith(c, n, model.Options{}).Chains {
				if ch.Hook != nil && ch.Hook.Hook == "output" {
					t.Fatalf("seed %d: %s has %s on the output hook without IPVS", seed, n, ch.Name)
				}
			}
		}
		ev := model.NewEvaluatorWith(c, opts)
		var pods []netip.Addr
		for _, p := range c.SortedPods() {
			if p.Active() {
				pods = append(pods, p.IPs...)
			}
		}
		for _, src := range append(slices.Clone(outsideHosts), pods...) {
			for _, dst := range pods {
				if src == dst || src.Is4() != dst.Is4() {
					continue
				}
				dstNode := ev.PodByAddr(dst).Node
				via := dstNode
				if p := ev.PodByAddr(src); p != nil {
					via = p.Node
				}
				hops := [][2]string{{via, ChainOutputEgress}, {via, ChainOutputIngress}}
				if dstNode != via {
					hops = append(hops, [2]string{dstNode, ChainForwardEgress}, [2]string{dstNode, ChainForwardIngress})
				}
				for _, pp := range flowPorts {
					f := model.Flow{Src: src, Dst: dst, Proto: pp.Proto, Port: pp.Port}
					want := ev.Evaluate(f).Allowed()
					got := true
					for _, h := range hops {
						rs := rulesets[h[0]]
						if rs == nil {
							continue // a remote cluster's node
						}
						res, err := rs.Trace(h[1], nft.Packet{Src: f.Src, Dst: f.Dst, Proto: f.Proto, Port: f.Port, CtState: "new"})
						if err != nil {
							t.Fatal(err)
						}
						if res.Dropped {
							got = false
							break
						}
					}
					if got != want {
						t.Fatalf("seed %d: %v through IPVS on %s: kernel allows=%v, evaluator=%v\npolicies:\n%s", seed, f, via, got, want, describe(c))
					}
				}
			}
		}
	}
}

// unknownAddrs are in n1's and n2's pod CIDRs (when they have them) and
// no random pod's.
var unknownAddrs = []netip.Addr{netip.MustParseAddr("10.0.0.200"), netip.MustParseAddr("fd00::1:c8")}

// flowPorts are the protocols and ports every flow is tried on: numeric
// ports inside and outside the random policies' ranges, and the numbers the
// random pods' named ports resolve to.
var flowPorts = []struct {
	Proto uint8
	Port  uint16
}{{model.ProtoTCP, 80}, {model.ProtoTCP, 81}, {model.ProtoUDP, 80}, {model.ProtoTCP, 8080}, {model.ProtoSCTP, 80}, {model.ProtoUDP, 5353}}

// outsideHosts are two addresses no pod or node has.
var outsideHosts = []netip.Addr{netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("2001:db8::5")}

// flowAddrs is the addresses flows are tried between: the active pods'
// and two outside hosts' as sources; those and the nodes' as destinations.
func flowAddrs(c *model.Cluster) (srcs, dsts []netip.Addr) {
	srcs = append(srcs, outsideHosts...)
	for _, p := range c.SortedPods() {
		if p.Active() {
			srcs = append(srcs, p.IPs...)
		}
	}
	dsts = append(dsts, srcs...)
	for _, n := range c.Nodes {
		dsts = append(dsts, n.Addresses...)
	}
	return srcs, dsts
}

// agree is agreeWith for the agent's default options.
func agree(t testing.TB, label string, c *model.Cluster, srcs, dsts []netip.Addr) map[model.Flow]bool {
	t.Helper()
	return agreeWith(t, label, c, model.Options{}, srcs, dsts)
}

// agreeWith judges every flow from srcs to dsts (same family, on
// flowPorts) by the model's evaluator and by tracing the packet through the
// compiled rulesets of the nodes it crosses, both with opts, fails t where
// they differ, and returns the flows both allow.
func agreeWith(t testing.TB, label string, c *model.Cluster, opts model.Options, srcs, dsts []netip.Addr) map[model.Flow]bool {
	t.Helper()
	rulesets := map[string]*nft.Ruleset{}
	for _, n := range nodeNames(c) {
		rulesets[n] = NodeWith(c, n, opts)
	}
	ev := model.NewEvaluatorWith(c, opts)
	allowed := map[model.Flow]bool{}
	for _, src := range srcs {
		for _, dst := range dsts {
			if src == dst || src.Is4() != dst.Is4() {
				continue
			}
			for _, pp := range flowPorts {
				f := model.Flow{Src: src, Dst: dst, Proto: pp.Proto, Port: pp.Port}
				want := ev.Evaluate(f)
				got, _ := kernelAllows(t, c, ev, rulesets, f, false)
				if got != want.Allowed() {
					_, path := kernelAllows(t, c, ev, rulesets, f, true)
					t.Fatalf("%s: %v: kernel allows=%v, evaluator=%v (egress: %v; ingress: %v)\npath: %v\npolicies:\n%s",
						label, f, got, want.Allowed(), want.Egress, want.Ingress, path, describe(c))
				}
				if got {
					allowed[f] = true
				}
			}
		}
	}
	return allowed
}

// nodeNames are the nodes a cluster's rulesets are compiled for: every
// local Node object and every node a local pod names.
func nodeNames(c *model.Cluster) []string {
	seen := map[string]bool{}
	for n, node := range c.Nodes {
		seen[n] = node.Cluster == ""
	}
	for _, p := range c.Pods {
		seen[p.Node] = !p.Remote()
	}
	var out []string
	for _, n := range sortedKeys(seen) {
		if seen[n] { // no agent of this cluster runs on a remote node
			out = append(out, n)
		}
	}
	return out
}

// kernelAllows traces a new flow through the chains it crosses: the
// forward chains of the sender's node and of the receiver's (once when they
// share a node), or input-egress when a pod talks to its own node. With
// explain, it also returns the rules that matched on the way.
func kernelAllows(t testing.TB, c *model.Cluster, ev *model.Evaluator, rulesets map[string]*nft.Ruleset, f model.Flow, explain bool) (bool, []string) {
	type hop struct{ node, chain string }
	var hops []hop
	srcNode := cidrNode(c, f.Src)
	if p := ev.PodByAddr(f.Src); p != nil {
		srcNode = p.Node
	}
	dstNode, toNode := cidrNode(c, f.Dst), false
	if p := ev.PodByAddr(f.Dst); p != nil {
		dstNode = p.Node
	}
	for _, n := range c.Nodes {
		for _, a := range n.Addresses {
			// The sender's own node takes its address as local (fib daddr
			// type local), whatever others say; another node's address
			// goes to that node unless a pod owns it (then the route to
			// the pod's node wins).
			if a == f.Dst && (n.Name == srcNode || !toNode && ev.PodByAddr(f.Dst) == nil) {
				dstNode, toNode = n.Name, true
			}
		}
	}
	switch {
	case toNode && srcNode == dstNode:
		hops = append(hops, hop{srcNode, ChainInputEgress})
	default:
		if srcNode != "" {
			hops = append(hops, hop{srcNode, ChainForwardEgress}, hop{srcNode, ChainForwardIngress})
		}
		if dstNode != "" && dstNode != srcNode && !toNode {
			hops = append(hops, hop{dstNode, ChainForwardEgress}, hop{dstNode, ChainForwardIngress})
		}
	}
	pkt := nft.Packet{Src: f.Src, Dst: f.Dst, Proto: f.Proto, Port: f.Port, CtState: "new", ToLocal: toNode && srcNode == dstNode}
	var path []string
	for _, h := range hops {
		if rulesets[h.node] == nil {
			continue // a remote cluster's node: its own agents judge there
		}
		res, err := rulesets[h.node].Trace(h.chain, pkt)
		if err != nil {
			t.Fatal(err)
		}
		// Drops, the trace a conntrack cut runs, must say the same.
		if dropped, err := rulesets[h.node].Drops(h.chain, pkt); err != nil || dropped != res.Dropped {
			t.Fatalf("%s/%s %+v: Drops = %v (%v), Trace dropped %v", h.node, h.chain, pkt, dropped, err, res.Dropped)
		}
		if explain {
			path = append(path, fmt.Sprintf("%s/%s %v", h.node, h.chain, res.Matched))
		}
		if res.Dropped {
			return false, path
		}
	}
	return true, path
}

// cidrNode is the node whose pod CIDRs hold addr: where an address that is
// no active pod's (a pod not yet known, a finished pod) lives.
func cidrNode(c *model.Cluster, addr netip.Addr) string {
	for _, name := range sortedKeys(c.Nodes) {
		for _, p := range c.Nodes[name].PodCIDRs {
			if p.Contains(addr) {
				return name
			}
		}
	}
	return ""
}

func describe(c *model.Cluster) string {
	s := ""
	for _, p := range c.SortedPods() {
		s += fmt.Sprintf("  pod %s node=%s labels=%v ips=%v ports=%v active=%v\n", p.Key(), p.Node, p.Labels, p.IPs, p.Ports, p.Active())
	}
	for _, n := range sortedKeys(c.Nodes) {
		s += fmt.Sprintf("  node %s addresses=%v podCIDRs=%v\n", n, c.Nodes[n].Addresses, c.Nodes[n].PodCIDRs)
	}
	for _, p := range c.SortedTier(model.TierAdmin) {
		s += fmt.Sprintf("  admin %s prio=%d subject=%v/%v rules=%+v problems=%v\n", p.Key(), p.Priority, p.NamespaceSelector, p.PodSelector, p.Rules, p.Problems)
	}
	for _, p := range c.SortedTier(model.TierBaseline) {
		s += fmt.Sprintf("  baseline %s prio=%d subject=%v/%v rules=%+v\n", p.Key(), p.Priority, p.NamespaceSelector, p.PodSelector, p.Rules)
	}
	for _, p := range c.SortedPolicies() {
		s += fmt.Sprintf("  policy %s subject=%v isolates=%v\n", p.Key(), p.Subject, p.Isolates)
		for d, rules := range p.Rules {
			for _, r := range rules {
				s += fmt.Sprintf("    %s %+v\n", model.Direction(d), r)
			}
		}
	}
	return s
}

var labelValues = []string{"a", "b", "c"}

func randomLabels(r *rand.Rand) map[string]string {
	l := map[string]string{}
	for _, k := range []string{"app", "tier"} {
		if r.Intn(3) > 0 {
			l[k] = labelValues[r.Intn(len(labelValues))]
		}
	}
	return l
}

func randomSelector(r *rand.Rand) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	switch r.Intn(5) {
	case 0: // everything
	case 1, 2:
		s.MatchLabels = map[string]string{[]string{"app", "tier"}[r.Intn(2)]: labelValues[r.Intn(3)]}
	default:
		ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
		op := ops[r.Intn(len(ops))]
		req := metav1.LabelSelectorRequirement{Key: []string{"app", "tier"}[r.Intn(2)], Operator: op}
		if op == metav1.LabelSelectorOpIn || op == metav1.LabelSelectorOpNotIn {
			req.Values = []string{labelValues[r.Intn(3)]}
		}
		s.MatchExpressions = []metav1.LabelSelectorRequirement{req}
	}
	return s
}

func randomPeer(r *rand.Rand) networkingv1.NetworkPolicyPeer {
	switch r.Intn(5) {
	case 0:
		return networkingv1.NetworkPolicyPeer{PodSelector: randomSelector(r)}
	case 1:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: randomSelector(r)}
	case 2:
		return networkingv1.NetworkPolicyPeer{PodSelector: randomSelector(r), NamespaceSelector: randomSelector(r)}
	case 3:
		blocks := []networkingv1.NetworkPolicyPeer{
			tu.Block("10.0.0.0/16", "10.0.1.0/24"),
			tu.Block("10.0.0.0/8", "10.0.2.0/25", "10.0.1.4/30"),
			tu.Block("203.0.113.0/24"),
			tu.Block("0.0.0.0/0", "10.0.0.0/8"),
		}
		return blocks[r.Intn(len(blocks))]
	}
	blocks := []networkingv1.NetworkPolicyPeer{
		tu.Block("fd00::/64", "fd00::1:0/112"),
		tu.Block("::/0"),
		tu.Block("2001:db8::/32"),
	}
	return blocks[r.Intn(len(blocks))]
}

func randomPorts(r *rand.Rand) []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for i := r.Intn(3); i > 0; i-- {
		switch r.Intn(6) {
		case 0:
			out = append(out, tu.Port(v1.ProtocolTCP, 80, 0))
		case 1:
			out = append(out, tu.Port(v1.ProtocolTCP, 79, 81))
		case 2:
			out = append(out, tu.Port(v1.ProtocolUDP, 80, 0))
		case 3:
			out = append(out, tu.NamedPort(v1.ProtocolTCP, "http"))
		case 4:
			out = append(out, tu.NamedPort(v1.ProtocolUDP, "dns"))
		default:
			out = append(out, tu.ProtoOnly(v1.ProtocolSCTP))
		}
	}
	return out
}

func randomCluster(t *testing.T, r *rand.Rand) *model.Cluster {
	c := model.NewCluster()
	for _, o := range randomObjects(r) {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	randomDomains(t, rand.New(rand.NewSource(r.Int63())), c)
	return c
}

// randomDomains adds, in one cluster of two, a policy with domain peers,
// and binds names to outside hosts and pods as learned answers would. Its
// own random source leaves the rest of the cluster as it was.
func randomDomains(t *testing.T, r *rand.Rand, c *model.Cluster) {
	if r.Intn(2) == 0 {
		return
	}
	patterns := []v1alpha2.DomainName{"*.example.com", "example.com", "api.example.com"}
	p := &v1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "fqdn", Annotations: randomEnforcement(r)}}
	p.Spec.Tier = []v1alpha2.Tier{v1alpha2.AdminTier, v1alpha2.BaselineTier}[r.Intn(2)]
	p.Spec.Subject.Namespaces = randomSelector(r)
	p.Spec.Egress = []v1alpha2.ClusterNetworkPolicyEgressRule{
		{Action: "Accept", To: []v1alpha2.ClusterNetworkPolicyEgressPeer{{DomainNames: patterns[r.Intn(3):]}}, Protocols: randomProtocols(r)},
		{Action: "Deny", To: []v1alpha2.ClusterNetworkPolicyEgressPeer{{Networks: []v1alpha2.CIDR{"0.0.0.0/0", "::/0"}}}},
	}
	if err := c.Set(p); err != nil {
		t.Fatal(err)
	}
	var addrs []netip.Addr
	addrs = append(addrs, outsideHosts...)
	for _, pod := range c.SortedPods() {
		addrs = append(addrs, pod.IPs...)
	}
	for _, name := range []string{"www.example.com", "example.com", "api.example.com", "a.b.example.com"} {
		var bound []netip.Addr
		for _, a := range addrs {
			if r.Intn(4) == 0 {
				bound = append(bound, a)
			}
		}
		c.SetDomain(name, bound)
	}
}

// randomObjects is a random small cluster: namespaces, pods on two nodes,
// NetworkPolicies, nodes and every tier kind.
func randomObjects(r *rand.Rand) []any {
	var out []any
	namespaces := []string{"x", "y", "z"}
	for _, ns := range namespaces {
		out = append(out, tu.Namespace(ns, randomLabels(r)))
	}
	for i := 0; i < 8; i++ {
		p := randomPod(r, fmt.Sprintf("p%d", i), i)
		p.Namespace = namespaces[r.Intn(3)]
		out = append(out, p)
	}
	for i := r.Intn(4); i > 0; i-- {
		out = append(out, randomPolicy(r, namespaces[r.Intn(3)], fmt.Sprintf("pol%d", i)))
	}
	for i, n := range []string{"n1", "n2"} {
		out = append(out, randomNode(r, n, 11+i))
	}
	for i := r.Intn(4); i > 0; i-- {
		out = append(out, randomANP(r, fmt.Sprintf("anp%d", i)))
	}
	if r.Intn(2) == 0 {
		out = append(out, randomBANP(r))
	}
	for i := r.Intn(3); i > 0; i-- {
		out = append(out, randomCNP(r, fmt.Sprintf("cnp%d", i)))
	}
	return out
}

// randomPod is a pod in namespace x with random labels, named ports and
// phase; its addresses are the n-th of their families in one of three
// groups: n1's pod CIDRs, n2's (the pod is then on that node, as IPAM
// guarantees), or no node's (the pod is on either).
func randomPod(r *rand.Rand, name string, n int) *v1.Pod {
	g := r.Intn(3)
	ips := []string{fmt.Sprintf("10.0.%d.%d", g, 2+n)}
	if r.Intn(2) == 0 {
		ips = append(ips, fmt.Sprintf("fd00::%d:%d", g, 2+n))
	}
	var tweaks []func(*v1.Pod)
	if r.Intn(2) == 0 {
		tweaks = append(tweaks, tu.WithPort("http", v1.ProtocolTCP, int32([]int{80, 8080}[r.Intn(2)])))
	}
	if r.Intn(3) == 0 {
		tweaks = append(tweaks, tu.WithPort("dns", v1.ProtocolUDP, 5353))
	}
	if r.Intn(10) == 0 {
		tweaks = append(tweaks, func(p *v1.Pod) { p.Status.Phase = v1.PodFailed })
	}
	node := []string{"n1", "n2"}[r.Intn(2)]
	if g < 2 {
		node = podCIDRNodes[g]
	}
	return tu.Pod("x", name, node, randomLabels(r), ips, tweaks...)
}

// podCIDRNodes own the address groups 0 and 1 of randomPod.
var podCIDRNodes = []string{"n1", "n2"}

// randomNode has random labels and, usually, pod CIDRs: those of its group
// of randomPod addresses (n3 has group 3, which no pod uses), whole or as
// two adjacent halves (one range in the kernel).
func randomNode(r *rand.Rand, name string, last int) *v1.Node {
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: randomLabels(r)}}
	node.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: fmt.Sprintf("172.18.0.%d", last)}}
	g := map[string]int{"n1": 0, "n2": 1, "n3": 3}[name]
	switch r.Intn(4) {
	case 0: // none (yet): no address is "not yet known" on it
	case 1:
		node.Spec.PodCIDRs = []string{fmt.Sprintf("10.0.%d.0/25", g), fmt.Sprintf("10.0.%d.128/25", g)}
	default:
		node.Spec.PodCIDRs = []string{fmt.Sprintf("10.0.%d.0/24", g), fmt.Sprintf("fd00::%d:0/112", g)}
	}
	return node
}

func randomPolicy(r *rand.Rand, ns, name string) *networkingv1.NetworkPolicy {
	np := tu.Policy(ns, name, nil)
	np.Spec.PodSelector = *randomSelector(r)
	switch r.Intn(3) {
	case 0:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	default:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	for j := r.Intn(3); j > 0; j-- {
		var peers []networkingv1.NetworkPolicyPeer
		for k := r.Intn(3); k > 0; k-- {
			peers = append(peers, randomPeer(r))
		}
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: randomPorts(r)})
	}
	for j := r.Intn(3); j > 0; j-- {
		var peers []networkingv1.NetworkPolicyPeer
		for k := r.Intn(3); k > 0; k-- {
			peers = append(peers, randomPeer(r))
		}
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: randomPorts(r)})
	}
	np.Annotations = randomEnforcement(r)
	return np
}

// randomEnforcement puts one policy in five in audit mode (and one in ten
// has a value that is not "audit", which enforces).
func randomEnforcement(r *rand.Rand) map[string]string {
	switch r.Intn(10) {
	case 0, 1:
		return map[string]string{model.AnnotationEnforcement: model.EnforcementAudit}
	case 2:
		return map[string]string{model.AnnotationEnforcement: "Audit"}
	}
	return nil
}
