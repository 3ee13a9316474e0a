package netlab

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/internal/conntrack"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// The packets parse back, and a flipped bit anywhere makes the checksum
// fail. (That the checksum is the one the kernel computes is checked by
// conntrack in TestSCTPThroughConntrack: it marks a wrong one invalid.)
func TestSCTPPackets(t *testing.T) {
	h := sctpHeader{src: 40000, dst: 9003, vtag: 0}
	init := sctpPacket(h, initChunk(sctpInit, 0xdeadbeef, 7))
	if len(init) != sctpHeaderLen+sctpInitLen {
		t.Fatalf("INIT is %d bytes, want %d", len(init), sctpHeaderLen+sctpInitLen)
	}
	got, typ, chunk, ok := parseSCTP(init)
	if !ok || got != h || typ != sctpInit || binary.BigEndian.Uint32(chunk[4:]) != 0xdeadbeef {
		t.Fatalf("parse INIT = %v %d %x %v", got, typ, chunk, ok)
	}
	for i := range len(init) * 8 {
		bad := append([]byte(nil), init...)
		bad[i/8] ^= 1 << (i % 8)
		if _, _, _, ok := parseSCTP(bad); ok {
			t.Fatalf("bit %d flipped: still parses", i)
		}
	}
	// The responder: an INIT-ACK with the INIT's tag in its header and a
	// state cookie from a port that listens, an ABORT from another.
	r := &sctpResponder{ports: map[uint16]bool{9003: true}}
	ack, typ, chunk, ok := parseSCTP(r.answer(init))
	if !ok || typ != sctpInitAck || ack != (sctpHeader{9003, 40000, 0xdeadbeef}) ||
		len(chunk) != sctpInitLen+20 || binary.BigEndian.Uint16(chunk[sctpInitLen:]) != sctpParamStateCookie {
		t.Errorf("answer to INIT = %v type %d chunk %x", ack, typ, chunk)
	}
	closed := sctpPacket(sctpHeader{src: 40000, dst: 9}, initChunk(sctpInit, 0xdeadbeef, 7))
	if abort, typ, _, ok := parseSCTP(r.answer(closed)); !ok || typ != sctpAbort || abort != (sctpHeader{9, 40000, 0xdeadbeef}) {
		t.Errorf("answer to INIT on a closed port = %v type %d", abort, typ)
	}
	// Nothing but an INIT is answered: not its own INIT-ACKs, not an INIT
	// with a tag in its header or none in its chunk.
	for name, p := range map[string][]byte{
		"INIT-ACK":    r.answer(init),
		"tagged INIT": sctpPacket(sctpHeader{40000, 9003, 1}, initChunk(sctpInit, 0xdeadbeef, 7)),
		"tag 0":       sctpPacket(h, initChunk(sctpInit, 0, 7)),
		"short":       init[:sctpHeaderLen+8],
	} {
		if reply := r.answer(p); reply != nil {
			t.Errorf("%s answered: %x", name, reply)
		}
	}
}

// sctpRules go into the namespaces the test names, never the host's. n2
// counts each SCTP packet it forwards by conntrack state; y/c drops SCTP
// to port 9004 in its own input hook; n2 rejects ports 9006 and 9007 and
// drops what it sends itself to 9008.
const sctpNodeRules = `
table inet t {
	chain forward {
		type filter hook forward priority 0; policy accept;
		ct state invalid meta l4proto sctp counter
		ct state new sctp dport 9005 counter
		ct state established sctp sport 9005 counter
		sctp dport 9006 reject
		sctp dport 9007 reject with icmpx admin-prohibited
	}
	chain output {
		type filter hook output priority 0; policy accept;
		sctp dport 9008 drop
	}
}
`

const sctpPodRules = `
table inet t {
	chain input {
		type filter hook input priority 0; policy accept;
		sctp dport 9004 drop
	}
}
`

// SCTP on a kernel without SCTP sockets: the probes are real SCTP packets
// through the nodes' forwarding, conntrack and nftables.
func TestSCTP(t *testing.T) {
	l, eps := twoNodeLab(t, true, true)
	for _, ep := range eps {
		for _, port := range []uint16{9003, 9004, 9005, 9006, 9007, 9008} {
			must(t, l.Listen(ep, "SCTP", port))
		}
	}
	must(t, l.AddPod("z/quiet", "n2", addrs("10.244.2.99", "fd00:10:244:2::99", true, true)))
	must(t, l.Listen("z/quiet", "TCP", 80)) // no SCTP: nothing in it answers SCTP
	for _, family := range []int{4, 6} {
		got := matrix(l, eps, family, "SCTP", 9003, 2*time.Second)
		if bad := notAllowed(got); len(bad) > 0 || len(got) != len(eps)*(len(eps)-1) {
			t.Errorf("IPv%d SCTP: %d probes, not allowed:\n%s", family, len(got), strings.Join(bad, "\n"))
		}
		for _, ep := range []string{"x/a", "node/n1", "external/ext"} {
			if o := l.Probe(context.Background(), ep, ep, family, "SCTP", 9003, time.Second); o.Verdict != Allowed {
				t.Errorf("IPv%d SCTP %s -> itself = %v", family, ep, o)
			}
		}
	}

	inNS(t, l, "y/c", sctpPodRules, "nft", "-f", "-")
	inNS(t, l, "node/n2", sctpNodeRules, "nft", "-f", "-")
	const timeout = 500 * time.Millisecond
	for _, tc := range []struct {
		from, to string
		port     uint16
		want     Outcome
	}{
		{"x/a", "y/c", 9003, Outcome{Verdict: Allowed}},
		{"x/a", "y/c", 9004, Outcome{Verdict: Denied, Reason: Timeout}}, // y/c's own input hook
		{"x/a", "y/d", 9004, Outcome{Verdict: Allowed}},                 // the rule is y/c's only
		{"x/a", "y/c", 9, Outcome{Verdict: Denied, Reason: Reset}},      // nobody listens: ABORT
		{"node/n2", "y/c", 9, Outcome{Verdict: Denied, Reason: Reset}},
		{"x/a", "y/c", 9006, Outcome{Verdict: Denied, Reason: Reset}},       // ICMP port unreachable
		{"x/a", "y/c", 9007, Outcome{Verdict: Denied, Reason: Unreachable}}, // ICMP admin prohibited
		{"node/n2", "y/c", 9008, Outcome{Verdict: Denied, Reason: Timeout}}, // n2's output hook: EPERM
		{"node/n1", "y/c", 9008, Outcome{Verdict: Allowed}},
		// No SCTP socket in z/quiet: the kernel answers with ICMP protocol
		// unreachable (IPv4) or parameter problem (IPv6).
		{"x/a", "z/quiet", 9003, Outcome{Verdict: Denied, Reason: Unreachable}},
		{"y/c", "x/a", 9003, Outcome{Verdict: Allowed}},
	} {
		for _, family := range []int{4, 6} {
			got := l.Probe(context.Background(), tc.from, tc.to, family, "SCTP", tc.port, timeout)
			if got.Verdict != tc.want.Verdict || got.Reason != tc.want.Reason {
				t.Errorf("IPv%d SCTP %s -> %s:%d = %v (%v), want %v", family, tc.from, tc.to, tc.port, got, got.Err, tc.want)
			}
		}
	}
	if t.Failed() {
		t.Logf("n2:\n%s", inNS(t, l, "node/n2", "", "nft", "list", "ruleset"))
	}
}

// One probe is one association through n2's conntrack: the INIT new, the
// INIT-ACK established, nothing invalid (conntrack checks the CRC32c), and
// the entry is SCTP's, from the probing pod to the probed one.
func TestSCTPThroughConntrack(t *testing.T) {
	l, _ := twoNodeLab(t, true, true)
	for _, ep := range []string{"x/a", "y/c"} {
		must(t, l.Listen(ep, "SCTP", 9005))
	}
	inNS(t, l, "node/n2", sctpNodeRules, "nft", "-f", "-")
	for i, family := range []int{4, 6} {
		if got := l.Probe(context.Background(), "x/a", "y/c", family, "SCTP", 9005, time.Second); got.Verdict != Allowed {
			t.Fatalf("IPv%d x/a -> y/c SCTP 9005 = %v", family, got)
		}
		counts := sctpCounters(t, inNS(t, l, "node/n2", "", "nft", "list", "chain", "inet", "t", "forward"))
		want := map[string]int{"invalid": 0, "new": i + 1, "established": i + 1}
		if fmt.Sprint(counts) != fmt.Sprint(want) {
			t.Errorf("after IPv%d probe: n2 counted %v SCTP packets, want %v", family, counts, want)
		}
	}
	ns, err := unix.Open(l.NodeNetNSPath("n2"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(ns)
	entries, err := conntrack.NewNetlink(ns).Dump(context.Background(), nil)
	must(t, err)
	var sctp []string
	for _, e := range entries {
		if e.Proto == 132 {
			sctp = append(sctp, e.String())
		}
	}
	want := []string{
		"132 10.244.1.10 -> 10.244.2.10:9005",
		"132 fd00:10:244:1::a -> fd00:10:244:2::a:9005",
	}
	sort.Strings(sctp)
	if strings.Join(sctp, "\n") != strings.Join(want, "\n") {
		t.Errorf("n2's SCTP conntrack entries:\n%s\nwant:\n%s", strings.Join(sctp, "\n"), strings.Join(want, "\n"))
	}
}

var counterRE = regexp.MustCompile(`ct state (\w+) .*counter packets (\d+)`)

// sctpCounters reads the packet counts of sctpNodeRules' ct state rules.
func sctpCounters(t *testing.T, chain string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range counterRE.FindAllStringSubmatch(chain, -1) {
		n, err := strconv.Atoi(m[2])
		must(t, err)
		out[m[1]] = n
	}
	return out
}

// noRawMode runs TestSCTPSkippedWithoutRawSockets's child.
const noRawMode = "sctp-no-raw"

// Without CAP_NET_RAW (the child drops it with setpriv) SCTP cannot be
// probed at all here: the probe is Skipped, not denied, and TCP is not
// affected.
func TestSCTPSkippedWithoutRawSockets(t *testing.T) {
	if os.Getenv(helperEnv) == noRawMode {
		l := New("")
		defer l.Close()
		must(t, l.AddNode("n1", nil))
		must(t, l.AddPod("x/a", "n1", addrs("10.244.1.10", "", true, false)))
		must(t, l.AddPod("x/b", "n1", addrs("10.244.1.11", "", true, false)))
		for _, proto := range []string{"SCTP", "TCP"} {
			must(t, l.Listen("x/b", proto, 80))
		}
		if got := l.Probe(context.Background(), "x/a", "x/b", 4, "SCTP", 80, time.Second); got.Verdict != Skipped {
			t.Errorf("SCTP without raw sockets = %v, want skipped", got)
		}
		// 3 s: a first SYN lost in a lab just built is sent again after 1 s.
		if got := l.Probe(context.Background(), "x/a", "x/b", 4, "TCP", 80, 3*time.Second); got.Verdict != Allowed {
			t.Errorf("TCP without raw sockets = %v, want allowed", got)
		}
		return
	}
	testutil.NeedKernel(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to drop CAP_NET_RAW")
	}
	// Root gets the bounding set's capabilities at exec, its inheritable
	// ones are kept: both must lose CAP_NET_RAW.
	cmd := exec.Command(setpriv, "--bounding-set", "-net_raw", "--inh-caps", "-net_raw",
		os.Args[0], "-test.run=^TestSCTPSkippedWithoutRawSockets$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+noRawMode)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestSCTPSkippedWithoutRawSockets") {
		t.Errorf("child without CAP_NET_RAW: %v\n%s", err, out)
	}
}
