package conntrack

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
)

// dumpAddrs lists the entries whose original source or reply source (the
// destination after DNAT: what the policy judged) is one of addrs: two
// dumps the kernel filters per address. The kernel still walks its whole
// table for each, but sends and we decode only the matches.
func (n *Netlink) dumpAddrs(ctx context.Context, addrs []netip.Addr) ([]Entry, error) {
	c, err := netfilter.Dial(n.config())
	if err != nil {
		return nil, fmt.Errorf("conntrack: dial: %w", err)
	}
	defer c.Close()
	seen := map[flowKey]bool{}
	var out []Entry
	for _, a := range addrs {
		for _, dir := range []uint16{ctaTupleOrig, ctaTupleReply} {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			req, err := filterRequest(a, dir)
			if err != nil {
				return nil, err
			}
			msgs, err := c.Query(req)
			if err != nil {
				return nil, fmt.Errorf("conntrack: dump of %s: %w", a, err)
			}
			entries, err := decodeEntries(msgs)
			if err != nil {
				return nil, fmt.Errorf("conntrack: dump of %s: %w", a, err)
			}
			for _, e := range entries {
				if k := e.key.(flowKey); !seen[k] {
					seen[k] = true
					out = append(out, e)
				}
			}
		}
	}
	return out, nil
}

// filterRequest asks for the entries whose dir tuple's source is a.
func filterRequest(a netip.Addr, dir uint16) (netlink.Message, error) {
	family, src := netfilter.ProtoIPv4, uint16(ctaIPv4Src)
	if a.Is6() {
		family, src = netfilter.ProtoIPv6, ctaIPv6Src
	}
	var orig, reply [4]byte
	flags := &orig
	if dir == ctaTupleReply {
		flags = &reply
	}
	binary.NativeEndian.PutUint32(flags[:], filterFlagIPSrc)
	return netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: ctGet,
		Family:      family,
		Flags:       netlink.Request | netlink.Dump,
	}, []netfilter.Attribute{
		{Type: dir, Nested: true, Children: []netfilter.Attribute{
			{Type: ctaTupleIP, Nested: true, Children: []netfilter.Attribute{{Type: src, Data: a.AsSlice()}}},
		}},
		{Type: ctaFilter, Nested: true, Children: []netfilter.Attribute{
			{Type: ctaFilterOrig, Data: orig[:]},
			{Type: ctaFilterReply, Data: reply[:]},
		}},
	})
}
