// Package compile turns the policy model into the nftables ruleset one node
// enforces: static base chains, verdict maps that dispatch local pods to the
// chain of their class, one chain per policy and direction, and sets for
// peers, ipBlocks and ports. See docs/ruleset.md for the layout.
package compile

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Fixed object names. Base chains are named after hook and direction; their
// names avoid nft keywords ("fwd", "ingress", ...) so the text form loads.
const (
	ChainForwardEgress  = "forward-egress"
	ChainForwardIngress = "forward-ingress"
	ChainInputEgress    = "input-egress"
	ChainOutputEgress   = "output-egress"
	ChainOutputIngress  = "output-ingress"
)

// Priorities of the base chains, relative to filter. Egress and ingress are
// separate base chains because an accept ends only the base chain that
// issued it: egress accepting a flow must not skip the ingress check.
const (
	PriorityEgress  = 10
	PriorityIngress = 20
	// PriorityInput runs after IPVS's local-in hooks (98 and 99): a packet
	// to a Service address that IPVS takes is stolen there and re-sent on
	// the output path, where the output chains judge it with the endpoint's
	// address. What reaches input-egress is really for the node.
	PriorityInput = 110
)

// DispatchMap is the verdict map from a local pod's address to the chain
// that judges it in one direction and family.
func DispatchMap(dir model.Direction, fam nft.Family) string {
	return fmt.Sprintf("%s-pods-v%d", dir, fam)
}

// RestMap is the verdict map from a local pod that admin-tier policies
// select to the chain of the tiers after the admin tier: an admin Pass
// rule, or the end of the admin tier, goes there. The chains it leads to
// always end in a verdict, because a Pass reaches them by goto from inside
// the admin tier's jumps.
func RestMap(dir model.Direction, fam nft.Family) string {
	return fmt.Sprintf("%s-rest-v%d", dir, fam)
}

var families = []nft.Family{nft.IPv4, nft.IPv6}

// Node compiles the ruleset for the pods on one node. Only policies that
// apply to a pod on this node are compiled, so a node's ruleset grows with
// its own pods' policies, not with the cluster's.
func Node(c *model.Cluster, node string) *nft.Ruleset {
	b := &builder{c: c, rs: nft.NewRuleset(), pods: c.SortedPods()}
	b.baseChains()
	policies := c.SortedPolicies()
	tiers := [2][]*model.TierPolicy{c.SortedTier(model.TierAdmin), c.SortedTier(model.TierBaseline)}
	usedNP := map[*model.Policy][2]bool{}
	usedTier := map[*model.TierPolicy][2]bool{}
	for _, pod := range b.pods {
		if pod.Node != node || !pod.Active() {
			continue
		}
		for _, dir := range []model.Direction{model.Ingress, model.Egress} {
			var np []*model.Policy
			for _, p := range policies {
				if p.Isolates[dir] && p.Selects(c, pod) {
					np = append(np, p)
					mark(usedNP, p, dir)
				}
			}
			admin := selecting(c, tiers[model.TierAdmin], pod, dir)
			var baseline []*model.TierPolicy
			if len(np) == 0 { // NetworkPolicy isolation hides the baseline tier
				baseline = selecting(c, tiers[model.TierBaseline], pod, dir)
			}
			for _, p := range append(admin, baseline...) {
				mark(usedTier, p, dir)
			}
			b.classify(pod, dir, admin, np, baseline)
		}
	}
	for _, p := range policies {
		for _, dir := range []model.Direction{model.Ingress, model.Egress} {
			if usedNP[p][dir] {
				b.policyChain(p, dir)
			}
		}
	}
	for _, list := range tiers {
		for _, p := range list {
			for _, dir := range []model.Direction{model.Ingress, model.Egress} {
				if usedTier[p][dir] {
					b.tierChain(p, dir)
				}
			}
		}
	}
	return b.rs
}

func mark[P comparable](used map[P][2]bool, p P, dir model.Direction) {
	u := used[p]
	u[dir] = true
	used[p] = u
}

// selecting returns the tier policies with rules in dir that select pod, in
// evaluation order.
func selecting(c *model.Cluster, tier []*model.TierPolicy, pod *model.Pod, dir model.Direction) []*model.TierPolicy {
	var out []*model.TierPolicy
	for _, p := range tier {
		if len(p.Rules[dir]) > 0 && p.Selects(c, pod) {
			out = append(out, p)
		}
	}
	return out
}

// classify dispatches a pod in one direction. With admin-tier policies the
// pod goes to its admin chain, and its "rest" (what a Pass or no admin
// match leads to) is recorded in the rest map; otherwise straight to the
// rest: its NetworkPolicy class or its baseline chain. A pod with no policy
// at all gets no element: allowed.
func (b *builder) classify(pod *model.Pod, dir model.Direction, admin []*model.TierPolicy, np []*model.Policy, baseline []*model.TierPolicy) {
	rest := ""
	switch {
	case len(np) > 0:
		rest = b.classChain(dir, np)
	case len(baseline) > 0:
		rest = b.baselineChain(dir, baseline)
	}
	if len(admin) == 0 {
		if rest != "" {
			b.dispatch(pod, dir, rest, false)
		}
		return
	}
	if rest == "" {
		rest = b.acceptChain()
	}
	b.dispatch(pod, dir, b.adminChain(dir, admin), false)
	b.dispatch(pod, dir, rest, true)
}

type builder struct {
	c    *model.Cluster
	rs   *nft.Ruleset
	pods []*model.Pod // sorted once: every set walks them
}

func (b *builder) baseChains() {
	for _, dir := range []model.Direction{model.Ingress, model.Egress} {
		for _, fam := range families {
			b.rs.AddSet(nft.NewSet(DispatchMap(dir, fam), mapType(fam), fmt.Sprintf("local pods with %s policy -> the chain that judges them", dir)))
		}
	}
	established := &nft.Rule{Matches: []nft.Match{nft.MatchCtState{States: []string{"established", "related"}}}, Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "replies and established flows"}
	invalid := &nft.Rule{Matches: []nft.Match{nft.MatchCtState{States: []string{"invalid"}}}, Verdict: nft.Verdict{Kind: nft.Drop}, Comment: "invalid packets"}
	nd := &nft.Rule{Matches: []nft.Match{nft.MatchICMPv6ND{}}, Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "IPv6 neighbour discovery"}
	dispatch := func(dir model.Direction) []*nft.Rule {
		var out []*nft.Rule
		for _, fam := range families {
			out = append(out, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Vmap, Map: DispatchMap(dir, fam), Family: fam, Src: dir == model.Egress}, Comment: fmt.Sprintf("isolated local pods (%s)", dir)})
		}
		return out
	}
	b.rs.AddChain(&nft.Chain{Name: ChainForwardEgress, Hook: &nft.Hook{Hook: "forward", Priority: PriorityEgress},
		Rules: append([]*nft.Rule{established, invalid, nd}, dispatch(model.Egress)...)})
	b.rs.AddChain(&nft.Chain{Name: ChainForwardIngress, Hook: &nft.Hook{Hook: "forward", Priority: PriorityIngress},
		Rules: append([]*nft.Rule{established, invalid, nd}, dispatch(model.Ingress)...)})
	// Pods talking to the node itself (its addresses, hostNetwork pods) reach
	// the input hook, not forward. Invalid packets are left to the host: this
	// chain sees all of the node's own traffic.
	b.rs.AddChain(&nft.Chain{Name: ChainInputEgress, Hook: &nft.Hook{Hook: "input", Priority: PriorityInput},
		Rules: append([]*nft.Rule{established, nd}, dispatch(model.Egress)...)})
	// The output path carries the node's own traffic, which is always allowed
	// (kubelet probes), and packets IPVS re-sends after its DNAT, which keep
	// their client's source address: those are judged like forwarded ones.
	fromNode := &nft.Rule{Matches: []nft.Match{nft.MatchFibSaddrLocal{}}, Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "the node's own traffic"}
	b.rs.AddChain(&nft.Chain{Name: ChainOutputEgress, Hook: &nft.Hook{Hook: "output", Priority: PriorityEgress},
		Rules: append([]*nft.Rule{established, fromNode}, dispatch(model.Egress)...)})
	b.rs.AddChain(&nft.Chain{Name: ChainOutputIngress, Hook: &nft.Hook{Hook: "output", Priority: PriorityIngress},
		Rules: append([]*nft.Rule{established, fromNode}, dispatch(model.Ingress)...)})
}

func mapType(fam nft.Family) nft.SetType {
	if fam == nft.IPv6 {
		return nft.MapIPv6Verdict
	}
	return nft.MapIPv4Verdict
}

// dispatch sends pod's addresses to chain through the dispatch map, or the
// rest map when rest is set.
func (b *builder) dispatch(pod *model.Pod, dir model.Direction, chain string, rest bool) {
	for _, ip := range pod.IPs {
		fam := nft.FamilyOf(ip)
		set := b.rs.Sets[DispatchMap(dir, fam)]
		if rest {
			set = b.restMap(dir, fam)
		}
		set.Add(nft.Elem{Addr: ip, Chain: chain})
	}
}

// classChain is the chain shared by the local pods that the same policies
// isolate in dir: it tries each policy's chain (any accept ends the base
// chain) and drops what none allowed.
func (b *builder) classChain(dir model.Direction, class []*model.Policy) string {
	keys := make([]string, len(class))
	for i, p := range class {
		keys[i] = p.Key()
	}
	name := nft.Name(dir.String()+"-class", strings.Join(keys, ","))
	if _, ok := b.rs.Chains[name]; ok {
		return name
	}
	ch := &nft.Chain{Name: name}
	if dir == model.Egress {
		// Kubernetes: traffic between a pod and its own node is always
		// allowed by NetworkPolicy (the admin and baseline tiers, which can
		// name nodes as peers, still apply before and instead).
		ch.Rules = append(ch.Rules, &nft.Rule{Matches: []nft.Match{nft.MatchFibDaddrLocal{}}, Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "the pod's own node"})
	}
	for _, p := range class {
		ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Jump, Chain: policyChainName(p, dir)}, Comment: p.Key()})
	}
	ch.Rules = append(ch.Rules, &nft.Rule{Counter: true, Verdict: nft.Verdict{Kind: nft.Drop},
		Comment: fmt.Sprintf("%s isolated by %s: no rule matched", dir, strings.Join(keys, ", "))})
	b.rs.AddChain(ch)
	return name
}

func policyChainName(p *model.Policy, dir model.Direction) string {
	return nft.Name("pol-"+dir.String(), p.Key())
}

// policyChain holds one policy's rules for one direction; each accepts what
// its rule allows.
func (b *builder) policyChain(p *model.Policy, dir model.Direction) {
	ch := &nft.Chain{Name: policyChainName(p, dir)}
	for _, r := range p.Rules[dir] {
		comment := fmt.Sprintf("%s %s rule %d", p.Key(), dir, r.Index)
		ch.Rules = append(ch.Rules, b.rules(dir, r.AllPeers, r.Peers, r.AllPorts, r.Ports, comment, accept)...)
	}
	b.rs.AddChain(ch)
}

func accept(nft.Family) nft.Verdict { return nft.Verdict{Kind: nft.Accept} }

// rules compiles one rule into nft rules: one for each way a peer can match
// (any address, pod set, node set, ipBlock set) times each way a port can
// match (any, numeric set, named port set), per family where it matters.
// verdict gives the verdict for a family (0 when the rule matches both).
func (b *builder) rules(dir model.Direction, allPeers bool, peers []model.Peer, allPorts bool, ports []model.Port, comment string, verdict func(nft.Family) nft.Verdict) []*nft.Rule {
	var peerMatches [][]nft.Match // nil entry: any address
	if allPeers {
		peerMatches = append(peerMatches, nil)
	} else {
		peerMatches = append(peerMatches, b.peerMatches(dir, peers)...)
	}
	var portMatches [][]nft.Match // family-neutral
	var named []model.Port
	if allPorts {
		portMatches = append(portMatches, nil)
	} else {
		if set := b.portSet(ports); set != "" {
			portMatches = append(portMatches, []nft.Match{nft.MatchProtoPortInSet{Set: set}})
		}
		for _, port := range ports {
			if port.Name != "" {
				named = append(named, port)
			}
		}
	}
	var out []*nft.Rule
	add := func(ms []nft.Match, fam nft.Family) {
		out = append(out, &nft.Rule{Matches: ms, Counter: true, Verdict: verdict(fam), Comment: comment})
	}
	for _, pm := range peerMatches {
		fam := familyOf(pm)
		for _, ports := range portMatches {
			add(concat(pm, ports), fam)
		}
		for _, port := range named {
			for _, f := range families {
				if fam != 0 && fam != f {
					continue
				}
				m := nft.MatchDaddrProtoPortInSet{Family: f, Set: b.namedPortSet(f, port)}
				add(concat(pm, []nft.Match{m}), f)
			}
		}
	}
	return out
}

func concat(a, b []nft.Match) []nft.Match {
	return append(append([]nft.Match{}, a...), b...)
}

// familyOf is the family a peer match is bound to, 0 for any.
func familyOf(ms []nft.Match) nft.Family {
	for _, m := range ms {
		if a, ok := m.(nft.MatchAddrInSet); ok {
			return a.Family
		}
	}
	return 0
}

// peerMatches: the pod peers of a rule share one set per family, so do its
// node peers, and its ipBlock peers one interval set per family.
func (b *builder) peerMatches(dir model.Direction, peers []model.Peer) [][]nft.Match {
	var pods, nodes, blocks []model.Peer
	for _, peer := range peers {
		switch {
		case peer.Invalid:
		case peer.Pods:
			pods = append(pods, peer)
		case peer.Nodes:
			nodes = append(nodes, peer)
		default:
			blocks = append(blocks, peer)
		}
	}
	src := dir == model.Ingress
	var out [][]nft.Match
	for _, fam := range families {
		if len(pods) > 0 {
			out = append(out, []nft.Match{nft.MatchAddrInSet{Family: fam, Src: src, Set: b.podPeerSet(fam, pods)}})
		}
		if len(nodes) > 0 {
			out = append(out, []nft.Match{nft.MatchAddrInSet{Family: fam, Src: src, Set: b.nodePeerSet(fam, nodes)}})
		}
		if len(blocks) > 0 {
			if set := b.cidrSet(fam, blocks); set != "" {
				out = append(out, []nft.Match{nft.MatchAddrInSet{Family: fam, Src: src, Set: set}})
			}
		}
	}
	return out
}

// podPeerSet is the set of the addresses of the pods any of peers selects.
// Its name derives from the selectors, so rules that select the same peers
// share it.
func (b *builder) podPeerSet(fam nft.Family, peers []model.Peer) string {
	desc := make([]string, len(peers))
	for i, p := range peers {
		desc[i] = describePeer(p)
	}
	sort.Strings(desc)
	desc = dedupe(desc)
	identity := strings.Join(desc, " | ")
	t := nft.SetIPv4
	if fam == nft.IPv6 {
		t = nft.SetIPv6
	}
	name := nft.Name(fmt.Sprintf("peers-v%d", fam), identity)
	if _, ok := b.rs.Sets[name]; ok {
		return name
	}
	set := b.rs.AddSet(nft.NewSet(name, t, identity))
	for _, pod := range b.pods {
		for i := range peers {
			if peers[i].MatchesPod(b.c, pod) {
				for _, ip := range pod.IPs {
					if nft.FamilyOf(ip) == fam {
						set.Add(nft.Elem{Addr: ip})
					}
				}
				break
			}
		}
	}
	return name
}

func describePeer(p model.Peer) string {
	pods := "all pods"
	if p.PodSelector != nil {
		pods = "pods " + p.PodSelector.String()
	}
	if p.NamespaceSelector == nil {
		return pods + " in " + p.Namespace
	}
	if p.NamespaceSelector.Empty() {
		return pods + " in all namespaces"
	}
	return pods + " in namespaces " + p.NamespaceSelector.String()
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
