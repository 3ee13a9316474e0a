package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/klog/v2"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// verdictLines collects the agents' "Verdict" log lines as JSON objects.
type verdictLines struct {
	mu    sync.Mutex
	lines []map[string]any
}

func (v *verdictLines) logger() logr.Logger {
	return funcr.NewJSON(func(obj string) {
		var m map[string]any
		if json.Unmarshal([]byte(obj), &m) != nil || m["msg"] != "Verdict" {
			return
		}
		v.mu.Lock()
		v.lines = append(v.lines, m)
		v.mu.Unlock()
	}, funcr.Options{})
}

// take returns the lines so far and forgets them.
func (v *verdictLines) take() []map[string]any {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := v.lines
	v.lines = nil
	return out
}

// verdictLab: x/client on n1; on n2 x/web, whose ingress x/web-in allows
// only app=client on TCP 80, and x/audited, which x/audit-deny (in audit
// mode) isolates for ingress with no rule: it would deny everything.
type verdictLab struct {
	f     *Fixture
	lines *verdictLines
}

var (
	verdictClient  = netip.MustParseAddr("10.244.1.10")
	verdictWeb     = netip.MustParseAddr("10.244.2.10")
	verdictAudited = netip.MustParseAddr("10.244.2.11")
)

func newVerdictLab(t *testing.T, logs model.LogMode, webLogsAccepts bool) *verdictLab {
	f, must := testFixture(t)
	must(f.AddNode("n1", netip.MustParsePrefix("10.244.1.0/24")))
	must(f.AddNode("n2", netip.MustParsePrefix("10.244.2.0/24")))
	must(f.Create(tu.Namespace("x", nil)))
	for _, p := range []struct {
		name, node string
		ip         netip.Addr
	}{{"client", "n1", verdictClient}, {"web", "n2", verdictWeb}, {"audited", "n2", verdictAudited}} {
		must(f.Net.AddPod("x/"+p.name, p.node, []netip.Addr{p.ip}))
		must(f.Create(tu.Pod("x", p.name, p.node, map[string]string{"app": p.name}, []string{p.ip.String()})))
	}
	for _, p := range []string{"x/web", "x/audited"} {
		must(f.Net.Listen(p, "TCP", 80))
		must(f.Net.Listen(p, "UDP", 53))
	}
	web := tu.Policy("x", "web-in", map[string]string{"app": "web"}, tu.Types(networkingv1.PolicyTypeIngress),
		tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(map[string]string{"app": "client"})}, tu.Port(corev1.ProtocolTCP, 80, 0)))
	if webLogsAccepts {
		web.Annotations = map[string]string{model.AnnotationLogAccepts: "true"}
	}
	must(f.Create(web))
	audit := tu.Policy("x", "audit-deny", map[string]string{"app": "audited"}, tu.Types(networkingv1.PolicyTypeIngress))
	audit.Annotations = map[string]string{model.AnnotationEnforcement: model.EnforcementAudit}
	must(f.Create(audit))

	lines := &verdictLines{}
	ctx := klog.NewContext(context.Background(), lines.logger())
	must(f.StartAgents(ctx, []string{"n1", "n2"}, func(cfg *agent.Config, fd int) {
		cfg.Model = model.Options{Logs: logs}
		if logs != model.LogNone {
			cfg.Logs = func(ctx context.Context, group uint16, fn func(nft.LogEvent)) error {
				return nft.ReadLogs(ctx, fd, group, fn)
			}
		}
		cfg.Counters = cfg.Kernel.(*nft.Netlink)
		cfg.CountersInterval = time.Hour // read by the test
	}))
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	must(f.Barrier(bctx))
	return &verdictLab{f: f, lines: lines}
}

func (l *verdictLab) probe(t *testing.T, dst netip.Addr, proto string, port uint16, want netlab.Verdict) {
	t.Helper()
	// 300 ms: less than TCP's first SYN retransmission (1 s), so a denied
	// probe is one packet.
	if o := l.f.Net.ProbeAddr(context.Background(), "x/client", dst, proto, port, 300*time.Millisecond); o.Verdict != want {
		t.Fatalf("x/client -> %s %s/%d: %v, want %v", dst, proto, port, o, want)
	}
}

// waitLines waits until n lines came (and a little more, for any extra).
func (l *verdictLab) waitLines(n int) []map[string]any {
	deadline := time.Now().Add(3 * time.Second)
	for {
		l.lines.mu.Lock()
		got := len(l.lines.lines)
		l.lines.mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	return l.lines.take()
}

// packets reads n2's counters and returns one series.
func (l *verdictLab) packets(policy, rule, verdict string) uint64 {
	a := l.f.Agents["n2"]
	a.ReadCounters(context.Background(), klog.Background())
	return a.Metrics().PolicyPackets("ingress", "networkpolicy", policy, rule, verdict)
}

func checkLine(t *testing.T, line map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if fmt.Sprint(line[k]) != fmt.Sprint(v) {
			t.Errorf("verdict line %v: %s=%v, want %v", line, k, line[k], v)
		}
	}
}

// A denied probe is one packet dropped in n2's kernel: one line, naming the
// policy and rule, the pods, the protocol and port; the drop counter moves
// by one, the allow counter by one per allowed connection (only a
// connection's first packet meets the policy rules). A probe that the
// audit policy would deny goes through, logged and counted as would-drop.
func TestVerdictLogsAndCounters(t *testing.T) {
	l := newVerdictLab(t, model.LogDrops, false)

	l.probe(t, verdictWeb, "UDP", 53, netlab.Denied)
	lines := l.waitLines(1)
	if len(lines) != 1 {
		t.Fatalf("%d verdict lines for one denied probe, want 1: %v", len(lines), lines)
	}
	t.Logf("the line: %v", lines[0])
	checkLine(t, lines[0], map[string]any{"verdict": "drop", "direction": "ingress", "tier": "networkpolicy",
		"policy": "x/web-in", "rule": "default-deny", "src": "x/client (10.244.1.10)", "dst": "x/web (10.244.2.10)",
		"proto": "udp", "port": 53, "node": "n2"})
	if got := l.packets("x/web-in", "default-deny", "drop"); got != 1 {
		t.Errorf("drop counter %d after one denied datagram, want 1", got)
	}

	for range 3 {
		l.probe(t, verdictWeb, "TCP", 80, netlab.Allowed)
	}
	if got := l.packets("x/web-in", "0", "accept"); got != 3 {
		t.Errorf("accept counter of rule 0: %d after 3 connections, want 3", got)
	}
	if lines := l.waitLines(0); len(lines) != 0 {
		t.Errorf("verdict lines for allowed connections with --verdict-logs=drops: %v", lines)
	}

	for range 2 {
		l.probe(t, verdictAudited, "TCP", 80, netlab.Allowed)
	}
	lines = l.waitLines(2)
	if len(lines) != 2 {
		t.Fatalf("%d verdict lines for 2 connections the audit policy would deny, want 2: %v", len(lines), lines)
	}
	for _, line := range lines {
		checkLine(t, line, map[string]any{"verdict": "would-drop", "direction": "ingress", "tier": "networkpolicy",
			"policy": "x/audit-deny", "rule": "default-deny", "src": "x/client (10.244.1.10)", "dst": "x/audited (10.244.2.11)",
			"proto": "tcp", "port": 80})
	}
	if got := l.packets("x/audit-deny", "default-deny", "would-drop"); got != 2 {
		t.Errorf("would-drop counter %d after 2 connections, want 2", got)
	}
	if got := l.f.Agents["n1"].Metrics().PolicyPackets("ingress", "networkpolicy", "x/web-in", "default-deny", "drop"); got != 0 {
		t.Errorf("n1 counted %d drops of a policy it does not enforce", got)
	}
}

// The broken variant: with --verdict-logs=none the same denied probe
// writes no line (and the counters still move).
func TestVerdictLogsOff(t *testing.T) {
	l := newVerdictLab(t, model.LogNone, false)
	l.probe(t, verdictWeb, "UDP", 53, netlab.Denied)
	if lines := l.waitLines(1); len(lines) != 0 {
		t.Errorf("verdict lines with --verdict-logs=none: %v", lines)
	}
	if got := l.packets("x/web-in", "default-deny", "drop"); got != 1 {
		t.Errorf("drop counter %d, want 1", got)
	}
}

// A policy annotated nftpolicy.io/log-accepts logs what it accepts: one
// line per connection (its first packet), naming the rule.
func TestVerdictLogsAccepts(t *testing.T) {
	l := newVerdictLab(t, model.LogDrops, true)
	for range 2 {
		l.probe(t, verdictWeb, "TCP", 80, netlab.Allowed)
	}
	lines := l.waitLines(2)
	if len(lines) != 2 {
		t.Fatalf("%d verdict lines for 2 connections a policy logging its accepts allowed, want 2: %v", len(lines), lines)
	}
	for _, line := range lines {
		checkLine(t, line, map[string]any{"verdict": "accept", "direction": "ingress", "tier": "networkpolicy",
			"policy": "x/web-in", "rule": "0", "dst": "x/web (10.244.2.10)", "proto": "tcp", "port": 80})
	}
	// The audit policy does not log accepts: its would-drop only.
	l.probe(t, verdictAudited, "TCP", 80, netlab.Allowed)
	if lines := l.waitLines(1); len(lines) != 1 || lines[0]["verdict"] != "would-drop" {
		t.Errorf("lines %v, want one would-drop", lines)
	}
}

// A flood of denied datagrams: every one is dropped and counted, but the
// kernel copies at most its burst plus its rate (compile.LogBurst, then
// LogRate a second) to the group, so the lines stay bounded.
func TestVerdictLogsRateLimited(t *testing.T) {
	l := newVerdictLab(t, model.LogDrops, false)
	const n = 100
	// Count the datagrams that reach n2 at all (a loaded machine can lose one
	// on the way, before any policy): the drop counter must match that.
	ns := filepath.Base(l.f.Net.NodeNetNSPath("n2"))
	arrivals := fmt.Sprintf("table inet arrivals { chain pre { type filter hook prerouting priority -300; ip daddr %s udp dport 53 counter; }; }", verdictWeb)
	if out, err := tu.NftIn(t, ns, arrivals, "-f", "-"); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	start := time.Now()
	for range n {
		if o := l.f.Net.ProbeAddr(context.Background(), "x/client", verdictWeb, "UDP", 53, 2*time.Millisecond); o.Verdict != netlab.Denied {
			t.Fatalf("probe: %v, want denied", o)
		}
	}
	elapsed := time.Since(start)
	lines := l.waitLines(n)
	most := compile.LogBurst + int(elapsed.Seconds()*compile.LogRate) + 1
	if len(lines) < compile.LogBurst || len(lines) > most {
		t.Errorf("%d lines for %d denied datagrams sent in %v; want between the burst (%d) and %d", len(lines), n, elapsed.Round(time.Millisecond), compile.LogBurst, most)
	}
	out, err := tu.NftIn(t, ns, "", "list", "chain", "inet", "arrivals", "pre")
	m := regexp.MustCompile(`counter packets (\d+)`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	arrived, _ := strconv.ParseUint(m[1], 10, 64)
	if arrived < n-5 {
		t.Fatalf("only %d of %d datagrams reached n2", arrived, n)
	}
	if got := l.packets("x/web-in", "default-deny", "drop"); got != arrived {
		t.Errorf("drop counter %d, want %d: every datagram that reached n2 is dropped and counted", got, arrived)
	}
	t.Logf("%d datagrams in %v: %d lines", n, elapsed.Round(time.Millisecond), len(lines))
}
