// Package agent is the node agent's sync loop: informers record changes
// and ask for a sync; each sync compiles the model for this node, diffs it
// against the shadow of the kernel's table and applies one transaction.
//
// The table is never flushed. At startup (and after any failure, and
// periodically) the agent reads the kernel's table back and applies only
// the difference, so a restarted agent adopts what its predecessor left and
// no packet sees a window with no rules or with wrong ones. On shutdown the
// rules stay for the next agent. The one exception: when the kernel refuses
// the minimal transaction twice in a row, the agent replaces the whole table
// in one atomic batch (fallback.go), which no packet sees either.
package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	policyclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	policyinformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/conntrack"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Config is what an agent needs besides its API client.
type Config struct {
	NodeName string
	Kernel   nft.Kernel
	// MinSyncInterval spaces syncs out so bursts of events coalesce.
	MinSyncInterval time.Duration
	// ResyncInterval is the period of the full resync that reads the
	// kernel back and repairs drift (default one minute).
	ResyncInterval time.Duration
	// PolicyClient, when set, watches the network-policy-api kinds; nil
	// leaves them unwatched (their CRDs may be absent, or the
	// AdminNetworkPolicy feature gate off).
	PolicyClient policyclient.Interface
	// AdminKinds names the network-policy-api kinds watched (some CRDs may
	// be installed and others not), each with the resource it is watched
	// at: its kinds table entry's or a newer version it is served at
	// (model.Kind.Newer). nil means all of AdminKinds() at their entries'.
	AdminKinds map[string]schema.GroupVersionResource
	// Metrics receives the agent's series; nil: a private, unregistered set.
	Metrics *Metrics
	// Conntrack, when set, is the node's conntrack table: after a
	// transaction that could deny, the entries of connections the new
	// ruleset drops are deleted (cutflows.go). nil: established
	// connections outlive a deny.
	Conntrack conntrack.Table
	// Model holds the choices that change what is compiled: with
	// Model.OpenUnknown the addresses of this node's pod CIDRs that no
	// known pod has are not denied (compile/unknown.go).
	Model model.Options
	// IPVSDetect, when set (--ipvs=auto), says whether IPVS may be in use
	// on the node. Asked before the first sync and then every
	// IPVSCheckInterval (default 10 s) until it says yes: the agent then
	// turns Model.IPVS on, which adds the output chains (ipvs.go).
	IPVSDetect        func() bool
	IPVSCheckInterval time.Duration
	// Tamper, when set, reports changes to the table made by anyone else;
	// each one starts a full sync at once (tamper.go). nil: drift waits
	// for the periodic resync.
	Tamper TamperMonitor
	// Logs, when set, reads the NFLOG group of verdict logs
	// (Model.Logs/LogGroup say what the kernel sends there): one log line
	// per event, at most LogLinesPerSecond (verdicts.go). nil: none read.
	Logs LogSource
	// LogLinesPerSecond limits the verdict lines (default 50, burst 100).
	LogLinesPerSecond float64
	// Counters, when set, are read every CountersInterval (default 30 s)
	// into nftpolicy_policy_packets_total and _bytes_total.
	Counters         nft.CounterReader
	CountersInterval time.Duration
	// DNSAnswers, when set, reads the copies of DNS answers the kernel sends
	// to Model.DNSGroup (fqdn.go); nil: domainNames peers match nothing.
	DNSAnswers PacketSource
	// DNSMinTTL and DNSMaxTTL clamp how long a learned binding lives;
	// DNSMaxBindings bounds how many are kept.
	DNSMinTTL, DNSMaxTTL time.Duration
	DNSMaxBindings       int
	// Dynamic, with NetworkKernel, watches the secondary networks' kinds
	// (MultiNetworkPolicy, NetworkAttachmentDefinition; DynamicKinds limits
	// them to the CRDs installed, nil: all) and programs a table per
	// network (multinet.go). nil: secondary networks are not enforced.
	Dynamic       dynamic.Interface
	DynamicKinds  []string
	NetworkKernel func(table string) nft.Kernel
	// ListNetworkTables, when set, lists the secondary networks' tables in
	// the kernel (nft.ListTables with NetworkTablePrefix): at the first
	// sync, those of networks the node has no pod on are deleted.
	ListNetworkTables func(ctx context.Context) ([]string, error)
	// Remotes are the other clusters of a flat ClusterSet whose pods,
	// namespaces and nodes are peers here (remote.go,
	// docs/multicluster.md); ClusterSet says how selectors match them.
	Remotes    []Remote
	ClusterSet model.ClusterSet
	// RemoteCheckInterval spaces the checks of each remote cluster's API
	// server (default 10 s), each bounded by RemoteCheckTimeout (default
	// 5 s); RemoteSyncTimeout bounds the wait for a remote cluster's
	// objects at startup (default 30 s).
	RemoteCheckInterval, RemoteCheckTimeout, RemoteSyncTimeout time.Duration
}

// Agent programs one node.
type Agent struct {
	cfg           Config
	client        kubernetes.Interface
	factory       informers.SharedInformerFactory
	policyFactory policyinformers.SharedInformerFactory
	dynFactory    dynamicinformer.DynamicSharedInformerFactory
	watched       []watched
	remotes       []*remoteCluster
	remoteCtx     context.Context // Run's, for the checks a watch error starts
	remoteLog     klog.Logger
	runner        *runner
	metrics       *Metrics

	tracker *tracker
	// status is what the tier policies' status should say, computed when a
	// tier policy or the set of nodes changed, until it is written.
	status *statusRequest

	// Touched only by the sync loop, which holds engineMu; the cutter
	// (cutflows.go) reads the engine under it too.
	engineMu   sync.Mutex
	engine     *compile.Engine    // the model and this node's ruleset; nil until the first sync
	shadow     *nft.Ruleset       // what the kernel holds; nil: read it back first
	refusals   int                // transactions the kernel refused in a row (applyOrReplace)
	versions   map[string]*string // object key -> version (nil: deleted) applied to the engine, not yet to the kernel
	counts     map[string]int     // objects per kind
	lastFull   time.Time
	problemLog map[string]string // policy -> its problems, as last logged
	setErrLog  map[string]string // object -> resourceVersion whose Set error was logged
	failLog    rateLimitedLog
	cutLog     rateLimitedLog // failures to cut denied connections (cutflows.go)

	repair atomic.Bool // tampering seen: the next sync reads the kernel back

	pendingMu sync.Mutex
	pending   []time.Time // when changes not yet synced were observed

	mu      sync.Mutex
	applied map[string]string // object key -> resourceVersion of the last applied sync
	synced  bool
	notify  chan struct{} // closed and replaced after every successful sync and cut
	cut     cutState      // cutflows.go

	// Secondary networks (multinet.go), touched only by the sync loop.
	networks map[string]*netTable
	netDirty bool
	// netChanges are the changes since the last sync of the networks that
	// can affect them, in order.
	netChanges []*change
	netListed  bool // stale network tables looked for (multinet.go)
	netLog     map[string]string

	ipvsSeen atomic.Bool  // ipvs.go
	verdicts verdictState // verdicts.go
	dns      dnsState     // fqdn.go
	stats    Stats
}

// Stats counts what the agent did, for tests and metrics.
type Stats struct {
	Syncs, Failures, Transactions int
	// FullSyncs are the syncs that read the kernel's table back; Drift
	// counts those that found it changed behind the agent's back.
	FullSyncs, Drift int
	LastOps          diff.Counts
	// FlowCuts counts the cuts attempted after transactions (failed too);
	// FlowsJudged the entries they traced, in the transactions' scopes;
	// FlowsCut the entries deleted; CutsPostponed the cuts that found the
	// last sync failed and waited for one to succeed.
	FlowCuts, FlowsJudged, FlowsCut, CutsPostponed int
	// StartupGuards is 1 when the agent found no table at startup and
	// denied the node's pod CIDRs until its first sync (guard.go).
	StartupGuards int
}

// New makes an agent; it starts nothing and touches no kernel.
func New(cfg Config, client kubernetes.Interface) *Agent {
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = time.Minute
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.IPVSCheckInterval, 10 * time.Second}, {&cfg.RemoteCheckInterval, 10 * time.Second}, {&cfg.RemoteCheckTimeout, 5 * time.Second}, {&cfg.RemoteSyncTimeout, 30 * time.Second}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	m := cfg.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	a := &Agent{
		cfg:        cfg,
		client:     client,
		metrics:    m,
		problemLog: map[string]string{},
		setErrLog:  map[string]string{},
		failLog:    rateLimitedLog{every: 30 * time.Second},
		cutLog:     rateLimitedLog{every: cutLogEvery},
		notify:     make(chan struct{}),
		cut:        cutState{wake: make(chan struct{}, 1)},
		tracker:    newTracker(),
		versions:   map[string]*string{},
		counts:     map[string]int{},
		applied:    map[string]string{},
		networks:   map[string]*netTable{},
		netLog:     map[string]string{},
	}
	a.runner = newRunner(a.sync, cfg.MinSyncInterval, cfg.ResyncInterval)
	if err := errors.Join(a.newInformers(), a.newRemoteInformers()); err != nil {
		// The kinds table and client-go disagree: a build error, caught
		// by every agent test, never an input's.
		panic(err)
	}
	return a
}

// Run starts the informers, waits for their caches, and syncs until ctx is
// done. The first sync reads the kernel's table and applies only the
// difference. Rules stay in the kernel when Run returns, for the next agent
// to adopt.
func (a *Agent) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("node", a.cfg.NodeName)
	h := a.handler()
	// The first sync must see every object of the initial lists: wait for
	// the handlers to have received them, not just for the caches.
	var synced []cache.InformerSynced
	var nodes cache.SharedIndexInformer
	var nodesSynced cache.InformerSynced
	for _, w := range a.watched {
		reg, err := w.informer.AddEventHandler(h)
		if err != nil {
			return fmt.Errorf("informer of %s: %w", w.kind.Name, err)
		}
		if w.remote != nil {
			w.remote.synced = append(w.remote.synced, reg.HasSynced)
			continue
		}
		synced = append(synced, reg.HasSynced)
		if w.kind.Name == "Node" {
			nodes, nodesSynced = w.informer, reg.HasSynced
		}
	}
	a.factory.Start(ctx.Done())
	defer a.factory.Shutdown()
	if a.policyFactory != nil {
		a.policyFactory.Start(ctx.Done())
		defer a.policyFactory.Shutdown()
	}
	if a.dynFactory != nil {
		a.dynFactory.Start(ctx.Done())
		defer a.dynFactory.Shutdown()
	}
	a.detectIPVS(ctx, logger) // ipvs.go
	a.guardStartup(ctx, logger, nodes, nodesSynced)
	defer a.shutdownRemotes()
	a.startRemotes(ctx, logger)
	logger.V(1).Info("Waiting for the informers to sync")
	for i, w := range a.local() {
		if !cache.WaitForCacheSync(ctx.Done(), synced[i]) {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fmt.Errorf("cache of %s did not sync", w.kind.Name)
		}
	}
	logger.V(1).Info("Informers synced; starting the sync loop")
	a.watchTamper(ctx, logger)
	a.startVerdicts(ctx, logger)
	a.startDNS(ctx, logger)
	if a.cfg.Conntrack != nil {
		go a.cutLoop(ctx, logger)
	}
	a.runner.Request()
	a.runner.Loop(klog.NewContext(ctx, logger))
	return nil
}

// local returns the informers of this cluster's objects.
func (a *Agent) local() []watched {
	var out []watched
	for _, w := range a.watched {
		if w.remote == nil {
			out = append(out, w)
		}
	}
	return out
}

// sync is one pass: apply the changes the informers recorded to the
// compile engine, diff what they touched against the shadow of the
// kernel's table (or the whole ruleset against the kernel read back, on a
// full sync), apply. Its cost follows the changes, not the cluster. Any
// failure leaves the shadow unset so the next pass is a full one; the
// runner retries with backoff.
func (a *Agent) sync(ctx context.Context) error {
	a.engineMu.Lock()
	defer a.engineMu.Unlock()
	logger := klog.FromContext(ctx)
	start := time.Now()
	a.takeRepair()
	changes := a.tracker.take()
	a.apply(logger, changes)
	a.followIPVS(logger) // ipvs.go
	dnsSince := a.applyDomains()
	a.skipBridges() // multinet.go
	desired := a.engine.Ruleset()
	touched := a.engine.TakeTouched()

	full := a.shadow == nil || time.Since(a.lastFull) >= a.cfg.ResyncInterval
	if full {
		current, err := a.cfg.Kernel.Dump(ctx)
		if err != nil {
			a.shadow = nil
			a.fail(logger, failRead, err, nil)
			return err
		}
		if a.shadow != nil && !diff.Diff(current, a.shadow).Empty() {
			a.metrics.DriftRepairs.Inc()
			a.mu.Lock()
			a.stats.Drift++
			a.mu.Unlock()
			logger.Info("The kernel's table differs from what this agent programmed; repairing it", "tableExists", current != nil)
		}
		a.shadow, a.lastFull = current, start // nil: no table yet
	}
	var tx *nft.Transaction
	if full {
		tx = diff.Diff(a.shadow, desired)
	} else {
		tx = diff.Partial(a.shadow, desired, touched)
	}
	counts := diff.Count(tx)
	computed := time.Now()
	if !tx.Empty() {
		committed, err := a.applyOrReplace(ctx, logger, tx, desired)
		if err != nil {
			a.shadow = nil // the kernel's state is unknown: read it back next time
			reason := failApply
			if errors.Is(err, nft.ErrOutcomeUnknown) {
				reason = failUnknown
			}
			a.fail(logger, reason, err, committed)
			return err
		}
		tx, counts = committed, diff.Count(committed)
		a.metrics.Transactions.Inc()
		a.metrics.TxOperations.Observe(float64(counts.Ops))
		if bytes, ok := batchBytes(a.cfg.Kernel, tx); ok {
			a.metrics.TxBytes.Observe(float64(bytes))
		}
	}
	a.requestCut(a.shadow, tx)
	if a.shadow == nil {
		a.shadow = nft.NewRuleset()
	}
	a.shadow.ApplyOps(tx)
	done := time.Now() // the rules are in force: the programming latency ends here
	if !dnsSince.IsZero() {
		a.metrics.DNSLatency.Observe(done.Sub(dnsSince).Seconds())
	}
	a.indexOrigins(full, desired, touched)
	if err := a.syncNetworks(ctx, logger, full); err != nil {
		a.fail(logger, failApply, err, nil)
		return err
	}
	a.observe(full, start, computed, done)
	if a.status != nil && (!a.status.writer || a.writeStatus(ctx, logger, a.status.conditions)) {
		// Written before the sync counts as applied: the next change a
		// client makes cannot race with this write (a failed write is
		// retried by the next sync).
		a.status = nil
	}
	logger.V(2).Info("Synced", "full", full, "changes", len(changes), "operations", counts.Ops, "elements", counts.Elements, "took", done.Sub(start))

	a.mu.Lock()
	for k, v := range a.versions {
		if v == nil {
			delete(a.applied, k)
		} else {
			a.applied[k] = *v
		}
	}
	a.versions = map[string]*string{}
	a.synced = true
	a.stats.Syncs++
	if full {
		a.stats.FullSyncs++
	}
	if !tx.Empty() {
		a.stats.Transactions++
	}
	a.stats.LastOps = counts
	a.notifyLocked()
	a.mu.Unlock()
	return nil
}

// notifyLocked wakes the waiters of waitFor; under a.mu.
func (a *Agent) notifyLocked() {
	close(a.notify)
	a.notify = make(chan struct{})
}

// batchBytes is the size of the batch the kernel was sent for tx: as the
// netlink kernel counted it while encoding, or (other kernels) encoded
// once more.
func batchBytes(k nft.Kernel, tx *nft.Transaction) (int, bool) {
	if s, ok := k.(interface{ LastBatchBytes() int }); ok {
		return s.LastBatchBytes(), true
	}
	n, err := nft.BatchBytes(tx)
	return n, err == nil
}

// apply feeds the recorded changes to the compile engine (the first time,
// builds the model and the engine from them in one pass), remembers their
// versions for the barrier, logs new policy problems and computes the status
// writer when a tier policy or the set of nodes changed.
func (a *Agent) apply(logger klog.Logger, changes []*change) {
	statusDirty := false
	if a.engine == nil {
		c := model.NewCluster()
		c.ClusterSet = a.cfg.ClusterSet
		for _, ch := range changes {
			if ch.new != nil {
				a.setErr(logger, ch, c.Set(ch.new))
			}
		}
		a.engine = compile.NewEngineWith(c, a.cfg.NodeName, a.cfg.Model)
		statusDirty = true
	} else {
		for _, ch := range changes {
			var err error
			if ch.new != nil {
				err = a.engine.Set(ch.new)
			} else {
				err = a.engine.Delete(ch.kind, ch.namespace, ch.name)
			}
			a.setErr(logger, ch, err)
		}
	}
	for _, ch := range changes {
		var rv *string
		if ch.new != nil {
			v := ch.new.GetResourceVersion()
			rv = &v
		}
		a.versions[ch.key()] = rv
		switch {
		case ch.remote():
			// Remote objects are not this cluster's: not counted.
		case ch.old == nil && ch.new != nil:
			a.counts[ch.kind]++
		case ch.old != nil && ch.new == nil:
			a.counts[ch.kind]--
		}
		if a.cfg.NetworkKernel != nil && netChange(ch) {
			a.netDirty = true
			a.netChanges = append(a.netChanges, ch)
		}
		switch ch.kind {
		case "NetworkPolicy":
			a.logProblems(logger, ch.namespace+"/"+ch.name)
		case "Node", model.KindANP, model.KindBANP, model.KindCNP:
			statusDirty = statusDirty || !ch.remote()
		}
	}
	if statusDirty && a.cfg.PolicyClient != nil {
		c := a.engine.Cluster()
		a.status = &statusRequest{writer: a.statusWriter(c), conditions: c.TierConditions()}
	}
}

// setErr logs, once per object version, an object the model refused; the
// rest is enforced.
func (a *Agent) setErr(logger klog.Logger, ch *change, err error) {
	if err == nil {
		return
	}
	rv := ""
	if ch.new != nil {
		rv = ch.new.GetResourceVersion()
	}
	if a.setErrLog[ch.key()] != rv {
		a.setErrLog[ch.key()] = rv
		logger.V(2).Info("Object not enforced", "object", ch.key(), "resourceVersion", rv, "err", err)
	}
}

// observe updates the metrics after a successful sync that started at
// start and committed at done. It walks the node's ruleset (its sets and
// chains, not their elements), never the cluster.
func (a *Agent) observe(full bool, start, computed, done time.Time) {
	m := a.metrics
	typ := syncPartial
	if full {
		typ = syncFull
	}
	m.Syncs.WithLabelValues(typ).Inc()
	m.SyncDuration.WithLabelValues(typ).Observe(done.Sub(start).Seconds())
	m.SyncCompute.WithLabelValues(typ).Observe(computed.Sub(start).Seconds())
	for _, t := range a.takePending(start) {
		m.ProgrammingLatency.Observe(done.Sub(t).Seconds())
	}
	for _, w := range a.watched {
		if w.kind.Policy {
			m.Policies.WithLabelValues(w.kind.Name).Set(float64(a.counts[w.kind.Name]))
		}
	}
	m.Pods.Set(float64(a.counts["Pod"]))
	m.SelectedPods.Set(float64(a.engine.SelectedPods()))
	kept, members := a.engine.KeptSets()
	m.KeptSets.Set(float64(kept))
	m.KeptSetMembers.Set(float64(members))
	desired := a.engine.Ruleset()
	elems, rules := 0, 0
	for _, s := range desired.Sets {
		elems += s.Len()
	}
	for _, c := range desired.Chains {
		rules += len(c.Rules)
	}
	m.SetElements.Set(float64(elems))
	m.Rules.Set(float64(rules))
	m.Sets.Set(float64(len(desired.Sets)))
	m.Chains.Set(float64(len(desired.Chains)))
	m.LastSync.Set(float64(done.UnixNano()) / 1e9)
	m.Ready.Set(1)
}

// fail counts a failed sync and logs it, rate-limited: an error that
// repeats every backoff step is logged once per period with how many
// repeats were suppressed. The failed transaction is logged at V(4).
func (a *Agent) fail(logger klog.Logger, reason string, err error, tx *nft.Transaction) {
	a.metrics.SyncFailures.WithLabelValues(reason).Inc()
	a.mu.Lock()
	a.stats.Failures++
	a.mu.Unlock()
	suppressed, ok := a.failLog.allow(reason+": "+err.Error(), time.Now())
	if !ok {
		return
	}
	msg := "Sync failed; the next sync is a full resync"
	if reason == failUnknown {
		msg = "Outcome of the transaction unknown; the next sync reads the kernel back"
	}
	logger.Error(err, msg, "reason", reason, "suppressedSinceLastLog", suppressed)
	if tx != nil {
		logger.V(4).Info("Failed transaction", "transaction", tx.String())
	}
}

// rateLimitedLog lets a message through when it differs from the last one
// or when every has passed since the last one let through.
type rateLimitedLog struct {
	every      time.Duration
	last       time.Time
	lastMsg    string
	suppressed int
}

func (r *rateLimitedLog) allow(msg string, now time.Time) (suppressed int, ok bool) {
	if msg == r.lastMsg && now.Sub(r.last) < r.every {
		r.suppressed++
		return 0, false
	}
	suppressed, r.suppressed = r.suppressed, 0
	r.last, r.lastMsg = now, msg
	return suppressed, true
}

// logProblems logs a NetworkPolicy's problems when they changed.
func (a *Agent) logProblems(logger klog.Logger, key string) {
	p := a.engine.Cluster().Policies[key]
	if p == nil {
		delete(a.problemLog, key)
		return
	}
	msg := strings.Join(p.Problems, "; ")
	if msg == a.problemLog[key] {
		return
	}
	if msg == "" {
		delete(a.problemLog, key)
		return
	}
	a.problemLog[key] = msg
	logger.Error(nil, "Invalid NetworkPolicy; enforcing what is valid, access only narrowed", "policy", key, "problems", msg)
}

// Stats returns counters of the syncs so far.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// Ready reports whether a sync has succeeded since the agent started.
func (a *Agent) Ready() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.synced
}

// WaitApplied blocks until a sync has been applied whose snapshot holds
// exactly the given objects at the given resourceVersions (and no others of
// the kinds named in want's keys), and the connections that sync's rules
// deny are cut. It is the lab's sync barrier.
func (a *Agent) WaitApplied(ctx context.Context, want map[string]string) error {
	return a.waitFor(ctx, func() bool { return sameVersions(a.applied, want) && a.cutsDone() })
}

// WaitCut blocks until the cuts that the changes committed so far asked
// for are done: the connections their rules deny are gone. A sync asks
// after its commit, before it counts as applied (Stats.Transactions).
func (a *Agent) WaitCut(ctx context.Context) error { return a.waitFor(ctx, a.cutsDone) }

// cutsDone: every cut asked for is done; under a.mu.
func (a *Agent) cutsDone() bool { return a.cut.done == a.cut.want }

// WaitIncludes blocks until a sync has been applied that holds at least the
// given objects at the given versions (others may be there too).
func (a *Agent) WaitIncludes(ctx context.Context, want map[string]string) error {
	return a.waitFor(ctx, func() bool {
		for k, v := range want {
			if a.applied[k] != v {
				return false
			}
		}
		return true
	})
}

// waitFor blocks until done, checked under a.mu after every sync, holds.
func (a *Agent) waitFor(ctx context.Context, done func() bool) error {
	for {
		a.mu.Lock()
		ok := a.synced && done()
		ch := a.notify
		a.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s: waiting for the agent to apply the step: %w", a.cfg.NodeName, ctx.Err())
		case <-ch:
		}
	}
}

func sameVersions(got, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}
