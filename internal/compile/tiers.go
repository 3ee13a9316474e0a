package compile

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// ChainAccept is where a pod that admin policies select, but that no later
// tier has a say on, goes when the admin tier passes: it accepts.
const ChainAccept = "no-later-tier-accept"

func (b *builder) acceptChain() string {
	if _, ok := b.rs.Chains[ChainAccept]; !ok {
		b.rs.AddChain(&nft.Chain{Name: ChainAccept, Rules: []*nft.Rule{{Verdict: nft.Verdict{Kind: nft.Accept},
			Comment: "admin tier passed; no NetworkPolicy or baseline policy applies"}}})
	}
	return ChainAccept
}

// className names the chain of a class of pods by the set of its policies,
// not their order: a priority change then rewrites the class chain's few
// jumps in place, and no pod moves to another chain.
func className(prefix string, ps []*model.TierPolicy) string {
	keys := make([]string, len(ps))
	for i, p := range ps {
		keys[i] = p.Key()
	}
	sort.Strings(keys)
	return nft.Name(prefix, strings.Join(keys, ","))
}

func tierChainName(p *model.TierPolicy, dir model.Direction) string {
	return nft.Name(fmt.Sprintf("%s-%s", p.Tier, dir), p.Key())
}

// adminChain is shared by the local pods that the same admin-tier policies
// select: it jumps to each policy's chain in priority order (an Allow
// accepts, a Deny drops, a Pass leaves through the rest map) and, when none
// decided, goes to the pod's rest through the rest map.
func (b *builder) adminChain(dir model.Direction, admin []*model.TierPolicy) string {
	name := className(dir.String()+"-admin", admin)
	if _, ok := b.rs.Chains[name]; ok {
		return name
	}
	ch := &nft.Chain{Name: name, Rules: tierJumps(dir, admin)}
	for _, fam := range families {
		ch.Rules = append(ch.Rules, &nft.Rule{Verdict: b.restVerdict(dir, fam), Comment: "no admin rule decided: NetworkPolicies, then baseline"})
	}
	b.rs.AddChain(ch)
	return name
}

// tierJumps jumps to each policy's chain, in evaluation order.
func tierJumps(dir model.Direction, ps []*model.TierPolicy) []*nft.Rule {
	out := make([]*nft.Rule, len(ps))
	for i, p := range ps {
		out[i] = &nft.Rule{Verdict: nft.Verdict{Kind: nft.Jump, Chain: tierChainName(p, dir)},
			Comment: fmt.Sprintf("%s priority %d", p.Key(), p.Priority)}
	}
	return out
}

// restVerdict looks the subject pod up in the rest map, which exists (maybe
// empty) as soon as a rule refers to it.
func (b *builder) restVerdict(dir model.Direction, fam nft.Family) nft.Verdict {
	b.restMap(dir, fam)
	return nft.Verdict{Kind: nft.Vmap, Map: RestMap(dir, fam), Family: fam, Src: dir == model.Egress}
}

func (b *builder) restMap(dir model.Direction, fam nft.Family) *nft.Set {
	name := RestMap(dir, fam)
	if set, ok := b.rs.Sets[name]; ok {
		return set
	}
	return b.rs.AddSet(nft.NewSet(name, mapType(fam), fmt.Sprintf("local pods with admin %s policy -> the tiers after it", dir)))
}

// baselineChain is shared by the local pods that no NetworkPolicy isolates
// and the same baseline policies select: their chains in order, then
// accept (it must end in a verdict: see RestMap).
func (b *builder) baselineChain(dir model.Direction, baseline []*model.TierPolicy) string {
	name := className(dir.String()+"-baseline", baseline)
	if _, ok := b.rs.Chains[name]; ok {
		return name
	}
	ch := &nft.Chain{Name: name, Rules: tierJumps(dir, baseline)}
	ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "no baseline rule matched: allowed"})
	b.rs.AddChain(ch)
	return name
}

// tierChain holds one admin or baseline policy's rules for one direction,
// in order, each with its action.
func (b *builder) tierChain(p *model.TierPolicy, dir model.Direction) {
	ch := &nft.Chain{Name: tierChainName(p, dir)}
	for _, r := range p.Rules[dir] {
		comment := fmt.Sprintf("%s priority %d %s rule %d", p.Key(), p.Priority, dir, r.Index)
		if r.Name != "" {
			comment += " " + r.Name
		}
		comment += ": " + r.Action.String()
		verdict := b.actionVerdict(p.Tier, dir, r.Action)
		ch.Rules = append(ch.Rules, b.rules(dir, r.AllPeers, r.Peers, r.AllPorts, r.Ports, comment, verdict)...)
	}
	b.rs.AddChain(ch)
}

// actionVerdict: Allow accepts and Deny drops. Pass in the admin tier goes
// to the pod's rest (per family, so a family-neutral rule is emitted once
// per family); in the baseline tier the next "tier" is the default: accept.
func (b *builder) actionVerdict(t model.Tier, dir model.Direction, a model.Action) func(nft.Family) nft.Verdict {
	switch {
	case a == model.Deny:
		return func(nft.Family) nft.Verdict { return nft.Verdict{Kind: nft.Drop} }
	case a == model.Pass && t == model.TierAdmin:
		return func(fam nft.Family) nft.Verdict { return b.restVerdict(dir, fam) }
	}
	return accept
}

// nodePeerSet holds the addresses of the nodes the node peers select.
func (b *builder) nodePeerSet(fam nft.Family, peers []model.Peer) string {
	desc := make([]string, len(peers))
	for i, p := range peers {
		desc[i] = "nodes " + p.NodeSelector.String()
		if p.NodeSelector.Empty() {
			desc[i] = "all nodes"
		}
	}
	sort.Strings(desc)
	identity := strings.Join(dedupe(desc), " | ")
	t := nft.SetIPv4
	if fam == nft.IPv6 {
		t = nft.SetIPv6
	}
	name := nft.Name(fmt.Sprintf("nodes-v%d", fam), identity)
	if _, ok := b.rs.Sets[name]; ok {
		return name
	}
	set := b.rs.AddSet(nft.NewSet(name, t, identity))
	for _, n := range b.c.Nodes {
		for i := range peers {
			if peers[i].MatchesNode(n) {
				for _, ip := range n.Addresses {
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
