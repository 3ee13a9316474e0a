package agent

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"k8s.io/klog/v2"

	"github.com/nftpolicy/nftpolicy/internal/conntrack"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

const (
	// cutLogEvery spaces out the log of a failure that repeats.
	cutLogEvery = 5 * time.Minute
	// cutJudgeBatch is how many entries are judged under one hold of the
	// engine: about 0.13 ms of traces at ~2 µs each (conntrack's
	// BenchmarkDenies), the longest a cut delays a sync.
	cutJudgeBatch = 64
	// cutPaceFactor bounds the cutter's share of a core: after a cut that
	// took d, the next dump waits (cutPaceFactor-1)·d. A dump of 10,000
	// entries takes about 50 ms (conntrack's BenchmarkDump) and judging
	// them all 20 ms, so a node tracking 10,000 connections, under a
	// stream of changes, cuts about every 0.3 s, at a quarter of a core.
	cutPaceFactor = 4
)

// requestCut hands the cutter the scope of a committed transaction (tx
// applied to old, the shadow before it). Cost: O(tx).
//
// After a change that may deny something, the conntrack entries of the
// connections the new ruleset drops must go: `ct state established accept`
// comes before any policy lookup, so they would otherwise outlive the
// policy. The cut runs in its own goroutine (cutLoop), not in the sync loop:
// dumping a node's table of 10,000 entries takes about 50 ms, which no event
// should wait for.
func (a *Agent) requestCut(old *nft.Ruleset, tx *nft.Transaction) {
	if a.cfg.Conntrack == nil || tx.Empty() {
		return
	}
	scope := conntrack.ScopeOf(old, tx)
	if scope.Empty() {
		return // only new objects: nothing refers to them yet
	}
	a.mu.Lock()
	a.cut.scope.Merge(&scope)
	a.cut.want++
	a.mu.Unlock()
	select {
	case a.cut.wake <- struct{}{}:
	default: // a cut is already due; it takes this scope too
	}
}

// cutState is what the sync loop and the cutter share, under a.mu.
type cutState struct {
	// scope holds the flows the commits since the last dump began may
	// have denied.
	scope conntrack.Scope
	// want counts the commits that asked for a cut; done is the count as
	// the last finished cut's dump began: every entry made before those
	// commits has been judged by a ruleset at least as new (WaitApplied).
	want, done uint64
	wake       chan struct{} // capacity 1
}

// cutLoop cuts, until ctx ends, the connections each committed change
// denies: it dumps the node's conntrack table and deletes the entries in
// the changes' scope that the ruleset now drops. It judges with the engine's
// ruleset, which the kernel holds (after a failed sync it may not: then
// the cut waits for a sync that succeeds), under the sync loop's lock and
// in batches, so a sync waits at most one batch. Changes committed during
// the dump are judged too, and the scope of every change since the dump
// began is kept for the next cut, which sees the entries made after it.
func (a *Agent) cutLoop(ctx context.Context, logger klog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.cut.wake:
		}
		a.mu.Lock()
		if a.cut.want == a.cut.done {
			a.mu.Unlock()
			continue // a wake whose request the last cut took with it
		}
		began, scope := a.cut.want, a.cut.scope
		a.cut.scope = conntrack.Scope{}
		a.mu.Unlock()

		start := time.Now()
		res, err := a.cutOnce(ctx, scope)
		took := time.Since(start)
		if errors.Is(err, errKernelUnknown) {
			// Judged after the next successful sync, with what it commits.
			a.mu.Lock()
			a.cut.scope.Merge(&scope)
			a.stats.CutsPostponed++
			synced := a.notify
			a.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-synced:
			}
			select {
			case a.cut.wake <- struct{}{}:
			default:
			}
			continue
		}
		a.mu.Lock()
		if err != nil {
			// The next cut judges every entry again: those this one missed
			// are in no later change's scope.
			a.cut.scope = conntrack.Everything()
		}
		a.stats.FlowCuts++
		a.stats.FlowsJudged += res.Judged
		a.stats.FlowsCut += res.Deleted
		a.metrics.CutDuration.Observe(took.Seconds())
		a.metrics.FlowsJudged.Add(float64(res.Judged))
		a.metrics.FlowsCut.Add(float64(res.Deleted))
		if err != nil {
			a.metrics.CutFailures.Inc()
		}
		a.cut.done = began
		a.notifyLocked()
		a.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// Rate-limited: a node without ctnetlink would fail every time.
			if suppressed, ok := a.cutLog.allow(err.Error(), time.Now()); ok {
				logger.Error(err, "Cutting the connections the new policy denies", "deleted", res.Deleted, "suppressedSinceLastLog", suppressed)
			}
		} else {
			logger.V(2).Info("Cut the connections the new policy denies", "entries", res.Entries, "judged", res.Judged, "denied", res.Denied, "deleted", res.Deleted, "took", took)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After((cutPaceFactor - 1) * took):
		}
	}
}

// cutResult is what one cut did.
type cutResult struct {
	Entries, Judged, Denied, Deleted int
}

// errKernelUnknown: the last sync failed, so the engine's ruleset may not
// be the kernel's; the cut waits for a sync that succeeds.
var errKernelUnknown = errors.New("the kernel's table is unknown after a failed sync")

// cutOnce dumps the table, judges the entries in scope (widened by the
// changes committed meanwhile) and deletes the denied ones.
func (a *Agent) cutOnce(ctx context.Context, scope conntrack.Scope) (cutResult, error) {
	entries, err := a.cfg.Conntrack.Dump(ctx, &scope)
	if err != nil {
		return cutResult{}, err
	}
	res := cutResult{Entries: len(entries)}
	a.mu.Lock()
	scope.Merge(&a.cut.scope) // kept there as well, for the entries this dump missed
	a.mu.Unlock()
	var gone []conntrack.Entry
	var judgeErr error
	for i := 0; i < len(entries); {
		a.engineMu.Lock()
		if a.shadow == nil {
			a.engineMu.Unlock()
			return res, errKernelUnknown
		}
		n := a.conntrackNode()
		var batch []conntrack.Entry
		for ; i < len(entries) && len(batch) < cutJudgeBatch; i++ {
			if scope.Has(entries[i]) {
				batch = append(batch, entries[i])
			}
		}
		denied, err := conntrack.Select(batch, n.Denies)
		a.engineMu.Unlock()
		res.Judged += len(batch)
		gone = append(gone, denied...)
		judgeErr = errors.Join(judgeErr, err)
	}
	res.Denied = len(gone)
	res.Deleted, err = a.cfg.Conntrack.Delete(ctx, gone)
	return res, errors.Join(judgeErr, err)
}

// conntrackNode is what judging a conntrack entry needs: the desired
// ruleset (now the kernel's), the node's own addresses from its Node
// object, and the addresses of the active pods on this node. Under
// engineMu.
func (a *Agent) conntrackNode() conntrack.Node {
	c := a.engine.Cluster()
	local, pods := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	if node := c.Nodes[a.cfg.NodeName]; node != nil {
		for _, addr := range node.Addresses {
			local[addr] = true
		}
	}
	for _, p := range c.PodsOn(a.cfg.NodeName) {
		if p.Active() {
			for _, addr := range p.IPs {
				pods[addr] = true
			}
		}
	}
	return conntrack.NewNode(a.engine.Ruleset(), local, pods)
}
