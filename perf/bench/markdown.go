package bench

import (
	"fmt"
	"strings"
)

// Markdown renders the results as the tables docs/performance.md explains.
func Markdown(r *Results) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	title := "nftpolicy performance"
	if r.Quick {
		title += " (quick: S only, few repetitions; a smoke test, not a measurement)"
	}
	w("# %s\n\n", title)
	m := r.Machine
	w("Run %s, %.0f s, seed %d. Machine: %s, %d cores, %d GiB, kernel %s, %s, %s",
		r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Seconds, r.Seed, m.CPU, m.Cores, m.MemoryGiB, m.Kernel, m.Go, m.Nft)
	if m.Iptables != "" {
		w(", %s, %s", m.Iptables, m.Ipset)
	}
	w(". Load average %s at the start, %s at the end (%s). Durations are milliseconds unless marked; p99 of fewer than 100 samples lies between the two largest. How to read this: docs/performance.md.\n\n", m.LoadStart, m.LoadEnd, m.Concurrency)

	w("## Targets\n\n| goal | measured | status |\n|---|---|---|\n")
	for _, t := range r.Targets {
		st := t.Status
		if t.Why != "" {
			st += ": " + t.Why
		}
		w("| %s | %s | %s |\n", t.Goal, t.Measured, st)
	}

	w("\n## Clusters and the node's ruleset\n\n")
	w("| size | pods | policies | namespaces | nodes | pods on the node | policies on the node | sets | elements | chains | rules | nft text |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Sizes {
		rs := s.Ruleset
		w("| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s |\n", s.Size.Name, s.Size.Pods, s.Size.Policies,
			s.Namespaces, s.Nodes, s.PodsOnNode, s.PoliciesOnNode, rs.Sets, rs.Elements, rs.Chains, rs.Rules, fmtBytes(float64(rs.TextBytes)))
	}

	w("\n## Full programming from empty (p50 of the repetitions)\n\n")
	w("| size | agent: start → commit | of which compute | apply | compile.Node | diff.Diff | messages sent | bytes sent / received | (b) nft -f | (c) bare kernel | (d) kube-router legacy | (d) kube-router nft |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Sizes {
		f := s.Full
		w("| %s | %s | %s | %s | %s | %s | %d | %s / %s | %s | %s | %s | %s |\n", s.Size.Name, fmtMs(f.AgentWall.P50), fmtMs(f.AgentCompute.P50),
			fmtMs(f.AgentApply.P50), fmtMs(f.Compile.P50), fmtMs(f.Diff.P50), f.SentMsgs, fmtBytes(float64(f.SentBytes)), fmtBytes(float64(f.RecvBytes)),
			fmtMs(f.NftF.P50), fmtMs(f.Bare.P50), krCell(s.KubeRouter, "legacy", true), krCell(s.KubeRouter, "nft", true))
	}
	kernelFloorMarkdown(w, r.Sizes)

	for _, s := range r.Sizes {
		p := planFor(s.Size, r.Quick)
		w("\n## Events at %s (%d pods, %d policies; %d rounds, one event of each kind per round)\n\n", s.Size.Name, s.Size.Pods, s.Size.Policies, p.rounds)
		if len(s.Quiet) > 0 {
			w("Not timed: they changed nothing in the node's rules, so the agent committed nothing for them: %s.\n\n", strings.Join(s.Quiet, ", "))
		}
		w("| event | n | commit p50 | p99 | max | compute p50 | p99 | netlink p50 | p99 | (c) bare p50 | p99 | socket close after it p50 | commit ÷ bare (p99) | (b) nft -f p50 | (a) rewrite p50 | rewrite ÷ commit (p50) | ops | elements | bytes sent p50 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, e := range s.Events {
			w("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f× | %s | %s | %.2f× | %.0f | %.0f | %s |\n", e.Kind, e.Commit.N,
				fmtMs(e.Commit.P50), fmtMs(e.Commit.P99), fmtMs(e.Commit.Max), fmtMs(e.Compute.P50), fmtMs(e.Compute.P99),
				fmtMs(e.Netlink.P50), fmtMs(e.Netlink.P99), fmtMs(e.Bare.P50), fmtMs(e.Bare.P99), fmtMs(e.BareClose.P50), ratio(e.Commit.P99, e.Bare.P99),
				fmtMs(e.NftF.P50), fmtMs(e.Rewrite.P50), ratio(e.Rewrite.P50, e.Commit.P50), e.Ops.P50, e.Elements.P50, fmtBytes(e.SentBytes.P50))
		}
		if all := s.event("all"); all != nil {
			w("\nThe suite's own timing of the agent's steps per event: compile.Node p50 %s, diff.Diff p50 %s; building the rewrite batch p50 %s. "+
				"A full rewrite sends %s in %d messages; (d) kube-router's full resync per event: legacy %s, nft %s.\n",
				fmtMs(all.Compile.P50), fmtMs(all.Diff.P50), fmtMs(all.RewriteBuild.P50), fmtBytes(float64(s.RewriteSentBytes)), s.RewriteSentMsgs,
				krCell(s.KubeRouter, "legacy", false), krCell(s.KubeRouter, "nft", false))
		}
		cutMarkdown(w, s)
		if kr := s.KubeRouter; kr != nil {
			if kr.Available {
				w("kube-router's layout for this node: %d ipsets with %d entries, %d chains, %d rules.\n", kr.Sets, kr.Entries, kr.Chains, kr.Rules)
			} else {
				w("%s\n", kr.Note)
			}
		}
		for _, pb := range s.Problems {
			w("- problem: %s\n", pb)
		}
	}

	w("\n## Agent memory (a process of its own; the fake API server's share measured first and subtracted)\n\n")
	w("| size | agent RSS after programming | agent heap | RSS after a round of events | process peak RSS | fake API server RSS |\n|---|---|---|---|---|---|\n")
	for _, s := range r.Sizes {
		if mm := s.Memory; mm != nil {
			w("| %s | %.0f MB | %.0f MB | %.0f MB | %.0f MB | %.0f MB |\n", s.Size.Name, mm.AgentRSSMB, mm.AgentHeapMB,
				mm.AfterEventsRSSMB-mm.BaseRSSMB, mm.PeakRSSMB, mm.BaseRSSMB)
		}
	}

	if dp := r.DataPath; dp != nil {
		w("\n## Data path: new TCP connections through one node (%s ruleset: %d sets, %d elements, %d rules; the server selected by %d policies, or %d, or by 2 and %d admin policies)\n\n",
			dp.Size.Name, dp.Ruleset.Sets, dp.Ruleset.Elements, dp.Ruleset.Rules, dp.ClassPolicies, dp.ClassPoliciesBig, dpAdmin)
		w("%d rounds × %d connections per state, states alternating, each loaded %s before its round; each ÷ column is the median of the rounds' own ratios (the states of a round are measured back to back) of the rate of each round's median connection (socket to close; a connection that another process stalls moves the mean rate, not the median), the mean rates' ratio beside. Ruleset enforcing: %s.\n\n",
			dp.Rounds, dp.PerRound, fmtMs(ms(stateSettle)), dp.Enforcing)
		w("| node's ruleset | rules a SYN meets | connections/s p50 | min–max over rounds | ÷ none | ÷ conntrack | its rounds' middle half | ÷ conntrack, mean rates | connect p50 | p99 |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, st := range dp.States {
			rules := "—"
			if st.SynRules > 0 {
				rules = fmt.Sprint(st.SynRules)
			}
			w("| %s | %s | %.0f | %.0f–%.0f | %.2f× | %.2f× | %.2f–%.2f | %.2f× | %s | %s |\n", st.Name, rules, st.Rate.P50, st.Rate.Min, st.Rate.Max,
				st.Ratio, st.RatioCT, st.RatioCTP25, st.RatioCTP75, st.RatioCTMean, fmtMs(st.Connect.P50), fmtMs(st.Connect.P99))
		}
		w("\nThe rules a SYN meets are counted by tracing the client's first packet through our two forward chains of the state's compiled ruleset.\n")
	}
	if np := r.NewPod; np != nil {
		w("\n## New pods: from the address existing to reachable where policy allows\n\n")
		w("%d pods, one at a time at random pauses of 0–1.5 s, each created as a node does (address, then its Pod object); the real agent with --min-sync-period %s and pods not yet known denied; a new connection from an allowed client every %s.\n\n",
			np.Pods, fmtMs(np.MinSyncMs), fmtMs(np.ProbeEveryMs))
		w("| | p50 | p99 | min | max |\n|---|---|---|---|---|\n")
		w("| address → reachable | %s | %s | %s | %s |\n", fmtMs(np.Reachable.P50), fmtMs(np.Reachable.P99), fmtMs(np.Reachable.Min), fmtMs(np.Reachable.Max))
		w("| address → programmed (barrier) | %s | %s | %s | %s |\n", fmtMs(np.Programmed.P50), fmtMs(np.Programmed.P99), fmtMs(np.Programmed.Min), fmtMs(np.Programmed.Max))
		w("\nProbes from a pod the policy does not allow: %d, of which %d got through (must be 0).\n", np.DeniedProbes, np.DeniedThrough)
	}
	if fr := r.FQDN; fr != nil {
		w("\n## domainNames: the first connection after a lookup\n\n")
		w("One client pod selected by a ClusterNetworkPolicy that accepts `*.race.example` and denies the rest; %d names, each with an address of its own, each resolved once (from the lab's name server in an external namespace) and connected to at once, as a client does; then the same names again, their bindings learned (the control). Every answer is copied by the kernel to the agent, which learns the binding and commits it; a SYN that meets the rules first is dropped, and TCP sends it again after 1 s.\n\n", fr.Names)
		w("| | first SYNs dropped | connect p50 | p99 | max |\n|---|---|---|---|---|\n")
		w("| new names | %d of %d (%.0f%%) | %s | %s | %s |\n", fr.FirstSYNDropped, fr.Names, 100*float64(fr.FirstSYNDropped)/float64(max(fr.Names, 1)), fmtMs(fr.Connect.P50), fmtMs(fr.Connect.P99), fmtMs(fr.Connect.Max))
		w("| names already learned | — | %s | %s | %s |\n", fmtMs(fr.Known.P50), fmtMs(fr.Known.P99), fmtMs(fr.Known.Max))
		w("\nThe agent's own time from an answer to the commit of its binding (nftpolicy_dns_programming_latency_seconds): mean %s.\n", fmtMs(fr.LearnMeanMs))
		if fr.Failed > 0 {
			w("\n%d connections did not complete within 3 s.\n", fr.Failed)
		}
	}
	if t := r.TKE; t != nil {
		w("\n## Data path through a Service: the TKE setup (real kube-proxy, nftables mode)\n\n")
		w("%d Services with %d endpoints in kube-proxy's tables (%d lines of `nft list table ip kube-proxy`); our ruleset for %d pods and one NetworkPolicy selecting every pod: %d sets, %d elements, %d rules. ",
			t.Services, t.Endpoints, t.ProxyLines, t.Pods+2, t.Ruleset.Sets, t.Ruleset.Elements, t.Ruleset.Rules)
		w("New TCP connections from a client to a Service's cluster IP, DNATed by kube-proxy to a server on the same node; %d rounds × %d connections per state, states alternating. Connections meet our policy: %s.\n\n", t.Rounds, t.PerRound, t.Enforcing)
		w("| node's tables | connections/s p50 | min–max over rounds | ÷ kube-proxy only | connect p50 | p99 |\n|---|---|---|---|---|---|\n")
		for _, st := range t.States {
			w("| %s | %.0f | %.0f–%.0f | %.3f× | %s | %s |\n", st.Name, st.Rate.P50, st.Rate.Min, st.Rate.Max, st.Ratio, fmtMs(st.Connect.P50), fmtMs(st.Connect.P99))
		}
		w("\nLoss with our ruleset, the median of the per-round ratios: %.1f%% from each round's median connect time (95%% interval of that median %.1f%% to %.1f%%; middle half of the rounds %.1f%% to %.1f%%), %.1f%% from each round's mean rate (%.1f%% to %.1f%%). TKE measured 10–20%% for kube-router at 8,000 pods.\n",
			100*t.LatLoss, 100*t.LatLossCI[0], 100*t.LatLossCI[1], 100*t.LatLossP25, 100*t.LatLossP75, 100*t.Loss, 100*t.LossP25, 100*t.LossP75)
	}
	if r.RealPeer != nil {
		b.WriteString(realPeerMarkdown(r.RealPeer))
	}
	if len(r.Notes) > 0 {
		w("\n## Notes\n\n")
		for _, n := range r.Notes {
			w("- %s\n", n)
		}
	}
	return b.String()
}

// kernelFloorMarkdown renders the kernel's floor of the sizes that
// measured it, nothing when none did.
func kernelFloorMarkdown(w func(string, ...any), sizes []*SizeResult) {
	var floors []*SizeResult
	for _, s := range sizes {
		if s.KernelFloor != nil {
			floors = append(floors, s)
		}
	}
	if len(floors) == 0 {
		return
	}
	w("\n## The kernel's floor per transaction\n\n")
	w("When a batch adds a goto or a jump (a rule, or an element of a verdict map), nf_tables re-validates the whole table at its commit, walking every element of every verdict map a base chain reaches: "+
		"an event that adds one goto element costs the kernel in proportion to the node's verdict-map elements, so to the cluster's size. "+
		"Each row times transactions of one element on the node's ruleset in a namespace of its own (p50 of %d interleaved rounds, each transaction one Apply): "+
		"a goto element added to the biggest IPv4 verdict map, its delete, an element added to a plain set no rule uses, "+
		"and the goto element's add again after 64 MiB of other data went through the CPU's caches (as an agent's compute and a GC leave them before its batch).\n\n", floors[0].KernelFloor.GotoAdd.N)
	w("| size | verdict-map elements | biggest map (elements) | add one goto element p50 | the same, caches cold | its delete p50 | add one plain element p50 | goto ÷ plain |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range floors {
		f := s.KernelFloor
		w("| %s | %d | %s (%d) | %s | %s | %s | %s | %.1f× |\n", s.Size.Name, f.VerdictElements, f.BiggestMap, f.BiggestMapElements,
			fmtMs(f.GotoAdd.P50), fmtMs(f.GotoAddCold.P50), fmtMs(f.GotoDelete.P50), fmtMs(f.PlainAdd.P50), ratio(f.GotoAdd.P50, f.PlainAdd.P50))
	}
}

func krCell(kr *IptablesResult, backend string, full bool) string {
	if kr == nil || !kr.Available {
		return "n/a"
	}
	for _, b := range kr.Backends {
		if b.Name == backend {
			if b.Error != "" {
				return "error"
			}
			if full {
				return fmtMs(b.Full.P50)
			}
			return fmtMs(b.Resync.P50)
		}
	}
	return "n/a"
}

func fmtBytes(v float64) string {
	switch {
	case v < 10*1024:
		return fmt.Sprintf("%.0f B", v)
	case v < 10*1024*1024:
		return fmt.Sprintf("%.0f KiB", v/1024)
	}
	return fmt.Sprintf("%.1f MiB", v/1024/1024)
}

// cutMarkdown reports the agent's cuts of denied connections at one size.
func cutMarkdown(w func(string, ...any), s *SizeResult) {
	if s.Tracked == 0 {
		return
	}
	w("\nThe agent ran as deployed, cutting the connections each change denies, with the node's conntrack table holding %d established connections of its pods (to the node, so always allowed: judged, never cut). "+
		"The first sync's cut judged %d entries, done %s after its commit. Each event's cut, from the commit until it was done (the suite waits for it before its baselines):\n\n", s.Tracked, s.FirstCutJudged, fmtMs(s.FirstCutMs))
	w("| event | cuts | done after the commit p50 | p99 | max | entries judged p50 | max |\n|---|---|---|---|---|---|---|\n")
	for _, e := range s.Events {
		if e.Cut.N == 0 {
			w("| %s | 0 | | | | | |\n", e.Kind)
			continue
		}
		w("| %s | %d | %s | %s | %s | %.0f | %.0f |\n", e.Kind, e.Cut.N, fmtMs(e.Cut.P50), fmtMs(e.Cut.P99), fmtMs(e.Cut.Max), e.Judged.P50, e.Judged.Max)
	}
	w("\n")
}
