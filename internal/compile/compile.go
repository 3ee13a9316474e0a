// Package compile turns the policy model into the nftables ruleset one node
// enforces: static base chains, verdict maps that dispatch local pods to the
// chain of their class, one chain per policy and direction, and sets for
// peers, ipBlocks and ports. See docs/ruleset.md for the layout.
package compile

import (
	"fmt"
	"net/netip"
	"slices"
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

// chainKind is what a chain other than a base chain is for.
type chainKind uint8

const (
	chainNPClass       chainKind = iota // pods the same NetworkPolicies isolate
	chainAdminClass                     // pods the same admin-tier policies select
	chainBaselineClass                  // pods the same baseline policies select
	chainAccept                         // the admin tier passed and nothing follows
	chainTierPolicy                     // one audit admin or baseline policy, one direction (groups jump to it)
	chainAuditClass                     // pods only audit NetworkPolicies isolate
	chainAuditPolicy                    // one audit NetworkPolicy, one direction
	chainGroup                          // a class's rules that peer identities match
	chainVerdict                        // one NetworkPolicy rule's accept, counter and log
	chainTierVerdict                    // one admin or baseline rule's verdict, counter and log
)

// chainDef says how to build a chain: the engine builds it again from its
// def when one of its policies changes.
type chainDef struct {
	kind  chainKind
	dir   model.Direction
	tier  model.Tier // chainTierPolicy, chainTierVerdict
	layer spaceTier  // chainGroup: the tier of its class
	// keys are the policies: sorted for class chains, one for a policy chain.
	keys []string
	// id is a group's signature (its family and rules), a verdict
	// chain's rule index.
	id string
}

func (d chainDef) name() string {
	switch d.kind {
	case chainNPClass:
		return nft.Name(d.dir.String()+"-class", strings.Join(d.keys, ","))
	case chainAdminClass:
		return nft.Name(d.dir.String()+"-admin", strings.Join(d.keys, ","))
	case chainBaselineClass:
		return nft.Name(d.dir.String()+"-baseline", strings.Join(d.keys, ","))
	case chainAccept:
		return ChainAccept
	case chainAuditClass:
		return nft.Name(d.dir.String()+"-audit", strings.Join(d.keys, ","))
	case chainAuditPolicy:
		return nft.Name("aud-"+d.dir.String(), d.keys[0])
	case chainGroup:
		return nft.Name(space{d.dir, d.layer}.prefix()+"-grp", d.id)
	case chainVerdict:
		return nft.Name("v-"+d.dir.String(), d.keys[0]+" rule "+d.id)
	case chainTierVerdict:
		return nft.Name(fmt.Sprintf("v-%s-%s", d.tier, d.dir), d.keys[0]+" rule "+d.id)
	}
	return nft.Name(fmt.Sprintf("%s-%s", d.tier, d.dir), d.keys[0])
}

// targets are the chains a chain jumps to (a group's are found as it is
// built).
func (d chainDef) targets() []chainDef {
	var out []chainDef
	if d.kind == chainAuditClass {
		for _, k := range d.keys {
			out = append(out, auditPolicyDef(k, d.dir))
		}
	}
	return out
}

// build builds the chain def describes from the current model, adding the
// sets its rules use.
func (e *Engine) build(d chainDef) *nft.Chain {
	switch d.kind {
	case chainNPClass:
		return e.classChain(d)
	case chainAdminClass:
		return e.adminChain(d)
	case chainBaselineClass:
		return e.baselineChain(d)
	case chainAccept:
		return acceptChain()
	case chainGroup:
		return e.groupChain(d)
	case chainVerdict:
		return e.verdictChain(d)
	case chainTierVerdict:
		return e.tierVerdictChain(d)
	case chainAuditClass:
		return e.auditClassChain(d)
	case chainAuditPolicy:
		return e.auditPolicyChain(e.c.Policies[d.keys[0]], d)
	}
	return e.tierChain(e.c.TierPolicies[d.keys[0]], d)
}

// classify says where a local pod goes in each direction: with admin-tier
// policies to its admin chain, and its "rest" (what a Pass or no admin
// match leads to) through the rest map; otherwise straight to the rest:
// its NetworkPolicy class or its baseline chain. A pod with no policy at
// all gets no element: allowed.
func (e *Engine) classify(pod *model.Pod) []entry {
	var out []entry
	ips := e.c.OwnedIPs(pod)
	for _, dir := range directions {
		var np, audit []string
		for key, p := range e.c.PoliciesIn(pod.Namespace) {
			switch {
			case !p.Isolates[dir] || !p.Selects(e.c, pod):
			case p.Audit:
				audit = append(audit, key)
			default:
				np = append(np, key)
			}
		}
		slices.Sort(np)
		slices.Sort(audit)
		if len(np) > 0 {
			// Audit policies only add allows to a pod enforced ones
			// isolate: they would deny nothing more.
			audit = nil
		}
		admin := e.selecting(model.TierAdmin, pod, dir)
		var baseline []string
		if len(np) == 0 { // NetworkPolicy isolation hides the baseline tier
			baseline = e.selecting(model.TierBaseline, pod, dir)
		}
		var rest *chainDef
		switch {
		case len(np) > 0:
			rest = &chainDef{kind: chainNPClass, dir: dir, keys: np}
		case len(baseline) > 0:
			rest = &chainDef{kind: chainBaselineClass, dir: dir, keys: baseline}
		}
		var after *chainDef
		if len(audit) > 0 {
			// The audit class logs what the audit policies would deny and
			// then goes, through the after map, where the pod would go
			// without them. Its element comes after the class's (whose
			// chain makes the map).
			after = &chainDef{kind: chainAccept}
			if rest != nil {
				after = rest
			}
			rest = &chainDef{kind: chainAuditClass, dir: dir, keys: audit}
		}
		switch {
		case len(admin) == 0 && rest != nil:
			out = dispatch(out, ips, DispatchMap, dir, *rest)
		case len(admin) > 0:
			if rest == nil {
				rest = &chainDef{kind: chainAccept}
			}
			out = dispatch(out, ips, DispatchMap, dir, chainDef{kind: chainAdminClass, dir: dir, keys: admin})
			out = dispatch(out, ips, RestMap, dir, *rest)
		}
		if after != nil {
			out = dispatch(out, ips, AfterMap, dir, *after)
		}
	}
	return out
}

// selecting returns the keys of the policies of a tier with rules in dir
// that select pod, sorted (class chains are named by the set of their
// policies, not their order).
func (e *Engine) selecting(t model.Tier, pod *model.Pod, dir model.Direction) []string {
	var out []string
	for _, p := range e.tiers[t] {
		if len(p.Rules[dir]) > 0 && p.Selects(e.c, pod) {
			out = append(out, p.Key())
		}
	}
	slices.Sort(out)
	return out
}

// dispatch sends a pod's addresses to the chain of target through the map
// that mapName names.
func dispatch(out []entry, ips []netip.Addr, mapName func(model.Direction, nft.Family) string, dir model.Direction, target chainDef) []entry {
	for _, ip := range ips {
		out = append(out, entry{set: mapName(dir, nft.FamilyOf(ip)), elem: nft.Elem{Addr: ip, Chain: target.name()}, target: target})
	}
	return out
}

func (e *Engine) baseChains() {
	for _, dir := range directions {
		for _, fam := range families {
			e.rs.AddSet(nft.NewSet(DispatchMap(dir, fam), mapType(fam), fmt.Sprintf("local pods with %s policy -> the chain that judges them", dir)))
		}
	}
	if !e.opts.OpenUnknown {
		e.unknownSets()
	}
	established := establishedRule()
	invalid := &nft.Rule{Matches: []nft.Match{nft.MatchCtState{States: []string{"invalid"}}}, Verdict: nft.Verdict{Kind: nft.Drop}, Comment: "invalid packets"}
	nd := &nft.Rule{Matches: []nft.Match{nft.MatchICMPv6ND{}}, Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "IPv6 neighbour discovery"}
	// A known pod's address either leads to a class chain, which always
	// ends in a verdict, or is in no map and falls through to the rules of
	// pods not yet known, which its known address does not match.
	e.addBaseChain(&nft.Chain{Name: ChainForwardEgress, Hook: &nft.Hook{Hook: "forward", Priority: PriorityEgress},
		Rules: append([]*nft.Rule{established, invalid, nd}, e.dispatchRules(model.Egress)...)})
	e.addBaseChain(&nft.Chain{Name: ChainForwardIngress, Hook: &nft.Hook{Hook: "forward", Priority: PriorityIngress},
		Rules: append([]*nft.Rule{established, invalid, nd}, e.dispatchRules(model.Ingress)...)})
	// Pods talking to the node itself (its addresses, hostNetwork pods) reach
	// the input hook, not forward. Invalid packets are left to the host: this
	// chain sees all of the node's own traffic. Traffic between a pod and its
	// own node is always allowed, so a pod not yet known may talk to it: no
	// unknown rules here.
	inputDispatch := e.dispatchRules(model.Egress)[:len(families)]
	e.addBaseChain(&nft.Chain{Name: ChainInputEgress, Hook: &nft.Hook{Hook: "input", Priority: PriorityInput},
		Rules: append([]*nft.Rule{established, nd}, inputDispatch...)})
	e.outputChains()
}

// outputChains adds, with Options.IPVS, the output hook's chains. The
// output path carries the node's own traffic, which is always allowed
// (kubelet probes), and packets IPVS re-sends after its DNAT, which keep
// their client's source address: those are judged like forwarded ones.
// Without IPVS there are none: each hook whose chains reach the peer maps
// costs every commit that adds a jump one more walk of them (at L an
// event's commit took 1.6–2.3 ms without them, 3.0 ms with them,
// BenchmarkEventApply).
func (e *Engine) outputChains() {
	if !e.opts.IPVS {
		return
	}
	established := establishedRule()
	fromNode := &nft.Rule{Matches: []nft.Match{nft.MatchFibSaddrLocal{}}, Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "the node's own traffic"}
	e.addBaseChain(&nft.Chain{Name: ChainOutputEgress, Hook: &nft.Hook{Hook: "output", Priority: PriorityEgress},
		Rules: append([]*nft.Rule{established, fromNode}, e.dispatchRules(model.Egress)...)})
	e.addBaseChain(&nft.Chain{Name: ChainOutputIngress, Hook: &nft.Hook{Hook: "output", Priority: PriorityIngress},
		Rules: append([]*nft.Rule{established, fromNode}, e.dispatchRules(model.Ingress)...)})
}

// SetIPVS gives the table its output chains or takes them away
// (Options.IPVS), recording them as touched.
func (e *Engine) SetIPVS(on bool) {
	if e.opts.IPVS == on {
		return
	}
	e.opts.IPVS = on
	if on {
		e.outputChains()
	} else {
		delete(e.rs.Chains, ChainOutputEgress)
		delete(e.rs.Chains, ChainOutputIngress)
	}
	e.touched.Chain(ChainOutputEgress)
	e.touched.Chain(ChainOutputIngress)
}

// IPVS reports whether the table has its output chains (SetIPVS).
func (e *Engine) IPVS() bool { return e.opts.IPVS }

func establishedRule() *nft.Rule {
	return &nft.Rule{Matches: []nft.Match{nft.MatchCtState{States: []string{"established", "related"}}}, Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "replies and established flows"}
}

// dispatchRules send a direction's isolated local pods to their class
// chains, then judge the pods not yet known.
func (e *Engine) dispatchRules(dir model.Direction) []*nft.Rule {
	var out []*nft.Rule
	for _, fam := range families {
		out = append(out, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Vmap, Map: DispatchMap(dir, fam), Family: fam, Src: dir == model.Egress}, Comment: fmt.Sprintf("isolated local pods (%s)", dir)})
	}
	return append(out, e.unknownRules(dir == model.Egress)...)
}

func mapType(fam nft.Family) nft.SetType {
	if fam == nft.IPv6 {
		return nft.MapIPv6Verdict
	}
	return nft.MapIPv4Verdict
}

// classChain is the chain shared by the local pods that the same policies
// isolate in one direction: it tries each policy's chain (any accept ends
// the base chain) and drops what none allowed.
func (e *Engine) classChain(d chainDef) *nft.Chain {
	ch := &nft.Chain{Name: d.name()}
	if d.dir == model.Egress && slices.ContainsFunc(d.keys, func(k string) bool { p := e.c.Policies[k]; return p != nil && p.Valid() }) {
		// Kubernetes: traffic between a pod and its own node is always
		// allowed by NetworkPolicy (the admin and baseline tiers, which can
		// name nodes as peers, still apply before and instead). Only a
		// valid policy's isolation brings it (model.Policy.Valid).
		ch.Rules = append(ch.Rules, &nft.Rule{Matches: []nft.Match{nft.MatchFibDaddrLocal{}}, Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "the pod's own node"})
	}
	// The peer sets of its policies' rules: the matchers identities are
	// made of, kept while the class lives.
	for _, k := range d.keys {
		if p := e.c.Policies[k]; p != nil {
			for _, r := range p.Rules[d.dir] {
				e.pin(d.dir, r.Peers)
			}
		}
	}
	ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Jump, Chain: peerChain(space{d.dir, npTier})}, Comment: "the peer's identity decides"})
	ch.Rules = append(ch.Rules, e.withOrigin([]*nft.Rule{{Counter: true, Verdict: nft.Verdict{Kind: nft.Drop},
		Comment: fmt.Sprintf("%s isolated by %s: no rule matched", d.dir, strings.Join(d.keys, ", "))}},
		isolationOrigin(d.dir, d.keys, VerdictDrop), false)...)
	return ch
}

// pin keeps a rule's peer sets while the class chain being built lives:
// its space's identities are made of them.
func (e *Engine) pin(dir model.Direction, peers []model.Peer) {
	for _, ms := range e.peerMatches(dir, peers) {
		for _, m := range ms {
			if a, ok := m.(nft.MatchAddrInSet); ok {
				e.pinned = append(e.pinned, a.Set)
			}
		}
	}
}

// rules compiles one rule into nft rules: one for each way a peer can match
// (any address, pod set, node set, ipBlock set) times each way a port can
// match (any, numeric set, named port set), per family where it matters.
// verdict gives the verdict for a family (0 when the rule matches both).
func (e *Engine) rules(dir model.Direction, m model.Match, comment string, verdict func(nft.Family) nft.Verdict) []*nft.Rule {
	var peerMatches [][]nft.Match // nil entry: any address
	if m.AllPeers {
		peerMatches = append(peerMatches, nil)
	} else {
		peerMatches = append(peerMatches, e.peerMatches(dir, m.Peers)...)
	}
	var portMatches [][]nft.Match // family-neutral
	var named []model.Port
	if m.AllPorts {
		portMatches = append(portMatches, nil)
	} else {
		if set := e.portSet(m.Ports); set != "" {
			portMatches = append(portMatches, []nft.Match{nft.MatchProtoPortInSet{Set: set}})
		}
		for _, port := range m.Ports {
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
				m := nft.MatchDaddrProtoPortInSet{Family: f, Set: e.namedPortSet(dir, f, port)}
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
func (e *Engine) peerMatches(dir model.Direction, peers []model.Peer) [][]nft.Match {
	var pods, nodes, blocks, domains []model.Peer
	for _, peer := range peers {
		switch {
		case peer.Invalid:
		case peer.Pods:
			pods = append(pods, peer)
		case peer.Nodes:
			nodes = append(nodes, peer)
		case len(peer.Domains) > 0:
			domains = append(domains, peer)
		default:
			blocks = append(blocks, peer)
		}
	}
	src := dir == model.Ingress
	var out [][]nft.Match
	for _, fam := range families {
		if len(pods) > 0 {
			out = append(out, []nft.Match{nft.MatchAddrInSet{Family: fam, Src: src, Set: e.podPeerSet(fam, pods)}})
		}
		if len(nodes) > 0 {
			out = append(out, []nft.Match{nft.MatchAddrInSet{Family: fam, Src: src, Set: e.nodePeerSet(fam, nodes)}})
		}
		if len(domains) > 0 {
			out = append(out, []nft.Match{nft.MatchAddrInSet{Family: fam, Src: src, Set: e.domainSet(fam, domains)}})
		}
		if len(blocks) > 0 {
			if set := e.cidrSet(fam, blocks); set != "" {
				out = append(out, []nft.Match{nft.MatchAddrInSet{Family: fam, Src: src, Set: set}})
			}
		}
	}
	return out
}
