package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the agent's Prometheus series; docs/metrics.md describes each
// one. Every agent has its own (the lab runs several in one process); the
// binary registers its agent's on the registry it serves.
type Metrics struct {
	SyncDuration       *prometheus.HistogramVec
	SyncCompute        *prometheus.HistogramVec
	ProgrammingLatency prometheus.Histogram
	TxOperations       prometheus.Histogram
	TxBytes            prometheus.Histogram
	Syncs              *prometheus.CounterVec
	SyncFailures       *prometheus.CounterVec
	Transactions       prometheus.Counter
	DriftRepairs       prometheus.Counter
	TableReplacements  prometheus.Counter
	Policies           *prometheus.GaugeVec
	Pods               prometheus.Gauge
	SelectedPods       prometheus.Gauge
	KeptSets           prometheus.Gauge
	KeptSetMembers     prometheus.Gauge
	SetElements        prometheus.Gauge
	Rules              prometheus.Gauge
	Sets               prometheus.Gauge
	Chains             prometheus.Gauge
	LastSync           prometheus.Gauge
	Ready              prometheus.Gauge
	// DNS answers and the bindings learned from them (fqdn.go).
	DNSAnswers           prometheus.Counter
	DNSAnswersUnreadable prometheus.Counter
	DNSBindings          prometheus.Gauge
	DNSBindingsDropped   prometheus.Counter
	DNSLatency           prometheus.Histogram
	RemoteUp             *prometheus.GaugeVec
	// Cuts of the connections changes deny (cutflows.go).
	CutDuration prometheus.Histogram
	FlowsJudged prometheus.Counter
	FlowsCut    prometheus.Counter
	CutFailures prometheus.Counter
	policy      *policyCollector // verdicts.go
}

// Sync types, the label of the per-sync series.
const (
	syncFull    = "full"
	syncPartial = "partial"
)

// Failure reasons, the label of nftpolicy_sync_failures_total.
const (
	failRead    = "read"
	failApply   = "apply"
	failUnknown = "outcome_unknown"
)

// NewMetrics makes the agent's series and registers them on reg; a nil reg
// leaves them unregistered (tests, the lab).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	const ns = "nftpolicy"
	m := &Metrics{
		SyncDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "sync_duration_seconds",
			Help:    "Time of one successful sync (snapshot, compile, diff, apply), by type: full reads the kernel's table back first, partial diffs against the agent's shadow of it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18), // 0.5 ms .. 65 s
		}, []string{"type"}),
		SyncCompute: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "sync_compute_duration_seconds",
			Help:    "The agent's own part of each successful sync, before its transaction goes to the kernel (taking the changes, the engine, the diff; a full sync's read-back too), by type.",
			Buckets: prometheus.ExponentialBuckets(0.000125, 2, 17), // 125 µs .. 8 s; 2 ms is a bound
		}, []string{"type"}),
		ProgrammingLatency: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "network_programming_latency_seconds",
			Help:    "From the agent's informer delivering a change of a watched object to the kernel's commit of the sync that includes it (or to the end of that sync, when it needed no transaction).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17), // 1 ms .. 65 s
		}),
		TxOperations: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "transaction_operations",
			Help:    "Operations (add/delete of a table, set, chain, rule or elements; flush chain) in each committed transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10), // 1 .. 262144
		}),
		TxBytes: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "transaction_netlink_bytes",
			Help:    "Estimated size of each committed transaction's netlink batch, in bytes (elements as encoded, rules at 1 KiB each).",
			Buckets: prometheus.ExponentialBuckets(256, 4, 10), // 256 B .. 64 MiB
		}),
		Syncs: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "syncs_total",
			Help: "Successful syncs, by type (full or partial).",
		}, []string{"type"}),
		SyncFailures: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "sync_failures_total",
			Help: "Failed syncs, by reason: read (reading the kernel's table back), apply (the kernel rejected the transaction), outcome_unknown (the kernel may or may not have committed it). Each failure makes the next sync a full one.",
		}, []string{"reason"}),
		Transactions: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "transactions_total",
			Help: "Transactions committed to the kernel. A sync that changes nothing sends none.",
		}),
		DriftRepairs: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "drift_repairs_total",
			Help: "Full resyncs that found the kernel's table differing from what the agent had programmed (someone else changed or deleted it) and repaired it.",
		}),
		TableReplacements: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "table_replacements_total",
			Help: "Whole-table replacements in one atomic transaction, the fallback after the kernel refused two minimal transactions in a row (the second refusal is counted here, not in sync_failures_total).",
		}),
		Policies: f.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "policies",
			Help: "Policy objects in the agent's model, by kind.",
		}, []string{"kind"}),
		Pods: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "pods",
			Help: "Pods in the agent's model (the whole cluster: every pod can be a peer).",
		}),
		SelectedPods: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "selected_pods",
			Help: "Pods on this node that at least one policy isolates (they have an element in a dispatch map).",
		}),
		KeptSets: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "kept_peer_sets",
			Help: "Namespace-level peer sets kept filled for the cluster's NetworkPolicies, used on this node or not (at most 256).",
		}),
		KeptSetMembers: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "kept_peer_set_members",
			Help: "Members of those sets (kept while under twice the cluster's pods plus 10,000).",
		}),
		SetElements: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "set_elements",
			Help: "Elements in the sets and maps of the agent's table, as last programmed.",
		}),
		Rules: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "rules",
			Help: "Rules in the agent's table, as last programmed.",
		}),
		Sets: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "sets",
			Help: "Sets and maps in the agent's table, as last programmed.",
		}),
		Chains: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "chains",
			Help: "Chains in the agent's table, as last programmed.",
		}),
		LastSync: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "last_sync_timestamp_seconds",
			Help: "Unix time of the last successful sync.",
		}),
		Ready: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "ready",
			Help: "1 once the first sync after startup has succeeded (what /readyz reports), else 0.",
		}),
		DNSAnswers: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "dns_answers_total",
			Help: "DNS answers to domainNames policies' subjects the kernel copied to the agent.",
		}),
		DNSAnswersUnreadable: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "dns_answers_unreadable_total",
			Help: "Copied DNS answers the agent could not parse (they bind nothing).",
		}),
		DNSBindings: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "dns_bindings",
			Help: "Name to address bindings learned from DNS answers whose records have not expired.",
		}),
		DNSBindingsDropped: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "dns_bindings_dropped_total",
			Help: "Bindings not learned because --fqdn-max-bindings were held.",
		}),
		DNSLatency: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "dns_programming_latency_seconds",
			Help:    "From a DNS answer (or a record's expiry) changing a name's addresses to the kernel's commit of the domain sets.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 0.1 ms .. 3.3 s
		}),
		CutDuration: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "conntrack_cut_duration_seconds",
			Help:    "Duration of each cut of the connections changes deny: the conntrack dump, the judging of the entries in the changes' scope, the deletes.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14), // 1 ms .. 8 s
		}),
		FlowsJudged: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "conntrack_entries_judged_total",
			Help: "Conntrack entries traced through the ruleset by cuts: those in the scope of the changes since the cut before.",
		}),
		FlowsCut: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "conntrack_entries_cut_total",
			Help: "Conntrack entries deleted because a change denies their connections.",
		}),
		CutFailures: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "conntrack_cut_failures_total",
			Help: "Cuts that failed to dump, judge or delete (logged, rate-limited); the next change's cut judges every entry again.",
		}),
		RemoteUp: f.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "remote_cluster_up",
			Help: "1 when the remote cluster's API server answered the agent's last check, else 0 (its last known pods stay enforced), by cluster.",
		}, []string{"cluster"}),
	}
	m.policy = newPolicyCollector()
	if reg != nil {
		reg.MustRegister(m.policy)
	}
	for _, t := range []string{syncFull, syncPartial} {
		m.SyncDuration.WithLabelValues(t)
		m.SyncCompute.WithLabelValues(t)
		m.Syncs.WithLabelValues(t)
	}
	for _, r := range []string{failRead, failApply, failUnknown} {
		m.SyncFailures.WithLabelValues(r)
	}
	return m
}
