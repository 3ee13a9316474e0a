package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/lab"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// New pods: how long a new pod waits, from its address existing to being
// reachable where its policy allows, with pods not yet known denied (the
// agent's default). Each pod of a series is created the way a node does it:
// its address (lab.Net.AddPod), a listener, then its Pod object with the
// address (an instant kubelet; a real one adds its own reporting delay).
// A client the policy allows probes it every 2 ms with a new connection;
// another pod the policy does not allow probes it every 10 ms and must
// never get through. The real agent runs with the default
// --min-sync-period (1 s) and pauses between pods are random in [0, 1.5 s),
// so some pods arrive while the coalescing period of the previous sync
// still runs: that is the p99.

// NewPodResult is the new-pod measure.
type NewPodResult struct {
	Pods         int     `json:"pods"`
	MinSyncMs    float64 `json:"min_sync_ms"`
	ProbeEveryMs float64 `json:"probe_every_ms"`
	// Reachable: the address exists → the first connection from the
	// allowed client completed (its handshake's end: an upper bound by one
	// round trip, tens of µs here).
	Reachable Dist `json:"reachable"`
	// Programmed: the address exists → the agent has committed the pod
	// (its barrier returned; an upper bound).
	Programmed Dist `json:"programmed"`
	// DeniedProbes are the probes from a pod the policy does not allow;
	// DeniedThrough those that reached a new pod (must be 0).
	DeniedProbes  int `json:"denied_probes"`
	DeniedThrough int `json:"denied_through"`
}

const (
	npNamespace  = "perf-np"
	npProbeEvery = 2 * time.Millisecond
	npMinSync    = time.Second // the agent's default --min-sync-period
)

func newPodReach(ctx context.Context, j *Janitor, cfg Config) (*NewPodResult, error) {
	n := 40
	if cfg.Quick {
		n = 10
	}
	f := lab.NewFixture()
	j.Defer(f.Close)
	if err := f.AddNode("perf", netip.MustParsePrefix("10.244.1.0/24")); err != nil {
		return nil, err
	}
	if err := f.Create(tu.Namespace(npNamespace, nil)); err != nil {
		return nil, err
	}
	peers := map[string]netip.Addr{"client": netip.MustParseAddr("10.244.1.2"), "other": netip.MustParseAddr("10.244.1.3")}
	for name, ip := range peers {
		if err := f.Net.AddPod(npNamespace+"/"+name, "perf", []netip.Addr{ip}); err != nil {
			return nil, err
		}
		if err := f.Create(tu.Pod(npNamespace, name, "perf", map[string]string{"app": name}, []string{ip.String()})); err != nil {
			return nil, err
		}
	}
	allow := tu.Policy(npNamespace, "allow-client", map[string]string{"app": "new"},
		tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(map[string]string{"app": "client"})}, tu.Port("TCP", 80, 0)))
	if err := f.Create(allow); err != nil {
		return nil, err
	}
	if err := f.StartAgents(ctx, []string{"perf"}, func(c *agent.Config, _ int) { c.MinSyncInterval = npMinSync }); err != nil {
		return nil, err
	}
	wait := func() error {
		bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return f.Barrier(bctx)
	}
	if err := wait(); err != nil {
		return nil, err
	}
	res := &NewPodResult{Pods: n, MinSyncMs: ms(npMinSync), ProbeEveryMs: ms(npProbeEvery)}
	rng := rand.New(rand.NewPCG(cfg.Seed, 12))
	var reach, programmed []time.Duration
	for i := 0; i < n; i++ {
		time.Sleep(time.Duration(rng.Int64N(int64(1500 * time.Millisecond))))
		name := fmt.Sprintf("new-%d", i)
		ip := netip.AddrFrom4([4]byte{10, 244, 1, byte(10 + i)})
		if err := f.Net.AddPod(npNamespace+"/"+name, "perf", []netip.Addr{ip}); err != nil {
			return nil, err
		}
		t0 := time.Now()
		good := lab.StartProber(ctx, f.Net, npNamespace+"/client", ip, "TCP", 80, npProbeEvery, 200*time.Millisecond)
		bad := lab.StartProber(ctx, f.Net, npNamespace+"/other", ip, "TCP", 80, 5*npProbeEvery, 200*time.Millisecond)
		if err := f.Net.Listen(npNamespace+"/"+name, "TCP", 80); err != nil {
			return nil, err
		}
		if err := f.Create(tu.Pod(npNamespace, name, "perf", map[string]string{"app": "new"}, []string{ip.String()})); err != nil {
			return nil, err
		}
		err := wait()
		programmed = append(programmed, time.Since(t0))
		if err == nil {
			select {
			case <-good.Reached():
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("new pod %s not reachable 10 s after its address", name)
			}
		}
		goodRecs, badRecs := good.Stop(), bad.Stop()
		if err != nil {
			return nil, err
		}
		first, _ := lab.FirstReached(goodRecs)
		reach = append(reach, first.Sub(t0))
		res.DeniedProbes += len(badRecs)
		for _, r := range badRecs {
			if r.Reached() {
				res.DeniedThrough++
			}
		}
		cfg.logf("new pod %d/%d: reachable after %v", i+1, n, first.Sub(t0).Round(time.Millisecond))
	}
	res.Reachable, res.Programmed = DistOf(reach), DistOf(programmed)
	return res, nil
}
