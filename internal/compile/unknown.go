package compile

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Pods not yet known. Between a pod's address appearing on its node (the
// CNI plugin) and the agent programming the pod, nothing in the dispatch
// maps names the address, so without more it would be open in both
// directions: a new pod, and every pod while an agent starts on a node
// with no table. The base chains therefore drop what comes from or goes to
// an address of this node's pod CIDRs that is not the address of a pod the
// agent knows. A known pod that no policy selects is in the known set and
// stays allowed; the node's own traffic is accepted before (output) or
// never judged (input-egress: a pod talking to its node).

// PodCIDRSet is the interval set of this node's pod CIDRs
// (Node.spec.podCIDRs) in one family.
func PodCIDRSet(fam nft.Family) string { return fmt.Sprintf("pod-cidrs-v%d", fam) }

// LocalPodSet is the set of the addresses of this node's active pods the
// engine knows, in one family: those are not "not yet known".
func LocalPodSet(fam nft.Family) string { return fmt.Sprintf("local-pods-v%d", fam) }

// UnknownComment is the comment of the rules that drop pods not yet known.
const UnknownComment = "pod not yet known: an address of this node's pod CIDRs that no pod of it has yet"

// unknownSets adds the two sets per family the unknown rules use, empty.
func (e *Engine) unknownSets() {
	for _, fam := range families {
		t, hash := nft.SetIPv4Interval, nft.SetIPv4
		if fam == nft.IPv6 {
			t, hash = nft.SetIPv6Interval, nft.SetIPv6
		}
		e.rs.AddSet(nft.NewSet(PodCIDRSet(fam), t, "this node's pod CIDRs (spec.podCIDRs)"))
		e.rs.AddSet(nft.NewSet(LocalPodSet(fam), hash, "addresses of this node's pods that the agent knows"))
	}
}

// unknownRules drop a packet whose source (src) or destination is an
// address of the node's pod CIDRs that no known local pod has. The known
// set is asked first: most packets that reach these rules are a known
// pod's, which one hash lookup lets through without the interval lookup
// of the pod CIDRs.
func (e *Engine) unknownRules(src bool) []*nft.Rule {
	if e.opts.OpenUnknown {
		return nil
	}
	var out []*nft.Rule
	for _, fam := range families {
		out = append(out, e.withOrigin([]*nft.Rule{{
			Matches: []nft.Match{
				nft.MatchAddrInSet{Family: fam, Src: src, Set: LocalPodSet(fam), Not: true},
				nft.MatchAddrInSet{Family: fam, Src: src, Set: PodCIDRSet(fam)},
			},
			Counter: true, Verdict: nft.Verdict{Kind: nft.Drop}, Comment: UnknownComment,
		}}, unknownOrigin(src), false)...)
	}
	return out
}

// podCIDRs makes the pod CIDR sets hold the node's current podCIDRs
// (none until the Node is known): what changed is deleted and added.
func (e *Engine) podCIDRs() {
	if e.opts.OpenUnknown {
		return
	}
	spans := map[nft.Family][]span{}
	if n := e.c.Nodes[e.node]; n != nil {
		for _, p := range n.PodCIDRs {
			fam := nft.FamilyOf(p.Addr())
			spans[fam] = append(spans[fam], prefixSpan(p))
		}
	}
	for _, fam := range families {
		name := PodCIDRSet(fam)
		set := e.rs.Sets[name]
		want := map[nft.Elem]struct{}{}
		for _, s := range merge(spans[fam]) { // the kernel refuses overlapping intervals
			want[nft.Elem{Addr: s.lo, AddrEnd: s.hi}] = struct{}{}
		}
		for el := range set.All() {
			if _, ok := want[el]; !ok {
				set.Delete(el)
				e.touched.Elem(name, el)
			}
		}
		for el := range want {
			if !set.Has(el) {
				set.Add(el)
				e.touched.Elem(name, el)
			}
		}
	}
}

// know makes the local-pods sets hold ips for the pod key (nil: the pod is
// gone, inactive or elsewhere). Elements are counted: two pods sharing an
// address keep it until both let it go. New addresses are added first.
func (e *Engine) know(key string, ips []netip.Addr) {
	if e.opts.OpenUnknown {
		return
	}
	e.hold(e.known, LocalPodSet, key, ips)
}

// hold makes the sets named by set (per family) hold ips for key, as held
// records: elements are counted, so two keys sharing an address keep it
// until both let it go, and new addresses are added first.
func (e *Engine) hold(held map[string][]netip.Addr, set func(nft.Family) string, key string, ips []netip.Addr) {
	was := held[key]
	if slices.Equal(was, ips) {
		return
	}
	for _, ip := range ips {
		e.addElem(set(nft.FamilyOf(ip)), nft.Elem{Addr: ip})
	}
	for _, ip := range was {
		e.delElem(set(nft.FamilyOf(ip)), nft.Elem{Addr: ip})
	}
	if len(ips) == 0 {
		delete(held, key)
	} else {
		held[key] = slices.Clone(ips)
	}
}
