package compile

import (
	"fmt"

	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// ChainAccept is where a pod that admin policies select, but that no later
// tier has a say on, goes when the admin tier passes: it accepts.
const ChainAccept = "no-later-tier-accept"

func acceptChain() *nft.Chain {
	return &nft.Chain{Name: ChainAccept, Rules: []*nft.Rule{{Verdict: nft.Verdict{Kind: nft.Accept},
		Comment: "admin tier passed; no NetworkPolicy or baseline policy applies"}}}
}

// tierPolicies looks policies up by key, in evaluation order.
func (e *Engine) tierPolicies(keys []string) []*model.TierPolicy {
	out := make([]*model.TierPolicy, len(keys))
	for i, k := range keys {
		out[i] = e.c.TierPolicies[k]
	}
	model.SortTier(out)
	return out
}

// adminChain is shared by the local pods that the same admin-tier policies
// select: it jumps to each policy's chain in priority order (an Allow
// accepts, a Deny drops, a Pass leaves through the rest map) and, when none
// decided, goes to the pod's rest through the rest map. It is named by the
// set of its policies, not their order: a priority change rewrites its few
// jumps in place, and no pod moves to another chain.
func (e *Engine) adminChain(d chainDef, admin []*model.TierPolicy) *nft.Chain {
	ch := &nft.Chain{Name: d.name(), Rules: tierJumps(d.dir, model.TierAdmin, admin)}
	for _, fam := range families {
		ch.Rules = append(ch.Rules, &nft.Rule{Verdict: e.restVerdict(d.dir, fam), Comment: "no admin rule decided: NetworkPolicies, then baseline"})
	}
	return ch
}

// baselineChain is shared by the local pods that no NetworkPolicy isolates
// and the same baseline policies select: their chains in order, then
// accept (it must end in a verdict: see RestMap).
func (e *Engine) baselineChain(d chainDef, baseline []*model.TierPolicy) *nft.Chain {
	ch := &nft.Chain{Name: d.name(), Rules: tierJumps(d.dir, model.TierBaseline, baseline)}
	ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "no baseline rule matched: allowed"})
	return ch
}

// tierJumps jumps to each policy's chain, in evaluation order.
func tierJumps(dir model.Direction, t model.Tier, ps []*model.TierPolicy) []*nft.Rule {
	out := make([]*nft.Rule, len(ps))
	for i, p := range ps {
		target := chainDef{kind: chainTierPolicy, dir: dir, tier: t, keys: []string{p.Key()}}
		out[i] = &nft.Rule{Verdict: nft.Verdict{Kind: nft.Jump, Chain: target.name()},
			Comment: fmt.Sprintf("%s priority %d", p.Key(), p.Priority)}
	}
	return out
}

// restVerdict looks the subject pod up in the rest map, which exists (maybe
// empty) as soon as a rule refers to it.
func (e *Engine) restVerdict(dir model.Direction, fam nft.Family) nft.Verdict {
	if name := RestMap(dir, fam); !e.hasSet(name) {
		e.newSet(nft.NewSet(name, mapType(fam), fmt.Sprintf("local pods with admin %s policy -> the tiers after it", dir)), nil)
	}
	return nft.Verdict{Kind: nft.Vmap, Map: RestMap(dir, fam), Family: fam, Src: dir == model.Egress}
}

// tierChain holds one admin or baseline policy's rules for one direction,
// in order, each with its action.
func (e *Engine) tierChain(p *model.TierPolicy, d chainDef) *nft.Chain {
	ch := &nft.Chain{Name: d.name()}
	for _, r := range p.Rules[d.dir] {
		comment := fmt.Sprintf("%s priority %d %s rule %d", p.Key(), p.Priority, d.dir, r.Index)
		if r.Name != "" {
			comment += " " + r.Name
		}
		comment += ": " + r.Action.String()
		verdict := e.actionVerdict(p.Tier, d.dir, r.Action)
		origin := tierOrigin(p, d.dir, r)
		if p.Audit {
			// An audit policy decides nothing: a rule that would deny
			// counts and logs would-drop, any matching rule returns to
			// the class chain, which goes on as if the policy did not
			// exist.
			comment += " (audit)"
			verdict = func(nft.Family) nft.Verdict { return nft.Verdict{Kind: nft.Return} }
			if r.Action == model.Allow || r.Action == model.Pass {
				origin = nil
			}
		}
		rules := e.rules(d.dir, r.Match, comment, verdict)
		if origin == nil {
			for _, rule := range rules {
				rule.Counter = false
			}
		}
		ch.Rules = append(ch.Rules, e.withOrigin(rules, origin, p.LogAccepts)...)
	}
	return ch
}

// actionVerdict: Allow accepts and Deny drops. Pass in the admin tier goes
// to the pod's rest (per family, so a family-neutral rule is emitted once
// per family); in the baseline tier the next "tier" is the default: accept.
func (e *Engine) actionVerdict(t model.Tier, dir model.Direction, a model.Action) func(nft.Family) nft.Verdict {
	switch {
	case a == model.Deny:
		return func(nft.Family) nft.Verdict { return nft.Verdict{Kind: nft.Drop} }
	case a == model.Pass && t == model.TierAdmin:
		return func(fam nft.Family) nft.Verdict { return e.restVerdict(dir, fam) }
	}
	return accept
}
