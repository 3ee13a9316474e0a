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
// event filled it: at L (50,000 pods) ~4,000 pods asked and counted, two
// thirds of the engine's time in the costliest event (BenchmarkEngine-
// NewSelector). A filled set that no class uses is in no identity and no
// rule reads it, so it changes nothing in the ruleset (engine.go, liveSet):
// what it costs is memory and the engine's counting of its members' pods
// as they come and go, never a kernel operation.

// filledSet is one set a policy keeps filled.
type filledSet string

// keepFilled takes a reference to the namespace-level peer sets of p's
// rules, and returns them.
func (e *Engine) keepFilled(p *model.Policy) []filledSet {
	if p == nil {
		return nil
	}
	var out []filledSet
	for _, dir := range directions {
		for _, r := range p.Rules[dir] {
			pods := namespacePeers(r.Match)
			if pods == nil {
				continue
			}
			for _, fam := range families {
				name := e.podPeerSet(fam, pods)
				e.sets[name].refs++
				out = append(out, filledSet(name))
			}
		}
	}
	return out
}

// letGo releases sets keepFilled returned.
func (e *Engine) letGo(sets []filledSet) {
	for _, name := range sets {
		e.releaseSet(string(name))
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
