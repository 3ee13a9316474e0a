package bench

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	policyfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/lab"
	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/manifest"
	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// The first-connection race of domainNames policies: a client resolves a
// name it has never resolved (a new binding for the agent) and connects to
// the answer at once, as clients do. Its SYN meets the node's rules about
// as soon as the answer has passed the node; the agent learns the binding
// from the kernel's copy of that answer and commits it. When the SYN is
// first, it is dropped and TCP sends it again after 1 s. Each name has an
// address of its own, so no binding from an earlier name helps. The same
// names resolved a second time (the bindings then exist) give the control.

// FQDNRaceResult is the race measure.
type FQDNRaceResult struct {
	Names int `json:"names"`
	// FirstSYNDropped: new names whose connection took longer than
	// synRetry/2, i.e. whose first SYN was dropped.
	FirstSYNDropped int `json:"first_syn_dropped"`
	// Connect is answer → connected for new names; Known for names
	// already learned (the control); both include the TCP handshake.
	Connect Dist `json:"connect"`
	Known   Dist `json:"known"`
	// Failed counts connections that did not complete within 3 s.
	Failed int `json:"failed"`
	// LearnMeanMs is the agent's own mean time from an answer changing a
	// name's addresses to the commit (nftpolicy_dns_programming_latency).
	LearnMeanMs float64 `json:"learn_mean_ms"`
}

const (
	raceNS       = "perf-fqdn"
	raceResolver = "198.51.100.53"
	synRetry     = time.Second // Linux's initial SYN retransmission timeout
)

func fqdnRace(ctx context.Context, j *Janitor, cfg Config) (*FQDNRaceResult, error) {
	n := 100
	if cfg.Quick {
		n = 20
	}
	f := lab.NewFixture()
	j.Defer(f.Close)
	if err := f.AddNode("perf", netip.MustParsePrefix("10.244.1.0/24")); err != nil {
		return nil, err
	}
	// n names, each with its own address of one external.
	var targets []netip.Addr
	var records []manifest.DNSRecord
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 51, 101, byte(i + 1)})
		targets = append(targets, a)
		records = append(records, manifest.DNSRecord{Name: fmt.Sprintf("host-%d.race.example", i), IPs: []netip.Addr{a}, TTL: 300})
	}
	resolver := netip.MustParseAddr(raceResolver)
	if err := f.Net.AddExternal("resolver", []netip.Addr{resolver}); err != nil {
		return nil, err
	}
	if err := f.Net.AddExternal("server", targets); err != nil {
		return nil, err
	}
	if err := f.Net.ServeUDP("external/resolver", 53, lab.NewNameServer(records).Answer); err != nil {
		return nil, err
	}
	if err := f.Net.Listen("external/server", "TCP", 80); err != nil {
		return nil, err
	}
	client := netip.MustParseAddr("10.244.1.2")
	if err := f.Create(tu.Namespace(raceNS, map[string]string{"race": "yes"})); err != nil {
		return nil, err
	}
	if err := f.Net.AddPod(raceNS+"/client", "perf", []netip.Addr{client}); err != nil {
		return nil, err
	}
	if err := f.Create(tu.Pod(raceNS, "client", "perf", nil, []string{client.String()})); err != nil {
		return nil, err
	}
	cnp := raceCNP()
	policies := policyfake.NewSimpleClientset(cnp)
	f.Expect(cnp)
	metrics := agent.NewMetrics(nil)
	if err := f.StartAgents(ctx, []string{"perf"}, func(c *agent.Config, fd int) {
		c.Metrics = metrics
		c.PolicyClient, c.AdminKinds = policies, agent.AdminKindsAt(model.KindCNP)
		c.Model.DNSGroup = model.DefaultDNSGroup
		c.DNSAnswers, c.DNSMinTTL, c.DNSMaxTTL, c.DNSMaxBindings = lab.DNSAnswersIn(fd), time.Second, time.Hour, 65536
	}); err != nil {
		return nil, err
	}
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := f.Barrier(bctx); err != nil {
		return nil, err
	}
	// The policy is programmed once a name's connection is denied before
	// its lookup: wait for that, not for a guess.
	deadline := time.Now().Add(10 * time.Second)
	for f.Net.ProbeAddr(ctx, raceNS+"/client", targets[0], "TCP", 80, 200*time.Millisecond).Verdict == netlab.Allowed {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the domainNames policy is not enforced after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	res := &FQDNRaceResult{Names: n}
	pass := func(known bool) ([]time.Duration, error) {
		var out []time.Duration
		for i, r := range records {
			addrs, err := lab.Resolve(ctx, f.Net, raceNS+"/client", resolver, r.Name, 4, time.Second)
			if err != nil || len(addrs) != 1 || addrs[0] != targets[i] {
				return nil, fmt.Errorf("resolving %s: %v %v", r.Name, addrs, err)
			}
			t0 := time.Now()
			o := f.Net.ProbeAddr(ctx, raceNS+"/client", addrs[0], "TCP", 80, 3*time.Second)
			d := time.Since(t0)
			if o.Verdict != netlab.Allowed {
				res.Failed++
				continue
			}
			out = append(out, d)
			if !known && d > synRetry/2 {
				res.FirstSYNDropped++
			}
		}
		return out, nil
	}
	fresh, err := pass(false)
	if err != nil {
		return nil, err
	}
	known, err := pass(true)
	if err != nil {
		return nil, err
	}
	res.Connect, res.Known = DistOf(fresh), DistOf(known)
	var m dto.Metric
	if err := metrics.DNSLatency.Write(&m); err == nil && m.GetHistogram().GetSampleCount() > 0 {
		h := m.GetHistogram()
		res.LearnMeanMs = 1000 * h.GetSampleSum() / float64(h.GetSampleCount())
	}
	cfg.logf("fqdn race: %d of %d first SYNs dropped; connect p50 %v (known names %v)", res.FirstSYNDropped, n,
		time.Duration(res.Connect.P50*float64(time.Millisecond)), time.Duration(res.Known.P50*float64(time.Millisecond)))
	return res, nil
}

// raceCNP accepts DNS to the resolver and the race's names, and denies the
// rest, for the race's namespace.
func raceCNP() *v1alpha2.ClusterNetworkPolicy {
	p := &v1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "race", ResourceVersion: "1"}}
	p.Spec.Tier, p.Spec.Priority = v1alpha2.AdminTier, 10
	p.Spec.Subject.Namespaces = &metav1.LabelSelector{MatchLabels: map[string]string{"race": "yes"}}
	dns := int32(53)
	p.Spec.Egress = []v1alpha2.ClusterNetworkPolicyEgressRule{
		{Action: "Accept", To: []v1alpha2.ClusterNetworkPolicyEgressPeer{{Networks: []v1alpha2.CIDR{raceResolver + "/32"}}},
			Protocols: []v1alpha2.ClusterNetworkPolicyProtocol{{UDP: &v1alpha2.ClusterNetworkPolicyProtocolUDP{DestinationPort: &v1alpha2.Port{Number: dns}}}}},
		{Action: "Accept", To: []v1alpha2.ClusterNetworkPolicyEgressPeer{{DomainNames: []v1alpha2.DomainName{"*.race.example"}}}},
		{Action: "Deny", To: []v1alpha2.ClusterNetworkPolicyEgressPeer{{Networks: []v1alpha2.CIDR{"0.0.0.0/0"}}}},
	}
	return p
}
