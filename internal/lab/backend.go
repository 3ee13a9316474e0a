package lab

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	policyfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/manifest"
	"github.com/nftpolicy/nftpolicy/internal/scenario"
)

// backend is where a run's objects live and what its agents watch:
// client-go's fake clientset (fakeBackend), or a real API server
// (serverBackend: one shared by runs with --apiserver, or the run's own
// control plane for a scenario with Services).
type backend interface {
	// write creates or updates obj and returns it as stored: with its
	// resourceVersion and, for a Service, what the server allocated.
	write(ctx context.Context, exists bool, obj runtime.Object) (runtime.Object, error)
	// remove deletes an object at once.
	remove(ctx context.Context, ref scenario.ObjectRef) error
	// agentClients are the clients the agents watch with.
	agentClients() Clients
	// barrier waits until every agent of r has applied what the backend
	// holds.
	barrier(ctx context.Context, r *run) error
	// cleanup leaves the backend as the run found it.
	cleanup(ctx context.Context, state map[scenario.ObjectRef]runtime.Object) error
}

// fakeBackend is client-go's fake clientset: objects get resourceVersions
// from a counter, as the API server would give them; the barrier compares
// those.
type fakeBackend struct {
	client *fake.Clientset
	policy *policyfake.Clientset // the network-policy-api kinds
	rv     int64
}

func newFakeBackend() *fakeBackend {
	// NewClientset needs schemas this module does not ship.
	return &fakeBackend{client: fake.NewClientset(), policy: policyfake.NewSimpleClientset()}
}

func (f *fakeBackend) agentClients() Clients { return Clients{Kube: f.client, Policy: f.policy} }

func (f *fakeBackend) write(ctx context.Context, exists bool, obj runtime.Object) (runtime.Object, error) {
	f.rv++
	obj.(metav1.Object).SetResourceVersion(strconv.FormatInt(f.rv, 10))
	var err error
	switch o := obj.(type) {
	case *corev1.Namespace:
		c := f.client.CoreV1().Namespaces()
		err = upsert(ctx, exists, o, c.Create, c.Update)
	case *corev1.Node:
		c := f.client.CoreV1().Nodes()
		err = upsert(ctx, exists, o, c.Create, c.Update)
	case *corev1.Pod:
		c := f.client.CoreV1().Pods(o.Namespace)
		err = upsert(ctx, exists, o, c.Create, c.Update)
	case *networkingv1.NetworkPolicy:
		c := f.client.NetworkingV1().NetworkPolicies(o.Namespace)
		err = upsert(ctx, exists, o, c.Create, c.Update)
	case *v1alpha1.AdminNetworkPolicy:
		c := f.policy.PolicyV1alpha1().AdminNetworkPolicies()
		err = upsert(ctx, exists, o, c.Create, c.Update)
	case *v1alpha1.BaselineAdminNetworkPolicy:
		c := f.policy.PolicyV1alpha1().BaselineAdminNetworkPolicies()
		err = upsert(ctx, exists, o, c.Create, c.Update)
	case *v1alpha2.ClusterNetworkPolicy:
		c := f.policy.PolicyV1alpha2().ClusterNetworkPolicies()
		err = upsert(ctx, exists, o, c.Create, c.Update)
	default:
		// Services run against a real control plane only.
		return nil, fmt.Errorf("kind %s is not enforced by this version of nftpolicy", manifest.KindOf(obj))
	}
	return obj, err
}

func (f *fakeBackend) remove(ctx context.Context, ref scenario.ObjectRef) error {
	opts := metav1.DeleteOptions{}
	switch ref.Kind {
	case "Namespace":
		return f.client.CoreV1().Namespaces().Delete(ctx, ref.Name, opts)
	case "Node":
		return f.client.CoreV1().Nodes().Delete(ctx, ref.Name, opts)
	case "Pod":
		return f.client.CoreV1().Pods(ref.Namespace).Delete(ctx, ref.Name, opts)
	case "NetworkPolicy":
		return f.client.NetworkingV1().NetworkPolicies(ref.Namespace).Delete(ctx, ref.Name, opts)
	case "AdminNetworkPolicy":
		return f.policy.PolicyV1alpha1().AdminNetworkPolicies().Delete(ctx, ref.Name, opts)
	case "BaselineAdminNetworkPolicy":
		return f.policy.PolicyV1alpha1().BaselineAdminNetworkPolicies().Delete(ctx, ref.Name, opts)
	case "ClusterNetworkPolicy":
		return f.policy.PolicyV1alpha2().ClusterNetworkPolicies().Delete(ctx, ref.Name, opts)
	}
	return fmt.Errorf("kind %s is not enforced by this version of nftpolicy", ref.Kind)
}

// barrier waits until every agent has applied exactly the objects that
// exist now, at their current versions.
func (f *fakeBackend) barrier(ctx context.Context, r *run) error {
	want := map[string]string{}
	for _, obj := range r.state {
		want[agent.ObjectKey(obj)] = obj.(metav1.Object).GetResourceVersion()
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.BarrierTimeout)
	defer cancel()
	var errs []error
	for _, n := range r.sc.Nodes {
		if a, ok := r.agents[n]; ok {
			errs = append(errs, a.WaitApplied(ctx, want))
		}
	}
	return errors.Join(errs...)
}

func (f *fakeBackend) cleanup(context.Context, map[scenario.ObjectRef]runtime.Object) error {
	return nil
}
