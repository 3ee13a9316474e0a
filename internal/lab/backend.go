package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	policyfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/manifest"
	"github.com/nftpolicy/nftpolicy/internal/model"
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
	policy *policyfake.Clientset          // the network-policy-api kinds
	dyn    *dynamicfake.FakeDynamicClient // the CRD kinds of secondary networks
	rv     int64
}

func newFakeBackend() *fakeBackend {
	// NewClientset needs schemas this module does not ship.
	return &fakeBackend{client: fake.NewClientset(), policy: policyfake.NewSimpleClientset(), dyn: newDynamicFake()}
}

func (f *fakeBackend) agentClients() Clients {
	return Clients{Kube: f.client, Policy: f.policy, Dynamic: f.dyn}
}

// tracker is the fake's object store that holds kind k: writing to it is
// what the typed fake clients do, so one path serves every kind the model
// knows.
func (f *fakeBackend) tracker(k model.Kind) k8stesting.ObjectTracker {
	if k.Dynamic {
		return f.dyn.Tracker()
	}
	if k.Tier {
		return f.policy.Tracker()
	}
	return f.client.Tracker()
}

func (f *fakeBackend) write(ctx context.Context, exists bool, obj runtime.Object) (runtime.Object, error) {
	k, ok := model.KindOf(obj)
	if !ok {
		// Services run against a real control plane only.
		return nil, fmt.Errorf("kind %s is not enforced by this version of nftpolicy", manifest.KindOf(obj))
	}
	f.rv++
	m := obj.(metav1.Object)
	m.SetResourceVersion(strconv.FormatInt(f.rv, 10))
	store := obj
	if k.Dynamic {
		u, err := unstructuredOf(k, obj)
		if err != nil {
			return nil, err
		}
		store = u
	}
	if exists {
		return obj, f.tracker(k).Update(k.Resource, store, m.GetNamespace(), metav1.UpdateOptions{})
	}
	return obj, f.tracker(k).Create(k.Resource, store, m.GetNamespace(), metav1.CreateOptions{})
}

func (f *fakeBackend) remove(ctx context.Context, ref scenario.ObjectRef) error {
	k, ok := model.KindNamed(ref.Kind)
	if !ok {
		return fmt.Errorf("kind %s is not enforced by this version of nftpolicy", ref.Kind)
	}
	return f.tracker(k).Delete(k.Resource, ref.Namespace, ref.Name, metav1.DeleteOptions{})
}

// barrier waits until every agent has applied exactly the objects that
// exist now, at their current versions.
func (f *fakeBackend) barrier(ctx context.Context, r *run) error {
	want := map[string]string{}
	for _, obj := range r.state {
		want[agent.ObjectKey(obj)] = obj.(metav1.Object).GetResourceVersion()
	}
	if r.remoteWant != nil {
		remote, err := r.remoteWant(ctx)
		if err != nil {
			return err
		}
		maps.Copy(want, remote)
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
