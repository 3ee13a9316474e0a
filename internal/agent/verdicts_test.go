package agent

import (
	"context"
	"encoding/json"
	"net/netip"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/klog/v2"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// fakeCounters answers with counts set by the test.
type fakeCounters struct {
	mu     sync.Mutex
	counts map[string]nft.Count
}

func (f *fakeCounters) Counters(context.Context) (map[string]nft.Count, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts, nil
}

// A policy added after the agent started (partial syncs only): its
// origins are indexed from the chains the sync touched, so a log event
// with its prefix becomes a line naming it and its counters a series.
func TestVerdictsFollowPartialSyncs(t *testing.T) {
	var emit func(nft.LogEvent)
	counters := &fakeCounters{}
	h := start(t, func(cfg *Config) {
		cfg.Logs = func(_ context.Context, group uint16, fn func(nft.LogEvent)) error {
			if group != model.DefaultLogGroup {
				t.Errorf("group %d, want the default %d", group, model.DefaultLogGroup)
			}
			emit = fn
			return nil
		}
		cfg.Counters = counters
	}, tu.Namespace("x", nil), tu.Pod("x", "web", node, m{"app": "web"}, []string{"10.0.0.1"}), tu.Pod("x", "client", "node-2", m{"app": "client"}, []string{"10.0.1.1"}))
	h.wait()
	h.apply(tu.Policy("x", "deny-web", m{"app": "web"}, tu.Types(networkingv1.PolicyTypeIngress)))
	h.wait()
	if s := h.agent.Stats(); s.FullSyncs != 1 {
		t.Fatalf("%d full syncs, want only the first (the policy came in a partial one)", s.FullSyncs)
	}

	drop := &nft.Origin{Direction: "ingress", Tier: "networkpolicy", Policy: "x/deny-web", Rule: "default-deny", Verdict: compile.VerdictDrop}
	var lines []map[string]any
	logger := funcr.NewJSON(func(obj string) {
		var m map[string]any
		if json.Unmarshal([]byte(obj), &m) == nil {
			lines = append(lines, m)
		}
	}, funcr.Options{})
	if emit == nil {
		t.Fatal("the agent did not read the log group")
	}
	ev := nft.LogEvent{Prefix: compile.LogPrefix(drop), Src: netip.MustParseAddr("10.0.1.1"), Dst: netip.MustParseAddr("10.0.0.1"), Proto: nft.ProtoTCP, Port: 80}
	h.agent.logVerdict(logger, ev, 0)
	if len(lines) != 1 || lines[0]["policy"] != "x/deny-web" || lines[0]["rule"] != "default-deny" || lines[0]["verdict"] != "drop" ||
		lines[0]["src"] != "x/client (10.0.1.1)" || lines[0]["dst"] != "x/web (10.0.0.1)" {
		t.Errorf("lines %v, want one naming x/deny-web, default-deny, the pods", lines)
	}

	// The class chain's drop rule, as the kernel counts it.
	var id string
	for _, c := range h.agent.engine.Ruleset().Chains {
		for _, r := range c.Rules {
			if r.Counter && r.Origin != nil && *r.Origin == *drop {
				id = r.ID()
			}
		}
	}
	if id == "" {
		t.Fatal("no counted rule with the policy's drop origin")
	}
	counters.counts = map[string]nft.Count{id: {Packets: 5, Bytes: 300}, "a rule of someone else": {Packets: 7}}
	h.agent.ReadCounters(context.Background(), klog.Background())
	if got := counterValue(t, h.reg, "nftpolicy_policy_packets_total", "policy", "x/deny-web"); got != 5 {
		t.Errorf("nftpolicy_policy_packets_total{policy=x/deny-web} = %v, want 5", got)
	}
	if got := counterValue(t, h.reg, "nftpolicy_policy_bytes_total", "policy", "x/deny-web"); got != 300 {
		t.Errorf("nftpolicy_policy_bytes_total = %v, want 300", got)
	}
}
