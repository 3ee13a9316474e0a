package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// rulesetOpts compares Rulesets with cmp.
var rulesetOpts = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

// Op constructors for the cases below.

func opAddElems(set string, t SetType, elems ...Elem) Op {
	return Op{Kind: OpAddElements, Name: set, SetType: t, Elems: elems}
}

func opDelElems(set string, t SetType, elems ...Elem) Op {
	return Op{Kind: OpDeleteElements, Name: set, SetType: t, Elems: elems}
}

func opAddRule(chain string, r *Rule) Op { return Op{Kind: OpAddRule, Name: chain, Rule: r} }

func opAddChain(name string, h *Hook) Op { return Op{Kind: OpAddChain, Name: name, Hook: h} }

func opAddSet(name string, t SetType) Op { return Op{Kind: OpAddSet, Name: name, SetType: t} }

func opDelChain(name string) Op { return Op{Kind: OpDeleteChain, Name: name} }

func opDelSet(name string) Op { return Op{Kind: OpDeleteSet, Name: name} }

func opFlush(name string) Op { return Op{Kind: OpFlushChain, Name: name} }

// kernelCase is a transaction applied to sampleRuleset() and what a kernel
// must answer. The same cases run against the Fake (TestFakeCases) and, as
// root, against the real kernel (TestNetlinkConformance), which is how the
// Fake's rules were checked.
type kernelCase struct {
	name string
	ops  []Op
	want syscall.Errno // 0: the transaction commits
	// strict marks a case the Fake rejects on purpose although the kernel
	// accepts it (see Fake's doc); kernelWant is the kernel's answer.
	strict     bool
	kernelWant syscall.Errno
	// check inspects the committed state (read-back form).
	check func(t *testing.T, got *Ruleset)
}

func hasElem(t *testing.T, rs *Ruleset, set string, e Elem, want bool) {
	t.Helper()
	if ok := rs.Sets[set].Has(e); ok != want {
		t.Errorf("set %s has %s: %v, want %v", set, e.Text(rs.Sets[set].Type), ok, want)
	}
}

func kernelCases() []kernelCase {
	pods := func(a string) Elem { return elemIP(a) }
	accept := Verdict{Kind: Accept}
	return []kernelCase{
		// Accepted.
		{name: "add table that exists", ops: []Op{{Kind: OpAddTable}}},
		{name: "add set that exists with same type keeps elements",
			ops: []Op{opAddSet("pods-v4", SetIPv4)},
			check: func(t *testing.T, got *Ruleset) {
				hasElem(t, got, "pods-v4", pods("10.0.0.1"), true)
			}},
		{name: "add regular chain that exists", ops: []Op{opAddChain("pod-a", nil)}},
		{name: "add base chain that exists with same hook", ops: []Op{opAddChain("nftpolicy-input", &Hook{Hook: "input", Priority: -5})}},
		{name: "add base chain that exists without hook keeps it a base chain",
			ops: []Op{opAddChain("nftpolicy-input", nil)},
			check: func(t *testing.T, got *Ruleset) {
				if h := got.Chains["nftpolicy-input"].Hook; h == nil || *h != (Hook{Hook: "input", Priority: -5}) {
					t.Errorf("hook = %+v", h)
				}
			}},
		{name: "delete chain with its own rules",
			ops: []Op{opAddChain("tmp", nil), opAddRule("tmp", ruleOf("t", Verdict{Kind: Jump, Chain: "pod-a"})), opDelChain("tmp")}},
		{name: "flush chains then delete the set their rules used",
			ops: []Op{opFlush("nftpolicy-input"), opFlush("pod-a"), opDelSet("pods-v4")}},
		{name: "change map verdict as delete and add",
			ops: []Op{opDelElems("dispatch-v4", MapIPv4Verdict, elemGoto("10.0.0.1", "")),
				opAddElems("dispatch-v4", MapIPv4Verdict, elemGoto("10.0.0.1", "pod-b"))},
			check: func(t *testing.T, got *Ruleset) {
				hasElem(t, got, "dispatch-v4", elemGoto("10.0.0.1", "pod-b"), true)
				hasElem(t, got, "dispatch-v4", elemGoto("10.0.0.1", "pod-a"), false)
			}},
		{name: "delete map element then the chain it pointed to",
			ops: []Op{opFlush("nftpolicy-input"), opDelElems("dispatch-v4", MapIPv4Verdict, elemGoto("10.0.0.2", "")), opDelChain("pod-b")}},
		{name: "flush the rules using a map, delete it, then the chain its elements pointed to",
			ops: append(unhookDispatch(), opFlush("pod-b"), opDelSet("dispatch-v4"), opDelChain("pod-b")),
			check: func(t *testing.T, got *Ruleset) {
				if _, ok := got.Chains["pod-b"]; ok {
					t.Errorf("chain pod-b still there")
				}
			}},
		{name: "replace the table in one batch",
			ops: append([]Op{{Kind: OpAddTable}, {Kind: OpDeleteTable}}, buildTx(replacementRuleset()).Ops...),
			check: func(t *testing.T, got *Ruleset) {
				if diff := cmp.Diff(readBack(replacementRuleset()), got, rulesetOpts...); diff != "" {
					t.Errorf("table after the replacement (-want +got):\n%s", diff)
				}
			}},
		{name: "add adjacent interval",
			ops: []Op{opAddElems("blocks-v4", SetIPv4Interval, elemRange("10.1.1.0", "10.1.1.255"))}},
		{name: "add adjacent port range",
			ops: []Op{opAddElems("ports", SetProtoPortInterval, elemPorts(ProtoTCP, 81, 90))}},
		{name: "delete exact interval",
			ops: []Op{opDelElems("blocks-v4", SetIPv4Interval, elemRange("172.16.0.0", "172.31.255.255"))}},
		{name: "change a port map's verdict as delete and add",
			ops: []Op{opDelElems("port-verdicts", MapProtoPortVerdict, elemPortsGoto(ProtoTCP, 81, 1023, "")),
				opAddElems("port-verdicts", MapProtoPortVerdict, elemPortsGoto(ProtoTCP, 81, 1023, "pod-a"))},
			check: func(t *testing.T, got *Ruleset) {
				hasElem(t, got, "port-verdicts", elemPortsGoto(ProtoTCP, 81, 1023, "pod-a"), true)
			}},
		{name: "add adjacent range to an interval map",
			ops: []Op{opAddElems("ranges-v4", MapIPv4IntervalVerdict, elemRangeGoto("10.2.1.0", "10.2.1.255", "pod-a"))}},
		{name: "delete an interval map's range, then the chain it pointed to",
			ops: []Op{opDelElems("ranges-v4", MapIPv4IntervalVerdict, elemRangeGoto("10.2.0.128", "10.2.0.255", ""), elemRangeGoto("192.168.7.7", "192.168.7.7", "")),
				opDelElems("port-verdicts", MapProtoPortVerdict, elemPortsGoto(ProtoTCP, 81, 1023, ""), elemPortsGoto(ProtoUDP, 53, 53, "")),
				opDelChain("verdict-a")}},
		{name: "delete table", ops: []Op{{Kind: OpDeleteTable}},
			check: func(t *testing.T, got *Ruleset) {
				if got != nil {
					t.Errorf("table still there")
				}
			}},

		// Rejected.
		{name: "add set that exists with another type", ops: []Op{opAddSet("pods-v4", SetIPv4Interval)}, want: syscall.EEXIST},
		{name: "add base chain that exists with another priority", ops: []Op{opAddChain("nftpolicy-input", &Hook{Hook: "input"})}, want: syscall.EOPNOTSUPP},
		{name: "add hook to a regular chain", ops: []Op{opAddChain("pod-a", &Hook{Hook: "forward"})}, want: syscall.EOPNOTSUPP},
		{name: "re-add map key with another verdict",
			ops: []Op{opAddElems("dispatch-v4", MapIPv4Verdict, elemGoto("10.0.0.1", "pod-b"))}, want: syscall.EEXIST},
		{name: "re-add identical element",
			ops: []Op{opAddElems("pods-v4", SetIPv4, pods("10.0.0.1"))}, want: syscall.EEXIST, strict: true},
		{name: "re-add identical map element",
			ops: []Op{opAddElems("dispatch-v4", MapIPv4Verdict, elemGoto("10.0.0.1", "pod-a"))}, want: syscall.EEXIST, strict: true},
		{name: "add overlapping interval",
			ops: []Op{opAddElems("blocks-v4", SetIPv4Interval, elemRange("10.1.0.128", "10.1.1.5"))}, want: syscall.EEXIST},
		{name: "add interval containing another",
			ops: []Op{opAddElems("blocks-v6", SetIPv6Interval, elemRange("2001:db8::", "2001:db8::ff"))}, want: syscall.EEXIST},
		{name: "add overlapping port range",
			ops: []Op{opAddElems("ports", SetProtoPortInterval, elemPorts(ProtoTCP, 8050, 8100))}, want: syscall.EEXIST},
		{name: "delete missing element", ops: []Op{opDelElems("pods-v4", SetIPv4, pods("10.9.9.9"))}, want: syscall.ENOENT},
		{name: "delete missing map key", ops: []Op{opDelElems("dispatch-v6", MapIPv6Verdict, elemGoto("fd00::9", ""))}, want: syscall.ENOENT},
		{name: "delete part of an interval",
			ops: []Op{opDelElems("blocks-v4", SetIPv4Interval, elemRange("10.1.0.0", "10.1.0.127"))}, want: syscall.ENOENT},
		{name: "delete part of a port range",
			ops:  []Op{opDelElems("ports", SetProtoPortInterval, elemPorts(ProtoTCP, 8000, 8001))},
			want: syscall.ENOENT, strict: true},
		{name: "add element to missing set", ops: []Op{opAddElems("nope", SetIPv4, pods("10.9.9.9"))}, want: syscall.ENOENT},
		{name: "rule with missing set",
			ops: []Op{opAddRule("pod-a", ruleOf("x", accept, MatchAddrInSet{Family: IPv4, Set: "nope"}))}, want: syscall.ENOENT},
		{name: "rule with missing map",
			ops: []Op{opAddRule("pod-a", ruleOf("x", Verdict{Kind: Vmap, Map: "nope", Family: IPv4}))}, want: syscall.ENOENT},
		{name: "log prefix of 127 bytes", ops: []Op{opAddRule("pod-a", &Rule{Log: &Log{Group: 7, Prefix: strings.Repeat("p", MaxLogPrefixLen)}, Comment: "x"})}},
		{name: "log prefix of 128 bytes", ops: []Op{opAddRule("pod-a", &Rule{Log: &Log{Group: 7, Prefix: strings.Repeat("p", MaxLogPrefixLen+1)}, Comment: "x"})}, want: syscall.ERANGE},
		{name: "rule in missing chain", ops: []Op{opAddRule("nope", ruleOf("x", accept))}, want: syscall.ENOENT},
		{name: "jump to missing chain", ops: []Op{opAddRule("pod-a", ruleOf("x", Verdict{Kind: Jump, Chain: "nope"}))}, want: syscall.ENOENT},
		{name: "goto base chain", ops: []Op{opAddRule("pod-a", ruleOf("x", Verdict{Kind: Goto, Chain: "nftpolicy-input"}))}, want: syscall.EOPNOTSUPP},
		{name: "map element to missing chain",
			ops: []Op{opAddElems("dispatch-v4", MapIPv4Verdict, elemGoto("10.0.0.9", "nope"))}, want: syscall.ENOENT},
		{name: "map element to base chain",
			ops: []Op{opAddElems("dispatch-v4", MapIPv4Verdict, elemGoto("10.0.0.9", "nftpolicy-input"))}, want: syscall.EOPNOTSUPP},
		{name: "vmap on a set that is not a map",
			ops: []Op{opAddRule("pod-a", ruleOf("x", Verdict{Kind: Vmap, Map: "pods-v4", Family: IPv4}))}, want: syscall.EINVAL},
		{name: "ip6 match on an ipv4 set",
			ops:  []Op{opAddRule("pod-a", ruleOf("x", accept, MatchAddrInSet{Family: IPv6, Set: "pods-v4"}))},
			want: syscall.EINVAL, strict: true},
		{name: "delete chain a rule jumps to", ops: []Op{opDelChain("pod-b")}, want: syscall.EBUSY},
		{name: "delete chain a map element points to",
			ops: []Op{opFlush("nftpolicy-input"), opDelChain("pod-b")}, want: syscall.EBUSY},
		{name: "delete chain before the map element pointing to it",
			ops:  []Op{opFlush("nftpolicy-input"), opDelChain("pod-b"), opDelElems("dispatch-v4", MapIPv4Verdict, elemGoto("10.0.0.2", ""))},
			want: syscall.EBUSY},
		// What the differ once sent when a Pass policy left the node: the
		// chain went before the map whose elements still pointed to it,
		// although the map was deleted later in the same batch.
		{name: "delete chain a map element points to, then the map",
			ops:  append(unhookDispatch(), opFlush("pod-b"), opDelChain("pod-b"), opDelSet("dispatch-v4")),
			want: syscall.EBUSY},
		{name: "delete chain a port map element points to",
			ops: []Op{opDelElems("ranges-v4", MapIPv4IntervalVerdict, elemRangeGoto("10.2.0.128", "10.2.0.255", ""), elemRangeGoto("192.168.7.7", "192.168.7.7", "")),
				opDelChain("verdict-a")},
			want: syscall.EBUSY},
		{name: "add overlapping range to an interval map",
			ops: []Op{opAddElems("ranges-v4", MapIPv4IntervalVerdict, elemRangeGoto("10.2.0.100", "10.2.0.200", "pod-a"))}, want: syscall.EEXIST},
		{name: "add overlapping port range to a port map",
			ops: []Op{opAddElems("port-verdicts", MapProtoPortVerdict, elemPortsGoto(ProtoTCP, 1000, 2000, "pod-a"))}, want: syscall.EEXIST},
		{name: "re-add port map key with another verdict",
			ops: []Op{opAddElems("port-verdicts", MapProtoPortVerdict, elemPortsGoto(ProtoTCP, 80, 80, "verdict-a"))}, want: syscall.EEXIST},
		{name: "port vmap on an address map",
			ops: []Op{opAddRule("verdict-a", ruleOf("x", Verdict{Kind: Vmap, Map: "dispatch-v4", ProtoPort: true}))}, want: syscall.EINVAL, strict: true},
		{name: "delete set a rule uses", ops: []Op{opDelSet("pods-v4")}, want: syscall.EBUSY},
		{name: "delete missing set", ops: []Op{opDelSet("nope")}, want: syscall.ENOENT},
		{name: "delete missing chain", ops: []Op{opDelChain("nope")}, want: syscall.ENOENT},
		{name: "flush missing chain", ops: []Op{opFlush("nope")}, want: syscall.ENOENT},
		{name: "jump loop from a base chain",
			ops: []Op{opAddRule("pod-a", ruleOf("loop", Verdict{Kind: Jump, Chain: "pod-b"}))}, want: syscall.EMLINK},
		{name: "set in a deleted table",
			ops: []Op{{Kind: OpDeleteTable}, opAddSet("s", SetIPv4)}, want: syscall.ENOENT},
		{name: "last op fails: earlier ops roll back",
			ops: []Op{opAddElems("pods-v4", SetIPv4, pods("10.0.0.9")), opAddChain("new", nil),
				opFlush("pod-a"), opDelSet("nope")},
			want: syscall.ENOENT},
	}
}

// unhookDispatch removes every reference to the chain pod-b except the
// element of dispatch-v4 that points to it: the rules that use the dispatch
// maps and the jump of nftpolicy-input.
func unhookDispatch() []Op {
	return []Op{opFlush("nftpolicy-forward"), opFlush("nftpolicy-input"), opFlush("nftpolicy-output")}
}

// replacementRuleset reuses names of sampleRuleset for other things (a set
// of another type, a base chain at another priority, a map pointing to a
// new chain): no minimal transaction gets there from the sample, a
// replacement of the table does.
func replacementRuleset() *Ruleset {
	rs := NewRuleset()
	rs.AddSet(setOf("pods-v4", SetIPv4Interval, "", elemRange("10.0.0.0", "10.0.0.255")))
	rs.AddSet(setOf("dispatch-v4", MapIPv4Verdict, "", elemGoto("10.0.0.1", "pod-c")))
	rs.AddChain(&Chain{Name: "nftpolicy-input", Hook: &Hook{Hook: "input", Priority: 7}, Rules: []*Rule{
		ruleOf("dispatch", Verdict{Kind: Vmap, Map: "dispatch-v4", Family: IPv4}),
	}})
	rs.AddChain(&Chain{Name: "pod-c", Rules: []*Rule{
		ruleOf("from the range", Verdict{Kind: Accept}, MatchAddrInSet{Family: IPv4, Src: true, Set: "pods-v4"}),
	}})
	return rs
}

// runKernelCase seeds nothing: k must hold sampleRuleset() already.
func runKernelCase(t *testing.T, k Kernel, c kernelCase, want syscall.Errno) {
	t.Helper()
	ctx := t.Context()
	before, err := k.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx := &Transaction{Ops: c.ops}
	err = k.Apply(ctx, tx)
	after, derr := k.Dump(ctx)
	if derr != nil {
		t.Fatal(derr)
	}
	if want == 0 {
		if err != nil {
			t.Fatalf("Apply:\n%s\nerror: %v", txText(tx), err)
		}
		if c.check != nil {
			c.check(t, after)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("Apply:\n%s\nerror %v, want %v", txText(tx), err, want)
	}
	if diff := cmp.Diff(before, after, rulesetOpts...); diff != "" {
		t.Errorf("failed transaction changed the table (-before +after):\n%s", diff)
	}
}

func seededFake(rs *Ruleset) *Fake {
	f := NewFake()
	f.Seed(rs)
	return f
}

func TestFakeCases(t *testing.T) {
	for _, c := range kernelCases() {
		t.Run(c.name, func(t *testing.T) {
			runKernelCase(t, seededFake(sampleRuleset()), c, c.want)
		})
	}
}

func TestFakeBuildsSampleFromEmpty(t *testing.T) {
	f := NewFake()
	rs := sampleRuleset()
	mustApply(t, f, buildTx(rs))
	got, err := f.Dump(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(readBack(rs), got, rulesetOpts...); diff != "" {
		t.Errorf("Dump (-want +got):\n%s", diff)
	}
	for _, c := range got.Chains {
		for _, r := range c.Rules {
			if r.ReadID == "" || r.Matches != nil || r.Verdict.Kind != VerdictNone {
				t.Errorf("chain %s: rule not in read-back form: %+v", c.Name, r)
			}
		}
	}
}

func TestFakeNoTable(t *testing.T) {
	f := NewFake()
	got, err := f.Dump(t.Context())
	if got != nil || err != nil {
		t.Fatalf("Dump of an empty kernel = %v, %v; want nil, nil", got, err)
	}
	err = f.Apply(t.Context(), &Transaction{Ops: []Op{opAddSet("s", SetIPv4)}})
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("add set without a table: %v, want ENOENT", err)
	}
}

func TestFakeCounters(t *testing.T) {
	f := seededFake(sampleRuleset())
	mustApply(t, f, &Transaction{Ops: []Op{
		opAddElems("pods-v4", SetIPv4, elemIP("10.0.0.3")),
		opAddElems("pods-v4", SetIPv4, elemIP("10.0.0.4")),
	}})
	mustApply(t, f, &Transaction{})
	if err := f.Apply(t.Context(), &Transaction{Ops: []Op{opDelSet("nope")}}); err == nil {
		t.Fatal("delete of a missing set succeeded")
	}
	mustApply(t, f, &Transaction{Ops: []Op{opDelElems("pods-v4", SetIPv4, elemIP("10.0.0.3"))}})
	type counters struct{ Transactions, Failed, LastOps, TotalOps int }
	want := counters{Transactions: 3, Failed: 1, LastOps: 1, TotalOps: 3}
	got := counters{f.Transactions, f.Failed, f.LastOps, f.TotalOps}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

func TestFakeFailNext(t *testing.T) {
	add := &Transaction{Ops: []Op{opAddElems("pods-v4", SetIPv4, elemIP("10.0.0.3"))}}
	boom := errors.New("boom")

	t.Run("plain error: nothing applied", func(t *testing.T) {
		f := seededFake(sampleRuleset())
		f.FailNext = boom
		if err := f.Apply(t.Context(), add); !errors.Is(err, boom) {
			t.Fatalf("Apply = %v, want %v", err, boom)
		}
		got, _ := f.Dump(t.Context())
		hasElem(t, got, "pods-v4", elemIP("10.0.0.3"), false)
		if f.FailNext != nil || f.Transactions != 0 || f.Failed != 1 {
			t.Errorf("FailNext=%v Transactions=%d Failed=%d", f.FailNext, f.Transactions, f.Failed)
		}
		mustApply(t, f, add) // only the next Apply fails
	})

	t.Run("outcome unknown: applied anyway", func(t *testing.T) {
		f := seededFake(sampleRuleset())
		f.FailNext = fmt.Errorf("no buffer space: %w", ErrOutcomeUnknown)
		if err := f.Apply(t.Context(), add); !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("Apply = %v, want ErrOutcomeUnknown", err)
		}
		got, _ := f.Dump(t.Context())
		hasElem(t, got, "pods-v4", elemIP("10.0.0.3"), true)
	})
}

func TestFakeRefuse(t *testing.T) {
	f := seededFake(sampleRuleset())
	refused := errors.New("injected: device or resource busy")
	var seen []int
	f.Refuse = func(tx *Transaction) error {
		seen = append(seen, tx.Len())
		if tx.Len() == 1 {
			return refused
		}
		return nil
	}
	add := &Transaction{Ops: []Op{opAddElems("pods-v4", SetIPv4, elemIP("10.0.0.3"))}}
	for i := 0; i < 2; i++ { // refused every time, not only once
		if err := f.Apply(t.Context(), add); !errors.Is(err, refused) {
			t.Fatalf("Apply = %v, want %v", err, refused)
		}
	}
	got, _ := f.Dump(t.Context())
	hasElem(t, got, "pods-v4", elemIP("10.0.0.3"), false)
	mustApply(t, f, &Transaction{Ops: []Op{add.Ops[0], opAddElems("pods-v4", SetIPv4, elemIP("10.0.0.4"))}})
	got, _ = f.Dump(t.Context())
	hasElem(t, got, "pods-v4", elemIP("10.0.0.3"), true)
	if diff := cmp.Diff([]int{1, 1, 2}, seen); diff != "" {
		t.Errorf("transactions Refuse saw, by length (-want +got):\n%s", diff)
	}
	if f.Failed != 2 || f.Transactions != 1 {
		t.Errorf("Failed=%d Transactions=%d, want 2 and 1", f.Failed, f.Transactions)
	}
}

func TestFakeDumpIsACopy(t *testing.T) {
	seed := sampleRuleset()
	f := seededFake(seed)
	seed.Sets["pods-v4"].Add(elemIP("10.9.9.9")) // the caller's copy
	got, _ := f.Dump(t.Context())
	got.Sets["pods-v4"].Add(elemIP("10.9.9.8"))
	got.Chains["pod-a"].Rules = nil
	got.Chains["nftpolicy-input"].Hook.Priority = 99
	again, _ := f.Dump(t.Context())
	if diff := cmp.Diff(readBack(sampleRuleset()), again, rulesetOpts...); diff != "" {
		t.Errorf("Fake changed through Seed's argument or Dump's result (-want +got):\n%s", diff)
	}
}

func TestFakeStoresCanonicalElements(t *testing.T) {
	f := seededFake(sampleRuleset())
	// Fields a set type does not store are dropped, as the kernel drops them.
	mustApply(t, f, &Transaction{Ops: []Op{opAddElems("pods-v4", SetIPv4, Elem{Addr: mustAddr("10.0.0.7"), Port: 80, Chain: "x"})}})
	got, _ := f.Dump(t.Context())
	hasElem(t, got, "pods-v4", elemIP("10.0.0.7"), true)
}

func TestFakeHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f := seededFake(sampleRuleset())
	if err := f.Apply(ctx, &Transaction{Ops: []Op{{Kind: OpAddTable}}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled context = %v", err)
	}
}

func TestFakeRejectsMalformedOps(t *testing.T) {
	for _, op := range []Op{
		{Kind: OpAddRule, Name: "pod-a"}, // no rule
		{Kind: OpKind(99)},
		opAddSet("", SetIPv4),
		opAddSet("s", SetType(99)),
		opAddChain("c", &Hook{Hook: "nowhere"}),
		opAddRule("pod-a", ruleOf("x", Verdict{Kind: Accept}, MatchCtState{States: []string{"bogus"}})),
		opAddElems("pods-v4", SetIPv4, elemIP("fd00::1")),
	} {
		f := seededFake(sampleRuleset())
		if err := f.Apply(t.Context(), &Transaction{Ops: []Op{op}}); err == nil {
			t.Errorf("op %s accepted", opLabel(op))
		}
	}
}
