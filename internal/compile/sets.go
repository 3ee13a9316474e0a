package compile

import (
	"fmt"
	"net/netip"
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
func (b *builder) cidrSet(fam nft.Family, blocks []model.Peer) string {
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
	set := b.rs.AddSet(nft.NewSet(name, t, identity))
	for _, s := range merge(spans) {
		set.Add(nft.Elem{Addr: s.lo, AddrEnd: s.hi})
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
func (b *builder) portSet(ports []model.Port) string {
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
	elems = nft.SortElems(nft.SetProtoPortInterval, elems)
	desc := make([]string, len(elems))
	for i, e := range elems {
		desc[i] = e.Text(nft.SetProtoPortInterval)
	}
	identity := strings.Join(desc, ", ")
	name := nft.Name("ports", identity)
	set := b.rs.AddSet(nft.NewSet(name, nft.SetProtoPortInterval, identity))
	set.Add(elems...)
	return name
}

// namedPortSet holds address . protocol . number for every pod that declares
// the port name for that protocol (for any protocol when port.Proto is 0, as
// the tier policies' named ports): a named port matches where the
// destination pod declares it, so one set per name serves every rule.
func (b *builder) namedPortSet(fam nft.Family, port model.Port) string {
	proto := "any"
	if port.Proto != 0 {
		proto = inet.ProtoName(port.Proto)
	}
	identity := proto + "/" + port.Name
	t := nft.SetIPv4ProtoPort
	if fam == nft.IPv6 {
		t = nft.SetIPv6ProtoPort
	}
	name := nft.Name(fmt.Sprintf("named-v%d", fam), identity)
	if _, ok := b.rs.Sets[name]; ok {
		return name
	}
	set := b.rs.AddSet(nft.NewSet(name, t, "named port "+identity+" on the pods that declare it"))
	for _, pod := range b.pods {
		if !pod.Active() {
			continue
		}
		for _, np := range pod.Ports {
			if np.Name != port.Name || (port.Proto != 0 && np.Proto != port.Proto) {
				continue
			}
			for _, ip := range pod.IPs {
				if nft.FamilyOf(ip) == fam {
					set.Add(nft.Elem{Addr: ip, Proto: np.Proto, Port: np.Port})
				}
			}
		}
	}
	return name
}
