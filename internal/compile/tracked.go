package compile

import (
	"github.com/nftpolicy/nftpolicy/internal/model"
)

// Namespace-level peer sets, tracked for the whole cluster.
//
// A NetworkPolicy rule whose pod peers all select whole namespaces ("all
// pods in namespaces team=x") names a set whose members follow the
// namespaces' labels alone. The engine keeps every such set of every
// NetworkPolicy of the cluster in the identities of its direction, whether
// or not a class of this node uses it yet: the pod that brings such a rule
// to the node then finds the members' identities made. Before, that pod's
// event moved each of the set's thousands of members to a new identity:
// at L (50,000 pods) 3,959 to 5,357 ids-map elements and 3–8 ms of the
// engine's time, every event of the perf suite above 2 ms. The price is
// paid once, in full programming: the ids map holds every pod of the
// namespaces those sets name (at L all 50,000, against 27,690 before),
// which the kernel walks at each commit that adds a goto
// (docs/nftables-notes.md). A set keeps no kernel object unless a rule
// reads it (engine.go, liveSet), so tracking costs only elements of the
// ids maps. Rules with other pod peers (a pod selector, or no namespace
// selector) are not tracked: their sets' members depend on pod labels,
// and there are as many of them as policies.

// trackedSet is one set a policy keeps in a space's identities.
type trackedSet struct {
	name string
	sp   space
}

// track keeps the namespace-level peer sets of p's rules in the
// identities of their directions, and returns them.
func (e *Engine) track(p *model.Policy) []trackedSet {
	if p == nil {
		return nil
	}
	var out []trackedSet
	for _, dir := range directions {
		sp := space{dir, npTier}
		for _, r := range p.Rules[dir] {
			pods := namespacePeers(r.Match)
			if pods == nil {
				continue
			}
			for _, fam := range families {
				name := e.podPeerSet(fam, pods)
				e.sets[name].refs++
				e.useSets([]string{name}, sp, 1)
				out = append(out, trackedSet{name, sp})
			}
		}
	}
	return out
}

// untrack lets go of sets track returned.
func (e *Engine) untrack(sets []trackedSet) {
	for _, t := range sets {
		e.useSets([]string{t.name}, t.sp, -1)
		e.releaseSet(t.name)
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
