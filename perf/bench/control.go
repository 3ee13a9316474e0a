package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/conntrack"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/perf/gen"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Config is one run of the suite.
type Config struct {
	Seed         uint64
	Quick        bool
	Sizes        []gen.Size
	DataPath     bool
	DataPathSize gen.Size
	// DataPathBaseChains adds data-path states with 2 and 4 forward base
	// chains that only accept established flows: what one more base chain
	// costs every packet, next to what the ruleset costs.
	DataPathBaseChains bool
	// DataPathRules adds data-path states with 10 or 20 rules after the
	// conntrack one that match nothing: what a rule on the first packet's
	// path costs.
	DataPathRules bool
	// TKE adds the TKE data path: real kube-proxy with 1,000 Services
	// and 8,000 pods (needs kube-apiserver and kube-proxy, built into the
	// cache on first use).
	TKE bool
	// RealPeer are the sizes at which the real kube-router runs next to
	// nftpolicy's agent (realpeer.go); none: not run.
	RealPeer []gen.Size
	NewPod   bool      // measure how soon a new pod is reachable (newpod.go)
	FQDN     bool      // measure the first-connection race of domainNames (fqdnrace.go)
	Rounds   int       // rounds of events per size; 0: the plan's
	Log      io.Writer // progress lines
}

// plan is how many times each thing is measured at a size: enough for
// medians and a p99 on a noisy 2-core machine, few enough that L fits
// the run's time budget (its every event costs seconds of compile).
type plan struct {
	rounds   int // rounds of events, one of each kind per round
	fullReps int // full programmings, nft -f loads, iptables restores
	bareReps int // bare replays per batch
}

// floorRounds is the rounds of the kernel's floor at every size
// (kernelfloor.go; at XL a few ms each), fewer in a quick run.
func floorRounds(quick bool) int {
	if quick {
		return 10
	}
	return 30
}

func planFor(s gen.Size, quick bool) plan {
	switch {
	case quick:
		return plan{rounds: 5, fullReps: 2, bareReps: 2}
	case s.Pods >= gen.L.Pods:
		return plan{rounds: 10, fullReps: 3, bareReps: 3}
	case s.Pods >= gen.M.Pods:
		return plan{rounds: 20, fullReps: 3, bareReps: 3}
	}
	return plan{rounds: 20, fullReps: 5, bareReps: 3}
}

func (cfg Config) logf(format string, args ...any) {
	if cfg.Log != nil {
		fmt.Fprintf(cfg.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
}

var deleteTableTx = &nft.Transaction{Ops: []nft.Op{{Kind: nft.OpDeleteTable}}}

// controlPlane measures one size: full programming, then a stream of
// events, each with its baselines.
func controlPlane(ctx context.Context, j *Janitor, cfg Config, size gen.Size) (*SizeResult, error) {
	p := planFor(size, cfg.Quick)
	if cfg.Rounds > 0 {
		p.rounds = cfg.Rounds
	}
	node := gen.NodeUnderTest
	c := gen.Generate(size, cfg.Seed)
	mc, err := c.Model()
	if err != nil {
		return nil, err
	}
	res := &SizeResult{Size: size, Namespaces: len(c.Namespaces), Nodes: len(c.Nodes)}
	res.PodsOnNode, res.PoliciesOnNode = onNode(mc, node)
	cfg.logf("%s: %d pods, %d policies, %d namespaces, %d nodes; %s has %d pods and %d policies",
		size.Name, size.Pods, size.Policies, res.Namespaces, res.Nodes, node, res.PodsOnNode, res.PoliciesOnNode)

	var rs *nft.Ruleset
	var fullTx *nft.Transaction
	var compiles, diffs []time.Duration
	for range p.fullReps {
		t := time.Now()
		rs = compile.Node(mc, node)
		compiles = append(compiles, time.Since(t))
		t = time.Now()
		fullTx = diff.Diff(nil, rs)
		diffs = append(diffs, time.Since(t))
	}
	text := rs.Text()
	res.Ruleset = rulesetStats(rs, text)
	text, cut := forNftCLI(text)
	if cut > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d comments of the ruleset's text are longer than the %d bytes the nft CLI parses (nftpolicy writes up to %d over netlink): `nft -f` of nftpolicy's own text form fails; baseline (b) loads them cut to %d", cut, nftCommentMax, nft.MaxCommentLen, nftCommentMax))
	}
	res.Full.Compile, res.Full.Diff = DistOf(compiles), DistOf(diffs)

	ns, err := j.NetNS("ctl-" + size.Name)
	if err != nil {
		return nil, err
	}
	kernel := nft.NewNetlink(ns.FD())
	local, nodeAddr := nodeUnderTestAddrs(c)
	tracked, err := trackConnections(ns.FD(), local, nodeAddr, TrackedConnections)
	if err != nil {
		return nil, err
	}
	res.Tracked = TrackedConnections

	// (b) nft -f of the whole ruleset, from empty.
	var loads []time.Duration
	for range p.fullReps {
		d, err := nftLoad(ns, text)
		if err != nil {
			return nil, err
		}
		loads = append(loads, d)
		if err := kernel.Apply(ctx, deleteTableTx); err != nil {
			return nil, err
		}
	}
	res.Full.NftF = DistOf(loads)
	cfg.logf("%s: ruleset %d sets, %d elements, %d rules; nft -f p50 %.0f ms", size.Name,
		res.Ruleset.Sets, res.Ruleset.Elements, res.Ruleset.Rules, res.Full.NftF.P50)

	events := c.Events(node, p.rounds)
	quiet, err := quietEvents(c, node, events)
	if err != nil {
		return nil, err
	}
	runtime.GC() // the replay's engine and model, before the agent starts

	// The agent from empty; the last one stays up for the events.
	run, first, err := programFromEmpty(ctx, kernel, c, p.fullReps, &res.Full, tracked)
	if err != nil {
		return nil, err
	}
	defer run.stop()
	// The first sync's cut judges the whole table; nothing else runs
	// until it is done.
	if err := run.agent.WaitCut(ctx); err != nil {
		return nil, err
	}
	res.FirstCutMs = float64(time.Since(first.End)) / float64(time.Millisecond)
	res.FirstCutJudged = run.agent.Stats().FlowsJudged
	cfg.logf("%s: the first sync's cut judged %d conntrack entries in %.0f ms after its commit", size.Name, res.FirstCutJudged, res.FirstCutMs)
	if first.Tx.String() != fullTx.String() {
		res.Problems = append(res.Problems, "the agent's first transaction differs from the suite's own compile")
	}
	cfg.logf("%s: agent programs from empty p50 %.0f ms (compute %.0f, apply %.0f)", size.Name,
		res.Full.AgentWall.P50, res.Full.AgentCompute.P50, res.Full.AgentApply.P50)

	// Bytes at the socket and the bare kernel cost, in the probe.
	pns, err := j.NetNS("nl-" + size.Name)
	if err != nil {
		return nil, err
	}
	pr, err := startProbe(pns, size, cfg.Seed, p.rounds)
	if err != nil {
		return nil, err
	}
	defer pr.close()
	r, err := pr.measure(probeRequest{Event: -1, Reps: p.fullReps}, first.Tx)
	if err != nil {
		return nil, fmt.Errorf("full programming: %w", err)
	}
	res.Full.Bare = DistOf(r.Bare)
	res.Full.SentMsgs, res.Full.SentBytes, res.Full.RecvMsgs, res.Full.RecvBytes = r.SentMsgs, r.SentBytes, r.RecvMsgs, r.RecvBytes

	cfg.logf("%s: kube-router baseline (iptables + ipset)", size.Name)
	res.KubeRouter = kubeRouter(j, mc, size, p.fullReps)

	// Before the events, in a namespace of its own: nothing else of the
	// suite's runs while the agent's events are timed. A failure is the
	// report's problem, not the run's end: the events do not depend on it.
	floor, err := kernelFloor(ctx, j, rs, size, floorRounds(cfg.Quick))
	if err != nil {
		res.Problems = append(res.Problems, err.Error())
	} else {
		res.KernelFloor = floor
		cfg.logf("%s: kernel's floor: one goto element p50 %s (%d verdict-map elements to validate), its delete %s, one plain element %s", size.Name,
			fmtMs(floor.GotoAdd.P50), floor.VerdictElements, fmtMs(floor.GotoDelete.P50), fmtMs(floor.PlainAdd.P50))
	}

	if err := eventStream(ctx, cfg, res, run, kernel, ns, pr, mc, rs, events, quiet, p); err != nil {
		return nil, err
	}
	if n := run.agent.Stats().FlowsCut; n > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("the agent cut %d of the node's tracked connections, which no event denies", n))
	}
	d, err := burst(ctx, run, c.Burst(BurstPods))
	if err != nil {
		return nil, err
	}
	res.BurstMs = float64(d) / float64(time.Millisecond)
	cfg.logf("%s: a burst of %d pod creations across the cluster: last write to last commit %.0f ms", size.Name, BurstPods, res.BurstMs)
	if err := run.stop(); err != nil {
		return nil, err
	}
	return res, nil
}

// programFromEmpty starts the agent reps times on an empty table, timing
// each first sync, and leaves the last agent running, as deployed: cutting
// the connections each change denies from tracked (the others do not, so
// that no cut of theirs runs into the next one's programming).
func programFromEmpty(ctx context.Context, kernel nft.Kernel, c *gen.Cluster, reps int, full *FullResult, tracked conntrack.Table) (*agentRun, applied, error) {
	var walls, computes, applies []time.Duration
	var run *agentRun
	var first applied
	for rep := range reps {
		var tweak func(*agent.Config)
		if rep == reps-1 {
			tweak = func(cfg *agent.Config) { cfg.Conntrack = tracked }
		}
		run = newAgentRunWith(c.Objects(), kernel, tweak)
		run.start(ctx)
		a, err := run.kernel.next(ctx, 15*time.Minute)
		if err != nil {
			run.stop()
			return nil, first, fmt.Errorf("agent's first sync: %w", err)
		}
		first = a
		walls = append(walls, a.End.Sub(run.started))
		computes = append(computes, a.Start.Sub(run.started))
		applies = append(applies, a.End.Sub(a.Start))
		if rep < reps-1 {
			if err := run.stop(); err != nil {
				return nil, first, err
			}
			if err := kernel.Apply(ctx, deleteTableTx); err != nil {
				return nil, first, err
			}
		}
	}
	full.AgentWall, full.AgentCompute, full.AgentApply = DistOf(walls), DistOf(computes), DistOf(applies)
	return run, first, nil
}

// eventAcc collects one kind's samples.
type eventAcc struct {
	commit, compute, netlink, bare, bareClose, nftf, rewrite, build, compile, diff []time.Duration
	ops, elems, sentMsgs, sentBytes, recvBytes                                     []float64
	cut                                                                            []time.Duration
	judged                                                                         []float64
	bytesBy                                                                        map[string][]float64 // bytesby.go
}

func (a *eventAcc) result(kind string) EventResult {
	return EventResult{
		Kind: kind, Commit: DistOf(a.commit), Compute: DistOf(a.compute), Netlink: DistOf(a.netlink),
		Bare: DistOf(a.bare), BareClose: DistOf(a.bareClose), NftF: DistOf(a.nftf), Rewrite: DistOf(a.rewrite), RewriteBuild: DistOf(a.build),
		Compile: DistOf(a.compile), Diff: DistOf(a.diff), Ops: DistOfFloats(a.ops), Elements: DistOfFloats(a.elems),
		SentMsgs: DistOfFloats(a.sentMsgs), SentBytes: DistOfFloats(a.sentBytes), RecvBytes: DistOfFloats(a.recvBytes),
		BytesBy: distsOf(a.bytesBy), Cut: DistOf(a.cut), Judged: DistOfFloats(a.judged),
	}
}

func distsOf(m map[string][]float64) map[string]Dist {
	if len(m) == 0 {
		return nil
	}
	out := map[string]Dist{}
	for k, v := range m {
		out[k] = DistOfFloats(v)
	}
	return out
}

// addBytesBy records what a transaction's bytes went to.
func (a *eventAcc) addBytesBy(tx *nft.Transaction) error {
	by, err := bytesBy(tx)
	if err != nil {
		return err
	}
	if a.bytesBy == nil {
		a.bytesBy = map[string][]float64{}
	}
	for _, k := range bytesKinds {
		a.bytesBy[k] = append(a.bytesBy[k], by[k])
	}
	return nil
}

func (a *eventAcc) merge(b *eventAcc) {
	a.commit = append(a.commit, b.commit...)
	a.compute = append(a.compute, b.compute...)
	a.netlink = append(a.netlink, b.netlink...)
	a.bare = append(a.bare, b.bare...)
	a.bareClose = append(a.bareClose, b.bareClose...)
	a.nftf = append(a.nftf, b.nftf...)
	a.rewrite = append(a.rewrite, b.rewrite...)
	a.build = append(a.build, b.build...)
	a.compile = append(a.compile, b.compile...)
	a.diff = append(a.diff, b.diff...)
	a.ops = append(a.ops, b.ops...)
	a.elems = append(a.elems, b.elems...)
	a.sentMsgs = append(a.sentMsgs, b.sentMsgs...)
	a.sentBytes = append(a.sentBytes, b.sentBytes...)
	a.recvBytes = append(a.recvBytes, b.recvBytes...)
	a.cut = append(a.cut, b.cut...)
	a.judged = append(a.judged, b.judged...)
	if a.bytesBy == nil && b.bytesBy != nil {
		a.bytesBy = map[string][]float64{}
	}
	for k, v := range b.bytesBy {
		a.bytesBy[k] = append(a.bytesBy[k], v...)
	}
}

// eventStream sends each event to the agent's API server and times it to
// the commit, then measures the baselines on the same change:
//
//	(b) the namespace is reverted and the same transaction loaded by nft -f;
//	(a) the table is deleted and re-created in one batch (kube-network-policies);
//	(c) in the probe: bytes at the socket, and a bare replay of the batch.
//
// Every baseline leaves the kernel as the event left it, so the agent's
// shadow stays true.
func eventStream(ctx context.Context, cfg Config, res *SizeResult, run *agentRun, kernel nft.Kernel, ns *NetNS,
	pr *probe, mc *model.Cluster, before *nft.Ruleset, events []gen.Event, quiet map[int]bool, p plan) error {
	acc := map[gen.EventKind]*eventAcc{}
	for _, k := range gen.EventKinds() {
		acc[k] = &eventAcc{}
	}
	logRound := func(i int) {
		if (i+1)%len(gen.EventKinds()) == 0 {
			cfg.logf("%s: %d/%d events; last round commit %s", res.Size.Name, i+1, len(events), lastRound(acc))
		}
	}
	for i, e := range events {
		if err := ctx.Err(); err != nil {
			return err
		}
		a := acc[e.Kind]
		if quiet[i] {
			if err := applyQuiet(ctx, run, e, i); err != nil {
				return fmt.Errorf("event %d (%s): %w", i, e.Kind, err)
			}
			if err := applyToModel(mc, e); err != nil {
				return err
			}
			if _, err := pr.measure(probeRequest{Event: i}, &nft.Transaction{}); err != nil {
				return fmt.Errorf("event %d (%s): %w", i, e.Kind, err)
			}
			res.Quiet = append(res.Quiet, fmt.Sprintf("event %d (%s)", i, e.Kind))
			cfg.logf("%s: event %d (%s) changes nothing on the node: applied, not timed", res.Size.Name, i, e.Kind)
			logRound(i)
			continue
		}
		// The suite's own work after each event (compile.Node and the
		// baselines below: at L hundreds of MB of garbage) shares this
		// process with the agent; collect it now, so that its collection
		// does not run during the agent's next event.
		runtime.GC()
		// The event's time is the write's start: the fake API server hands
		// the watch event to the informer inside the call, and a quick
		// agent can commit before the call returns (a time taken after it
		// made some commits look negative).
		pre := run.agent.Stats()
		t0 := time.Now()
		if err := run.apply(ctx, e); err != nil {
			return err
		}
		got, err := run.kernel.next(ctx, 10*time.Minute)
		if err != nil {
			return fmt.Errorf("event %d (%s): %w", i, e.Kind, err)
		}
		start := got.Start
		if start.Before(t0) {
			start = t0
		}
		// The cut runs beside the sync loop; it is waited for here, so
		// that it runs into none of the baselines below.
		judged, err := waitCut(ctx, run, pre)
		if err != nil {
			return fmt.Errorf("event %d (%s): %w", i, e.Kind, err)
		}
		if judged >= 0 {
			a.cut = append(a.cut, time.Since(got.End))
			a.judged = append(a.judged, float64(judged))
		}
		a.commit = append(a.commit, got.End.Sub(t0))
		a.compute = append(a.compute, start.Sub(t0))
		a.netlink = append(a.netlink, got.End.Sub(got.Start))
		counts := diff.Count(got.Tx)
		a.ops = append(a.ops, float64(counts.Ops))
		a.elems = append(a.elems, float64(counts.Elements))
		if err := a.addBytesBy(got.Tx); err != nil {
			return fmt.Errorf("event %d (%s): %w", i, e.Kind, err)
		}

		// The suite's own model follows the event.
		if err := applyToModel(mc, e); err != nil {
			return err
		}
		t := time.Now()
		after := compile.Node(mc, gen.NodeUnderTest)
		a.compile = append(a.compile, time.Since(t))
		t = time.Now()
		tx := diff.Diff(before, after)
		a.diff = append(a.diff, time.Since(t))
		if tx.String() != got.Tx.String() {
			res.Problems = append(res.Problems, fmt.Sprintf("event %d (%s): the agent's transaction differs from the suite's", i, e.Kind))
		}
		revert := diff.Diff(after, before)

		// (b) nft -f of the same transaction, from the same state.
		if err := kernel.Apply(ctx, revert); err != nil {
			return fmt.Errorf("event %d: revert: %w", i, err)
		}
		script, _ := forNftCLI(got.Tx.String())
		runtime.GC() // as before the event: the baselines are timed clean too
		d, err := nftLoad(ns, script)
		if err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("event %d (%s): %v", i, e.Kind, err))
			if err := kernel.Apply(ctx, got.Tx); err != nil {
				return err
			}
		} else {
			a.nftf = append(a.nftf, d)
		}

		// (a) the full rewrite.
		t = time.Now()
		rewrite := &nft.Transaction{Ops: append([]nft.Op{{Kind: nft.OpDeleteTable}}, diff.Diff(nil, after).Ops...)}
		a.build = append(a.build, time.Since(t))
		runtime.GC()
		t = time.Now()
		if err := kernel.Apply(ctx, rewrite); err != nil {
			return fmt.Errorf("event %d: full rewrite: %w", i, err)
		}
		a.rewrite = append(a.rewrite, time.Since(t))

		// (c) and the bytes; what a rewrite sends is sampled once.
		r, err := pr.measure(probeRequest{Event: i, Reps: p.bareReps, Rewrite: i == 0}, got.Tx)
		if err != nil {
			return fmt.Errorf("event %d (%s): %w", i, e.Kind, err)
		}
		a.bare = append(a.bare, r.Bare...)
		a.bareClose = append(a.bareClose, r.BareClose...)
		a.sentMsgs = append(a.sentMsgs, float64(r.SentMsgs))
		a.sentBytes = append(a.sentBytes, float64(r.SentBytes))
		a.recvBytes = append(a.recvBytes, float64(r.RecvBytes))
		if i == 0 {
			res.RewriteSentBytes, res.RewriteSentMsgs = r.RewriteSentBytes, r.RewriteSentMsgs
		}
		before = after
		logRound(i)
	}
	all := &eventAcc{}
	for _, k := range gen.EventKinds() {
		res.Events = append(res.Events, acc[k].result(string(k)))
		all.merge(acc[k])
	}
	res.Events = append(res.Events, all.result("all"))
	return nil
}

func lastRound(acc map[gen.EventKind]*eventAcc) string {
	var parts []string
	for _, k := range gen.EventKinds() {
		if c := acc[k].commit; len(c) > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f ms", k, ms(c[len(c)-1])))
		}
	}
	return strings.Join(parts, ", ")
}

// applyEvent gives the engine one generated event.
func applyEvent(e *compile.Engine, ev gen.Event) error {
	if ev.Op == gen.Delete {
		kind, ns, name := ev.ModelKey()
		return e.Delete(kind, ns, name)
	}
	return e.Set(ev.Object)
}

// nodeEngine is an engine of node in the cluster, with a copy of its
// ruleset: what the node's kernel holds, for the events' partial diffs.
func nodeEngine(c *gen.Cluster, node string) (*compile.Engine, *nft.Ruleset, error) {
	m, err := c.Model()
	if err != nil {
		return nil, nil, err
	}
	e := compile.NewEngine(m, node)
	e.TakeTouched()
	return e, e.Ruleset().Clone(), nil
}

// quietEvents replays events on an engine of the node and returns those
// whose transaction is empty: changes the node's rules do not see (a port
// added to a rule whose pods and peers an earlier rule already allows on
// every port, say; more rounds than the default meet some). The agent
// commits nothing for them, so the stream cannot time them to a commit.
func quietEvents(c *gen.Cluster, node string, events []gen.Event) (map[int]bool, error) {
	e, shadow, err := nodeEngine(c, node)
	if err != nil {
		return nil, err
	}
	quiet := map[int]bool{}
	for i, ev := range events {
		if err := applyEvent(e, ev); err != nil {
			return nil, fmt.Errorf("event %d (%s): %w", i, ev.Kind, err)
		}
		tx := diff.Partial(shadow, e.Ruleset(), e.TakeTouched())
		if tx.Empty() {
			quiet[i] = true
		}
		shadow.ApplyOps(tx)
	}
	return quiet, nil
}

// applyQuiet sends a quiet event (quietEvents) to the agent and waits
// until a sync has applied it, at a version of its own; the sync must
// commit nothing.
func applyQuiet(ctx context.Context, run *agentRun, e gen.Event, i int) error {
	if e.Op == gen.Delete {
		return errors.New("a delete that changes nothing on the node: the agent's barrier cannot tell when it has it")
	}
	pre := run.agent.Stats()
	o := e.Object.DeepCopyObject()
	m := o.(metav1.Object)
	m.SetResourceVersion("quiet-" + strconv.Itoa(i))
	e.Object = o
	if err := run.apply(ctx, e); err != nil {
		return err
	}
	if err := run.agent.WaitIncludes(ctx, map[string]string{agent.ObjectKey(o): m.GetResourceVersion()}); err != nil {
		return err
	}
	if n := run.agent.Stats().Transactions - pre.Transactions; n != 0 {
		return fmt.Errorf("the agent committed %d transactions for a change the engine finds quiet", n)
	}
	return nil
}

func applyToModel(mc *model.Cluster, e gen.Event) error {
	if e.Op == gen.Delete {
		kind, ns, name := e.ModelKey()
		return mc.Delete(kind, ns, name)
	}
	return mc.Set(e.Object)
}

// onNode counts the active pods on node and the policies selecting one.
func onNode(mc *model.Cluster, node string) (pods, policies int) {
	var local []*model.Pod
	for _, p := range mc.Pods {
		if p.Node == node && p.Active() {
			local = append(local, p)
		}
	}
	for _, np := range mc.Policies {
		for _, p := range local {
			if np.Selects(mc, p) {
				policies++
				break
			}
		}
	}
	return len(local), policies
}

func rulesetStats(rs *nft.Ruleset, text string) RulesetStats {
	s := RulesetStats{Sets: len(rs.Sets), Chains: len(rs.Chains), TextBytes: len(text)}
	for _, set := range rs.Sets {
		s.Elements += set.Len()
	}
	for _, c := range rs.Chains {
		s.Rules += len(c.Rules)
	}
	return s
}

// waitCut waits for the sync after pre to finish and for its cut, and
// returns the entries the cut judged; -1 if the transaction asked for no
// cut.
func waitCut(ctx context.Context, run *agentRun, pre agent.Stats) (int, error) {
	for run.agent.Stats().Transactions == pre.Transactions {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Microsecond):
		}
	}
	if err := run.agent.WaitCut(ctx); err != nil {
		return 0, err
	}
	s := run.agent.Stats()
	if s.FlowCuts == pre.FlowCuts {
		return -1, nil
	}
	return s.FlowsJudged - pre.FlowsJudged, nil
}
