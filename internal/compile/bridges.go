package compile

import (
	"slices"

	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Bridge guards (docs/multinetwork.md). With bridge netfilter on, a packet
// bridged through a secondary network's bridge reaches the inet forward
// hook with that bridge as its input and output interface. Each secondary
// network has its own table, compiled by its own Engine with
// Options.Bridge: its base chains let everything else pass at their top.
// The primary table's forward chains let that bridge's packets pass at
// their top instead (SetSkipBridges), so each packet is judged by exactly
// one table. Nothing else of the layout changes.

const guardComment = "judged by another table: "

// addBaseChain adds a base chain; in a secondary network's table it first
// gets the rule that lets through what was not bridged on its bridge.
func (e *Engine) addBaseChain(ch *nft.Chain) {
	if e.opts.Bridge != "" {
		g := &nft.Rule{Matches: []nft.Match{nft.MatchIfname{Name: e.opts.Bridge, Out: ch.Hook.Hook == "output", Not: true}},
			Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "not bridged on " + e.opts.Bridge + ": judged by another table"}
		ch.Rules = append([]*nft.Rule{g}, ch.Rules...)
	}
	e.rs.AddChain(ch)
}

// SetSkipBridges makes the forward chains of this (the primary) table let
// through the packets bridged on bridges, which their networks' tables
// judge: one rule per bridge at the top of each forward chain. It records
// the chains it changed as touched.
func (e *Engine) SetSkipBridges(bridges []string) {
	bridges = slices.Clone(bridges)
	slices.Sort(bridges)
	bridges = slices.Compact(bridges)
	for _, name := range []string{ChainForwardEgress, ChainForwardIngress} {
		ch := e.rs.Chains[name]
		var rest []*nft.Rule
		for _, r := range ch.Rules {
			if !isGuard(r) {
				rest = append(rest, r)
			}
		}
		var guards []*nft.Rule
		for _, b := range bridges {
			guards = append(guards, &nft.Rule{Matches: []nft.Match{nft.MatchIfname{Name: b}},
				Verdict: nft.Verdict{Kind: nft.Accept}, Comment: guardComment + b})
		}
		rules := append(guards, rest...)
		if sameRuleIDs(rules, ch.Rules) {
			continue
		}
		e.rs.AddChain(&nft.Chain{Name: ch.Name, Hook: ch.Hook, Rules: rules})
		e.touched.Chain(name)
	}
}

func isGuard(r *nft.Rule) bool {
	if len(r.Matches) != 1 {
		return false
	}
	m, ok := r.Matches[0].(nft.MatchIfname)
	return ok && !m.Not && !m.Out
}
