package agent

import (
	"context"
	"fmt"
	"slices"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Secondary networks (docs/multinetwork.md). Each network a pod of this
// node is attached to, whose NetworkAttachmentDefinition names a bridge,
// gets its own table, `inet nftpolicy-net-NAMESPACE.NAME`, compiled by its
// own compile.Engine from the projection of the model onto the network
// (model.Project) with the bridge guard, and programmed by the same diff
// and netlink code as the primary table. The primary table's forward
// chains let those bridges' packets pass (compile.SetSkipBridges).
//
// A network's engine is fed the changes that can affect it (netChange),
// projected (projectChange), and only what they touched is diffed; a full
// sync builds it again from the projection of the model and diffs all of
// it against the kernel read back (measured in docs/multinetwork.md).

// NetworkTablePrefix starts the name of every secondary network's table.
const NetworkTablePrefix = nft.NetworkTablePrefix

// NetworkTable is the table of a network "namespace/name": namespaces
// have no dots, so the name is unambiguous.
func NetworkTable(network string) string {
	ns, name, _ := cutNetwork(network)
	return NetworkTablePrefix + ns + "." + name
}

func cutNetwork(network string) (string, string, bool) {
	for i := range len(network) {
		if network[i] == '/' {
			return network[:i], network[i+1:], true
		}
	}
	return "", network, false
}

// netTable is one secondary network's table on this node.
type netTable struct {
	bridge string
	kernel nft.Kernel
	shadow *nft.Ruleset    // nil: read it back first
	engine *compile.Engine // the projection's; nil: build it from the model
}

// dynamicKinds reports whether the agent watches the dynamic kind k.
func (a *Agent) watchesDynamic(k model.Kind) bool {
	return a.cfg.Dynamic != nil && a.cfg.NetworkKernel != nil &&
		(a.cfg.DynamicKinds == nil || slices.Contains(a.cfg.DynamicKinds, k.Name))
}

// dynamicInformer is the informer of a CRD kind, through the dynamic
// client: its objects are converted to the model's types before they are
// cached, so the rest of the agent sees typed objects as for any kind.
func (a *Agent) dynamicInformer(k model.Kind) (cache.SharedIndexInformer, error) {
	if a.dynFactory == nil {
		a.dynFactory = dynamicinformer.NewDynamicSharedInformerFactory(a.cfg.Dynamic, 0)
	}
	inf := a.dynFactory.ForResource(k.Resource).Informer()
	if err := inf.SetTransform(func(obj any) (any, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return Transform(obj)
		}
		typed, err := k.New()
		if err != nil {
			return nil, err
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, typed); err != nil {
			// The API server validated it against the CRD's schema; what
			// still does not convert is not enforced (never opened): log.
			return nil, fmt.Errorf("%s %s/%s: %w", k.Name, u.GetNamespace(), u.GetName(), err)
		}
		return Transform(typed)
	}); err != nil {
		return nil, err
	}
	return inf, nil
}

// syncNetworks brings every secondary network's table to what the model
// says. Called by sync after the primary table is programmed (whose
// forward chains then already let the networks' bridges pass).
func (a *Agent) syncNetworks(ctx context.Context, logger klog.Logger, full bool) error {
	if a.cfg.NetworkKernel == nil {
		return nil
	}
	if !full && !a.netDirty {
		return nil
	}
	c := a.engine.Cluster()
	want := map[string]string{} // network -> bridge
	defer func() {
		if a.netListed || a.cfg.ListNetworkTables == nil {
			return
		}
		// Once: tables of networks this node no longer has a pod on, left
		// by an earlier agent, go (they would keep judging the bridge).
		names, err := a.cfg.ListNetworkTables(ctx)
		if err != nil {
			logger.Error(err, "Listing the secondary networks' tables; stale ones stay until the next start")
			a.netListed = true
			return
		}
		for _, name := range names {
			stale := true
			for net := range want {
				stale = stale && NetworkTable(net) != name
			}
			if !stale {
				continue
			}
			tx := &nft.Transaction{Ops: []nft.Op{{Kind: nft.OpAddTable}, {Kind: nft.OpDeleteTable}}}
			if err := a.cfg.NetworkKernel(name).Apply(ctx, tx); err != nil {
				logger.Error(err, "Deleting a stale secondary network's table", "table", name)
				return // tried again next sync
			}
			logger.Info("Deleted the table of a network this node has no pod on", "table", name)
		}
		a.netListed = true
	}()
	for _, net := range c.SecondaryNetworks(a.cfg.NodeName) {
		n := c.Networks[net]
		if n == nil || n.Bridge == "" {
			a.logNetwork(logger, net, n)
			continue
		}
		want[net] = n.Bridge
	}
	for net, t := range a.networks {
		if _, ok := want[net]; ok {
			continue
		}
		// No pod of this node is on it any more: its table goes.
		tx := &nft.Transaction{Ops: []nft.Op{{Kind: nft.OpAddTable}, {Kind: nft.OpDeleteTable}}}
		if err := t.kernel.Apply(ctx, tx); err != nil {
			return fmt.Errorf("network %s: delete its table: %w", net, err)
		}
		delete(a.networks, net)
	}
	nets := make([]string, 0, len(want))
	for net := range want {
		nets = append(nets, net)
	}
	slices.Sort(nets)
	for _, net := range nets {
		t := a.networks[net]
		if t == nil || t.bridge != want[net] {
			t = &netTable{bridge: want[net], kernel: a.cfg.NetworkKernel(NetworkTable(net))}
			a.networks[net] = t
		}
		if err := a.syncNetwork(ctx, logger, c, net, t, full); err != nil {
			t.shadow, t.engine = nil, nil // read back and rebuilt next time
			return fmt.Errorf("network %s: %w", net, err)
		}
	}
	a.netChanges = nil
	a.netDirty = false
	return nil
}

// syncNetwork programs one network's table. Its engine is built from the
// projection of the model on a full sync or when new, and otherwise fed
// the changes since the last sync, projected (projectChange): then only
// what they touched is diffed, as for the primary table.
func (a *Agent) syncNetwork(ctx context.Context, logger klog.Logger, c *model.Cluster, net string, t *netTable, full bool) error {
	var touched *nft.Touched // nil: everything
	if full || t.engine == nil {
		t.engine = compile.NewEngineWith(model.Project(c, net), a.cfg.NodeName, model.Options{Bridge: t.bridge, OpenUnknown: true})
	} else {
		for _, ch := range a.netChanges {
			if err := projectChange(t.engine, ch, net); err != nil {
				return err
			}
		}
		touched = t.engine.TakeTouched()
	}
	if full || t.shadow == nil {
		cur, err := t.kernel.Dump(ctx)
		if err != nil {
			return err
		}
		t.shadow, touched = cur, nil
	}
	desired := t.engine.Ruleset()
	tx := diff.Partial(t.shadow, desired, touched)
	if tx.Empty() {
		return nil
	}
	if err := t.kernel.Apply(ctx, tx); err != nil {
		return err
	}
	if t.shadow == nil {
		t.shadow = nft.NewRuleset()
	}
	t.shadow.ApplyOps(tx)
	logger.V(2).Info("Programmed a secondary network", "network", net, "bridge", t.bridge, "full", touched == nil, "operations", diff.Count(tx).Ops)
	return nil
}

// projectChange feeds one change to a network's engine as the projection
// sees it (model.Project): a pod with its addresses on the network, or
// gone when it has none; a namespace as it is; a MultiNetworkPolicy for
// the network as a NetworkPolicy of the same name, or gone when it is not
// for it. Other kinds do not reach the projection.
func projectChange(e *compile.Engine, ch *change, net string) error {
	switch ch.kind {
	case "Namespace":
		if ch.new == nil {
			return e.Delete("Namespace", "", ch.name)
		}
		return e.Set(ch.new)
	case "Pod":
		if pod, ok := ch.new.(*v1.Pod); ok {
			atts, _ := model.ParseNetworkStatus(pod.Namespace, pod.Annotations[model.AnnotationNetworkStatus])
			for _, at := range atts {
				if at.Network != net || len(at.IPs) == 0 {
					continue
				}
				p := pod.DeepCopy()
				p.Annotations = nil
				p.Status.PodIPs, p.Status.PodIP = nil, at.IPs[0].String()
				for _, ip := range at.IPs {
					p.Status.PodIPs = append(p.Status.PodIPs, v1.PodIP{IP: ip.String()})
				}
				return e.Set(p)
			}
		}
		return e.Delete("Pod", ch.namespace, ch.name)
	case model.KindMNP:
		if o, ok := ch.new.(*model.MultiNetworkPolicy); ok && slices.Contains(model.MultiPolicyFromAPI(o).Networks, net) {
			return e.Set(&networkingv1.NetworkPolicy{ObjectMeta: *o.ObjectMeta.DeepCopy(), Spec: *o.Spec.DeepCopy()})
		}
		return e.Delete("NetworkPolicy", ch.namespace, ch.name)
	}
	return nil
}

// skipBridges is what the primary table's forward chains let pass: the
// bridges of the networks this node enforces.
func (a *Agent) skipBridges() {
	// The bridges change only with a change that can affect a network
	// (netChange); any other sync leaves the guards as they are.
	if a.cfg.NetworkKernel == nil || !a.netDirty {
		return
	}
	c := a.engine.Cluster()
	var bridges []string
	for _, net := range c.SecondaryNetworks(a.cfg.NodeName) {
		if n := c.Networks[net]; n != nil && n.Bridge != "" {
			bridges = append(bridges, n.Bridge)
		}
	}
	a.engine.SetSkipBridges(bridges)
}

// logNetwork says once why a network a local pod is on is not enforced.
func (a *Agent) logNetwork(logger klog.Logger, net string, n *model.Network) {
	why := "no NetworkAttachmentDefinition"
	if n != nil {
		why = n.Problem
	}
	if a.netLog[net] == why {
		return
	}
	a.netLog[net] = why
	logger.Info("Secondary network not enforced", "network", net, "reason", why)
}

// netChange reports whether a change can change a secondary network's
// table: a pod that is (or was) on some secondary network, a namespace (its
// labels select peers), a MultiNetworkPolicy or a NAD. Pods on the primary
// network only, nodes (no node peers on secondary networks) and the
// primary network's policies cannot.
func netChange(ch *change) bool {
	switch ch.kind {
	case "Namespace", model.KindMNP, model.KindNAD:
		return true
	case "Pod":
		return onSecondary(ch.old) || onSecondary(ch.new)
	}
	return false
}

// onSecondary reports whether a pod's network-status names a network
// other than the default one.
func onSecondary(obj metav1.Object) bool {
	if obj == nil {
		return false
	}
	s, ok := obj.GetAnnotations()[model.AnnotationNetworkStatus]
	if !ok {
		return false
	}
	nets, _ := model.ParseNetworkStatus(obj.GetNamespace(), s)
	return len(nets) > 0
}
