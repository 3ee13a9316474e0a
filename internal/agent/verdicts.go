package agent

import (
	"cmp"
	"context"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/inet"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Verdict logs and per-policy counters, both off the sync path: the kernel
// copies logged packets to an NFLOG group (a copy: no packet waits for
// the agent), a goroutine turns each into one log line; another reads the
// rules' counters every CountersInterval. Both name policies through the
// origins of the rules the agent programmed, which each sync updates for
// the chains it touched (a full sync indexes the whole ruleset again, which
// also forgets the origins of rules that are gone).

// LogSource reads an NFLOG group until ctx ends (nft.ReadLogs in a
// namespace).
type LogSource func(ctx context.Context, group uint16, fn func(nft.LogEvent)) error

type verdictState struct {
	mu      sync.Mutex
	origins *compile.Origins
	podIPs  []cache.Indexer // the pod informers', indexed by address: this cluster's first, then the remote ones
}

const podIPIndex = "ip"

// indexOrigins updates the origins after a sync: what it touched, or all.
func (a *Agent) indexOrigins(full bool, desired *nft.Ruleset, touched *nft.Touched) {
	if a.cfg.Logs == nil && a.cfg.Counters == nil {
		return
	}
	v := &a.verdicts
	v.mu.Lock()
	defer v.mu.Unlock()
	if full || v.origins == nil {
		v.origins = compile.NewOrigins(desired)
		return
	}
	for name := range touched.Chains {
		if c := desired.Chains[name]; c != nil {
			v.origins.AddChain(c)
		}
	}
}

func (a *Agent) origin(prefix string) *nft.Origin {
	v := &a.verdicts
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.origins == nil {
		return nil
	}
	return v.origins.ByPrefix[prefix]
}

// startVerdicts starts the log reader and the counter reader, if configured.
func (a *Agent) startVerdicts(ctx context.Context, logger klog.Logger) {
	for _, w := range a.watched {
		if w.kind.Name == "Pod" && a.cfg.Logs != nil {
			a.verdicts.podIPs = append(a.verdicts.podIPs, w.informer.GetIndexer())
		}
	}
	if a.cfg.Logs != nil {
		rate := a.cfg.LogLinesPerSecond
		if rate <= 0 {
			rate = 50
		}
		lim := &tokenBucket{rate: rate, burst: 2 * rate, tokens: 2 * rate, last: time.Now()}
		group := a.cfg.Model.LogGroup
		if group == 0 {
			group = model.DefaultLogGroup
		}
		vlog := logger.WithName("verdict")
		var dropped int
		err := a.cfg.Logs(ctx, group, func(ev nft.LogEvent) {
			if !lim.take(time.Now()) {
				dropped++
				return
			}
			a.logVerdict(vlog, ev, dropped)
			dropped = 0
		})
		if err != nil {
			logger.Error(err, "Verdict logs are off", "group", group)
		}
	}
	if a.cfg.Counters != nil {
		every := a.cfg.CountersInterval
		if every <= 0 {
			every = 30 * time.Second
		}
		go a.readCounters(ctx, logger, every)
	}
}

// logVerdict writes one structured line for a packet the kernel logged.
func (a *Agent) logVerdict(logger klog.Logger, ev nft.LogEvent, suppressed int) {
	kv := []any{"src", a.endpoint(ev.Src), "dst", a.endpoint(ev.Dst), "proto", inet.ProtoName(ev.Proto), "port", ev.Port}
	o := a.origin(ev.Prefix)
	if o == nil {
		kv = append(kv, "prefix", ev.Prefix, "verdict", "unknown")
	} else {
		kv = append(kv, "verdict", o.Verdict, "direction", o.Direction, "tier", o.Tier, "policy", o.Policy, "rule", o.Rule)
		if o.RuleName != "" {
			kv = append(kv, "ruleName", o.RuleName)
		}
	}
	if suppressed > 0 {
		kv = append(kv, "suppressedBefore", suppressed)
	}
	logger.Info("Verdict", kv...)
}

// endpoint names an address: "namespace/pod (address)" or the address.
func (a *Agent) endpoint(addr netip.Addr) string {
	if !addr.IsValid() {
		return ""
	}
	// A remote pod is named by its model name, "cluster/namespace/name";
	// a local pod comes first, as it owns an address both list.
	for _, idx := range a.verdicts.podIPs {
		objs, _ := idx.ByIndex(podIPIndex, addr.String())
		for _, o := range objs {
			if p, ok := o.(*v1.Pod); ok && p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed {
				return p.Namespace + "/" + p.Name + " (" + addr.String() + ")"
			}
		}
	}
	return addr.String()
}

// podIPIndexer indexes pods by their addresses, for verdict lines.
func podIPIndexer(obj any) ([]string, error) {
	p, ok := obj.(*v1.Pod)
	if !ok {
		return nil, nil
	}
	var out []string
	for _, ip := range p.Status.PodIPs {
		out = append(out, ip.IP)
	}
	return out, nil
}

// tokenBucket is the agent's own limit on verdict lines.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func (b *tokenBucket) take(now time.Time) bool {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// readCounters reads the rules' counters every interval into the policy
// series, until ctx ends.
func (a *Agent) readCounters(ctx context.Context, logger klog.Logger, every time.Duration) {
	// The first read waits for the first sync: before it, no rule is known.
	if a.waitFor(ctx, func() bool { return true }) != nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		a.ReadCounters(ctx, logger)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ReadCounters reads the counters once (the ticker's work; tests call it).
func (a *Agent) ReadCounters(ctx context.Context, logger klog.Logger) {
	cnt, err := a.cfg.Counters.Counters(ctx)
	if err != nil {
		if ctx.Err() == nil {
			logger.Error(err, "Reading the rules' counters")
		}
		return
	}
	sums := map[policyLabels]nft.Count{}
	a.verdicts.mu.Lock()
	if o := a.verdicts.origins; o != nil {
		for id, c := range cnt {
			if or := o.ByID[id]; or != nil {
				k := policyLabels{or.Direction, or.Tier, or.Policy, or.Rule, or.Verdict}
				s := sums[k]
				s.Packets += c.Packets
				s.Bytes += c.Bytes
				sums[k] = s
			}
		}
	}
	a.verdicts.mu.Unlock()
	a.metrics.policy.set(sums)
}

type policyLabels struct{ direction, tier, policy, rule, verdict string }

// policyCollector exports the last counters read: one series per policy
// rule and verdict compiled on this node. A series ends with its rule; a
// rebuilt chain restarts its counters from 0 (a counter reset to
// Prometheus).
type policyCollector struct {
	mu            sync.Mutex
	sums          map[policyLabels]nft.Count
	packets, byts *prometheus.Desc
}

func newPolicyCollector() *policyCollector {
	labels := []string{"direction", "tier", "policy", "rule", "verdict"}
	return &policyCollector{
		packets: prometheus.NewDesc("nftpolicy_policy_packets_total", "Packets each policy rule of this node's ruleset decided (accept, drop, pass) or would have dropped (audit), as the kernel's rule counters last read.", labels, nil),
		byts:    prometheus.NewDesc("nftpolicy_policy_bytes_total", "Bytes of those packets.", labels, nil),
	}
}

func (c *policyCollector) set(s map[policyLabels]nft.Count) {
	c.mu.Lock()
	c.sums = s
	c.mu.Unlock()
}

// PolicyPackets returns the packets last read for one series (tests).
func (m *Metrics) PolicyPackets(direction, tier, policy, rule, verdict string) uint64 {
	m.policy.mu.Lock()
	defer m.policy.mu.Unlock()
	return m.policy.sums[policyLabels{direction, tier, policy, rule, verdict}].Packets
}

func (c *policyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.packets; ch <- c.byts }

func (c *policyCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]policyLabels, 0, len(c.sums))
	for k := range c.sums {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		return cmp.Or(strings.Compare(a.policy, b.policy), strings.Compare(a.direction, b.direction), strings.Compare(a.rule, b.rule),
			strings.Compare(a.verdict, b.verdict), strings.Compare(a.tier, b.tier)) < 0
	})
	for _, k := range keys {
		v := c.sums[k]
		lv := []string{k.direction, k.tier, k.policy, k.rule, k.verdict}
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(v.Packets), lv...)
		ch <- prometheus.MustNewConstMetric(c.byts, prometheus.CounterValue, float64(v.Bytes), lv...)
	}
}

// Metrics returns the agent's series.
func (a *Agent) Metrics() *Metrics { return a.metrics }
