package nft

import (
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A logged, counted drop on a real kernel: each datagram is dropped,
// counted once, and copied once to the NFLOG group with the rule's prefix
// and the packet's addresses, protocol and port; the kernel's limit caps
// the copies, not the drops.
func TestNetlinkLogAndCounters(t *testing.T) {
	ns := newNetns(t)
	ns.routeToLoopback(t)
	k := ns.kernel()
	rs := NewRuleset()
	rs.AddSet(setOf("logged", SetIPv4, "", elemIP("10.9.0.1")))
	rs.AddSet(setOf("limited", SetIPv4, "", elemIP("10.9.0.2")))
	rs.AddChain(&Chain{Name: "out", Hook: &Hook{Hook: "output"}, Rules: []*Rule{
		{Matches: []Match{MatchAddrInSet{Family: IPv4, Set: "logged"}}, Log: &Log{Group: 42, Prefix: "np D 00000001", Rate: 1000, Burst: 1000}, Comment: "log 1"},
		{Matches: []Match{MatchAddrInSet{Family: IPv4, Set: "logged"}}, Counter: true, Verdict: Verdict{Kind: Drop}, Comment: "drop 1"},
		{Matches: []Match{MatchAddrInSet{Family: IPv4, Set: "limited"}}, Log: &Log{Group: 42, Prefix: "np D 00000002", Rate: 1, Burst: 2}, Comment: "log 2"},
		{Matches: []Match{MatchAddrInSet{Family: IPv4, Set: "limited"}}, Counter: true, Verdict: Verdict{Kind: Drop}, Comment: "drop 2"},
	}})
	mustApply(t, k, buildTx(rs))

	var mu sync.Mutex
	var got []LogEvent
	if err := ReadLogs(t.Context(), int(ns.file.Fd()), 42, func(ev LogEvent) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, ev)
	}); err != nil {
		t.Fatal(err)
	}
	send := func(dst string, n int) {
		for range n {
			if err := ns.sendUDP(t, mustAddr(dst)); !errors.Is(err, syscall.EPERM) {
				t.Fatalf("send to %s: %v, want dropped (EPERM)", dst, err)
			}
		}
	}
	send("10.9.0.1", 3)
	send("10.9.0.2", 10)

	counts := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		a, b := 0, 0
		for _, ev := range got {
			switch ev.Prefix {
			case "np D 00000001":
				a++
				if ev.Dst != mustAddr("10.9.0.1") || ev.Proto != ProtoUDP || ev.Port != 9 || !ev.Src.Is4() {
					t.Errorf("event %+v: want udp to 10.9.0.1 port 9", ev)
				}
			case "np D 00000002":
				b++
			default:
				t.Errorf("event with prefix %q", ev.Prefix)
			}
		}
		return a, b
	}
	deadline := time.Now().Add(2 * time.Second)
	for a, _ := counts(); a < 3 && time.Now().Before(deadline); a, _ = counts() {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // nothing more may come
	a, b := counts()
	if a != 3 {
		t.Errorf("%d copies of the 3 logged drops, want 3", a)
	}
	// The 10 sends take a few milliseconds: the burst's 2 tokens, no refill.
	if b != 2 {
		t.Errorf("%d copies of 10 drops limited to 1/second burst 2, want 2", b)
	}

	cnt, err := k.Counters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	id1 := rs.Chains["out"].Rules[1].ID()
	id2 := rs.Chains["out"].Rules[3].ID()
	if cnt[id1].Packets != 3 || cnt[id2].Packets != 10 {
		t.Errorf("counters %v, want 3 packets for %q and 10 for %q", cnt, id1, id2)
	}
	if cnt[id1].Bytes != 3*(20+8+5) {
		t.Errorf("bytes %d, want 3 × 33 (IPv4 + UDP + 5 bytes of data)", cnt[id1].Bytes)
	}
	if len(cnt) != 2 {
		t.Errorf("counters of %d rules, want the 2 counted ones: %v", len(cnt), cnt)
	}
}
