package nft

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The encodings below reproduce what nft 1.0.6 sends for the same rule text
// (compare `nft --debug=netlink add rule ...`), so that `nft list` prints
// Rule.Text() for a rule programmed over netlink, and a rule loaded from the
// text and one sent by us are the same bytes in the kernel.

// Header offsets of the addresses nftpolicy matches on.
const (
	ipv4SaddrOff, ipv4DaddrOff = 12, 16
	ipv6SaddrOff, ipv6DaddrOff = 8, 24
	thDportOff                 = 2 // th dport: bytes 2-3 of the TCP/UDP/SCTP header
)

// ctStateBits are the conntrack state flags nft knows by name.
var ctStateBits = map[string]uint32{
	"invalid":     expr.CtStateBitINVALID,
	"established": expr.CtStateBitESTABLISHED,
	"related":     expr.CtStateBitRELATED,
	"new":         expr.CtStateBitNEW,
	"untracked":   expr.CtStateBitUNTRACKED,
}

// reg32 names the 32-bit register slot i (0-based) the way nft does: a slot
// at the start of a 128-bit register is named by that register (NFT_REG_1
// ...), any other by its 32-bit name (NFT_REG32_01 = 9 ...). Concatenated
// fields occupy consecutive slots, one field per slot rounded up to 4 bytes.
func reg32(i int) uint32 {
	if i%4 == 0 {
		return unix.NFT_REG_1 + uint32(i/4)
	}
	return unix.NFT_REG32_00 + uint32(i)
}

// ruleExprs encodes a rule's matches, counter and verdict. A match that
// needs an anonymous set (icmpv6 type { ... }) adds it to the batch first.
func (b *batch) ruleExprs(r *Rule) ([]expr.Any, error) {
	var out []expr.Any
	var guarded Family // the family a meta nfproto check already holds
	for _, m := range r.Matches {
		e, err := b.matchExprs(m)
		if err != nil {
			return nil, err
		}
		// nft checks a rule's family once: a second address match of the
		// same family (ip saddr @a ip saddr != @b) has no guard of its own.
		if f := addrFamily(m); f != 0 {
			if f == guarded {
				e = e[len(nfproto(f)):]
			}
			guarded = f
		}
		out = append(out, e...)
	}
	if r.Counter {
		out = append(out, &expr.Counter{})
	}
	if l := r.Log; l != nil {
		// What nft sends for `limit rate R/second burst B packets log
		// prefix "P" group G`: group and prefix only (no snaplen, no
		// queue threshold, which keep the kernel's defaults).
		if l.Rate > 0 {
			out = append(out, &expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(l.Rate), Unit: expr.LimitTimeSecond, Burst: l.Burst})
		}
		out = append(out, &expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: l.Group, Data: []byte(l.Prefix)})
	}
	v, err := b.verdictExprs(r.Verdict)
	if err != nil {
		return nil, err
	}
	return append(out, v...), nil
}

func (b *batch) matchExprs(m Match) ([]expr.Any, error) {
	switch m := m.(type) {
	case MatchCtState:
		return ctStateExprs(m.States)
	case MatchAddrInSet:
		l := b.lookup(m.Set, false)
		l.Invert = m.Not // NFT_LOOKUP_F_INV, what nft sends for `!= @set`
		return append(addrLoad(m.Family, m.Src), l), nil
	case MatchProtoPortInSet:
		return append(protoPortLoad(), b.lookup(m.Set, false)), nil
	case MatchDaddrProtoPortInSet:
		slot := addrLen(m.Family) / 4 // slots taken by the address
		return append(addrLoad(m.Family, false),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32(slot)},
			thDport(reg32(slot+1)),
			b.lookup(m.Set, false),
		), nil
	case MatchICMPv6ND:
		return b.icmpv6NDExprs()
	case MatchIfname:
		return ifnameExprs(m)
	case MatchFibSaddrLocal:
		return []expr.Any{
			&expr.Fib{Register: reg32(0), FlagSADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg32(0), Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		}, nil
	case MatchFibDaddrLocal:
		return []expr.Any{
			&expr.Fib{Register: reg32(0), FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg32(0), Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		}, nil
	case MatchDNSAnswer:
		// What nft sends for `udp sport 53 ct direction reply`: the
		// protocol, the source port, the direction (IP_CT_DIR_REPLY).
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg32(0), Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: reg32(0), Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg32(0), Data: binaryutil.BigEndian.PutUint16(53)},
			&expr.Ct{Register: reg32(0), Key: expr.CtKeyDIRECTION},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg32(0), Data: []byte{1}},
		}, nil
	}
	return nil, fmt.Errorf("unsupported match %T", m)
}

// addrFamily is the family whose nfproto guard a match's expressions start
// with (addrLoad); 0 for matches that load no address.
func addrFamily(m Match) Family {
	switch m := m.(type) {
	case MatchAddrInSet:
		return m.Family
	case MatchDaddrProtoPortInSet:
		return m.Family
	}
	return 0
}

// ctStateExprs is `ct state a,b`: the state is a host-endian bitmask, tested
// with a mask and "not zero", as nft does for flag types.
func ctStateExprs(states []string) ([]expr.Any, error) {
	var mask uint32
	for _, s := range states {
		bit, ok := ctStateBits[s]
		if !ok {
			return nil, fmt.Errorf("unknown conntrack state %q", s)
		}
		mask |= bit
	}
	if mask == 0 {
		return nil, fmt.Errorf("ct state match without states")
	}
	return []expr.Any{
		&expr.Ct{Register: reg32(0), Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg32(0), DestRegister: reg32(0), Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg32(0), Data: make([]byte, 4)},
	}, nil
}

// nfproto is the dependency nft puts before any ip/ip6 header load in an inet
// table (docs/nftables-notes.md, trap 9): without it an IPv4 rule would read an
// IPv6 header.
func nfproto(f Family) []expr.Any {
	proto := byte(unix.NFPROTO_IPV4)
	if f == IPv6 {
		proto = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg32(0), Data: []byte{proto}},
	}
}

// addrLoad loads the source or destination address into the first register.
func addrLoad(f Family, src bool) []expr.Any {
	off := uint32(ipv4DaddrOff)
	switch {
	case f == IPv6 && src:
		off = ipv6SaddrOff
	case f == IPv6:
		off = ipv6DaddrOff
	case src:
		off = ipv4SaddrOff
	}
	load := &expr.Payload{DestRegister: reg32(0), Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(addrLen(f))}
	return append(nfproto(f), load)
}

// addrLen is the length of an address of family f in bytes.
func addrLen(f Family) int {
	if f == IPv6 {
		return keyLenIPv6
	}
	return keyLenIPv4
}

// protoPortLoad loads meta l4proto . th dport for a pipapo lookup.
func protoPortLoad() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32(0)},
		// nft converts the one-byte protocol for the pipapo interval
		// set; with size 2 and length 1 the kernel swaps nothing, but
		// we send it so the rule is the one nft makes.
		&expr.Byteorder{SourceRegister: reg32(0), DestRegister: reg32(0), Op: expr.ByteorderHton, Len: 1, Size: 2},
		thDport(reg32(1)),
	}
}

func thDport(reg uint32) *expr.Payload {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: thDportOff, Len: 2}
}

// icmpv6NDExprs is `icmpv6 type { nd-... }`: nft checks the family and the
// protocol, loads the type byte and looks it up in an anonymous constant
// set that lives and dies with the rule.
func (b *batch) icmpv6NDExprs() ([]expr.Any, error) {
	var types []byte
	for _, t := range ndTypes() {
		types = append(types, t.num)
	}
	set, err := b.addAnonSet(nftables.TypeICMP6Type, types)
	if err != nil {
		return nil, err
	}
	return append(nfproto(IPv6),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg32(0), Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: reg32(0), Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Lookup{SourceRegister: reg32(0), SetName: set.Name, SetID: set.ID},
	), nil
}

func (b *batch) verdictExprs(v Verdict) ([]expr.Any, error) {
	kind := map[VerdictKind]expr.VerdictKind{
		Accept: expr.VerdictAccept, Drop: expr.VerdictDrop, Return: expr.VerdictReturn,
		Jump: expr.VerdictJump, Goto: expr.VerdictGoto,
	}
	switch v.Kind {
	case VerdictNone:
		return nil, nil
	case Accept, Drop, Return:
		return []expr.Any{&expr.Verdict{Kind: kind[v.Kind]}}, nil
	case Jump, Goto:
		if v.Chain == "" {
			return nil, fmt.Errorf("%s without a chain", v.text())
		}
		return []expr.Any{&expr.Verdict{Kind: kind[v.Kind], Chain: v.Chain}}, nil
	case Vmap:
		// The map's verdict goes straight to the verdict register (0).
		if v.ProtoPort {
			return append(protoPortLoad(), b.lookup(v.Map, true)), nil
		}
		return append(addrLoad(v.Family, v.Src), b.lookup(v.Map, true)), nil
	}
	return nil, fmt.Errorf("unknown verdict kind %d", int(v.Kind))
}

// lookup refers to a named set by name, and by its batch ID when the set is
// created in this batch (the kernel resolves the name first either way).
func (b *batch) lookup(set string, verdictMap bool) *expr.Lookup {
	l := &expr.Lookup{SourceRegister: reg32(0), SetName: set}
	if s, ok := b.sets[set]; ok {
		l.SetID = s.ID
	}
	if verdictMap {
		l.DestRegister, l.IsDestRegSet = unix.NFT_REG_VERDICT, true
	}
	return l
}

// ruleUserData stores the rule's ID as its comment: the only part of a rule
// Dump reads back.
func ruleUserData(r *Rule) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, r.ID())
}
