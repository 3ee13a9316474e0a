// Package agent is the node agent's sync loop: informers record changes
// and ask for a sync; each sync compiles the model for this node, diffs it
// against the shadow of the kernel's table and applies one transaction.
package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/nftpolicy/nftpolicy/internal/compile"
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
	// kernel back and repairs drift.
	ResyncInterval time.Duration
}

// Agent programs one node.
type Agent struct {
	cfg     Config
	client  kubernetes.Interface
	factory informers.SharedInformerFactory
	runner  *runner

	// Touched only by the sync loop.
	shadow     *nft.Ruleset // what the kernel holds; nil: read it back first
	lastFull   time.Time
	problemLog map[string]string

	mu      sync.Mutex
	applied map[string]string // object key -> resourceVersion of the last applied sync
	synced  bool
	notify  chan struct{} // closed and replaced after every successful sync
	stats   Stats
}

// Stats counts what the agent did, for tests and metrics.
type Stats struct {
	Syncs, Failures, Transactions int
	LastOps                       diff.Counts
}

// New makes an agent; it starts nothing.
func New(cfg Config, client kubernetes.Interface) *Agent {
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = time.Minute
	}
	a := &Agent{
		cfg:        cfg,
		client:     client,
		factory:    informers.NewSharedInformerFactory(client, 0),
		problemLog: map[string]string{},
		notify:     make(chan struct{}),
	}
	a.runner = newRunner(a.sync, cfg.MinSyncInterval, cfg.ResyncInterval)
	return a
}

// Run starts the informers, waits for their caches, and syncs until ctx is
// done. Rules stay in the kernel when it returns, for the next agent to
// adopt.
func (a *Agent) Run(ctx context.Context) error {
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.runner.Request() },
		UpdateFunc: func(any, any) { a.runner.Request() },
		DeleteFunc: func(any) { a.runner.Request() },
	}
	for _, inf := range []cache.SharedIndexInformer{
		a.factory.Core().V1().Pods().Informer(),
		a.factory.Core().V1().Namespaces().Informer(),
		a.factory.Core().V1().Nodes().Informer(),
		a.factory.Networking().V1().NetworkPolicies().Informer(),
	} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
	}
	a.factory.Start(ctx.Done())
	for typ, ok := range a.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("cache of %v did not sync", typ)
		}
	}
	a.runner.Request()
	a.runner.Loop(ctx)
	a.factory.Shutdown()
	return nil
}

// snapshot builds the model from the informers' caches, with the versions
// of every object in it.
func (a *Agent) snapshot() (*model.Cluster, map[string]string, error) {
	c := model.NewCluster()
	versions := map[string]string{}
	f := a.factory
	nss, err := f.Core().V1().Namespaces().Lister().List(labels.Everything())
	if err != nil {
		return nil, nil, err
	}
	for _, o := range nss {
		c.Set(o)
		versions["Namespace/"+o.Name] = o.ResourceVersion
	}
	pods, err := f.Core().V1().Pods().Lister().List(labels.Everything())
	if err != nil {
		return nil, nil, err
	}
	for _, o := range pods {
		c.Set(o)
		versions["Pod/"+o.Namespace+"/"+o.Name] = o.ResourceVersion
	}
	nodes, err := f.Core().V1().Nodes().Lister().List(labels.Everything())
	if err != nil {
		return nil, nil, err
	}
	for _, o := range nodes {
		c.Set(o)
		versions["Node/"+o.Name] = o.ResourceVersion
	}
	nps, err := f.Networking().V1().NetworkPolicies().Lister().List(labels.Everything())
	if err != nil {
		return nil, nil, err
	}
	for _, o := range nps {
		c.Set(o)
		versions["NetworkPolicy/"+o.Namespace+"/"+o.Name] = o.ResourceVersion
	}
	return c, versions, nil
}

// ObjectKey is how Applied names an object.
func ObjectKey(obj any) string {
	switch o := obj.(type) {
	case *v1.Namespace:
		return "Namespace/" + o.Name
	case *v1.Node:
		return "Node/" + o.Name
	case *v1.Pod:
		return "Pod/" + o.Namespace + "/" + o.Name
	case *networkingv1.NetworkPolicy:
		return "NetworkPolicy/" + o.Namespace + "/" + o.Name
	}
	return fmt.Sprintf("%T", obj)
}

func (a *Agent) sync(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("node", a.cfg.NodeName)
	start := time.Now()
	c, versions, err := a.snapshot()
	if err != nil {
		return err
	}
	a.logProblems(logger, c)
	desired := compile.Node(c, a.cfg.NodeName)

	full := a.shadow == nil || time.Since(a.lastFull) >= a.cfg.ResyncInterval
	if full {
		current, err := a.cfg.Kernel.Dump(ctx)
		if err != nil {
			a.fail(logger, "reading the kernel's table", err)
			return err
		}
		a.shadow, a.lastFull = current, time.Now() // nil: no table yet
	}
	tx := diff.Diff(a.shadow, desired)
	if !tx.Empty() {
		if err := a.cfg.Kernel.Apply(ctx, tx); err != nil {
			a.shadow = nil // the kernel's state is unknown: read it back next time
			a.fail(logger, "applying a transaction", err)
			logger.V(4).Info("Failed transaction", "transaction", tx.String())
			return err
		}
	}
	a.shadow = desired
	counts := diff.Count(tx)
	logger.V(2).Info("Synced", "full", full, "operations", counts.Ops, "elements", counts.Elements, "took", time.Since(start))

	a.mu.Lock()
	a.applied, a.synced = versions, true
	a.stats.Syncs++
	if !tx.Empty() {
		a.stats.Transactions++
	}
	a.stats.LastOps = counts
	close(a.notify)
	a.notify = make(chan struct{})
	a.mu.Unlock()
	return nil
}

func (a *Agent) fail(logger klog.Logger, what string, err error) {
	a.mu.Lock()
	a.stats.Failures++
	a.mu.Unlock()
	if errors.Is(err, nft.ErrOutcomeUnknown) {
		logger.Error(err, "Outcome unknown; reading the kernel back on the next sync", "step", what)
		return
	}
	logger.Error(err, "Sync failed; the next sync is a full resync", "step", what)
}

// logProblems logs each policy's problems once per change of them.
func (a *Agent) logProblems(logger klog.Logger, c *model.Cluster) {
	seen := map[string]bool{}
	for _, p := range c.SortedPolicies() {
		seen[p.Key()] = true
		msg := strings.Join(p.Problems, "; ")
		if msg != a.problemLog[p.Key()] {
			a.problemLog[p.Key()] = msg
			if msg != "" {
				logger.Error(nil, "Invalid NetworkPolicy; enforcing what is valid, access only narrowed", "policy", p.Key(), "problems", msg)
			}
		}
	}
	for k := range a.problemLog {
		if !seen[k] {
			delete(a.problemLog, k)
		}
	}
}

// Stats returns counters of the syncs so far.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// Ready reports whether a sync has succeeded.
func (a *Agent) Ready() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.synced
}

// WaitApplied blocks until a sync has been applied whose snapshot holds
// exactly the given objects at the given resourceVersions (and no others of
// the kinds named in want's keys). It is the lab's sync barrier.
func (a *Agent) WaitApplied(ctx context.Context, want map[string]string) error {
	for {
		a.mu.Lock()
		done := a.synced && sameVersions(a.applied, want)
		ch := a.notify
		a.mu.Unlock()
		if done {
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
