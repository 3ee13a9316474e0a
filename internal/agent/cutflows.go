package agent

import (
	"context"
	"net/netip"
	"time"

	"k8s.io/klog/v2"

	"github.com/nftpolicy/nftpolicy/internal/conntrack"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// cutLogEvery spaces out the log of a failure that repeats.
const cutLogEvery = 5 * time.Minute

// cutDenied deletes, after a committed transaction that may have denied
// something, the conntrack entries of the connections the new ruleset drops:
// `ct state established accept` comes before any policy lookup, so they
// would otherwise outlive the policy. It runs in the sync loop right after
// the commit, so the ruleset it judges by is exactly the kernel's. A
// failure is logged and not retried: the rules are committed, and the next
// change judges the table again.
//
// Cost: one conntrack dump of the node's namespace plus a trace per distinct
// flow of a local pod (conntrack.Select: ~20 µs each with 110 isolated pods
// on this project's 2-core machine), so a node with 10,000 such flows
// delays the next sync by about 0.2 s, and only after a transaction that
// could deny.
func (a *Agent) cutDenied(ctx context.Context, logger klog.Logger, tx *nft.Transaction) {
	if a.cfg.Conntrack == nil || !couldDeny(tx) {
		return
	}
	n := a.conntrackNode()
	res, err := conntrack.Cut(ctx, a.cfg.Conntrack, n.Denies)
	a.mu.Lock()
	a.stats.FlowCuts++
	a.stats.FlowsCut += res.Deleted
	a.mu.Unlock()
	if err != nil {
		// Rate-limited: a node without ctnetlink would fail every time.
		a.cutLog.every = cutLogEvery
		if suppressed, ok := a.cutLog.allow(err.Error(), time.Now()); ok {
			logger.Error(err, "Cutting the connections the new policy denies", "deleted", res.Deleted, "suppressedSinceLastLog", suppressed)
		}
		return
	}
	logger.V(2).Info("Cut the connections the new policy denies", "entries", res.Entries, "denied", res.Denied, "deleted", res.Deleted, "took", res.Took)
}

// couldDeny reports whether tx may drop a flow the ruleset accepted before.
// Only creating a table, set or chain cannot: nothing refers to a new
// object yet. Adding elements can (a pod newly isolated is an add to a
// dispatch map; a Deny rule's peer set grows), and so can every delete,
// flush and rule.
func couldDeny(tx *nft.Transaction) bool {
	for _, op := range tx.Ops {
		switch op.Kind {
		case nft.OpAddTable, nft.OpAddSet, nft.OpAddChain:
		default:
			return true
		}
	}
	return false
}

// conntrackNode is what judging a conntrack entry needs: the desired
// ruleset (now the kernel's), the node's own addresses from its Node
// object, and the addresses of the active pods on this node.
func (a *Agent) conntrackNode() conntrack.Node {
	c := a.engine.Cluster()
	n := conntrack.Node{Ruleset: a.engine.Ruleset(), Local: map[netip.Addr]bool{}, Pods: map[netip.Addr]bool{}}
	if node := c.Nodes[a.cfg.NodeName]; node != nil {
		for _, addr := range node.Addresses {
			n.Local[addr] = true
		}
	}
	for _, p := range c.PodsOn(a.cfg.NodeName) {
		if p.Active() {
			for _, addr := range p.IPs {
				n.Pods[addr] = true
			}
		}
	}
	return n
}
