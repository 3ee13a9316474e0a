package nft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// These tests check the encoding without a kernel.

// captureBatch encodes tx and returns the batch Apply would send, its begin
// and end included, with the lengths the socket would fill in.
func captureBatch(t *testing.T, tx *Transaction) []netlink.Message {
	t.Helper()
	b, err := encode(TableName, tx)
	if err != nil {
		t.Fatal(err)
	}
	msgs := append([]netlink.Message{batchMark(unix.NFNL_MSG_BATCH_BEGIN)}, b.msgs...)
	msgs = append(msgs, batchMark(unix.NFNL_MSG_BATCH_END))
	for i := range msgs {
		msgs[i].Header.Length = uint32(nlHeaderLen + align4(len(msgs[i].Data)))
	}
	return msgs
}

// elemListMsg is one NEWSETELEM/DELSETELEM message's set and element list.
type elemListMsg struct {
	set      string
	listSize int // bytes of the NFTA_SET_ELEM_LIST_ELEMENTS payload
	elems    []nftables.SetElement
}

func elemMessages(t *testing.T, msgs []netlink.Message) []elemListMsg {
	t.Helper()
	var out []elemListMsg
	for _, m := range msgs {
		typ := uint16(m.Header.Type) & 0xff
		if typ != unix.NFT_MSG_NEWSETELEM && typ != unix.NFT_MSG_DELSETELEM {
			continue
		}
		attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		var em elemListMsg
		for _, a := range attrs {
			switch a.Type & ^uint16(unix.NLA_F_NESTED) {
			case unix.NFTA_SET_ELEM_LIST_SET:
				em.set = string(a.Data[:len(a.Data)-1])
			case unix.NFTA_SET_ELEM_LIST_ELEMENTS:
				em.listSize = len(a.Data)
				kes, err := decodeElems(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSETELEM)},
					Data: append(make([]byte, 4), mustMarshal(t, a)...)}, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, ke := range kes {
					el := nftables.SetElement{Key: ke.key, KeyEnd: ke.keyEnd, IntervalEnd: ke.end}
					if ke.chain != "" {
						el.VerdictData = &expr.Verdict{Kind: expr.VerdictKind(ke.verdict), Chain: ke.chain}
					}
					em.elems = append(em.elems, el)
				}
			}
		}
		out = append(out, em)
	}
	return out
}

func mustMarshal(t *testing.T, a netlink.Attribute) []byte {
	b, err := netlink.MarshalAttributes([]netlink.Attribute{a})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bigTx adds many elements of every kind in one transaction.
func bigTx(nHash, nInterval, nPorts, nMap int) *Transaction {
	tx := &Transaction{}
	tx.Add(Op{Kind: OpAddTable})
	chain := "pod-with-a-rather-long-chain-name-to-make-map-elements-bigger"
	tx.Add(opAddChain(chain, nil))
	var hash, ranges, pp, vmap []Elem
	base := netip.MustParseAddr("10.0.0.0").As4()
	for i := range nHash {
		hash = append(hash, Elem{Addr: netip.AddrFrom4([4]byte{base[0], byte(i >> 16), byte(i >> 8), byte(i)})})
	}
	for i := range nInterval {
		a := netip.AddrFrom16([16]byte{0: 0xfd, 8: byte(i >> 8), 9: byte(i)})
		b := netip.AddrFrom16([16]byte{0: 0xfd, 8: byte(i >> 8), 9: byte(i), 10: 0xff})
		ranges = append(ranges, Elem{Addr: a, AddrEnd: b})
	}
	for i := range nPorts {
		p := uint16(2 * i)
		pp = append(pp, Elem{Proto: ProtoTCP, Port: p, PortEnd: p + 1})
	}
	for i := range nMap {
		vmap = append(vmap, Elem{Addr: netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), Chain: chain})
	}
	for _, s := range []struct {
		name  string
		t     SetType
		elems []Elem
	}{{"hash", SetIPv4, hash}, {"ranges", SetIPv6Interval, ranges}, {"ports", SetProtoPortInterval, pp}, {"vmap", MapIPv4Verdict, vmap}} {
		tx.Add(opAddSet(s.name, s.t))
		tx.Add(opAddElems(s.name, s.t, s.elems...))
	}
	return tx
}

func TestElementChunksStayUnderAttributeLimit(t *testing.T) {
	tx := bigTx(10000, 5000, 3000, 3000)
	got := map[string]int{}
	chunks := map[string]int{}
	for _, m := range elemMessages(t, captureBatch(t, tx)) {
		if len(m.elems) > 0 && m.elems[0].IntervalEnd {
			t.Errorf("set %s: a chunk starts with a range's end", m.set)
		}
		if m.listSize+4 > 0xffff || m.listSize > maxElemPayload {
			t.Errorf("set %s: element list of %d bytes", m.set, m.listSize)
		}
		size := 0
		for _, el := range m.elems {
			size += encodedElemSize(el)
		}
		if size != m.listSize {
			t.Errorf("set %s: encodedElemSize sums to %d, encoding has %d bytes", m.set, size, m.listSize)
		}
		got[m.set] += len(m.elems)
		chunks[m.set]++
	}
	// An IPv6 range is a start and an end element.
	want := map[string]int{"hash": 10000, "ranges": 10000, "ports": 3000, "vmap": 3000}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kernel elements per set (-want +got):\n%s", diff)
	}
	// Every element goes once, in order, whole.
	checkElementMessages(t, tx)
	for set, n := range chunks {
		if n < 2 {
			t.Errorf("set %s: %d chunk; the test should need several", set, n)
		}
	}
}

func TestIntervalElems(t *testing.T) {
	for _, tc := range []struct {
		first, last string
		want        []nftables.SetElement
	}{
		{"10.0.0.0", "10.0.0.255", []nftables.SetElement{
			{Key: []byte{10, 0, 0, 0}}, {Key: []byte{10, 0, 1, 0}, IntervalEnd: true}}},
		{"10.0.0.7", "10.0.0.7", []nftables.SetElement{
			{Key: []byte{10, 0, 0, 7}}, {Key: []byte{10, 0, 0, 8}, IntervalEnd: true}}},
		// Reaching the top of the address space: no end element.
		{"0.0.0.0", "255.255.255.255", []nftables.SetElement{{Key: []byte{0, 0, 0, 0}}}},
		{"255.255.255.255", "255.255.255.255", []nftables.SetElement{{Key: []byte{255, 255, 255, 255}}}},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", []nftables.SetElement{{Key: make([]byte, 16)}}},
	} {
		t.Run(tc.first+"-"+tc.last, func(t *testing.T) {
			got := intervalElems(mustAddr(tc.first), mustAddr(tc.last))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestIntervalsFromKernel(t *testing.T) {
	start := func(a string) kernelElem { return kernelElem{key: mustAddr(a).AsSlice()} }
	end := func(a string) kernelElem { return kernelElem{key: mustAddr(a).AsSlice(), end: true} }
	for _, tc := range []struct {
		name string
		t    SetType
		kes  []kernelElem
		want []Elem
	}{
		{"as the kernel lists them: descending, with nft's end at 0.0.0.0", SetIPv4Interval,
			[]kernelElem{end("10.0.2.0"), start("10.0.1.0"), end("10.0.1.0"), start("10.0.0.0"), end("0.0.0.0")},
			[]Elem{elemRange("10.0.0.0", "10.0.0.255"), elemRange("10.0.1.0", "10.0.1.255")}},
		{"top of the address space", SetIPv4Interval,
			[]kernelElem{start("255.255.255.0")},
			[]Elem{elemRange("255.255.255.0", "255.255.255.255")}},
		{"everything", SetIPv6Interval,
			[]kernelElem{start("::")},
			[]Elem{elemRange("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}},
		{"adjacent at the top", SetIPv4Interval,
			[]kernelElem{start("255.255.255.255"), end("255.255.255.255"), start("255.255.255.0")},
			[]Elem{elemRange("255.255.255.0", "255.255.255.254"), elemRange("255.255.255.255", "255.255.255.255")}},
		{"a start without end runs to the next element, as the kernel matches it", SetIPv4Interval,
			[]kernelElem{start("10.0.0.0"), start("10.0.0.10"), end("10.0.0.20")},
			[]Elem{elemRange("10.0.0.0", "10.0.0.9"), elemRange("10.0.0.10", "10.0.0.19")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := elemsFromKernel(tc.t, tc.kes)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, rulesetOpts...); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestSetTypesReadBackDistinctly(t *testing.T) {
	if got, want := len(setTypesBySig), int(lastSetType)+1; got != want {
		t.Errorf("%d kernel set signatures for %d set types", got, want)
	}
}

func TestBadElementsAreNotSent(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    SetType
		e    Elem
	}{
		{"ipv6 in ipv4 set", SetIPv4, elemIP("fd00::1")},
		{"ipv4 in ipv6 set", SetIPv6, elemIP("10.0.0.1")},
		{"zone", SetIPv6, elemIP("fe80::1%eth0")},
		{"range end before start", SetIPv4Interval, elemRange("10.0.0.9", "10.0.0.1")},
		{"range without end", SetIPv4Interval, elemIP("10.0.0.1")},
		{"port range end before start", SetProtoPortInterval, elemPorts(ProtoTCP, 90, 80)},
		{"map element without chain", MapIPv4Verdict, elemIP("10.0.0.1")},
		{"no address", SetIPv4ProtoPort, Elem{Proto: ProtoTCP, Port: 80}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newElemWriter(Op{Kind: OpAddElements, Name: "s"}, TableName, 0)
			if err := w.add(tc.t, tc.e); err == nil {
				t.Errorf("element %+v accepted for %s", tc.e, tc.t.Decl())
			}
		})
	}
}

func TestReg32NamesRegistersAsNft(t *testing.T) {
	// From `nft --debug=netlink`: ip6 daddr . meta l4proto . th dport loads
	// into reg 1, reg 2, reg 13; ip daddr . ... into reg 1, reg 9, reg 10.
	got := fmt.Sprint(reg32(0), reg32(1), reg32(2), reg32(4), reg32(5))
	if want := "1 9 10 2 13"; got != want {
		t.Errorf("reg32(0,1,2,4,5) = %s, want %s", got, want)
	}
}

func TestEncodeRejectsBadRules(t *testing.T) {
	for _, r := range []*Rule{
		ruleOf("x", Verdict{Kind: Accept}, MatchCtState{States: []string{"bogus"}}),
		ruleOf("x", Verdict{Kind: Accept}, MatchCtState{}),
		ruleOf("x", Verdict{Kind: Jump}),
		ruleOf("x", Verdict{Kind: VerdictKind(99)}),
	} {
		b := &batch{sets: map[string]*nftables.Set{}}
		if _, err := b.ruleExprs(r); err == nil {
			t.Errorf("rule %q encoded", r.Body())
		}
	}
	b := &batch{sets: map[string]*nftables.Set{}}
	if err := b.add(Op{Kind: OpAddRule, Name: "c"}); err == nil {
		t.Errorf("add-rule op without a rule encoded")
	}
}

func TestApplyErrorMarksUnknownOutcomes(t *testing.T) {
	tx := &Transaction{Ops: []Op{{Kind: OpAddTable}}}
	for _, tc := range []struct {
		name    string
		err     error
		unknown bool
	}{
		// The kernel could not queue its answers: it may have committed.
		{"ENOBUFS", fmt.Errorf("conn.Receive: %w", unix.ENOBUFS), true},
		// We stopped waiting for the answers.
		{"timeout", fmt.Errorf("receive: %w", os.ErrDeadlineExceeded), true},
		// The kernel rejected the batch: nothing was committed.
		{"EEXIST", fmt.Errorf("conn.Receive: %w", unix.EEXIST), false},
		{"EMSGSIZE on send", fmt.Errorf("SendMessages: %w", unix.EMSGSIZE), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := applyError(t.Context(), tx, 1, tc.err)
			if got := errors.Is(err, ErrOutcomeUnknown); got != tc.unknown {
				t.Errorf("%v: outcome unknown = %v, want %v", err, got, tc.unknown)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("%v does not wrap %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), "transaction of 1 ops") {
				t.Errorf("%v does not give the transaction's size", err)
			}
		})
	}
}

// TestOpBytesAddUpToTheBatch: each op's bytes as OpBytes counts them, op by
// op, add up to the batch that encodes them together (without its begin and
// end), for a transaction of every kind of op, a set added in it and
// elements of it included.
func TestOpBytesAddUpToTheBatch(t *testing.T) {
	tx := &Transaction{}
	tx.Add(Op{Kind: OpAddTable})
	tx.Add(Op{Kind: OpAddSet, Name: "m", SetType: MapIPv4Verdict, Comment: "a map"})
	tx.Add(Op{Kind: OpAddChain, Name: "c"})
	tx.Add(Op{Kind: OpAddChain, Name: "base", Hook: &Hook{Hook: "forward", Priority: 10}})
	var elems []Elem
	for i := range 300 {
		elems = append(elems, Elem{Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Chain: "c"})
	}
	tx.Add(Op{Kind: OpAddElements, Name: "m", SetType: MapIPv4Verdict, Elems: elems})
	tx.Add(Op{Kind: OpAddRule, Name: "base", Rule: &Rule{Verdict: Verdict{Kind: Vmap, Map: "m", Family: IPv4}, Comment: "dispatch"}})
	tx.Add(Op{Kind: OpDeleteElements, Name: "m", SetType: MapIPv4Verdict, Elems: elems[:1]})
	tx.Add(Op{Kind: OpFlushChain, Name: "c"})

	sizes, err := OpBytes(tx)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for i, n := range sizes {
		if n <= 0 {
			t.Errorf("op %d (%v): %d bytes", i, tx.Ops[i].Kind, n)
		}
		sum += n
	}
	msgs := captureBatch(t, tx)
	want := 0
	for _, m := range msgs[1 : len(msgs)-1] {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		want += align4(len(b))
	}
	if sum != want {
		t.Errorf("the ops' bytes add up to %d, the batch has %d", sum, want)
	}
	if sizes[4] <= 100*sizes[6] {
		t.Errorf("300 elements take %d bytes, one %d: want the list's size to follow its length", sizes[4], sizes[6])
	}
}

// TestElementMessagesAreGooglesBytes: every element message the writer
// produces is, header flags and data, the message google/nftables'
// SetAddElements or SetDeleteElements makes of the same elements, for every
// set type, adds and deletes, a set added in the batch (its ID) and one
// that was there before.
func TestElementMessagesAreGooglesBytes(t *testing.T) {
	tx := bigTx(3000, 1500, 900, 900)
	var more []Op
	for _, op := range tx.Ops {
		if op.Kind == OpAddElements {
			more = append(more, Op{Kind: OpDeleteElements, Name: op.Name, SetType: op.SetType, Elems: op.Elems[:700]})
		}
	}
	// Sets the batch did not add: no ID.
	more = append(more, opAddElems("old-v6", MapIPv6Verdict, Elem{Addr: netip.MustParseAddr("fd00::1"), Chain: "c"}),
		opAddElems("old-named", SetIPv6ProtoPort, Elem{Addr: netip.MustParseAddr("fd00::2"), Proto: ProtoUDP, Port: 53}),
		opAddElems("old-ranges", MapIPv4IntervalVerdict, Elem{Addr: netip.MustParseAddr("10.0.0.0"), AddrEnd: netip.MustParseAddr("10.0.0.255"), Chain: "c"}),
		opAddElems("old-ports", MapProtoPortVerdict, Elem{Proto: ProtoSCTP, Port: 9, PortEnd: 10, Chain: "c"}))
	tx.Ops = append(tx.Ops, more...)
	if checked := checkElementMessages(t, tx); checked < 12 {
		t.Errorf("checked %d element messages; the test means to check many", checked)
	}
}

// FuzzElementMessagesAreGooglesBytes: the same for elements of any kind,
// chain names and counts (large ones split into several messages).
func FuzzElementMessagesAreGooglesBytes(f *testing.F) {
	f.Add(uint8(MapIPv4Verdict), false, "c", []byte("0123456789abcdefghij"))
	f.Add(uint8(SetIPv6Interval), true, "x", make([]byte, 400))
	f.Add(uint8(MapProtoPortVerdict), false, strings.Repeat("long-chain-", 20), []byte("01234567890123456789abcdefghijklmnopqrst"))
	f.Add(uint8(MapIPv6Verdict), false, strings.Repeat("c", 200), bytes.Repeat([]byte("0123456789abcdefghij"), 3000)) // several messages
	f.Fuzz(func(t *testing.T, typ uint8, del bool, chain string, data []byte) {
		st := SetType(int(typ) % (int(lastSetType) + 1))
		if chain == "" || len(chain) > 255 || strings.ContainsRune(chain, 0) {
			return
		}
		var elems []Elem
		for ; len(data) >= 20 && len(elems) < 5000; data = data[20:] {
			e := Elem{Proto: data[16], Port: uint16(data[17])<<8 | uint16(data[18]), Chain: chain}
			e.PortEnd = e.Port + min(uint16(data[19]), 0xffff-e.Port)
			switch st.Family() {
			case IPv4:
				a, b := netip.AddrFrom4([4]byte(data[:4])), netip.AddrFrom4([4]byte(data[4:8]))
				if b.Less(a) {
					a, b = b, a
				}
				e.Addr, e.AddrEnd = a, b
			case IPv6:
				a := netip.AddrFrom16([16]byte(data[:16]))
				e.Addr, e.AddrEnd = a, a
			}
			elems = append(elems, e)
		}
		kind := OpAddElements
		if del {
			kind = OpDeleteElements
		}
		tx := &Transaction{Ops: []Op{{Kind: kind, Name: "s", SetType: st, Elems: elems}}}
		if _, err := encode(TableName, tx); err != nil {
			t.Skip(err) // checkElem's refusals are TestBadElementsAreNotSent's
		}
		checkElementMessages(t, tx)
	})
}

// checkElementMessages encodes tx and compares each element message with
// what google/nftables makes of its elements, and the elements with what
// nft sends for each op. It returns the number of messages compared.
func checkElementMessages(t *testing.T, tx *Transaction) (checked int) {
	t.Helper()
	msgs := captureBatch(t, tx)
	sent := map[string][]nftables.SetElement{} // by op kind and set
	for i, m := range msgs {
		typ := uint16(m.Header.Type) & 0xff
		if typ != unix.NFT_MSG_NEWSETELEM && typ != unix.NFT_MSG_DELSETELEM {
			continue
		}
		em := elemMessages(t, []netlink.Message{m})[0]
		key := fmt.Sprint(typ == unix.NFT_MSG_DELSETELEM, em.set)
		sent[key] = append(sent[key], em.elems...)
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		var id uint32
		for ad.Next() {
			if ad.Type() == unix.NFTA_SET_ELEM_LIST_SET_ID {
				id = binary.BigEndian.Uint32(ad.Bytes())
			}
		}
		var want []netlink.Message
		conn, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
			if req != nil {
				want = append(want, req[1:len(req)-1]...)
				return nil, nil
			}
			return []netlink.Message{captureAck}, nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		set := &nftables.Set{Table: nftTable(TableName), Name: em.set, ID: id}
		if typ == unix.NFT_MSG_NEWSETELEM {
			err = conn.SetAddElements(set, em.elems)
		} else {
			err = conn.SetDeleteElements(set, em.elems)
		}
		if err == nil {
			err = conn.Flush()
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != 1 {
			t.Fatalf("google/nftables made %d messages", len(want))
		}
		if want[0].Header.Type != m.Header.Type || want[0].Header.Flags != m.Header.Flags {
			t.Errorf("message %d (set %s): header %+v, google/nftables' %+v", i, em.set, m.Header, want[0].Header)
		}
		if diff := cmp.Diff(want[0].Data, m.Data); diff != "" {
			t.Errorf("message %d (set %s, %d elements): data differs from google/nftables' (-google +ours):\n%s", i, em.set, len(em.elems), diff)
		}
		checked++
	}
	// And they carry the elements of the ops, as nft sends them.
	for _, op := range tx.Ops {
		del := op.Kind == OpDeleteElements
		if op.Kind != OpAddElements && !del {
			continue
		}
		var want []nftables.SetElement
		for _, e := range op.Elems {
			var err error
			if want, err = appendKernelElems(want, op.SetType, e, del); err != nil {
				t.Fatal(err)
			}
		}
		if diff := cmp.Diff(want, sent[fmt.Sprint(del, op.Name)]); diff != "" {
			t.Errorf("%v %s: elements sent (-want +got):\n%s", op.Kind, op.Name, diff)
		}
	}
	return checked
}
