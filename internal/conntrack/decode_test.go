package conntrack

import (
	"context"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
)

// TestDecodeEntryAsTheLibrary: every answer of a real dump decodes to the
// tuples and zone the library reads from it, in both families, for TCP,
// UDP, ICMP and ICMPv6, a zone, and a reply tuple that differs from the
// original's inverse (DNAT); and Dump lists those entries.
func TestDecodeEntryAsTheLibrary(t *testing.T) {
	tbl, c := throwawayTable(t)
	ip := netip.MustParseAddr
	icmp := ct.NewFlow(protoICMP, 0, ip("10.0.0.1"), ip("10.0.0.2"), 0, 0, 600, 0)
	icmp.TupleOrig.Proto = ct.ProtoTuple{Protocol: protoICMP, ICMPType: 8, ICMPID: 77}
	icmp.TupleReply.Proto = ct.ProtoTuple{Protocol: protoICMP, ICMPType: 0, ICMPID: 77}
	icmp6 := ct.NewFlow(protoICMPv6, 0, ip("fd00::1"), ip("fd00::2"), 0, 0, 600, 0)
	icmp6.TupleOrig.Proto = ct.ProtoTuple{Protocol: protoICMPv6, ICMPType: 128, ICMPID: 78}
	icmp6.TupleReply.Proto = ct.ProtoTuple{Protocol: protoICMPv6, ICMPType: 129, ICMPID: 78}
	dnat := ct.NewFlow(protoTCP, 0, ip("10.0.0.1"), ip("10.96.0.10"), 40001, 80, 600, 0)
	dnat.TupleReply.IP.SourceAddress = ip("10.0.0.9")
	dnat.TupleReply.Proto.SourcePort = 8080
	zoned := ct.NewFlow(protoUDP, 0, ip("10.0.0.3"), ip("10.0.0.4"), 40002, 53, 600, 0)
	zoned.Zone = 7
	flows := []ct.Flow{
		ct.NewFlow(protoTCP, 0, ip("10.0.0.1"), ip("10.0.0.2"), 40003, 443, 600, 0),
		ct.NewFlow(protoUDP, 0, ip("10.0.0.1"), ip("10.0.0.2"), 40004, 53, 600, 0),
		ct.NewFlow(protoTCP, 0, ip("fd00::1"), ip("fd00::2"), 40005, 443, 600, 0),
		icmp, icmp6, dnat, zoned,
	}
	for _, fl := range flows {
		if fl.TupleOrig.Proto.Protocol == protoTCP {
			fl.ProtoInfo.TCP = &ct.ProtoInfoTCP{State: 3} // established
		}
		if err := c.Create(fl); err != nil {
			t.Fatalf("creating %v: %v", fl, err)
		}
	}

	nf, err := netfilter.Dial(tbl.config())
	if err != nil {
		t.Fatal(err)
	}
	defer nf.Close()
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: ctGet,
		Family: netfilter.ProtoUnspec, Flags: netlink.Request | netlink.Dump,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := nf.Query(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(flows) {
		t.Fatalf("dumped %d entries, want %d", len(msgs), len(flows))
	}
	want := map[flowKey]bool{}
	for _, m := range msgs {
		var ev ct.Event
		if err := ev.Unmarshal(m); err != nil || ev.Flow == nil {
			t.Fatalf("the library cannot decode an answer: %v", err)
		}
		lib := flowKey{orig: ev.Flow.TupleOrig, reply: ev.Flow.TupleReply, zone: ev.Flow.Zone}
		want[lib] = true
		e, err := decodeEntry(m.Data)
		if err != nil {
			t.Fatalf("decodeEntry of %v: %v", ev.Flow, err)
		}
		if got := e.key.(flowKey); got != lib {
			t.Errorf("decodeEntry = %+v\nthe library's %+v", got, lib)
		}
		if e != entryOfKey(lib) {
			t.Errorf("entry %v, want %v", e, entryOfKey(lib))
		}
	}
	entries, err := tbl.Dump(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !want[e.key.(flowKey)] {
			t.Errorf("Dump lists %v, which the dump decoded by the library has not", e)
		}
		delete(want, e.key.(flowKey))
	}
	if len(want) > 0 {
		t.Errorf("Dump misses %d entries: %v", len(want), want)
	}
	// What Delete takes from the decoded key finds the entry: the DNAT'ed
	// one goes, and the rest stay.
	for _, e := range entries {
		if e.Dst == ip("10.0.0.9") {
			if n, err := tbl.Delete(context.Background(), []Entry{e}); n != 1 || err != nil {
				t.Fatalf("Delete(%v) = %d, %v; want 1 deleted", e, n, err)
			}
		}
	}
	if left, err := tbl.Dump(context.Background(), nil); err != nil || len(left) != len(flows)-1 {
		t.Errorf("after the delete: %d entries (%v), want %d", len(left), err, len(flows)-1)
	}
}

// FuzzDecodeEntry: no message makes decodeEntry panic; one it accepts has
// both tuples' sources.
func FuzzDecodeEntry(f *testing.F) {
	f.Add([]byte{2, 0, 0, 0})
	// nfgenmsg, then CTA_TUPLE_ORIG { CTA_TUPLE_IP { V4_SRC, V4_DST } } and
	// the same as CTA_TUPLE_REPLY.
	tuple := func(typ byte) []byte {
		return []byte{
			28, 0, typ, 0x80,
			20, 0, 1, 0x80,
			8, 0, 1, 0, 10, 0, 0, 1,
			8, 0, 2, 0, 10, 0, 0, 2,
		}
	}
	f.Add(append(append([]byte{2, 0, 0, 0}, tuple(1)...), tuple(2)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := decodeEntry(data)
		if err == nil && (!e.Src.IsValid() || !e.Dst.IsValid()) {
			t.Errorf("accepted %x with entry %v", data, e)
		}
	})
}
