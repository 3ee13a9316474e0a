package compile

import (
	"fmt"

	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// The admin and baseline tiers use peer identities as NetworkPolicy classes
// do (identity.go), each tier in its own identity space: a tier class
// chain jumps to its space's peer chain, whose identity sends the pod to
// the group of the tier rules that identity matches, in the tier's order
// (priority, then rule index). A new connection meets the same few
// lookups whatever the number of tier policies selecting its pod.
//
//	<dir>-admin-…:     jump <dir>-admin-peer; ip saddr vmap @<dir>-rest-v4 …   no admin rule decided
//	<dir>-baseline-…:  jump <dir>-baseline-peer; accept                          no baseline rule matched
//	v-admin-<dir>-…:   counter accept | counter drop | counter; vmap @<dir>-rest-…  (Pass)

// ChainAccept is where a pod that admin policies select, but that no later
// tier has a say on, goes when the admin tier passes: it accepts.
const ChainAccept = "no-later-tier-accept"

func acceptChain() *nft.Chain {
	return &nft.Chain{Name: ChainAccept, Rules: []*nft.Rule{{Verdict: nft.Verdict{Kind: nft.Accept},
		Comment: "admin tier passed; no NetworkPolicy or baseline policy applies"}}}
}

// tierPolicies looks policies up by key, in evaluation order; the ones
// gone are left out.
func (e *Engine) tierPolicies(keys []string) []*model.TierPolicy {
	out := make([]*model.TierPolicy, 0, len(keys))
	for _, k := range keys {
		if p := e.c.TierPolicies[k]; p != nil {
			out = append(out, p)
		}
	}
	model.SortTier(out)
	return out
}

// tierClassRules starts a tier class chain: its policies' peer sets are
// pinned (its space's identities are made of them), and the peer's
// identity decides first.
func (e *Engine) tierClassRules(d chainDef, sp space) []*nft.Rule {
	for _, p := range e.tierPolicies(d.keys) {
		for _, r := range p.Rules[d.dir] {
			e.pin(d.dir, r.Peers)
		}
	}
	return []*nft.Rule{{Verdict: nft.Verdict{Kind: nft.Jump, Chain: peerChain(sp)}, Comment: "the peer's identity decides"}}
}

// adminChain is shared by the local pods that the same admin-tier policies
// select: the peer's identity leads to the admin rules it matches (an Allow
// accepts, a Deny drops, a Pass leaves through the rest map) and, when
// none decided, the pod goes to its rest through the rest map. It is named
// by the set of its policies, not their order: a priority change rewrites
// the groups' order in place, and no pod moves to another chain.
func (e *Engine) adminChain(d chainDef) *nft.Chain {
	ch := &nft.Chain{Name: d.name(), Rules: e.tierClassRules(d, space{d.dir, adminTier})}
	for _, fam := range families {
		ch.Rules = append(ch.Rules, &nft.Rule{Verdict: e.restVerdict(d.dir, fam), Comment: "no admin rule decided: NetworkPolicies, then baseline"})
	}
	return ch
}

// baselineChain is shared by the local pods that no NetworkPolicy isolates
// and the same baseline policies select: the baseline rules the peer's
// identity matches, then accept (it must end in a verdict: see RestMap).
func (e *Engine) baselineChain(d chainDef) *nft.Chain {
	ch := &nft.Chain{Name: d.name(), Rules: e.tierClassRules(d, space{d.dir, baselineTier})}
	ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "no baseline rule matched: allowed"})
	return ch
}

// restVerdict looks the subject pod up in the rest map, which exists (maybe
// empty) as soon as a rule refers to it.
func (e *Engine) restVerdict(dir model.Direction, fam nft.Family) nft.Verdict {
	if name := RestMap(dir, fam); !e.hasSet(name) {
		e.newSet(nft.NewSet(name, mapType(fam), fmt.Sprintf("local pods with admin %s policy -> the tiers after it", dir)), nil)
	}
	return nft.Verdict{Kind: nft.Vmap, Map: RestMap(dir, fam), Family: fam, Src: dir == model.Egress}
}

func tierRuleComment(p *model.TierPolicy, dir model.Direction, r model.TierRule) string {
	comment := fmt.Sprintf("%s priority %d %s rule %d", p.Key(), p.Priority, dir, r.Index)
	if r.Name != "" {
		comment += " " + r.Name
	}
	return comment + ": " + r.Action.String()
}

// tierVerdictChain gives one admin or baseline rule's verdict, with its
// counter, comment and log: Allow accepts, Deny drops, an admin Pass
// counts and goes to the pod's rest (a map per family, so the counter is a
// rule of its own), a baseline Pass accepts (the next tier is the
// default).
func (e *Engine) tierVerdictChain(d chainDef) *nft.Chain {
	ch := &nft.Chain{Name: d.name()}
	p := e.c.TierPolicies[d.keys[0]]
	var index int
	fmt.Sscan(d.id, &index)
	if p == nil {
		return ch
	}
	for _, r := range p.Rules[d.dir] {
		if r.Index != index {
			continue
		}
		comment := tierRuleComment(p, d.dir, r)
		origin := tierOrigin(p, d.dir, r)
		pass := r.Action == model.Pass && p.Tier == model.TierAdmin
		rule := &nft.Rule{Counter: true, Verdict: nft.Verdict{Kind: nft.Accept}, Comment: comment}
		switch {
		case pass:
			rule.Verdict = nft.Verdict{} // the rest maps below decide
		case r.Action == model.Deny:
			rule.Verdict.Kind = nft.Drop
		}
		ch.Rules = e.withOrigin([]*nft.Rule{rule}, origin, p.LogAccepts)
		if pass {
			for _, fam := range families {
				ch.Rules = append(ch.Rules, &nft.Rule{Verdict: e.restVerdict(d.dir, fam), Origin: origin, Comment: comment})
			}
		}
	}
	return ch
}

// tierChain holds one audit admin or baseline policy's rules for one
// direction, in order; a group jumps to it at the policy's place in the
// tier's order. An audit policy decides nothing: a rule that would deny
// counts and logs would-drop, any matching rule returns to the group,
// which goes on as if the policy did not exist.
func (e *Engine) tierChain(p *model.TierPolicy, d chainDef) *nft.Chain {
	ch := &nft.Chain{Name: d.name()}
	if p == nil {
		return ch
	}
	ret := func(nft.Family) nft.Verdict { return nft.Verdict{Kind: nft.Return} }
	for _, r := range p.Rules[d.dir] {
		rules := e.rules(d.dir, r.Match, tierRuleComment(p, d.dir, r)+" (audit)", ret)
		if r.Action == model.Allow || r.Action == model.Pass {
			for _, rule := range rules {
				rule.Counter = false // only would-drops are counted
			}
			ch.Rules = append(ch.Rules, rules...)
			continue
		}
		ch.Rules = append(ch.Rules, e.withOrigin(rules, tierOrigin(p, d.dir, r), p.LogAccepts)...)
	}
	return ch
}
