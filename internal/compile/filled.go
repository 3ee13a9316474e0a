package compile

import (
	"github.com/nftpolicy/nftpolicy/internal/model"
)

// Namespace-level peer sets, kept filled for the whole cluster.
//
// A NetworkPolicy rule whose pod peers all select whole namespaces ("all
// pods in namespaces team=x") names a set whose members follow the
// namespaces' labels alone, and there are few of them: one per distinct
// namespace selector, not one per policy. The engine keeps every such set
// of every NetworkPolicy of the cluster filled, with its members'
// records, whether or not a class of this node uses it. The pod that
// brings such a rule to the node then finds the set made; before, its
// event filled it: at L (50,000 pods) ~4,000 pods asked and counted, a
// third to a half of the engine's time in the costliest event
// (BenchmarkEngineNewSelector). A filled set that no class uses is in no
// identity and no rule reads it, so it changes nothing in the ruleset
// (engine.go, liveSet): what it costs is memory and the engine's counting
// of its members' pods as they come and go, never a kernel operation. The
// sets kept are bounded (fillBudget).

// keptSet is a set kept filled: how many policy rules keep it, and its
// members when it was first kept (what it counts against the budget).
type keptSet struct {
	refs, members int
}

// minFillBudget is the members the engine keeps filled in a cluster of
// few pods, and maxKeptSets the sets it keeps at most: each is matched
// against every pod that comes, goes or changes in the cluster (two
// selectors each, ~0.1 µs), however few members it has. fillBudget says
// why there are bounds.
const (
	minFillBudget = 10_000
	maxKeptSets   = 256
)

// fillBudget bounds the members of the sets kept filled: twice the
// cluster's pods, so that a kept set costs memory in proportion to what
// the engine holds already. Namespace selectors are the policies' authors'
// to write, and a thousand distinct ones, each over half the cluster,
// would otherwise keep 25 million members on every node at L (50,000
// pods). A set over
// the budget is filled when a class uses it, as any other; the generated
// clusters of the perf suite keep one set per team, every pod once.
func (e *Engine) fillBudget() int { return 2*len(e.c.Pods) + minFillBudget }

// keepFilled takes a reference to the namespace-level peer sets of p's
// rules, while the kept members are under the budget, and returns those
// it took.
func (e *Engine) keepFilled(p *model.Policy) []string {
	if p == nil {
		return nil
	}
	var out []string
	for _, dir := range directions {
		for _, r := range p.Rules[dir] {
			pods := namespacePeers(r.Match)
			if pods == nil {
				continue
			}
			for _, fam := range families {
				e.dry = true // the name alone, to see whether it is kept
				name := e.podPeerSet(fam, pods)
				e.dry = false
				k := e.kept[name]
				if k == nil && (e.keptMembers >= e.fillBudget() || len(e.kept) >= maxKeptSets) {
					continue
				}
				if !e.hasSet(name) {
					e.podPeerSet(fam, pods) // made and filled
				}
				e.sets[name].refs++
				if k == nil {
					k = &keptSet{members: len(e.counts[name])}
					e.kept[name] = k
					e.keptMembers += k.members
				}
				k.refs++
				out = append(out, name)
			}
		}
	}
	return out
}

// keepFilledFor records the sets the policy key keeps now (none if it is
// gone), without letting go of those it kept before.
func (e *Engine) keepFilledFor(key string) {
	if sets := e.keepFilled(e.c.Policies[key]); len(sets) > 0 {
		e.filled[key] = sets
	} else {
		delete(e.filled, key)
	}
}

// KeptSets is how many namespace-level peer sets the engine keeps filled
// and their members now: what the kept sets cost in memory.
func (e *Engine) KeptSets() (sets, members int) {
	for name := range e.kept {
		members += len(e.counts[name])
	}
	return len(e.kept), members
}

// letGo releases sets keepFilled returned.
func (e *Engine) letGo(sets []string) {
	for _, name := range sets {
		k := e.kept[name]
		if k.refs--; k.refs == 0 {
			e.keptMembers -= k.members
			delete(e.kept, name)
		}
		e.releaseSet(name)
	}
}

// namespacePeers are a rule's pod peers, as peerMatches puts them in one
// set, when every one selects whole namespaces by label; nil otherwise.
func namespacePeers(m model.Match) []model.Peer {
	if m.AllPeers {
		return nil
	}
	var pods []model.Peer
	for _, p := range m.Peers {
		if p.Invalid || !p.Pods {
			continue
		}
		if p.NamespaceSelector == nil || p.PodSelector != nil && !p.PodSelector.Empty() {
			return nil
		}
		pods = append(pods, p)
	}
	return pods
}
