package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

type podSpec struct{ id, node, v4, v6 string }

// The two-node layout used by most tests, with the addresses the scenario format uses (docs/scenarios.md).
var twoNodePods = []podSpec{
	{"x/a", "n1", "10.244.1.10", "fd00:10:244:1::a"},
	{"x/b", "n1", "10.244.1.11", "fd00:10:244:1::b"},
	{"y/c", "n2", "10.244.2.10", "fd00:10:244:2::a"},
	{"y/d", "n2", "10.244.2.11", "fd00:10:244:2::b"},
}

// addrs picks the addresses of the wanted families.
func addrs(v4, v6 string, want4, want6 bool) []netip.Addr {
	var out []netip.Addr
	if want4 && v4 != "" {
		out = append(out, netip.MustParseAddr(v4))
	}
	if want6 && v6 != "" {
		out = append(out, netip.MustParseAddr(v6))
	}
	return out
}

// twoNodeLab builds 2 nodes (lab-chosen addresses) with 2 pods each and an
// external, all listening on TCP 80 and UDP 53. It returns every endpoint.
func twoNodeLab(t *testing.T, want4, want6 bool) (*Lab, []string) {
	t.Helper()
	l := newLab(t)
	must(t, l.AddNode("n1", nil))
	must(t, l.AddNode("n2", nil))
	must(t, l.AddExternal("ext", addrs("203.0.113.10", "2001:db8:e::10", want4, want6)))
	eps := []string{"node/n1", "node/n2", "external/ext"}
	for _, p := range twoNodePods {
		must(t, l.AddPod(p.id, p.node, addrs(p.v4, p.v6, want4, want6)))
		eps = append(eps, p.id)
	}
	for _, ep := range eps {
		must(t, l.Listen(ep, "TCP", 80))
		must(t, l.Listen(ep, "udp", 53))
	}
	return l, eps
}

type pair struct{ from, to string }

// matrix probes every ordered pair of distinct endpoints in parallel.
func matrix(l *Lab, eps []string, family int, proto string, port uint16, timeout time.Duration) map[pair]Outcome {
	var mu sync.Mutex
	var wg sync.WaitGroup
	got := map[pair]Outcome{}
	for _, from := range eps {
		for _, to := range eps {
			if from == to {
				continue
			}
			wg.Go(func() {
				o := l.Probe(context.Background(), from, to, family, proto, port, timeout)
				mu.Lock()
				got[pair{from, to}] = o
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return got
}

// notAllowed lists the pairs whose outcome is not Allowed, sorted.
func notAllowed(got map[pair]Outcome) []string {
	var bad []string
	for p, o := range got {
		if o.Verdict != Allowed {
			bad = append(bad, fmt.Sprintf("%s -> %s: %v", p.from, p.to, o))
		}
	}
	sort.Strings(bad)
	return bad
}

func TestEveryEndpointReachesEveryOther(t *testing.T) {
	for _, tc := range []struct {
		name         string
		want4, want6 bool
	}{
		{"IPv4", true, false},
		{"dual-stack", true, true},
		{"IPv6", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, eps := twoNodeLab(t, tc.want4, tc.want6)
			for _, family := range []int{4, 6} {
				if family == 4 && !tc.want4 || family == 6 && !tc.want6 {
					continue
				}
				for _, probe := range []struct {
					proto string
					port  uint16
				}{{"TCP", 80}, {"UDP", 53}} {
					start := time.Now()
					got := matrix(l, eps, family, probe.proto, probe.port, 2*time.Second)
					if bad := notAllowed(got); len(bad) > 0 {
						t.Errorf("IPv%d %s/%d: not allowed:\n%s", family, probe.proto, probe.port, strings.Join(bad, "\n"))
					}
					t.Logf("IPv%d %s: %d probes in %v", family, probe.proto, len(got), time.Since(start))
					// An endpoint can probe itself too, when a scenario asks.
					for _, ep := range []string{"x/a", "node/n1", "external/ext"} {
						if o := l.Probe(context.Background(), ep, ep, family, probe.proto, probe.port, time.Second); o.Verdict != Allowed {
							t.Errorf("IPv%d %s %s -> itself = %v", family, probe.proto, ep, o)
						}
					}
				}
			}
		})
	}
}

func TestClosedPortIsReset(t *testing.T) {
	l, _ := twoNodeLab(t, true, true)
	for _, family := range []int{4, 6} {
		for _, proto := range []string{"TCP", "UDP"} {
			for _, to := range []string{"x/b", "y/c", "node/n2", "external/ext"} {
				got := l.Probe(context.Background(), "x/a", to, family, proto, 9, time.Second)
				if got.Verdict != Denied || got.Reason != Reset {
					t.Errorf("IPv%d %s x/a -> %s:9 (nothing listens) = %v, want denied (reset)", family, proto, to, got)
				}
			}
		}
	}
}

// nodeRules go into n2's namespace, never the host's.
const nodeRules = `
table inet t {
	chain forward_rules {
		type filter hook forward priority 0; policy accept;
		tcp dport 81 drop
		udp dport 81 drop
		tcp dport 82 reject with tcp reset
		udp dport 83 reject
		tcp dport 84 reject with icmpx admin-prohibited
		udp dport 84 reject with icmpx admin-prohibited
		udp dport 85 reject with icmpx host-unreachable
	}
	chain output_rules {
		type filter hook output priority 0; policy accept;
		tcp dport 86 drop
		udp dport 86 drop
	}
}
`

func TestDeniedByRulesInANodeNamespace(t *testing.T) {
	l, _ := twoNodeLab(t, true, true)
	for _, port := range []uint16{81, 82, 83, 84, 85, 86} {
		for _, ep := range []string{"x/a", "y/c"} {
			must(t, l.Listen(ep, "TCP", port))
			must(t, l.Listen(ep, "UDP", port))
		}
	}
	inNS(t, l, "node/n2", nodeRules, "nft", "-f", "-")

	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		from, to string
		proto    string
		port     uint16
		want     Outcome
	}{
		{"x/a", "y/c", "TCP", 80, Outcome{Verdict: Allowed}},
		{"x/a", "y/c", "UDP", 53, Outcome{Verdict: Allowed}},
		{"x/a", "y/c", "TCP", 81, Outcome{Verdict: Denied, Reason: Timeout}},
		{"x/a", "y/c", "UDP", 81, Outcome{Verdict: Denied, Reason: Timeout}},
		{"x/a", "y/c", "TCP", 82, Outcome{Verdict: Denied, Reason: Reset}},
		{"x/a", "y/c", "UDP", 83, Outcome{Verdict: Denied, Reason: Reset}},
		{"x/a", "y/c", "TCP", 84, Outcome{Verdict: Denied, Reason: Unreachable}},
		{"x/a", "y/c", "UDP", 84, Outcome{Verdict: Denied, Reason: Unreachable}},
		{"x/a", "y/c", "UDP", 85, Outcome{Verdict: Denied, Reason: Unreachable}},
		// The reply direction: y/c's answers are forwarded by n2 too.
		{"y/c", "x/a", "TCP", 80, Outcome{Verdict: Allowed}},
		// n2's own output hook drops what n2 sends (UDP sees EPERM).
		{"node/n2", "x/a", "TCP", 86, Outcome{Verdict: Denied, Reason: Timeout}},
		{"node/n2", "x/a", "UDP", 86, Outcome{Verdict: Denied, Reason: Timeout}},
		// n1 has no rules.
		{"x/a", "x/b", "TCP", 80, Outcome{Verdict: Allowed}},
	} {
		for _, family := range []int{4, 6} {
			got := l.Probe(context.Background(), tc.from, tc.to, family, tc.proto, tc.port, timeout)
			if got.Verdict != tc.want.Verdict || got.Reason != tc.want.Reason {
				t.Errorf("IPv%d %s %s -> %s:%d = %v, want %v", family, tc.proto, tc.from, tc.to, tc.port, got, tc.want)
			}
		}
	}
}

// ICMP errors are rate-limited per destination by default (burst 6, then
// 1/s); the lab turns that off so every reject is seen as one.
func TestManyRejectsAreNotRateLimited(t *testing.T) {
	l, _ := twoNodeLab(t, true, true)
	must(t, l.Listen("y/c", "UDP", 83))
	inNS(t, l, "node/n2", nodeRules, "nft", "-f", "-")
	for _, family := range []int{4, 6} {
		for i := range 30 {
			got := l.Probe(context.Background(), "x/a", "y/c", family, "UDP", 83, 500*time.Millisecond)
			if got.Reason != Reset {
				t.Fatalf("IPv%d reject #%d = %v, want denied (reset)", family, i+1, got)
			}
		}
	}
}

func TestRemovePod(t *testing.T) {
	l, _ := twoNodeLab(t, true, true)
	must(t, l.RemovePod("y/c"))
	if got := l.Probe(context.Background(), "x/a", "y/c", 4, "TCP", 80, time.Second); got.Verdict != Failed {
		t.Errorf("probe to a removed pod = %v, want failed", got)
	}
	for _, ep := range []string{"node/n1", "node/n2", "external/ext"} {
		out := inNS(t, l, ep, "", "ip", "-d", "route", "show", "table", "all")
		if strings.Contains(out, "10.244.2.10") || strings.Contains(out, "fd00:10:244:2::a") {
			t.Errorf("%s still routes the removed pod:\n%s", ep, out)
		}
	}
	// The same id comes back on the other node with other addresses.
	must(t, l.AddPod("y/c", "n1", addrs("10.244.1.99", "fd00:10:244:1::99", true, true)))
	must(t, l.Listen("y/c", "TCP", 80))
	for _, family := range []int{4, 6} {
		for _, from := range []string{"x/a", "y/d", "node/n2", "external/ext"} {
			if got := l.Probe(context.Background(), from, "y/c", family, "TCP", 80, time.Second); got.Verdict != Allowed {
				t.Errorf("IPv%d %s -> re-added y/c = %v, want allowed", family, from, got)
			}
		}
	}
}

// With two IPv6 addresses, source address selection (longest matching
// prefix) would answer a UDP probe from the address that was not probed;
// the echo answers from the probed one.
func TestUDPEchoAnswersFromTheProbedAddress(t *testing.T) {
	l := newLab(t)
	must(t, l.AddNode("n1", addrs("172.18.0.2", "fd00:ffff::2", true, true)))
	must(t, l.AddNode("n2", []netip.Addr{
		netip.MustParseAddr("fd00:ffff::3"), netip.MustParseAddr("2001:db8:aaaa::3"),
		netip.MustParseAddr("172.18.0.3"), netip.MustParseAddr("172.18.0.33"),
	}))
	must(t, l.AddPod("x/a", "n1", addrs("10.244.1.10", "2001:db8:aaaa::a", true, true)))
	must(t, l.Listen("node/n2", "UDP", 53))
	for _, family := range []int{4, 6} {
		if got := l.Probe(context.Background(), "x/a", "node/n2", family, "UDP", 53, time.Second); got.Verdict != Allowed {
			t.Errorf("IPv%d x/a -> node/n2 UDP = %v, want allowed", family, got)
		}
	}
}

// A node given only an IPv6 InternalIP still carries dual-stack pods: other
// members route the pod's IPv4 address via the node's link-local address.
func TestNodeWithoutIPv4CarriesIPv4Pods(t *testing.T) {
	l := newLab(t)
	must(t, l.AddNode("n1", nil))
	must(t, l.AddNode("v6only", addrs("", "fd00:ffff::66", false, true)))
	must(t, l.AddPod("x/a", "n1", addrs("10.244.1.10", "fd00:10:244:1::a", true, true)))
	must(t, l.AddPod("x/b", "v6only", addrs("10.244.6.10", "fd00:10:244:6::a", true, true)))
	must(t, l.Listen("x/b", "TCP", 80))
	for _, family := range []int{4, 6} {
		if got := l.Probe(context.Background(), "x/a", "x/b", family, "TCP", 80, time.Second); got.Verdict != Allowed {
			t.Errorf("IPv%d x/a -> x/b = %v, want allowed", family, got)
		}
	}
}

func TestProbeErrors(t *testing.T) {
	l, _ := twoNodeLab(t, true, false)
	for _, tc := range []struct {
		from, to string
		family   int
		proto    string
	}{
		{"x/a", "x/nope", 4, "TCP"},
		{"x/a", "y/c", 6, "TCP"}, // an IPv4-only lab
		{"x/a", "y/c", 5, "TCP"},
		{"x/a", "y/c", 4, "ICMP"},
	} {
		if got := l.Probe(context.Background(), tc.from, tc.to, tc.family, tc.proto, 80, time.Second); got.Verdict != Failed {
			t.Errorf("Probe(%s, %s, %d, %s) = %v, want failed", tc.from, tc.to, tc.family, tc.proto, got)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	inNS(t, l, "node/n2", nodeRules, "nft", "-f", "-")
	must(t, l.Listen("y/c", "TCP", 81))
	start := time.Now()
	if got := l.Probe(ctx, "x/a", "y/c", 4, "TCP", 81, 10*time.Second); got.Verdict != Failed || time.Since(start) > 2*time.Second {
		t.Errorf("cancelled probe = %v after %v, want failed at once", got, time.Since(start))
	}
}

func TestTopologyErrors(t *testing.T) {
	l, _ := twoNodeLab(t, true, false)
	ip := func(s string) []netip.Addr { return []netip.Addr{netip.MustParseAddr(s)} }
	for name, err := range map[string]error{
		"duplicate node":     l.AddNode("n1", nil),
		"duplicate pod":      l.AddPod("x/a", "n1", ip("10.244.9.9")),
		"address in use":     l.AddPod("x/z", "n1", ip("10.244.1.10")),
		"unknown node":       l.AddPod("x/z", "n9", ip("10.244.9.9")),
		"no addresses":       l.AddPod("x/z", "n1", nil),
		"bad pod id":         l.AddPod("xz", "n1", ip("10.244.9.9")),
		"reserved namespace": l.AddPod("node/z", "n1", ip("10.244.9.9")),
		"link-local address": l.AddExternal("e2", ip("169.254.1.1")),
		"unknown pod":        l.RemovePod("x/nope"),
		"unknown listener":   l.Listen("x/nope", "TCP", 80),
		"bad protocol":       l.Listen("x/a", "ICMP", 80),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// None of that disturbed the lab.
	if got := l.Probe(context.Background(), "x/a", "y/c", 4, "TCP", 80, time.Second); got.Verdict != Allowed {
		t.Errorf("after the errors, x/a -> y/c = %v", got)
	}
}

func TestCommandErrorNamesTheFailingLine(t *testing.T) {
	l, _ := twoNodeLab(t, true, false)
	err := ipBatch(l.fabricNetns(), []string{"link set br0 up", "link set nosuchlink up"})
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Line != "link set nosuchlink up" || !strings.Contains(err.Error(), "nosuchlink") {
		t.Errorf("error = %v (%#v), want a CommandError naming line 2", err, ce)
	}
	if err := ipBatch("", []string{"link set lo up"}); err == nil {
		t.Error("ipBatch configured the host namespace")
	}
}

// The brief: a 3-node, 12-pod lab comes up in well under 2 s, and a 12x12
// matrix runs in seconds.
func TestThreeNodesTwelvePodsIsQuick(t *testing.T) {
	l := newLab(t)
	start := time.Now()
	var eps []string
	for n := 1; n <= 3; n++ {
		must(t, l.AddNode(fmt.Sprintf("n%d", n), nil))
	}
	for i := range 12 {
		id := fmt.Sprintf("ns%d/p%d", i%3, i)
		v4, v6 := fmt.Sprintf("10.244.%d.%d", i%3+1, 10+i), fmt.Sprintf("fd00:10:244:%d::%x", i%3+1, 10+i)
		must(t, l.AddPod(id, fmt.Sprintf("n%d", i%3+1), addrs(v4, v6, true, true)))
		must(t, l.Listen(id, "TCP", 80))
		eps = append(eps, id)
	}
	setup := time.Since(start)
	// Timing is logged, not asserted: the machine is shared, and how fast
	// a lab comes up is measured by the perf suite, not by a unit test.
	t.Logf("3 nodes, 12 dual-stack pods: up in %v", setup)
	start = time.Now()
	if bad := notAllowed(matrix(l, eps, 4, "TCP", 80, time.Second)); len(bad) > 0 {
		t.Errorf("not allowed:\n%s", strings.Join(bad, "\n"))
	}
	t.Logf("12x12 TCP matrix: %v", time.Since(start))
}

func TestNewHasNoSideEffects(t *testing.T) {
	l := New("")
	if !prefixRE.MatchString(l.Prefix()) {
		t.Errorf("prefix %q", l.Prefix())
	}
	if p := NewPrefix(); p == l.Prefix() {
		t.Errorf("NewPrefix repeated %q", p)
	}
	if l.up || l.lock != nil {
		t.Error("New set things up")
	}
	if err := l.Close(); err != nil {
		t.Error(err)
	}
	if err := New("nplab-bad").AddNode("n1", nil); err == nil {
		t.Error("a malformed prefix was accepted")
	}
}
