package agent

import (
	"context"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/internal/model"
)

// statusWriter reports whether this agent writes the tier policies' status.
// Every agent computes the same conditions from the same objects; only the
// one whose node sorts first among the nodes writes them, so a thousand
// nodes do not fight over one status.
func (a *Agent) statusWriter(c *model.Cluster) bool {
	for name, n := range c.Nodes {
		if n.Cluster == "" && name < a.cfg.NodeName { // a remote node's agent writes its own cluster's
			return false
		}
	}
	_, ok := c.Nodes[a.cfg.NodeName]
	return ok
}

// statusRequest is what the tier policies' status should say: the
// conditions of every tier policy, by key, and whether this agent writes
// them. The sync computes it only when a tier policy or the set of nodes
// changed, and writes it (listing the tier policies only) before the sync
// counts as applied.
type statusRequest struct {
	writer     bool
	conditions map[string][]metav1.Condition
}

// writeStatus sets the conditions on every tier policy whose status
// differs; false when a write failed.
func (a *Agent) writeStatus(ctx context.Context, logger klog.Logger, want map[string][]metav1.Condition) bool {
	ok := true
	for _, w := range a.watched {
		if !w.kind.Tier {
			continue
		}
		for _, o := range w.informer.GetStore().List() {
			var err error
			switch obj := o.(type) {
			case *v1alpha1.AdminNetworkPolicy:
				if cs, ok := updated(obj.Status.Conditions, want[model.KindANP+"/"+obj.Name], obj.Generation); ok {
					obj = obj.DeepCopy()
					obj.Status.Conditions = cs
					_, err = a.cfg.PolicyClient.PolicyV1alpha1().AdminNetworkPolicies().UpdateStatus(ctx, obj, metav1.UpdateOptions{})
				}
			case *v1alpha1.BaselineAdminNetworkPolicy:
				if cs, ok := updated(obj.Status.Conditions, want[model.KindBANP+"/"+obj.Name], obj.Generation); ok {
					obj = obj.DeepCopy()
					obj.Status.Conditions = cs
					_, err = a.cfg.PolicyClient.PolicyV1alpha1().BaselineAdminNetworkPolicies().UpdateStatus(ctx, obj, metav1.UpdateOptions{})
				}
			case *v1alpha2.ClusterNetworkPolicy:
				if cs, ok := updated(obj.Status.Conditions, want[model.KindCNP+"/"+obj.Name], obj.Generation); ok {
					obj = obj.DeepCopy()
					obj.Status.Conditions = cs
					if w.resource.Version == v1beta1.GroupVersion.Version {
						_, err = a.cfg.PolicyClient.PolicyV1beta1().ClusterNetworkPolicies().UpdateStatus(ctx, model.CNPToBeta(obj), metav1.UpdateOptions{})
					} else {
						_, err = a.cfg.PolicyClient.PolicyV1alpha2().ClusterNetworkPolicies().UpdateStatus(ctx, obj, metav1.UpdateOptions{})
					}
				}
			}
			if err != nil {
				ok = false
				logger.V(2).Info("Could not write a policy's status; retrying", "object", ObjectKey(o), "err", err)
			}
		}
	}
	return ok
}

// updated merges want into have; ok is false when nothing would change.
func updated(have, want []metav1.Condition, generation int64) ([]metav1.Condition, bool) {
	out := slices.Clone(have)
	changed := false
	for _, c := range want {
		c.ObservedGeneration = generation
		old := meta.FindStatusCondition(out, c.Type)
		if old != nil && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message && old.ObservedGeneration == c.ObservedGeneration {
			continue
		}
		meta.SetStatusCondition(&out, c)
		changed = true
	}
	return out, changed
}
