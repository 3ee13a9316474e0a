package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/nftpolicy/nftpolicy/internal/model"
)

// Remote is another cluster of the ClusterSet whose pods are peers of this
// cluster's policies (docs/multicluster.md): its Pods, Namespaces and Nodes
// are watched read-only through Client.
type Remote struct {
	Name   string // its cluster id, the value of model.ClusterLabel
	Client kubernetes.Interface
}

// remoteKinds are the kinds watched in remote clusters: what peers are
// made of. Policies are each cluster's own.
var remoteKinds = []string{"Namespace", "Node", "Pod"}

// remoteCluster is one remote cluster's informers and health.
type remoteCluster struct {
	Remote
	factory informers.SharedInformerFactory
	synced  []cache.InformerSynced

	mu   sync.Mutex
	up   bool
	seen bool // up has been decided once
}

// RemoteTransform is Transform for the objects of remote cluster name:
// stripped the same way, then renamed into the model's names of remote
// objects (model.RemoteName) so that nothing of theirs can collide with,
// or pass for, a local object. It is idempotent, as client-go requires.
func RemoteTransform(name string) cache.TransformFunc {
	qualify := func(s string) string {
		if c, _ := model.SplitRemote(s); c != "" || s == "" {
			return s
		}
		return model.RemoteName(name, s)
	}
	return func(obj any) (any, error) {
		out, err := Transform(obj)
		if err != nil {
			return nil, err
		}
		switch o := out.(type) {
		case *v1.Pod:
			o.Namespace, o.Spec.NodeName = qualify(o.Namespace), qualify(o.Spec.NodeName)
		case *v1.Namespace:
			o.Name = qualify(o.Name)
		case *v1.Node:
			o.Name = qualify(o.Name)
		}
		return out, nil
	}
}

// newRemoteInformers adds the informers of every remote cluster to
// a.watched. Their events go to the same tracker as the local ones, so a
// remote change costs what a local one does.
func (a *Agent) newRemoteInformers() error {
	for _, r := range a.cfg.Remotes {
		rc := &remoteCluster{Remote: r}
		rc.factory = informers.NewSharedInformerFactoryWithOptions(r.Client, 0, informers.WithTransform(RemoteTransform(r.Name)))
		for _, name := range remoteKinds {
			k, _ := model.KindNamed(name)
			gi, err := rc.factory.ForResource(k.Resource)
			if err != nil {
				return fmt.Errorf("informer of %s in cluster %s: %w", k.Name, r.Name, err)
			}
			inf := gi.Informer()
			if k.Name == "Pod" && a.cfg.Logs != nil {
				// Verdict lines name remote pods too.
				if err := inf.AddIndexers(cache.Indexers{podIPIndex: podIPIndexer}); err != nil {
					return err
				}
			}
			// A failed list or watch keeps the cache as it is: the last
			// known objects stay enforced until the cluster answers again
			// (client-go's reflector relists then, and the differences
			// arrive as events). The handler only reports it.
			if err := inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) { a.remoteError(rc, err) }); err != nil {
				return err
			}
			a.watched = append(a.watched, watched{kind: k, resource: k.Resource, informer: inf, remote: rc})
		}
		a.remotes = append(a.remotes, rc)
	}
	return nil
}

// remoteError is a remote informer's list or watch failure: the cluster
// is checked at once (a watch that merely expired is no outage).
func (a *Agent) remoteError(rc *remoteCluster, err error) {
	a.remoteLog.V(2).Info("Remote cluster's watch failed", "cluster", rc.Name, "err", err)
	go a.checkRemote(a.remoteCtx, rc)
}

// checkRemote asks a remote cluster's API server for one namespace and
// records whether it answered: nftpolicy_remote_cluster_up and a log line
// when that changes.
func (a *Agent) checkRemote(ctx context.Context, rc *remoteCluster) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RemoteCheckTimeout)
	defer cancel()
	_, err := rc.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{Limit: 1})
	a.setRemoteUp(rc, err)
}

func (a *Agent) setRemoteUp(rc *remoteCluster, err error) {
	up := err == nil
	rc.mu.Lock()
	first, changed := !rc.seen, !rc.seen || rc.up != up
	rc.up, rc.seen = up, true
	rc.mu.Unlock()
	v := 0.0
	if up {
		v = 1
	}
	a.metrics.RemoteUp.WithLabelValues(rc.Name).Set(v)
	if !changed {
		return
	}
	switch {
	case up && first:
		a.remoteLog.V(1).Info("Remote cluster reachable", "cluster", rc.Name)
	case up:
		a.remoteLog.Info("Remote cluster reachable again; its changes are synced", "cluster", rc.Name)
	default:
		a.remoteLog.Error(err, "Remote cluster unreachable; enforcing its last known pods, namespaces and nodes", "cluster", rc.Name)
	}
}

// RemoteUp reports whether remote cluster name answered its last check.
func (a *Agent) RemoteUp(name string) bool {
	for _, rc := range a.remotes {
		if rc.Name == name {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			return rc.up
		}
	}
	return false
}

// startRemotes starts the remote informers and their health checks, and
// waits for their caches at most RemoteSyncTimeout: an unreachable remote
// cluster must not keep the local policies from being programmed (its
// pods are then unknown peers until it answers: allowed by no rule that
// names them, and not denied by one either; docs/multicluster.md).
func (a *Agent) startRemotes(ctx context.Context, logger klog.Logger) {
	a.remoteCtx, a.remoteLog = ctx, logger
	for _, rc := range a.remotes {
		rc.factory.Start(ctx.Done())
		a.metrics.RemoteUp.WithLabelValues(rc.Name).Set(0)
		go func() {
			t := time.NewTicker(a.cfg.RemoteCheckInterval)
			defer t.Stop()
			for {
				a.checkRemote(ctx, rc)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	wctx, cancel := context.WithTimeout(ctx, a.cfg.RemoteSyncTimeout)
	defer cancel()
	for _, rc := range a.remotes {
		if !cache.WaitForCacheSync(wctx.Done(), rc.synced...) && ctx.Err() == nil {
			logger.Error(nil, "Remote cluster's objects not listed in time; starting without them", "cluster", rc.Name, "timeout", a.cfg.RemoteSyncTimeout)
		}
	}
}

func (a *Agent) shutdownRemotes() {
	for _, rc := range a.remotes {
		rc.factory.Shutdown()
	}
}
