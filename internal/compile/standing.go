package compile

import (
	"github.com/nftpolicy/nftpolicy/internal/model"
)

// Standing peer selectors: a rule's pod peers that select namespaces by
// label (a team's namespaces, every namespace's monitoring pods) can hold
// thousands of pods. If their set joined the identities only when a local
// pod's class first used it, that pod's add or relabel would move every
// member to a new identity: at L (50,000 pods) ~5,400 ids-map elements and
// ~10 ms of the engine for one pod, the slowest event by far. So every
// node keeps such a selector in the identities of its space from the
// moment a policy of the cluster names it, whichever pods it applies to:
// a pod that starts using it only gains elements in the identities' maps.
// The members move once, when a policy first names the selector (on every
// node, as a policy's creation is expected to cost), and their namespaces'
// relabels re-check them, as for any live set. Peers within the policy's
// own namespace are not standing: their set is at most that namespace.

// standingUse is one standing selector's set, in the space it is used in.
type standingUse struct {
	set string
	sp  space
}

// restand brings the standing uses of one policy (ref names it: a
// NetworkPolicy's "ns/name" or a tier policy's "Kind/name") up to date:
// the new are taken before the old are dropped, so a set both keep stays.
func (e *Engine) restand(ref string, now []standingUse) {
	for _, u := range now {
		e.sets[u.set].refs++
		e.useSets([]string{u.set}, u.sp, 1)
	}
	for _, u := range e.standing[ref] {
		e.useSets([]string{u.set}, u.sp, -1)
		e.releaseSet(u.set)
	}
	if len(now) == 0 {
		delete(e.standing, ref)
	} else {
		e.standing[ref] = now
	}
}

// standingOfPolicy lists a NetworkPolicy's standing selectors' sets, making
// those not live yet.
func (e *Engine) standingOfPolicy(key string) []standingUse {
	p := e.c.Policies[key]
	if p == nil {
		return nil
	}
	var out []standingUse
	for _, dir := range directions {
		for _, r := range p.Rules[dir] {
			out = e.appendStanding(out, space{dir, npTier}, r.Peers)
		}
	}
	return out
}

// standingOfTier is standingOfPolicy for a tier policy.
func (e *Engine) standingOfTier(key string) []standingUse {
	p := e.c.TierPolicies[key]
	if p == nil {
		return nil
	}
	tier := adminTier
	if p.Tier == model.TierBaseline {
		tier = baselineTier
	}
	var out []standingUse
	for _, dir := range directions {
		for _, r := range p.Rules[dir] {
			out = e.appendStanding(out, space{dir, tier}, r.Peers)
		}
	}
	return out
}

// appendStanding appends the sets of a rule's pod peers (the set
// peerMatches names for them, per family) when one of them selects
// namespaces by label.
func (e *Engine) appendStanding(out []standingUse, sp space, peers []model.Peer) []standingUse {
	var pods []model.Peer
	across := false
	for _, p := range peers {
		if p.Invalid || !p.Pods {
			continue
		}
		pods = append(pods, p)
		across = across || p.NamespaceSelector != nil
	}
	if !across {
		return out
	}
	for _, fam := range families {
		out = append(out, standingUse{e.podPeerSet(fam, pods), sp})
	}
	return out
}
