package compile

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/nftpolicy/nftpolicy/internal/inet"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// cidrSet is the interval set of the addresses the ipBlock peers of one
// family cover, except holes punched. The kernel rejects overlapping
// intervals, so the ranges are made disjoint (and adjacent ones merged)
// here. The name derives from the blocks, so the set never changes: a
// different block list is a different set.
func (e *Engine) cidrSet(fam nft.Family, blocks []model.Peer) string {
	var desc []string
	var spans []span
	for _, p := range blocks {
		if nft.FamilyOf(p.CIDR.Addr()) != fam {
			continue
		}
		d := p.CIDR.String()
		pieces := []span{prefixSpan(p.CIDR)}
		if len(p.Except) > 0 {
			var ex []string
			for _, e := range p.Except {
				ex = append(ex, e.String())
				pieces = subtract(pieces, prefixSpan(e))
			}
			d += " except " + strings.Join(ex, ",")
		}
		desc = append(desc, d)
		spans = append(spans, pieces...)
	}
	if len(desc) == 0 {
		return ""
	}
	sort.Strings(desc)
	identity := strings.Join(dedupe(desc), " | ")
	t := nft.SetIPv4Interval
	if fam == nft.IPv6 {
		t = nft.SetIPv6Interval
	}
	name := nft.Name(fmt.Sprintf("cidrs-v%d", fam), identity)
	if e.hasSet(name) {
		return name
	}
	set := e.newSet(nft.NewSet(name, t, identity), nil)
	merged := merge(spans)
	for _, s := range merged {
		set.Add(nft.Elem{Addr: s.lo, AddrEnd: s.hi})
	}
	if !e.dry {
		e.cidrs[name] = merged
		e.cidrsChanged()
	}
	return name
}

// span is an inclusive address range.
type span struct{ lo, hi netip.Addr }

func prefixSpan(p netip.Prefix) span {
	p = p.Masked()
	lo := p.Addr()
	b := lo.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	hi, _ := netip.AddrFromSlice(b)
	return span{lo, hi}
}

// subtract removes hole from every span.
func subtract(spans []span, hole span) []span {
	var out []span
	for _, s := range spans {
		if hole.hi.Less(s.lo) || s.hi.Less(hole.lo) {
			out = append(out, s)
			continue
		}
		if s.lo.Less(hole.lo) {
			out = append(out, span{s.lo, hole.lo.Prev()})
		}
		if hole.hi.Less(s.hi) {
			out = append(out, span{hole.hi.Next(), s.hi})
		}
	}
	return out
}

// merge sorts spans and joins overlapping and adjacent ones.
func merge(spans []span) []span {
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo.Less(spans[j].lo) })
	var out []span
	for _, s := range spans {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next := last.hi.Next() // invalid when last reaches the top
			if !next.IsValid() || !next.Less(s.lo) {
				if last.hi.Less(s.hi) {
					last.hi = s.hi
				}
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

// portSet is the set of a rule's numeric ports and ranges, as protocol .
// port-range with overlaps merged; "" when the rule has only named ports.
func (e *Engine) portSet(ports []model.Port) string {
	byProto := map[uint8][][2]int{}
	for _, p := range ports {
		if p.Name != "" {
			continue
		}
		lo, hi := int(p.Port), int(p.EndPort)
		if p.Port == 0 {
			lo, hi = 0, 65535
		}
		byProto[p.Proto] = append(byProto[p.Proto], [2]int{lo, hi})
	}
	if len(byProto) == 0 {
		return ""
	}
	var elems []nft.Elem
	for proto, rs := range byProto {
		sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
		cur := rs[0]
		for _, r := range rs[1:] {
			if r[0] <= cur[1]+1 {
				cur[1] = max(cur[1], r[1])
				continue
			}
			elems = append(elems, nft.Elem{Proto: proto, Port: uint16(cur[0]), PortEnd: uint16(cur[1])})
			cur = r
		}
		elems = append(elems, nft.Elem{Proto: proto, Port: uint16(cur[0]), PortEnd: uint16(cur[1])})
	}
	elems = nft.SortElems(elems)
	desc := make([]string, len(elems))
	for i, e := range elems {
		desc[i] = e.Text(nft.SetProtoPortInterval)
	}
	identity := strings.Join(desc, ", ")
	name := nft.Name("ports", identity)
	if !e.hasSet(name) {
		e.newSet(nft.NewSet(name, nft.SetProtoPortInterval, identity), nil).Add(elems...)
	}
	return name
}

// namedPortSet holds address . protocol . number for every pod that declares
// the port name for that protocol (for any protocol when port.Proto is 0, as
// the tier policies' named ports): a named port matches where the
// destination pod declares it, so one set per name and direction serves
// every rule. In ingress the destination is a pod of this node, so its set
// holds this node's pods only: at L (50,000 pods, two port names on every
// pod) the cluster-wide sets were 96,260 of the ruleset's 153,352 elements,
// and every pod created anywhere changed them.
func (e *Engine) namedPortSet(dir model.Direction, fam nft.Family, port model.Port) string {
	proto := "any"
	if port.Proto != 0 {
		proto = inet.ProtoName(port.Proto)
	}
	identity := proto + "/" + port.Name
	t := nft.SetIPv4ProtoPort
	if fam == nft.IPv6 {
		t = nft.SetIPv6ProtoPort
	}
	prefix, def, where := "named", &setDef{fam: fam, named: &port}, ""
	if dir == model.Ingress {
		prefix, def.node, where = "named-local", e.node, " of this node"
	}
	name := nft.Name(fmt.Sprintf("%s-v%d", prefix, fam), identity)
	if !e.hasSet(name) {
		e.newSet(nft.NewSet(name, t, "named port "+identity+" on the pods"+where+" that declare it"), def)
	}
	return name
}

// podPeerSet is the set of the addresses of the pods any of peers selects.
// Its name derives from the selectors, so rules that select the same peers
// share it.
func (e *Engine) podPeerSet(fam nft.Family, peers []model.Peer) string {
	desc := make([]string, len(peers))
	for i, p := range peers {
		desc[i] = describePeer(p)
	}
	return e.addrSet("peers", fam, desc, newPodPeersDef(fam, peers))
}

// addrSet is the dynamic address set of one family whose members def
// describes, named by prefix and the sorted descriptions of its peers.
func (e *Engine) addrSet(prefix string, fam nft.Family, desc []string, def *setDef) string {
	sort.Strings(desc)
	identity := strings.Join(dedupe(desc), " | ")
	t := nft.SetIPv4
	if fam == nft.IPv6 {
		t = nft.SetIPv6
	}
	name := nft.Name(fmt.Sprintf("%s-v%d", prefix, fam), identity)
	if !e.hasSet(name) {
		e.newSet(nft.NewSet(name, t, identity), def)
	}
	return name
}

func describePeer(p model.Peer) string {
	pods := "all pods"
	if p.PodSelector != nil {
		pods = "pods " + p.PodSelector.String()
	}
	if p.NamespaceSelector == nil {
		return pods + " in " + p.Namespace
	}
	if p.NamespaceSelector.Empty() {
		return pods + " in all namespaces"
	}
	return pods + " in namespaces " + p.NamespaceSelector.String()
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// nodePeerSet holds the addresses of the nodes the node peers select.
func (e *Engine) nodePeerSet(fam nft.Family, peers []model.Peer) string {
	desc := make([]string, len(peers))
	for i, p := range peers {
		desc[i] = "nodes " + p.NodeSelector.String()
		if p.NodeSelector.Empty() {
			desc[i] = "all nodes"
		}
	}
	return e.addrSet("nodes", fam, desc, &setDef{fam: fam, nodes: peers})
}

// setDef says which pods or nodes a dynamic set holds, so that the engine
// can fill it and keep it up to date.
type setDef struct {
	fam   nft.Family
	pods  []model.Peer // pod peers: the addresses of the pods any selects
	nodes []model.Peer // node peers: the addresses of the nodes any selects
	named *model.Port  // a named port: address . proto . port where declared
	node  string       // named ports: only the pods of this node, when set
	// domains: the addresses bound to a name one of these patterns matches.
	domains []string
	// namespaces, when not nil, are the only namespaces whose pods can be
	// members (every pod peer names its own namespace).
	namespaces []string
}

func newPodPeersDef(fam nft.Family, peers []model.Peer) *setDef {
	d := &setDef{fam: fam, pods: peers}
	for _, p := range peers {
		if p.NamespaceSelector != nil {
			d.namespaces = nil
			return d
		}
		if !slices.Contains(d.namespaces, p.Namespace) {
			d.namespaces = append(d.namespaces, p.Namespace)
		}
	}
	return d
}

// candidateNamespaces are the namespaces whose pods may be members of a
// set whose namespaces are not fixed.
func (d *setDef) candidateNamespaces(c *model.Cluster) []string {
	var out []string
	for name, ns := range c.Namespaces {
		for _, p := range d.pods {
			if p.NamespaceSelector == nil && p.Namespace == name || p.NamespaceSelector != nil && p.NamespaceSelector.Matches(ns.Labels) {
				out = append(out, name)
				break
			}
		}
	}
	for _, p := range d.pods {
		if _, ok := c.Namespaces[p.Namespace]; p.NamespaceSelector == nil && !ok && !slices.Contains(out, p.Namespace) {
			out = append(out, p.Namespace) // a namespaced peer matches without its Namespace object
		}
	}
	return out
}

// podElems are the elements pod puts in the set.
func (d *setDef) podElems(c *model.Cluster, pod *model.Pod) []nft.Elem {
	return d.appendPodElems(nil, c, pod)
}

// appendPodElems appends the elements pod puts in the set to out: filling
// a new peer selector's set at L asks ~4,000 pods, and a slice for each
// was a tenth of the fill's time.
func (d *setDef) appendPodElems(out []nft.Elem, c *model.Cluster, pod *model.Pod) []nft.Elem {
	if pod == nil || !pod.Active() {
		return out
	}
	if d.named != nil {
		if d.node != "" && pod.Node != d.node {
			return out
		}
		for _, np := range pod.Ports {
			if np.Name != d.named.Name || (d.named.Proto != 0 && np.Proto != d.named.Proto) {
				continue
			}
			for _, ip := range c.OwnedIPs(pod) {
				if nft.FamilyOf(ip) == d.fam {
					out = append(out, nft.Elem{Addr: ip, Proto: np.Proto, Port: np.Port})
				}
			}
		}
		return out
	}
	for i := range d.pods {
		if d.pods[i].MatchesPod(c, pod) {
			return d.appendAddrs(out, c, pod)
		}
	}
	return out
}

// appendNamespaceElems appends the elements the pods of namespace ns put
// in a set of pod peers: what appendPodElems gives for each of them, with
// the peers' namespace half judged once for the namespace, not once for
// each of its pods (filling a new peer selector's set at L asks ~4,800).
func (d *setDef) appendNamespaceElems(out []nft.Elem, c *model.Cluster, ns string) []nft.Elem {
	var peers []*model.Peer
	for i := range d.pods {
		if d.pods[i].MatchesNamespace(c, ns) {
			peers = append(peers, &d.pods[i])
		}
	}
	if len(peers) == 0 {
		return out
	}
	for _, pod := range c.PodsIn(ns) {
		if !pod.Active() {
			continue
		}
		for _, p := range peers {
			if p.MatchesPodLabels(pod) {
				out = d.appendAddrs(out, c, pod)
				break
			}
		}
	}
	return out
}

// appendAddrs appends an element for each address of the set's family
// that pod owns.
func (d *setDef) appendAddrs(out []nft.Elem, c *model.Cluster, pod *model.Pod) []nft.Elem {
	for _, ip := range c.OwnedIPs(pod) {
		if nft.FamilyOf(ip) == d.fam {
			out = append(out, nft.Elem{Addr: ip})
		}
	}
	return out
}

// nodeElems are the elements node puts in the set.
func (d *setDef) nodeElems(n *model.Node) []nft.Elem {
	if n == nil {
		return nil
	}
	for i := range d.nodes {
		if d.nodes[i].MatchesNode(n) {
			var out []nft.Elem
			for _, ip := range n.Addresses {
				if nft.FamilyOf(ip) == d.fam {
					out = append(out, nft.Elem{Addr: ip})
				}
			}
			return out
		}
	}
	return nil
}
