package agent

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
)

// guardStartup closes the window of an agent starting on a node with no
// table: the first sync waits for every informer's initial list (seconds
// with many pods), and until it commits nothing would judge the node's
// pods. As soon as the Node informer alone has synced (one object per
// node: fast), and only when the kernel holds no table, it commits the
// skeleton of the node's ruleset: base chains, empty dispatch maps and the
// node's pod CIDRs with no pod known, so that every address of the pod
// CIDRs is denied (new connections; established ones go on) until the
// first sync programs the pods, in one transaction, from the table read
// back. The node's own traffic stays open. A table already there (a
// restart, an upgrade) is adopted as always, never replaced by this.
//
// It is best effort: without the Node object, its pod CIDRs, or with the
// protection off, it does nothing, and a failure is logged; the first sync
// comes either way.
func (a *Agent) guardStartup(ctx context.Context, logger klog.Logger, nodes cache.SharedIndexInformer, synced cache.InformerSynced) {
	if a.cfg.Model.OpenUnknown || nodes == nil {
		return
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced) {
		return
	}
	obj, ok, err := nodes.GetStore().GetByKey(a.cfg.NodeName)
	if err != nil || !ok {
		return
	}
	node, ok := obj.(*v1.Node)
	if !ok {
		return
	}
	c := model.NewCluster()
	if err := c.Set(node); err != nil || len(c.Nodes[a.cfg.NodeName].PodCIDRs) == 0 {
		return
	}
	current, err := a.cfg.Kernel.Dump(ctx)
	if err != nil || current != nil {
		return // a table to adopt, or the first sync will say what failed
	}
	rs := compile.NewEngineWith(c, a.cfg.NodeName, a.cfg.Model).Ruleset()
	if err := a.cfg.Kernel.Apply(ctx, diff.Diff(nil, rs)); err != nil {
		logger.Error(err, "Protecting the node's pod CIDRs until the first sync failed")
		return
	}
	a.mu.Lock()
	a.stats.StartupGuards++
	a.mu.Unlock()
	logger.Info("No table: the node's pod CIDRs are denied until the first sync", "podCIDRs", node.Spec.PodCIDRs)
}
