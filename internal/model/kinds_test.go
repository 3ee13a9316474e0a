package model

import (
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	policyscheme "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/scheme"
)

// The kinds table agrees with the API's own registration: each entry's Go
// type is registered under its name and group/version, and its resource is
// the lower-case plural the API serves. A wrong entry would make the agent
// watch one kind and feed the model another.
func TestKindsTableMatchesTheAPI(t *testing.T) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{scheme.AddToScheme, policyscheme.AddToScheme, AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range Kinds() {
		obj := reflect.New(k.goType.Elem()).Interface().(runtime.Object)
		gvks, _, err := s.ObjectKinds(obj)
		if err != nil {
			t.Fatalf("%s: %v", k.Name, err)
		}
		gvk := gvks[0]
		if gvk.Kind != k.Name || gvk.GroupVersion() != k.Resource.GroupVersion() {
			t.Errorf("%s: the API registers %v, the table says %s in %v", k.Name, gvk, k.Name, k.Resource.GroupVersion())
		}
		want, _ := meta.UnsafeGuessKindToResource(gvk)
		if plural, ok := crdPlurals[k.Name]; ok {
			want.Resource = plural
		}
		if k.Resource != want {
			t.Errorf("%s: resource %v, want %v", k.Name, k.Resource, want)
		}
		if got, ok := KindOf(obj); !ok || got.Name != k.Name {
			t.Errorf("KindOf(%T) = %v, %v", obj, got.Name, ok)
		}
		if k.Tier && !k.Policy {
			t.Errorf("%s: a tier kind that is not a policy kind", k.Name)
		}
	}
	if _, ok := KindOf(&runtime.Unknown{}); ok {
		t.Error("KindOf knows runtime.Unknown")
	}
}

// Set then Delete of an object of every kind leaves the cluster as it was.
func TestSetDeleteEveryKind(t *testing.T) {
	c := NewCluster()
	for _, k := range Kinds() {
		obj := reflect.New(k.goType.Elem()).Interface().(runtime.Object)
		m := obj.(interface {
			SetName(string)
			SetNamespace(string)
		})
		m.SetName("x")
		// Cluster-scoped objects too: RefOf must not name one by a stray
		// namespace the model does not key it by.
		m.SetNamespace("ns")
		if err := c.Set(obj); err != nil {
			t.Fatalf("%s: %v", k.Name, err)
		}
		kind, ns, name, ok := RefOf(obj)
		if !ok || kind != k.Name || name != "x" || (ns == "ns") != k.Namespaced {
			t.Fatalf("RefOf(%s) = %q %q %q %v", k.Name, kind, ns, name, ok)
		}
		if err := c.Delete(kind, ns, name); err != nil {
			t.Fatalf("%s: %v", k.Name, err)
		}
	}
	if !reflect.DeepEqual(c, NewCluster()) {
		t.Errorf("after setting and deleting one object of each kind the cluster is not empty: %+v", c)
	}
	if err := c.Delete("Service", "ns", "x"); err == nil {
		t.Error("Delete of a kind the model does not know: no error")
	}
}

// crdPlurals are the resource names of the CRDs whose plural is not the
// lower-case kind plus "s" (the k8snetworkplumbingwg CRDs' spec.names).
var crdPlurals = map[string]string{
	KindMNP: "multi-networkpolicies",
	KindNAD: "network-attachment-definitions",
}
