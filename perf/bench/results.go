package bench

import (
	"time"

	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// Results is everything one run measured; it is written as JSON as is.
// Durations are in milliseconds, sizes in bytes.
type Results struct {
	Machine  Machine         `json:"machine"`
	Seed     uint64          `json:"seed"`
	Quick    bool            `json:"quick"`
	Started  time.Time       `json:"started"`
	Seconds  float64         `json:"seconds"`
	Sizes    []*SizeResult   `json:"sizes"`
	DataPath *DataPathResult `json:"data_path,omitempty"`
	NewPod   *NewPodResult   `json:"new_pod,omitempty"`
	FQDN     *FQDNRaceResult `json:"fqdn_race,omitempty"`
	TKE      *TKEResult      `json:"tke,omitempty"`
	RealPeer *RealPeerResult `json:"real_kube_router,omitempty"`
	Targets  []Target        `json:"targets"`
	Notes    []string        `json:"notes,omitempty"`
}

// SizeResult is the control plane at one cluster size.
type SizeResult struct {
	Size           gen.Size      `json:"size"`
	Namespaces     int           `json:"namespaces"`
	Nodes          int           `json:"nodes"`
	PodsOnNode     int           `json:"pods_on_node"`
	PoliciesOnNode int           `json:"policies_on_node"`
	Ruleset        RulesetStats  `json:"ruleset"`
	Full           FullResult    `json:"full_programming"`
	Events         []EventResult `json:"events"` // per kind, then "all"
	// Quiet names the events that changed nothing on the node (quietEvents):
	// applied, waited for, not timed.
	Quiet []string `json:"quiet,omitempty"`
	// RewriteBytes is what one full rewrite sends (sampled on the first
	// event): delete the table and create everything again.
	RewriteSentBytes int `json:"rewrite_sent_bytes"`
	RewriteSentMsgs  int `json:"rewrite_sent_msgs"`
	// BurstMs is the time from the last of BurstPods pod creations across
	// the cluster to the end of the sync that applied them all.
	BurstMs float64 `json:"burst_ms"`
	// Tracked is the conntrack entries of the node under test while its
	// agent runs; FirstCut is the cut after the first sync, which judges
	// every one of them: its time from the commit and the entries traced.
	Tracked        int             `json:"tracked"`
	FirstCutMs     float64         `json:"first_cut_ms"`
	FirstCutJudged int             `json:"first_cut_judged"`
	Memory         *MemResult      `json:"memory,omitempty"`
	KubeRouter     *IptablesResult `json:"kube_router,omitempty"`
	// KernelFloor is what the kernel alone charges for one-element
	// transactions on this size's ruleset (kernelfloor.go).
	KernelFloor *KernelFloorResult `json:"kernel_floor,omitempty"`
	Problems    []string           `json:"problems,omitempty"`
}

// KernelFloorResult is the kernel's cost of the smallest transactions on
// the node's ruleset: a batch that adds a goto makes nf_tables validate
// every verdict-map element of the table at commit, one that does not
// validates nothing.
type KernelFloorResult struct {
	VerdictElements    int    `json:"verdict_elements"` // in all the ruleset's verdict maps
	BiggestMap         string `json:"biggest_map"`      // the biggest IPv4 verdict map, where the goto goes
	BiggestMapElements int    `json:"biggest_map_elements"`
	GotoAdd            Dist   `json:"goto_add"`    // add one goto element to it, one Apply
	GotoDelete         Dist   `json:"goto_delete"` // delete that element again
	PlainAdd           Dist   `json:"plain_add"`   // add one element to an unreferenced plain set
	// GotoAddCold is GotoAdd after 64 MiB of other data went through the
	// CPU's caches.
	GotoAddCold Dist `json:"goto_add_cold"`
}

// RulesetStats sizes the node's ruleset.
type RulesetStats struct {
	Sets      int `json:"sets"`
	Elements  int `json:"elements"`
	Chains    int `json:"chains"`
	Rules     int `json:"rules"`
	TextBytes int `json:"text_bytes"`
}

// FullResult is programming the node from an empty table.
type FullResult struct {
	// The agent, from Run() to the kernel's commit: informers listing the
	// fake API server, snapshot, compile, diff, apply.
	AgentWall    Dist `json:"agent_wall"`
	AgentCompute Dist `json:"agent_compute"` // Run() to Apply's start
	AgentApply   Dist `json:"agent_apply"`   // Apply: encode, send, kernel commit, answers
	// The same steps timed by the suite on its own copy of the model.
	Compile Dist `json:"compile"`
	Diff    Dist `json:"diff"`
	// Baselines.
	NftF Dist `json:"nft_f"` // nft -f of the ruleset's text
	Bare Dist `json:"bare"`  // the agent's batch replayed from a bare socket
	// At the socket.
	SentMsgs  int `json:"sent_msgs"`
	SentBytes int `json:"sent_bytes"`
	RecvMsgs  int `json:"recv_msgs"`
	RecvBytes int `json:"recv_bytes"`
}

// EventResult is one kind of event (or "all" of them).
type EventResult struct {
	Kind    string `json:"kind"`
	Commit  Dist   `json:"commit"`  // event to kernel commit
	Compute Dist   `json:"compute"` // event to Apply's start
	Netlink Dist   `json:"netlink"` // Apply: encode, send, commit, answers
	Bare    Dist   `json:"bare"`    // (c) the same batch from a bare socket
	// BareClose is closing that socket afterwards, which a fresh socket per
	// transaction (the agent's way) pays and a kept socket does not.
	BareClose Dist `json:"bare_close"`
	NftF      Dist `json:"nft_f"`   // (b) nft -f of the same transaction
	Rewrite   Dist `json:"rewrite"` // (a) delete and re-create the table, one batch
	// RewriteBuild is the time to build the rewrite batch from the
	// compiled ruleset (its compile is the same as ours).
	RewriteBuild Dist `json:"rewrite_build"`
	// The suite's own timing of compile.Node and diff.Diff for the event.
	Compile   Dist `json:"compile"`
	Diff      Dist `json:"diff"`
	Ops       Dist `json:"ops"`
	Elements  Dist `json:"elements"`
	SentMsgs  Dist `json:"sent_msgs"`
	SentBytes Dist `json:"sent_bytes"`
	RecvBytes Dist `json:"recv_bytes"`
	// BytesBy is the bytes sent by what they go to (bytesby.go), each part
	// on its own: the medians do not add up to the whole's.
	BytesBy map[string]Dist `json:"bytes_by,omitempty"`
	// Cut is the time from the commit until the agent's cut of the
	// connections the change denies is done, over the events whose
	// transaction asked for one (a change that only creates objects does
	// not); Judged is the conntrack entries that cut traced.
	Cut    Dist `json:"cut"`
	Judged Dist `json:"judged"`
}

// MemResult is the agent's memory, measured in a process of its own.
type MemResult struct {
	// The fake API server holding the cluster, before the agent starts.
	BaseHeapMB float64 `json:"base_heap_mb"`
	BaseRSSMB  float64 `json:"base_rss_mb"`
	// After the first sync, after a GC.
	HeapMB float64 `json:"heap_mb"`
	RSSMB  float64 `json:"rss_mb"`
	// The agent's share: the difference.
	AgentHeapMB float64 `json:"agent_heap_mb"`
	AgentRSSMB  float64 `json:"agent_rss_mb"`
	// After one round of events, and the process's peak RSS over all of it.
	AfterEventsRSSMB float64 `json:"after_events_rss_mb"`
	PeakRSSMB        float64 `json:"peak_rss_mb"`
}

// IptablesResult is baseline (d): kube-router's iptables + ipset, generated
// for the same policies and restored whole, as it does on every change.
type IptablesResult struct {
	Available bool   `json:"available"`
	Note      string `json:"note,omitempty"`
	Sets      int    `json:"sets"`
	Entries   int    `json:"entries"`
	Chains    int    `json:"chains"`
	Rules     int    `json:"rules"`
	// Per iptables backend ("legacy", "nft"): restore from empty, and the
	// full resync kube-router runs per event (sets swapped, table
	// restored).
	Backends []IptablesBackend `json:"backends"`
}

// IptablesBackend is one iptables-restore flavour.
type IptablesBackend struct {
	Name   string `json:"name"`
	Full   Dist   `json:"full"`
	Resync Dist   `json:"resync"`
	Error  string `json:"error,omitempty"`
}

// DataPathResult is new TCP connections through a node, by ruleset state.
type DataPathResult struct {
	Size          gen.Size     `json:"size"`
	Ruleset       RulesetStats `json:"ruleset"`
	ClassPolicies int          `json:"class_policies"` // policies that select the target for ingress
	// ClassPoliciesBig is the same in the 500-policy state.
	ClassPoliciesBig int       `json:"class_policies_big"`
	Rounds           int       `json:"rounds"`
	PerRound         int       `json:"connections_per_round"`
	States           []DPState `json:"states"`
	// P99Ratios is, per round, the connect p99 with the target in 500
	// policies over the p99 with it in 2, measured back to back in that
	// round: stalls from other load fall on one round, not on the pooled
	// p99 of every round.
	P99Ratios Dist   `json:"p99_ratios_500_to_2"`
	Enforcing string `json:"enforcing"` // the sanity checks' outcome
}

// DPState is one state of the node's ruleset.
type DPState struct {
	Name    string `json:"name"`
	Rate    Dist   `json:"rate"` // connections per second, one sample per round
	Connect Dist   `json:"connect"`
	// Ratio is the rate over the rate with no ruleset (or kube-proxy
	// alone): in the data path the median of the rounds' own ratios, in
	// the TKE and real-peer runs the median rate over the median rate.
	Ratio   float64 `json:"ratio_to_none"`
	RatioCT float64 `json:"ratio_to_conntrack"` // the data path: the median of the rounds' rate / rate with conntrack alone
	// RatioCTMean is RatioCT from the rounds' mean rates, which a stalled
	// connection moves (the data path's ratios are judged on the rate of
	// each round's median connection).
	RatioCTMean float64 `json:"ratio_to_conntrack_mean,omitempty"`
	// RatioCTP25 and RatioCTP75 bound the middle half of those rounds'
	// ratios: how far one round's figure strays from another's.
	RatioCTP25 float64 `json:"ratio_to_conntrack_p25,omitempty"`
	RatioCTP75 float64 `json:"ratio_to_conntrack_p75,omitempty"`
	// RatioCTCI is a 95% interval for RatioCT (medianCI): how well the
	// rounds know it.
	RatioCTCI [2]float64 `json:"ratio_to_conntrack_ci95,omitzero"`
	// SynRules is the number of rules of our forward chains a new
	// connection's SYN meets (traced on the compiled ruleset; 0 for the
	// states that are not ours).
	SynRules int `json:"syn_rules,omitempty"`
}

// Target is one goal of the issue and how this run did against it.
type Target struct {
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Status   string `json:"status"` // met, missed, not measured
	Why      string `json:"why,omitempty"`
}
