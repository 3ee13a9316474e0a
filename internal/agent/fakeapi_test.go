package agent

import (
	"context"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftpolicy/nftpolicy/internal/model"
)

// fakeAPI is the API side of an agent test: client-go's fake clientsets,
// written through their object trackers. Like the lab it stamps
// resourceVersions itself (the fakes do not) and keeps the objects it
// wrote: the sync barrier waits for them, and the model of them is what
// the kernel must hold.
type fakeAPI struct {
	t       *testing.T
	client  *fake.Clientset
	dyn     *dynamicfake.FakeDynamicClient // custom resources; nil: none
	agent   *Agent
	rv      int
	objects map[string]runtime.Object
}

func newFakeAPI(t *testing.T, dyn *dynamicfake.FakeDynamicClient) fakeAPI {
	return fakeAPI{t: t, client: fake.NewClientset(), dyn: dyn, objects: map[string]runtime.Object{}}
}

// apply creates or updates obj with the next resourceVersion.
func (f *fakeAPI) apply(obj runtime.Object) {
	f.t.Helper()
	obj = obj.DeepCopyObject()
	f.rv++
	obj.(metav1.Object).SetResourceVersion(strconv.Itoa(f.rv))
	key := ObjectKey(obj)
	_, exists := f.objects[key]
	k, ok := model.KindOf(obj)
	if !ok {
		f.t.Fatalf("no kind for %T", obj)
	}
	ns := obj.(metav1.Object).GetNamespace()
	var err error
	switch {
	case k.Dynamic && f.dyn == nil:
		f.t.Fatalf("this agent test has no dynamic client for %s", k.Name)
	case k.Dynamic:
		m, cerr := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if cerr != nil {
			f.t.Fatal(cerr)
		}
		u := &unstructured.Unstructured{Object: m}
		u.SetAPIVersion(k.Resource.GroupVersion().String())
		u.SetKind(k.Name)
		if exists {
			err = f.dyn.Tracker().Update(k.Resource, u, ns, metav1.UpdateOptions{})
		} else {
			err = f.dyn.Tracker().Create(k.Resource, u, ns, metav1.CreateOptions{})
		}
	case exists:
		err = f.client.Tracker().Update(k.Resource, obj, ns, metav1.UpdateOptions{})
	default:
		err = f.client.Tracker().Create(k.Resource, obj, ns, metav1.CreateOptions{})
	}
	if err != nil {
		f.t.Fatal(err)
	}
	f.objects[key] = obj
}

// remove deletes obj.
func (f *fakeAPI) remove(obj runtime.Object) {
	f.t.Helper()
	k, _ := model.KindOf(obj)
	m := obj.(metav1.Object)
	tr := f.client.Tracker()
	if k.Dynamic {
		tr = f.dyn.Tracker()
	}
	if err := tr.Delete(k.Resource, m.GetNamespace(), m.GetName(), metav1.DeleteOptions{}); err != nil {
		f.t.Fatal(err)
	}
	delete(f.objects, ObjectKey(obj))
}

// versions are the resourceVersions of the objects written, by key.
func (f *fakeAPI) versions() map[string]string {
	want := map[string]string{}
	for k, o := range f.objects {
		want[k] = o.(metav1.Object).GetResourceVersion()
	}
	return want
}

// wait is the barrier: the agent has applied exactly the current objects.
func (f *fakeAPI) wait() {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.agent.WaitApplied(ctx, f.versions()); err != nil {
		f.t.Fatalf("%v (stats %+v)", err, f.agent.Stats())
	}
}

// model is the cluster of the current objects.
func (f *fakeAPI) model() *model.Cluster {
	c := model.NewCluster()
	for _, o := range f.objects {
		if err := c.Set(o); err != nil {
			f.t.Fatal(err)
		}
	}
	return c
}
