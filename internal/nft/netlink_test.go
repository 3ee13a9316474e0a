package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// These tests program a real kernel, each in its own throwaway network
// namespace (see newNetns); they skip when not root.

// mustDump reads the table back.
func mustDump(t *testing.T, k Kernel) *Ruleset {
	t.Helper()
	rs, err := k.Dump(t.Context())
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	return rs
}

func assertDump(t *testing.T, k Kernel, want *Ruleset) {
	t.Helper()
	if diff := cmp.Diff(readBack(want), mustDump(t, k), rulesetOpts...); diff != "" {
		t.Errorf("Dump (-want +got):\n%s", diff)
	}
}

// (a) Every set type, match and verdict: nft lists each rule as Rule.Text()
// and Dump reads back the Ruleset.
func TestNetlinkSampleRuleset(t *testing.T) {
	ns := newNetns(t)
	k := ns.kernel()
	rs := sampleRuleset()
	mustApply(t, k, buildTx(rs))

	got := chainRules(ns.listTable(t))
	want := map[string][]string{}
	for _, c := range rs.Chains {
		want[c.Name] = []string{}
		for _, r := range c.Rules {
			want[c.Name] = append(want[c.Name], normaliseNft(r.Text()))
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nft list: rules (-Rule.Text() +nft):\n%s", diff)
	}
	assertDump(t, k, rs)
}

// (b) The netlink encoding is what nft makes of the same text: the listing
// matches, and so do the expressions the kernel holds for each rule.
func TestNetlinkMatchesNftLoadingText(t *testing.T) {
	viaNetlink, viaNft := newNetns(t), newNetns(t)
	rs := sampleRuleset()
	mustApply(t, viaNetlink.kernel(), buildTx(rs))
	viaNft.nft(t, rs.Text(), "-f", "-")

	if a, b := viaNetlink.listTable(t), viaNft.listTable(t); a != b {
		t.Errorf("nft list differs:\n%s", lineDiff(b, a))
	}
	a := ruleExprDump(t, viaNetlink)
	b := ruleExprDump(t, viaNft)
	if a != b {
		t.Errorf("rule expressions differ (- nft -f, + netlink):\n%s", lineDiff(b, a))
	}
	if !strings.Contains(a, "[ lookup reg 1 set dispatch-v4 dreg 0 0x0 ]") {
		t.Errorf("expression dump looks wrong:\n%s", a)
	}
	// Dump of a table nft loaded reads back the same Ruleset, although nft
	// adds an interval end at 0.0.0.0 (and ::) to interval sets.
	assertDump(t, viaNft.kernel(), rs)
}

var handleRE = regexp.MustCompile(`^(inet \S+ \S+)( \d+)+$`)

// ruleExprDump is the rules part of `nft --debug=netlink list table`: the
// kernel's expressions of each rule, without handles.
func ruleExprDump(t *testing.T, ns *testNetns) string {
	t.Helper()
	out := ns.nft(t, "", "--debug=netlink", "list", "table", "inet", TableName)
	var lines []string
	inRules := false
	for _, l := range strings.Split(out, "\n") {
		if m := handleRE.FindStringSubmatch(l); m != nil {
			inRules = true
			l = m[1]
		}
		if strings.HasPrefix(l, "table ") {
			break // the listing proper follows the debug output
		}
		if inRules {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return strings.Join(lines, "\n")
}

func lineDiff(a, b string) string {
	return cmp.Diff(strings.Split(a, "\n"), strings.Split(b, "\n"))
}

// (c) docs/nftables-notes.md, trap 1: element lists past 64 KiB are silently
// truncated unless chunked. All elements of a large transaction must arrive.
func TestNetlinkLargeElementBatch(t *testing.T) {
	ns := newNetns(t)
	k := ns.kernel()
	rs := NewRuleset()
	hash := rs.AddSet(NewSet("hash", SetIPv4, ""))
	ranges := rs.AddSet(NewSet("ranges", SetIPv4Interval, ""))
	pp := rs.AddSet(NewSet("ports", SetProtoPortInterval, ""))
	for i := range 10000 {
		hash.Add(Elem{Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})})
	}
	for i := range 5000 { // 10.1.0.0-10.1.0.9, 10.1.0.16-10.1.0.25, ...
		first := 10<<24 + 1<<16 + uint32(i)*16
		ranges.Add(Elem{Addr: addrFromUint32(first), AddrEnd: addrFromUint32(first + 9)})
	}
	for i := range 3000 {
		pp.Add(elemPorts([]uint8{ProtoTCP, ProtoUDP, ProtoSCTP}[i%3], uint16(10*i), uint16(10*i+5)))
	}
	start := time.Now()
	mustApply(t, k, buildTx(rs))
	t.Logf("applied 18,000 elements in %v", time.Since(start))

	start = time.Now()
	got := mustDump(t, k)
	t.Logf("dumped them in %v", time.Since(start))
	for name, want := range map[string]int{"hash": 10000, "ranges": 5000, "ports": 3000} {
		if n := got.Sets[name].Len(); n != want {
			t.Errorf("set %s: %d elements in the kernel, want %d", name, n, want)
		}
	}
	assertDump(t, k, rs)
}

func addrFromUint32(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

// (d) docs/nftables-notes.md, traps 2 and 3: a batch of thousands of rules needs
// big socket buffers both ways.
func TestNetlinkManyRules(t *testing.T) {
	ns := newNetns(t)
	k := ns.kernel()
	rs := sampleRuleset()
	c := rs.AddChain(&Chain{Name: "many"})
	for i := range 3000 {
		c.Rules = append(c.Rules, withCounter(ruleOf(fmt.Sprintf("ns-%d/policy-%d ingress rule %d", i%17, i, i%5),
			Verdict{Kind: Accept}, MatchCtState{States: []string{"new"}},
			MatchAddrInSet{Family: IPv4, Src: true, Set: "pods-v4"}, MatchProtoPortInSet{Set: "ports"})))
	}
	start := time.Now()
	mustApply(t, k, buildTx(rs))
	t.Logf("applied %d rules in %v", len(c.Rules), time.Since(start))
	assertDump(t, k, rs)
	// Every counted rule's counter reads back (all at zero: no traffic).
	start = time.Now()
	cnt, err := k.Counters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read %d counters in %v", len(cnt), time.Since(start))
	want := 0
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			if r.Counter {
				want++
			}
		}
	}
	if len(cnt) != want {
		t.Errorf("%d counters, want %d", len(cnt), want)
	}
}

// (e) docs/nftables-notes.md, trap 4: ranges that touch each other or the top of
// the address space.
func TestNetlinkIntervalEdges(t *testing.T) {
	ns := newNetns(t)
	k := ns.kernel()
	rs := NewRuleset()
	rs.AddSet(setOf("all-v4", SetIPv4Interval, "", elemRange("0.0.0.0", "255.255.255.255")))
	rs.AddSet(setOf("all-v6", SetIPv6Interval, "", elemRange("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")))
	rs.AddSet(setOf("edges-v4", SetIPv4Interval, "",
		elemRange("0.0.0.0", "0.0.0.0"),
		elemRange("0.0.0.1", "0.0.0.255"), // adjacent to the one before
		elemRange("10.0.0.0", "10.0.0.255"),
		elemRange("10.0.1.0", "10.0.1.255"), // adjacent
		elemRange("255.255.255.0", "255.255.255.254"),
		elemRange("255.255.255.255", "255.255.255.255"), // adjacent, at the top
	))
	rs.AddSet(setOf("edges-v6", SetIPv6Interval, "",
		elemRange("::", "::ffff"),
		elemRange("fd00::", "fd00::ffff"),
		elemRange("fd00::1:0", "fd00::1:ffff"),
		elemRange("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
	))
	mustApply(t, k, buildTx(rs))
	assertDump(t, k, rs)

	// Remove ranges next to kept ones, and the top one.
	rm := []Elem{elemRange("10.0.0.0", "10.0.0.255"), elemRange("255.255.255.255", "255.255.255.255")}
	mustApply(t, k, &Transaction{Ops: []Op{opDelElems("edges-v4", SetIPv4Interval, rm...)}})
	for _, e := range rm {
		rs.Sets["edges-v4"].Delete(e)
	}
	assertDump(t, k, rs)
}

// The kernel matches our interval sets as programmed, although we do not add
// the interval end at 0.0.0.0 that nft adds: addresses below, inside, at the
// edges of and above the ranges are dropped exactly when inside.
func TestNetlinkIntervalDatapath(t *testing.T) {
	ns := newNetns(t)
	ns.routeToLoopback(t)
	k := ns.kernel()
	rs := NewRuleset()
	rs.AddSet(setOf("v4", SetIPv4Interval, "", elemRange("10.0.0.0", "10.0.0.255"), elemRange("10.0.1.0", "10.0.1.9"),
		elemRange("10.0.2.7", "10.0.2.7")))
	rs.AddSet(setOf("v6", SetIPv6Interval, "", elemRange("fd00::", "fd00::ff"), elemRange("fd00::100", "fd00::1ff")))
	rs.AddChain(&Chain{Name: "out", Hook: &Hook{Hook: "output"}, Rules: []*Rule{
		ruleOf("v4", Verdict{Kind: Drop}, MatchAddrInSet{Family: IPv4, Set: "v4"}),
		ruleOf("v6", Verdict{Kind: Drop}, MatchAddrInSet{Family: IPv6, Set: "v6"}),
	}})
	mustApply(t, k, buildTx(rs))
	for _, tc := range []struct {
		dst     string
		dropped bool
	}{
		{"1.2.3.4", false}, {"9.255.255.255", false}, {"10.0.0.0", true}, {"10.0.0.255", true},
		{"10.0.1.0", true}, {"10.0.1.9", true}, {"10.0.1.10", false}, {"10.0.2.6", false},
		{"10.0.2.7", true}, {"10.0.2.8", false}, {"200.0.0.1", false},
		{"fc00::1", false}, {"fd00::", true}, {"fd00::1ff", true}, {"fd00::200", false}, {"fe80::1", false},
	} {
		err := ns.sendUDP(t, mustAddr(tc.dst))
		if dropped := errors.Is(err, syscall.EPERM); dropped != tc.dropped || (err != nil && !dropped) {
			t.Errorf("send to %s: %v, want dropped=%v", tc.dst, err, tc.dropped)
		}
	}
}

// (e2) The interval verdict maps (address ranges; protocol . port ranges,
// pipapo) send a packet where the tracer says: a chain that drops or one
// that accepts, by range edges, and nowhere (on to the next rule) outside
// every range.
func TestNetlinkIntervalVmapDatapath(t *testing.T) {
	ns := newNetns(t)
	ns.routeToLoopback(t)
	k := ns.kernel()
	rs := NewRuleset()
	rs.AddChain(&Chain{Name: "deny", Rules: []*Rule{withCounter(ruleOf("deny", Verdict{Kind: Drop}))}})
	rs.AddChain(&Chain{Name: "allow", Rules: []*Rule{withCounter(ruleOf("allow", Verdict{Kind: Accept}))}})
	rs.AddChain(&Chain{Name: "by-port", Rules: []*Rule{
		ruleOf("ports", Verdict{Kind: Vmap, Map: "ports", ProtoPort: true}),
		ruleOf("no port matched", Verdict{Kind: Drop}),
	}})
	rs.AddSet(setOf("ranges-v4", MapIPv4IntervalVerdict, "", elemRangeGoto("10.0.0.0", "10.0.0.255", "deny"),
		elemRangeGoto("10.0.1.0", "10.0.1.9", "by-port"), elemRangeGoto("10.0.1.10", "10.0.1.10", "allow")))
	rs.AddSet(setOf("ranges-v6", MapIPv6IntervalVerdict, "", elemRangeGoto("fd00::", "fd00::ff", "by-port")))
	rs.AddSet(setOf("ports", MapProtoPortVerdict, "", elemPortsGoto(ProtoUDP, 1000, 1999, "allow"),
		elemPortsGoto(ProtoUDP, 2000, 2000, "deny"), elemPortsGoto(ProtoTCP, 3000, 3000, "allow")))
	rs.AddChain(&Chain{Name: "out", Hook: &Hook{Hook: "output"}, Rules: []*Rule{
		ruleOf("v4", Verdict{Kind: Vmap, Map: "ranges-v4", Family: IPv4}),
		ruleOf("v6", Verdict{Kind: Vmap, Map: "ranges-v6", Family: IPv6}),
	}})
	mustApply(t, k, buildTx(rs))
	assertDump(t, k, rs)
	drops := 0
	for _, dst := range []string{
		"9.255.255.255:1000", "10.0.0.0:1000", "10.0.0.255:1000", "10.0.1.0:999", "10.0.1.0:1000",
		"10.0.1.9:1999", "10.0.1.9:2000", "10.0.1.9:2001", "10.0.1.9:3000", "10.0.1.10:3000", "10.0.1.11:2000",
		"[fd00::1]:1500", "[fd00::1]:2000", "[fd00::100]:2000",
	} {
		ap := netip.MustParseAddrPort(dst)
		tr, err := rs.Trace("out", Packet{Src: ap.Addr(), Dst: ap.Addr(), Proto: ProtoUDP, Port: ap.Port(), CtState: "new"})
		if err != nil {
			t.Fatal(err)
		}
		err = ns.sendUDPTo(t, ap)
		if dropped := errors.Is(err, syscall.EPERM); dropped != tr.Dropped || (err != nil && !dropped) {
			t.Errorf("send to %s: %v, the tracer says dropped=%v (%v)", dst, err, tr.Dropped, tr.Matched)
		}
		if tr.Dropped {
			drops++
		}
	}
	// 10.0.0.x (2), 10.0.1.0:999, 10.0.1.9:2000, 2001, 3000 (tcp only), fd00::1:2000
	if drops != 7 {
		t.Errorf("the tracer dropped %d of the probes, want 7", drops)
	}
}

// (f) docs/nftables-notes.md, trap 5: maps read back with their key family and
// their chains, also when empty (there is no element to tell the key length by).
func TestNetlinkVmapReadBack(t *testing.T) {
	ns := newNetns(t)
	k := ns.kernel()
	rs := NewRuleset()
	for _, c := range []string{"pod-a", "pod-b", "pod-c"} {
		rs.AddChain(&Chain{Name: c})
	}
	rs.AddSet(setOf("m4", MapIPv4Verdict, "v4 dispatch",
		elemGoto("10.0.0.1", "pod-a"), elemGoto("10.0.0.2", "pod-b"), elemGoto("10.0.0.3", "pod-c")))
	rs.AddSet(setOf("m6", MapIPv6Verdict, "", elemGoto("fd00::1", "pod-c"), elemGoto("fd00::2", "pod-a")))
	rs.AddSet(setOf("empty4", MapIPv4Verdict, ""))
	rs.AddSet(setOf("empty6", MapIPv6Verdict, ""))
	mustApply(t, k, buildTx(rs))
	assertDump(t, k, rs)
}

// (g) docs/nftables-notes.md, trap 8: a map key's verdict changes by delete and
// add in one batch (re-adding alone fails), and a chain goes in the same batch
// as the element pointing to it.
func TestNetlinkVmapChange(t *testing.T) {
	ns := newNetns(t)
	k := ns.kernel()
	rs := sampleRuleset()
	mustApply(t, k, buildTx(rs))

	readd := &Transaction{Ops: []Op{opAddElems("dispatch-v4", MapIPv4Verdict, elemGoto("10.0.0.1", "pod-b"))}}
	if err := k.Apply(t.Context(), readd); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("re-adding a key with a new verdict: %v, want EEXIST", err)
	}

	mustApply(t, k, &Transaction{Ops: []Op{
		opDelElems("dispatch-v4", MapIPv4Verdict, elemGoto("10.0.0.1", "pod-a")),
		opAddElems("dispatch-v4", MapIPv4Verdict, elemGoto("10.0.0.1", "pod-b")),
	}})
	m := rs.Sets["dispatch-v4"]
	m.Delete(elemGoto("10.0.0.1", "pod-a"))
	m.Add(elemGoto("10.0.0.1", "pod-b"))
	assertDump(t, k, rs)

	// pod-b is the target of a jump and of two map elements.
	mustApply(t, k, &Transaction{Ops: []Op{
		opFlush("nftpolicy-input"),
		opDelElems("dispatch-v4", MapIPv4Verdict, elemGoto("10.0.0.1", ""), elemGoto("10.0.0.2", "")),
		opDelChain("pod-b"),
	}})
	rs.Chains["nftpolicy-input"].Rules = nil
	delete(rs.Chains, "pod-b")
	m.Clear()
	assertDump(t, k, rs)
}

// (h) A transaction that fails anywhere leaves the kernel as it was.
func TestNetlinkAtomic(t *testing.T) {
	ns := newNetns(t)
	k := ns.kernel()
	rs := sampleRuleset()
	mustApply(t, k, buildTx(rs))
	listing := ns.listTable(t)

	bad := &Transaction{Ops: []Op{
		opAddElems("pods-v4", SetIPv4, elemIP("10.0.0.9")),
		opFlush("pod-a"),
		opAddChain("new", nil),
		opDelElems("dispatch-v4", MapIPv4Verdict, elemGoto("10.0.0.1", "")),
		opAddRule("new", ruleOf("bad", Verdict{Kind: Accept}, MatchAddrInSet{Family: IPv4, Set: "missing"})),
		opAddElems("pods-v6", SetIPv6, elemIP("fd00::9")),
	}}
	err := k.Apply(t.Context(), bad)
	if !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("Apply of a rule using a missing set: %v, want ENOENT", err)
	}
	if errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("a rejected batch reported as outcome unknown: %v", err)
	}
	if !strings.Contains(err.Error(), "transaction of 6 ops") {
		t.Errorf("error does not give the transaction's size: %v", err)
	}
	if got := ns.listTable(t); got != listing {
		t.Errorf("failed transaction changed the kernel:\n%s", lineDiff(listing, got))
	}
	assertDump(t, k, rs)
}

// The Fake's rules hold on the kernel: each case of kernelCases gives the
// same answer here, and a committed one the same table.
func TestNetlinkConformance(t *testing.T) {
	ns := newNetns(t)
	k := ns.kernel()
	for _, c := range kernelCases() {
		t.Run(c.name, func(t *testing.T) {
			if mustDump(t, k) != nil {
				mustApply(t, k, &Transaction{Ops: []Op{{Kind: OpDeleteTable}}})
			}
			mustApply(t, k, buildTx(sampleRuleset()))
			want := c.want
			if c.strict {
				want = c.kernelWant
			}
			runKernelCase(t, k, c, want)
			if c.strict || want != 0 {
				return
			}
			fake := seededFake(sampleRuleset())
			mustApply(t, fake, &Transaction{Ops: c.ops})
			if diff := cmp.Diff(mustDump(t, fake), mustDump(t, k), rulesetOpts...); diff != "" {
				t.Errorf("kernel and Fake differ after the transaction (-fake +kernel):\n%s", diff)
			}
		})
	}
}

func TestNetlinkDumpWithoutTable(t *testing.T) {
	ns := newNetns(t)
	ns.nft(t, "", "add", "table", "inet", "other") // another table is not ours
	rs, err := ns.kernel().Dump(t.Context())
	if rs != nil || err != nil {
		t.Errorf("Dump = %v, %v; want nil, nil", rs, err)
	}
}

func TestNetlinkEmptyTransactionSendsNothing(t *testing.T) {
	// The descriptor is not open: any attempt to reach a kernel would fail
	// (and none can reach the host's namespace).
	const badFD = 1 << 20
	if err := NewNetlink(badFD).Apply(t.Context(), &Transaction{}); err != nil {
		t.Errorf("empty transaction: %v", err)
	}
	if err := NewNetlink(badFD).Apply(t.Context(), buildTx(sampleRuleset())); err == nil {
		t.Errorf("a transaction to a closed namespace descriptor succeeded")
	}
}

func TestNetlinkCancelledContext(t *testing.T) {
	ns := newNetns(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := ns.kernel().Apply(ctx, buildTx(sampleRuleset()))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled context: %v", err)
	}
	if _, err := ns.kernel().Dump(ctx); err == nil {
		t.Errorf("Dump with a cancelled context succeeded")
	}
	if rs := mustDump(t, ns.kernel()); rs != nil {
		t.Errorf("cancelled Apply created the table")
	}
}
