package lab

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// A new pod, x/web on n2, is selected by a policy that denies it every
// ingress. Its address is created first (as a CNI plugin does), and only
// later does its Pod object carry the address (as the kubelet reports it):
// in between, the agent cannot know it. Probes start every 5 ms from the
// instant the address exists until well after the agent has programmed the
// pod: from x/client (n1) to x/web, which the policy denies, and from
// x/web to x/server (n1), which no policy denies.
const (
	newPodProbeEvery   = 5 * time.Millisecond
	newPodProbeTimeout = 100 * time.Millisecond
	// newPodReportDelay stands for the kubelet's delay between the
	// address existing and the pod's status carrying it.
	newPodReportDelay = 500 * time.Millisecond
)

var newPodAddr = netip.MustParseAddr("10.244.2.50")

// TestNewPodIsNeverOpen: with the agent's default (--protect-new-pods), no
// probe of the denied direction ever reaches the new pod, and no probe from
// it gets anywhere before the agent knows it; once programmed it reaches
// what its policies allow.
func TestNewPodIsNeverOpen(t *testing.T) {
	w := newPodWindow(t, true)
	// ~140 probes each at 5 ms; fewer on a loaded machine, but a window
	// of 300 ms must still be probed throughout.
	if len(w.ingress) < 50 || len(w.egress) < 50 {
		t.Fatalf("%d and %d probes; want at least 50 each (every %v over %v)", len(w.ingress), len(w.egress), newPodProbeEvery, w.stopped.Sub(w.addr))
	}
	for _, r := range w.ingress {
		if r.Reached() || r.Outcome.Verdict != netlab.Denied {
			t.Errorf("x/client -> x/web, probe at %+v: %v; want denied: the policy denies it, and before that the pod is not yet known",
				r.Start.Sub(w.addr).Round(time.Millisecond), r.Outcome)
		}
	}
	// A probe's packet leaves between its start and its end; those that
	// ended before the Pod object existed were surely sent before the agent
	// could know the pod (~80 of them).
	early := 0
	for _, r := range w.egress {
		if r.End.Before(w.created) {
			early++
			if r.Reached() {
				t.Errorf("x/web -> x/server, probe at +%v, ended before the Pod object existed: %v; want denied", r.Start.Sub(w.addr).Round(time.Millisecond), r.Outcome)
			}
		}
	}
	if early < 20 {
		t.Errorf("%d egress probes ended before the Pod object; want at least 20 (the window lasts %v, a probe at most %v)", early, newPodReportDelay, newPodProbeTimeout)
	}
	first, ok := FirstReached(w.egress)
	if !ok {
		t.Fatalf("x/web never reached x/server, which no policy denies; applied at +%v", w.applied.Sub(w.addr))
	}
	t.Logf("address at 0, Pod object at +%v, programmed by +%v, first egress through at +%v, %d+%d probes",
		w.created.Sub(w.addr).Round(time.Millisecond), w.applied.Sub(w.addr).Round(time.Millisecond),
		first.Sub(w.addr).Round(time.Millisecond), len(w.ingress), len(w.egress))
}

// TestWithoutProtectionNewPodIsOpen is the broken variant
// (--protect-new-pods=false): the same sequence lets denied connections
// through while the agent does not know the pod, which the test above
// forbids. Once programmed, the policy holds all the same.
func TestWithoutProtectionNewPodIsOpen(t *testing.T) {
	w := newPodWindow(t, false)
	through, after := 0, 0
	for _, r := range w.ingress {
		switch {
		case r.Start.Before(w.created) && r.Reached():
			through++
		case r.Start.After(w.applied) && r.Reached():
			after++
		}
	}
	if through == 0 {
		t.Errorf("no probe reached x/web before its Pod object existed; want the window to show without the protection")
	}
	if after != 0 {
		t.Errorf("%d probes reached x/web after the agent programmed it; want none (the policy denies them)", after)
	}
	t.Logf("%d of %d probes reached the new pod through a policy that denies them", through, len(w.ingress))
}

type newPodRun struct {
	ingress, egress                 []ProbeRecord
	addr, created, applied, stopped time.Time
}

func newPodWindow(t *testing.T, protect bool) newPodRun {
	f, must := testFixture(t)
	ctx := context.Background()
	must(f.AddNode("n1", netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")))
	must(f.AddNode("n2", netip.MustParsePrefix("10.244.2.0/24"), netip.MustParsePrefix("fd00:10:244:2::/64")))
	must(f.Create(tu.Namespace("x", nil)))
	for _, p := range []struct{ name, ip string }{{"client", "10.244.1.10"}, {"server", "10.244.1.11"}} {
		must(f.Net.AddPod("x/"+p.name, "n1", []netip.Addr{netip.MustParseAddr(p.ip)}))
		must(f.Create(tu.Pod("x", p.name, "n1", map[string]string{"app": p.name}, []string{p.ip})))
	}
	must(f.Net.Listen("x/server", "TCP", 80))
	must(f.Create(tu.Policy("x", "deny-web", map[string]string{"app": "web"}, tu.Types(networkingv1.PolicyTypeIngress))))
	must(f.StartAgents(ctx, []string{"n1", "n2"}, func(cfg *agent.Config, _ int) {
		cfg.Model = model.Options{OpenUnknown: !protect}
	}))
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	must(f.Barrier(bctx))

	// The ingress probes start before the address exists, so that they are
	// in flight at the instant it does (until then n1 has no route to it).
	var w newPodRun
	in := StartProber(ctx, f.Net, "x/client", newPodAddr, "TCP", 80, newPodProbeEvery, newPodProbeTimeout)
	time.Sleep(20 * time.Millisecond)
	must(f.Net.AddPod("x/web", "n2", []netip.Addr{newPodAddr}))
	w.addr = time.Now()
	out := StartProber(ctx, f.Net, "x/web", netip.MustParseAddr("10.244.1.11"), "TCP", 80, newPodProbeEvery, newPodProbeTimeout)
	must(f.Net.Listen("x/web", "TCP", 80))
	time.Sleep(time.Until(w.addr.Add(newPodReportDelay)))
	w.created = time.Now()
	must(f.Create(tu.Pod("x", "web", "n2", map[string]string{"app": "web"}, []string{newPodAddr.String()})))
	must(f.Barrier(bctx))
	w.applied = time.Now()
	time.Sleep(400 * time.Millisecond)
	w.stopped = time.Now()
	w.ingress, w.egress = in.Stop(), out.Stop()
	return w
}

// TestStartingAgentDeniesPodCIDRs: an agent starting on a node with no
// table, whose first sync waits for a slow list of pods, denies the node's
// pod CIDRs from the moment it has its Node object; with the protection
// off the same pods are open until the first sync.
func TestStartingAgentDeniesPodCIDRs(t *testing.T) {
	for _, protect := range []bool{true, false} {
		t.Run(map[bool]string{true: "protected", false: "protection off"}[protect], func(t *testing.T) {
			f, must := testFixture(t)
			must(f.AddNode("n1", netip.MustParsePrefix("10.244.1.0/24")))
			must(f.AddNode("n2", netip.MustParsePrefix("10.244.2.0/24")))
			must(f.Create(tu.Namespace("x", nil)))
			for _, p := range []struct{ name, node, ip string }{{"client", "n1", "10.244.1.10"}, {"web", "n2", "10.244.2.10"}} {
				must(f.Net.AddPod("x/"+p.name, p.node, []netip.Addr{netip.MustParseAddr(p.ip)}))
				must(f.Create(tu.Pod("x", p.name, p.node, map[string]string{"app": p.name}, []string{p.ip})))
			}
			must(f.Net.Listen("x/web", "TCP", 80))
			must(f.Create(tu.Policy("x", "deny-web", map[string]string{"app": "web"}, tu.Types(networkingv1.PolicyTypeIngress))))
			gate := make(chan struct{})
			f.Client.PrependReactor("list", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
				select {
				case <-gate:
					return false, nil, nil
				default:
					return true, nil, errors.New("the API server is slow today")
				}
			})
			ctx := context.Background()
			must(f.StartAgents(ctx, []string{"n1", "n2"}, func(cfg *agent.Config, _ int) {
				cfg.Model = model.Options{OpenUnknown: !protect}
			}))
			// Protected: wait for the guards; off: give the Node informers
			// the same time to have synced (the pods' never do meanwhile).
			deadline := time.Now().Add(10 * time.Second)
			for protect && (f.Agents["n1"].Stats().StartupGuards == 0 || f.Agents["n2"].Stats().StartupGuards == 0) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if !protect {
				time.Sleep(500 * time.Millisecond)
			}
			for n, a := range f.Agents {
				if a.Ready() {
					t.Fatalf("%s synced before the pods were listed", n)
				}
				if got, want := a.Stats().StartupGuards, map[bool]int{true: 1, false: 0}[protect]; got != want {
					t.Errorf("%s: StartupGuards = %d, want %d", n, got, want)
				}
			}
			p := StartProber(ctx, f.Net, "x/client", netip.MustParseAddr("10.244.2.10"), "TCP", 80, 10*time.Millisecond, newPodProbeTimeout)
			time.Sleep(200 * time.Millisecond)
			recs := p.Stop()
			reached := 0
			for _, r := range recs {
				if r.Reached() {
					reached++
				}
			}
			if protect && reached != 0 {
				t.Errorf("%d of %d probes reached x/web before the first sync; want none", reached, len(recs))
			}
			if !protect && reached == 0 {
				t.Errorf("none of %d probes reached x/web before the first sync without the protection; want the window to show", len(recs))
			}
			close(gate)
			bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			must(f.Barrier(bctx))
			if o := f.Net.Probe(ctx, "x/client", "x/web", 4, "TCP", 80, time.Second); o.Verdict != netlab.Denied {
				t.Errorf("after the first sync x/client -> x/web: %v, want denied by its policy", o)
			}
		})
	}
}
