package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Element lists are encoded here, byte for byte as google/nftables'
// SetAddElements and SetDeleteElements encode them
// (TestElementMessagesAreGooglesBytes), but written straight into the
// message: google/nftables builds and marshals a tree of attributes per
// element, eight allocations each. Measured on this machine, the 5,400
// element moves of a new peer selector at L (BatchBytes of that
// transaction): 2.2 ms, 3.4 MB and 43,000 allocations that way; 0.37 ms,
// 0.29 MB and 15 allocations here.

// elemWriter writes one op's elements into NEWSETELEM or DELSETELEM
// messages, starting a new message before the element list would pass
// maxElemPayload.
type elemWriter struct {
	typ        netlink.HeaderType
	set, table string
	id         uint32 // the set's batch ID when the batch adds it, else 0
	keyOnly    bool   // deletes name only the key

	buf  []byte // the message being written
	list int    // offset of its element list's attribute header
	n    int    // kernel elements in it
	out  []netlink.Message
}

func newElemWriter(op Op, table string, id uint32) *elemWriter {
	del := op.Kind == OpDeleteElements
	typ := unix.NFT_MSG_NEWSETELEM
	if del {
		typ = unix.NFT_MSG_DELSETELEM
	}
	return &elemWriter{typ: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ), set: op.Name, table: table, id: id, keyOnly: del}
}

// gotoCode is NFT_GOTO (-4) as the kernel reads it, a big-endian u32.
var gotoCode = func() uint32 { v := expr.VerdictGoto; return uint32(v) }()

// wireElem is one kernel element: a key, a range end (pipapo's KeyEnd, or
// the rbtree's separate interval-end element) and a goto.
type wireElem struct {
	key, keyEnd []byte
	intervalEnd bool
	chain       string
}

// size is what the element takes in the list (see appendTo).
func (e wireElem) size() int {
	n := 4 + 8 + align4(len(e.key)) // element nest, key nest, data value
	if e.intervalEnd {
		n += 8
	}
	if len(e.keyEnd) > 0 {
		n += 8 + align4(len(e.keyEnd))
	}
	if e.chain != "" {
		n += 4 + 4 + 8 + 4 + align4(len(e.chain)+1) // data nest, verdict nest, code, chain
	}
	return n
}

// appendTo writes the element as list item idx (1-based).
func (e wireElem) appendTo(b []byte, idx int) []byte {
	var item, key, end, data, verdict int
	b, item = beginNest(b, uint16(idx))
	if e.intervalEnd {
		// google/nftables marks the flags attribute nested; the kernel
		// ignores the bit.
		b = appendU32Attr(b, unix.NFTA_SET_ELEM_FLAGS|unix.NLA_F_NESTED, unix.NFT_SET_ELEM_INTERVAL_END)
	}
	b, key = beginNest(b, unix.NFTA_SET_ELEM_KEY)
	b = appendAttr(b, unix.NFTA_DATA_VALUE, e.key)
	endNest(b, key)
	if len(e.keyEnd) > 0 {
		b, end = beginNest(b, nftables.NFTA_SET_ELEM_KEY_END)
		b = appendAttr(b, unix.NFTA_DATA_VALUE, e.keyEnd)
		endNest(b, end)
	}
	if e.chain != "" {
		b, data = beginNest(b, unix.NFTA_SET_ELEM_DATA)
		b, verdict = beginNest(b, unix.NFTA_DATA_VERDICT)
		b = appendU32Attr(b, unix.NFTA_VERDICT_CODE, gotoCode)
		b = appendStrAttr(b, unix.NFTA_VERDICT_CHAIN, e.chain)
		endNest(b, verdict)
		endNest(b, data)
	}
	endNest(b, item)
	return b
}

// add writes the kernel elements of e, keeping a range's start and end in
// one message.
func (w *elemWriter) add(t SetType, e Elem) error {
	if err := checkElem(t, e, w.keyOnly); err != nil {
		return fmt.Errorf("set %s: %w", w.set, err)
	}
	var k1, k2 [keyLenIPv6ProtoPort]byte
	var els [2]wireElem
	n := 1
	switch t {
	case SetIPv4, SetIPv6, MapIPv4Verdict, MapIPv6Verdict:
		els[0].key = addrBytes(k1[:0], e.Addr)
	case SetIPv4Interval, SetIPv6Interval, MapIPv4IntervalVerdict, MapIPv6IntervalVerdict:
		// The rbtree stores [first, last] as a start element and an
		// interval-end element at the first address after the range (none
		// when the range reaches the top of the address space); a map's
		// verdict rides on the start, as nft sends it.
		els[0].key = addrBytes(k1[:0], e.Addr)
		if next := e.AddrEnd.Next(); next.IsValid() {
			els[1] = wireElem{key: addrBytes(k2[:0], next), intervalEnd: true}
			n = 2
		}
	case SetProtoPortInterval, MapProtoPortVerdict:
		// pipapo takes a range as one element with an inclusive key end;
		// nft sends the end even for a single port.
		els[0].key = appendProtoPort(k1[:0], e.Proto, e.Port)
		els[0].keyEnd = appendProtoPort(k2[:0], e.Proto, e.PortEnd)
	case SetIPv4ProtoPort, SetIPv6ProtoPort:
		els[0].key = appendProtoPort(addrBytes(k1[:0], e.Addr), e.Proto, e.Port)
	default:
		return fmt.Errorf("set %s: invalid set type %d", w.set, int(t))
	}
	if t.IsMap() && !w.keyOnly {
		els[0].chain = e.Chain
	}
	size := 0
	for _, el := range els[:n] {
		size += el.size()
	}
	if w.buf != nil && w.n > 0 && len(w.buf)-w.list-4+size > maxElemPayload {
		w.flush()
	}
	if w.buf == nil {
		w.start()
	}
	for _, el := range els[:n] {
		w.n++
		w.buf = el.appendTo(w.buf, w.n)
	}
	return nil
}

// start opens a message: the address family's header, the set, its batch
// ID, the table, and the element list's nest.
func (w *elemWriter) start() {
	b := make([]byte, 0, maxElemPayload+256)
	b = append(b, unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0)
	b = appendStrAttr(b, unix.NFTA_SET_ELEM_LIST_SET, w.set)
	b = appendU32Attr(b, unix.NFTA_SET_ELEM_LIST_SET_ID, w.id)
	b = appendStrAttr(b, unix.NFTA_SET_ELEM_LIST_TABLE, w.table)
	w.buf, w.list = beginNest(b, unix.NFTA_SET_ELEM_LIST_ELEMENTS)
	w.n = 0
}

// flush closes the message being written, if it has elements.
func (w *elemWriter) flush() {
	if w.buf == nil || w.n == 0 {
		return
	}
	endNest(w.buf, w.list)
	w.out = append(w.out, netlink.Message{
		Header: netlink.Header{Type: w.typ, Flags: netlink.Request | netlink.Acknowledge | netlink.Create},
		Data:   w.buf,
	})
	w.buf = nil
}

func addrBytes(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}

// appendProtoPort appends inet_proto . inet_service, each field padded to 4
// bytes (one 32-bit register per field).
func appendProtoPort(b []byte, proto uint8, port uint16) []byte {
	return append(b, proto, 0, 0, 0, byte(port>>8), byte(port), 0, 0)
}

// Netlink attributes: a 16-bit length (header and payload, without the
// padding) and a 16-bit type, then the payload padded to 4 bytes.

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	return append(b, make([]byte, align4(len(data))-len(data))...)
}

func appendU32Attr(b []byte, typ uint16, v uint32) []byte {
	b = binary.NativeEndian.AppendUint16(b, 8)
	b = binary.NativeEndian.AppendUint16(b, typ)
	return binary.BigEndian.AppendUint32(b, v)
}

func appendStrAttr(b []byte, typ uint16, s string) []byte {
	n := len(s) + 1
	b = binary.NativeEndian.AppendUint16(b, uint16(4+n))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, s...)
	return append(b, make([]byte, align4(n)-len(s))...)
}

// beginNest opens a nested attribute; endNest writes its length once its
// contents are in.
func beginNest(b []byte, typ uint16) ([]byte, int) {
	at := len(b)
	b = binary.NativeEndian.AppendUint16(b, 0)
	return binary.NativeEndian.AppendUint16(b, typ|unix.NLA_F_NESTED), at
}

func endNest(b []byte, at int) {
	binary.NativeEndian.PutUint16(b[at:], uint16(len(b)-at))
}
