package nft

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
)

// maxElemPayload bounds the encoded elements of one NEWSETELEM/DELSETELEM
// message. google/nftables puts all elements of a call into one netlink
// attribute whose length is 16 bits: past 64 KiB it wraps and the kernel
// silently receives only part of the list (docs/nftables-notes.md, trap 1). 48 KiB
// leaves room for the attribute headers around the list.
const maxElemPayload = 48 << 10

// Key lengths in bytes, as the kernel stores them. Concatenated fields are
// padded to 4 bytes each (one 32-bit register per field).
const (
	keyLenIPv4          = 4
	keyLenIPv6          = 16
	keyLenProtoPort     = 4 + 4
	keyLenIPv4ProtoPort = 4 + 4 + 4
	keyLenIPv6ProtoPort = 16 + 4 + 4
)

// setSpec is how a SetType is declared to the kernel, the same way nft
// declares it.
func setSpec(name string, t SetType, comment string) (*nftables.Set, error) {
	s := &nftables.Set{
		Table:   nftTable(TableName), // addSet puts it in its batch's table
		Name:    name,
		Comment: truncate(comment, MaxCommentLen),
	}
	switch t {
	case SetIPv4, SetIPv4Interval:
		s.KeyType, s.KeyByteOrder = nftables.TypeIPAddr, binaryutil.BigEndian
	case SetIPv6, SetIPv6Interval:
		s.KeyType, s.KeyByteOrder = nftables.TypeIP6Addr, binaryutil.BigEndian
	case SetProtoPortInterval:
		// Concatenation + interval is the pipapo backend; the kernel wants
		// NFT_SET_CONCAT and the field lengths (docs/nftables-notes.md, trap 9).
		s.KeyType = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
		s.Concatenation = true
	case SetIPv4ProtoPort:
		// nft sets no CONCAT flag on a hash concatenation; the key type
		// magic alone says what the fields are.
		s.KeyType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	case SetIPv6ProtoPort:
		s.KeyType = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
	case MapIPv4Verdict:
		s.KeyType, s.KeyByteOrder = nftables.TypeIPAddr, binaryutil.BigEndian
		s.IsMap, s.DataType = true, nftables.TypeVerdict
	case MapIPv6Verdict, MapIPv6IntervalVerdict:
		s.KeyType, s.KeyByteOrder = nftables.TypeIP6Addr, binaryutil.BigEndian
		s.IsMap, s.DataType = true, nftables.TypeVerdict
	case MapIPv4IntervalVerdict:
		s.KeyType, s.KeyByteOrder = nftables.TypeIPAddr, binaryutil.BigEndian
		s.IsMap, s.DataType = true, nftables.TypeVerdict
	case MapProtoPortVerdict:
		s.KeyType = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
		s.Concatenation = true
		s.IsMap, s.DataType = true, nftables.TypeVerdict
	default:
		return nil, fmt.Errorf("set %s: invalid set type %d", name, int(t))
	}
	s.Interval = t.IsInterval()
	return s, nil
}

// checkElem rejects an element that does not fit the set's type before it
// reaches the kernel, whose batch errors do not say which element was wrong.
func checkElem(t SetType, e Elem, keyOnly bool) error {
	bad := func(why string) error { return fmt.Errorf("element %s: %s", e.Text(t), why) }
	if fam := t.Family(); fam != 0 && !addrOfFamily(e.Addr, fam) {
		return bad("address is not " + fam.String())
	}
	switch {
	case t.IsInterval() && t.Family() != 0:
		if !addrOfFamily(e.AddrEnd, t.Family()) || e.AddrEnd.Less(e.Addr) {
			return bad("range end is before its start or of another family")
		}
	case t.IsProtoPort() && e.PortEnd < e.Port:
		return bad("port range end is before its start")
	case t.IsMap() && !keyOnly && e.Chain == "":
		return bad("map element without a chain")
	}
	return nil
}

func addrOfFamily(a netip.Addr, f Family) bool {
	if a.Zone() != "" { // the kernel stores no zone: it would not read back
		return false
	}
	if f == IPv4 {
		return a.Is4()
	}
	return a.Is6()
}

// keyLen is the kernel key length of a set type.
func keyLen(t SetType) int {
	switch t {
	case SetIPv4, SetIPv4Interval, MapIPv4Verdict, MapIPv4IntervalVerdict:
		return keyLenIPv4
	case SetIPv6, SetIPv6Interval, MapIPv6Verdict, MapIPv6IntervalVerdict:
		return keyLenIPv6
	case SetProtoPortInterval, MapProtoPortVerdict:
		return keyLenProtoPort
	case SetIPv4ProtoPort:
		return keyLenIPv4ProtoPort
	case SetIPv6ProtoPort:
		return keyLenIPv6ProtoPort
	}
	return 0
}

func align4(n int) int { return (n + 3) &^ 3 }
