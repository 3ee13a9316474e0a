package agent

import (
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	policyinformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions"

	"github.com/nftpolicy/nftpolicy/internal/model"
)

// AdminKinds returns the names of the network-policy-api kinds the agent
// can watch (Config.AdminKinds), in the order they are fed to the model.
func AdminKinds() []string {
	var names []string
	for _, k := range model.Kinds() {
		if k.Tier {
			names = append(names, k.Name)
		}
	}
	return names
}

// AdminResource is the resource an admin kind is watched at, given the
// kinds and versions the API server serves (Config.AdminKinds; nil: every
// kind at its kinds table entry's); false when it is not watched.
func AdminResource(k model.Kind, served map[string]schema.GroupVersionResource) (schema.GroupVersionResource, bool) {
	if served == nil {
		return k.Resource, true
	}
	r, ok := served[k.Name]
	return r, ok
}

// AdminKindsAt names admin kinds for Config.AdminKinds, each at its kinds
// table entry's resource.
func AdminKindsAt(names ...string) map[string]schema.GroupVersionResource {
	out := map[string]schema.GroupVersionResource{}
	for _, n := range names {
		if k, ok := model.KindNamed(n); ok && k.Tier {
			out[n] = k.Resource
		}
	}
	return out
}

// watched is one informer and the kind it holds.
type watched struct {
	kind     model.Kind
	resource schema.GroupVersionResource // the version watched: kind.Resource or one of kind.Newer
	informer cache.SharedIndexInformer
	remote   *remoteCluster // nil: this cluster's
}

// newInformers builds (but does not start) an informer for every kind the
// model knows: the core kinds always, the admin kinds when a policy-api
// client is configured (and Config.AdminKinds names them). Every informer's
// transform drops what the agent never reads before the object reaches the
// cache, which is what keeps memory low with many pods.
func (a *Agent) newInformers() error {
	a.factory = informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithTransform(Transform))
	if a.cfg.PolicyClient != nil {
		a.policyFactory = policyinformers.NewSharedInformerFactoryWithOptions(a.cfg.PolicyClient, 0, policyinformers.WithTransform(Transform))
	}
	for _, k := range model.Kinds() {
		var inf cache.SharedIndexInformer
		res := k.Resource
		switch {
		case k.Dynamic:
			if !a.watchesDynamic(k) {
				continue
			}
			var err error
			if inf, err = a.dynamicInformer(k); err != nil {
				return fmt.Errorf("informer of %s: %w", k.Name, err)
			}
		case !k.Tier:
			gi, err := a.factory.ForResource(k.Resource)
			if err != nil {
				return fmt.Errorf("informer of %s: %w", k.Name, err)
			}
			inf = gi.Informer()
		case a.policyFactory != nil:
			var ok bool
			if res, ok = AdminResource(k, a.cfg.AdminKinds); !ok {
				continue
			}
			gi, err := a.policyFactory.ForResource(res)
			if err != nil {
				return fmt.Errorf("informer of %s: %w", k.Name, err)
			}
			inf = gi.Informer()
		default:
			continue
		}
		if k.Name == "Pod" && a.cfg.Logs != nil {
			// Verdict lines name pods by address.
			if err := inf.AddIndexers(cache.Indexers{podIPIndex: podIPIndexer}); err != nil {
				return fmt.Errorf("informer of %s: %w", k.Name, err)
			}
		}
		a.watched = append(a.watched, watched{kind: k, resource: res, informer: inf})
	}
	return nil
}

// handler records what changed in the tracker and asks for a sync; it
// never touches the kernel. Objects of the initial list are not changes: they
// are in the first sync, and their latency would be the agent's startup.
func (a *Agent) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			a.tracker.record(nil, obj)
			a.changed(!initial)
		},
		UpdateFunc: func(old, new any) {
			a.tracker.record(old, new)
			if sameButVersion(old, new) {
				a.changedLater()
				return
			}
			a.changed(true)
		},
		DeleteFunc: func(obj any) {
			a.tracker.record(obj, nil)
			a.changed(true)
		},
	}
}

// maxPending bounds the change times kept for the latency histogram; past
// it, changes still cause syncs but are not timed.
const maxPending = 10000

func (a *Agent) changed(timed bool) {
	if timed {
		a.pendingMu.Lock()
		if len(a.pending) < maxPending {
			a.pending = append(a.pending, time.Now())
		}
		a.pendingMu.Unlock()
	}
	a.runner.Request()
}

// changedLater asks for a sync once MinSyncInterval has passed, not at
// once: the change is a new version of an object with nothing the agent
// keeps changed. A kubelet's final delete of a pod comes as such an update
// (the grace period set to 0) and then, milliseconds later, the removal;
// a sync started by the update made the removal wait out the whole
// --min-sync-period (measured: pod deletes took 1.00 s, docs/performance.md).
// The version still reaches the barrier by the next sync.
func (a *Agent) changedLater() {
	if a.cfg.MinSyncInterval <= 0 {
		a.runner.Request()
		return
	}
	time.AfterFunc(a.cfg.MinSyncInterval, a.runner.Request)
}

// sameButVersion reports whether two versions of an object, as the
// informer keeps them (Transform), differ in their resourceVersion only.
func sameButVersion(old, new any) bool {
	o, ok1 := old.(runtime.Object)
	n, ok2 := new.(runtime.Object)
	if !ok1 || !ok2 {
		return false
	}
	om, ok1 := o.(metav1.Object)
	nm, ok2 := n.(metav1.Object)
	if !ok1 || !ok2 || om.GetResourceVersion() == nm.GetResourceVersion() {
		return false
	}
	// Compare copies without the version, nor the type (which informers
	// fill in or not).
	oc, nc := o.DeepCopyObject(), n.DeepCopyObject()
	for _, c := range []runtime.Object{oc, nc} {
		c.(metav1.Object).SetResourceVersion("")
		c.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
	}
	return equality.Semantic.DeepEqual(oc, nc)
}

// takePending removes and returns the change times observed before t.
func (a *Agent) takePending(t time.Time) []time.Time {
	a.pendingMu.Lock()
	defer a.pendingMu.Unlock()
	var taken, kept []time.Time
	for _, p := range a.pending {
		if p.Before(t) {
			taken = append(taken, p)
		} else {
			kept = append(kept, p)
		}
	}
	a.pending = kept
	return taken
}

// ObjectKey is how the versions map of WaitApplied names an object:
// "Kind/namespace/name" for namespaced kinds, "Kind/name" for the others.
func ObjectKey(obj any) string {
	kind, ns, name, ok := model.RefOf(obj)
	if !ok {
		return fmt.Sprintf("%T", obj)
	}
	return objectKey(kind, ns, name)
}

func objectKey(kind, namespace, name string) string {
	if namespace == "" {
		return kind + "/" + name
	}
	return kind + "/" + namespace + "/" + name
}

// Transform strips an object to what the agent reads, before the informer
// caches it. A pod keeps its name, labels, node, hostNetwork, its
// containers' ports (for named ports) and its phase and addresses; every
// object loses managedFields and annotations (kubectl's last-applied copy
// can be larger than the rest). An object of a newer version than the
// model's becomes the model's (model.Canonical), so that everything after
// the informer sees one Go type per kind. It is idempotent, as client-go
// requires.
func Transform(obj any) (any, error) {
	obj = model.Canonical(obj)
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		// Only nftpolicy's own annotations change what is compiled.
		var keep map[string]string
		for _, k := range []string{model.AnnotationEnforcement, model.AnnotationLogAccepts, model.AnnotationNetworkStatus, model.AnnotationPolicyFor} {
			if v, ok := m.GetAnnotations()[k]; ok {
				if keep == nil {
					keep = map[string]string{}
				}
				keep[k] = v
			}
		}
		m.SetAnnotations(keep)
	}
	switch o := obj.(type) {
	case *v1.Pod:
		return slimPod(o), nil
	case *v1.Node:
		return &v1.Node{
			TypeMeta:   o.TypeMeta,
			ObjectMeta: slimMeta(o.ObjectMeta),
			Spec:       v1.NodeSpec{PodCIDR: o.Spec.PodCIDR, PodCIDRs: o.Spec.PodCIDRs},
			Status:     v1.NodeStatus{Addresses: o.Status.Addresses},
		}, nil
	case *v1.Namespace:
		return &v1.Namespace{TypeMeta: o.TypeMeta, ObjectMeta: slimMeta(o.ObjectMeta)}, nil
	}
	return obj, nil
}

// slimMeta keeps the metadata the agent reads (and what the informer's
// cache and the barrier need).
func slimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		Labels:            m.Labels,
		Annotations:       m.Annotations, // what Transform kept
		DeletionTimestamp: m.DeletionTimestamp,
	}
}

func slimPod(p *v1.Pod) *v1.Pod {
	out := &v1.Pod{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: slimMeta(p.ObjectMeta),
		Spec: v1.PodSpec{
			NodeName:    p.Spec.NodeName,
			HostNetwork: p.Spec.HostNetwork,
		},
		Status: v1.PodStatus{
			Phase:  p.Status.Phase,
			PodIP:  p.Status.PodIP,
			PodIPs: p.Status.PodIPs,
		},
	}
	for _, c := range p.Spec.Containers {
		out.Spec.Containers = append(out.Spec.Containers, v1.Container{Name: c.Name, Ports: c.Ports})
	}
	return out
}
