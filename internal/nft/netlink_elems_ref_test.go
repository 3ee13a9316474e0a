package nft

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// The elements of an Elem as nft sends them, in google/nftables' terms:
// the reference the element writer (netlink_wire.go) is checked against.

// appendKernelElems appends to dst the kernel's elements of one Elem for a
// set of type t. keyOnly leaves out map data, for deletes (the kernel
// deletes by key).
func appendKernelElems(dst []nftables.SetElement, t SetType, e Elem, keyOnly bool) ([]nftables.SetElement, error) {
	if err := checkElem(t, e, keyOnly); err != nil {
		return dst, err
	}
	switch t {
	case SetIPv4, SetIPv6:
		return append(dst, nftables.SetElement{Key: e.Addr.AsSlice()}), nil
	case SetIPv4Interval, SetIPv6Interval:
		return append(dst, intervalElems(e.Addr, e.AddrEnd)...), nil
	case SetProtoPortInterval:
		// pipapo takes a range as one element with an inclusive KeyEnd; nft
		// sends KeyEnd even for a single port.
		return append(dst, nftables.SetElement{
			Key:    protoPortKey(e.Proto, e.Port),
			KeyEnd: protoPortKey(e.Proto, e.PortEnd),
		}), nil
	case SetIPv4ProtoPort, SetIPv6ProtoPort:
		key := append(e.Addr.AsSlice(), protoPortKey(e.Proto, e.Port)...)
		return append(dst, nftables.SetElement{Key: key}), nil
	case MapIPv4Verdict, MapIPv6Verdict:
		el := nftables.SetElement{Key: e.Addr.AsSlice()}
		if !keyOnly {
			el.VerdictData = gotoData(e.Chain)
		}
		return append(dst, el), nil
	case MapIPv4IntervalVerdict, MapIPv6IntervalVerdict:
		// The verdict rides on the range's start; its end is a plain
		// IntervalEnd element, as nft sends it.
		els := intervalElems(e.Addr, e.AddrEnd)
		if !keyOnly {
			els[0].VerdictData = gotoData(e.Chain)
		}
		return append(dst, els...), nil
	case MapProtoPortVerdict:
		el := nftables.SetElement{Key: protoPortKey(e.Proto, e.Port), KeyEnd: protoPortKey(e.Proto, e.PortEnd)}
		if !keyOnly {
			el.VerdictData = gotoData(e.Chain)
		}
		return append(dst, el), nil
	}
	return dst, fmt.Errorf("invalid set type %d", int(t))
}

func gotoData(chain string) *expr.Verdict {
	return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}
}

// intervalElems encodes the inclusive range [first, last] the way the rbtree
// backend stores it: a start element at first and an IntervalEnd element at
// the first address after the range. A range that reaches the top of the
// address space has no end element (there is no address after it).
func intervalElems(first, last netip.Addr) []nftables.SetElement {
	out := []nftables.SetElement{{Key: first.AsSlice()}}
	if next := last.Next(); next.IsValid() {
		out = append(out, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
	}
	return out
}

// protoPortKey is inet_proto . inet_service, each field padded to 4 bytes.
func protoPortKey(proto uint8, port uint16) []byte {
	return []byte{proto, 0, 0, 0, byte(port >> 8), byte(port), 0, 0}
}

// encodedElemSize is the number of bytes google/nftables' makeElemList
// spends on el inside the element-list attribute: the element's own nest,
// the flags attribute of an interval end, the nested key (and key end), and
// a verdict's nested code and chain name.
func encodedElemSize(el nftables.SetElement) int {
	n := 4 + 8 + align4(len(el.Key)) // element nest, key nest, data value
	if el.IntervalEnd {
		n += 8
	}
	if len(el.KeyEnd) > 0 {
		n += 8 + align4(len(el.KeyEnd))
	}
	if v := el.VerdictData; v != nil {
		n += 4 + 4 + 8 // data nest, verdict nest, code
		if v.Chain != "" {
			n += 4 + align4(len(v.Chain)+1)
		}
	}
	return n
}
