package model

import (
	"fmt"
	"reflect"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Kind is one kind of object the model knows, with what other packages need
// to handle it without a switch of their own: its name, whether it is
// namespaced, the resource an informer watches, and how the model takes it.
// Adding a kind is one entry in kinds (and its conversion).
type Kind struct {
	Name       string // as object keys, Delete and delete steps name it
	Namespaced bool
	Resource   schema.GroupVersionResource
	// Policy marks the kinds that allow and deny traffic; Tier the
	// network-policy-api ones among them, watched through their own client,
	// with status conditions the agent writes.
	Policy, Tier bool
	// Dynamic marks the kinds of CRDs that may not be installed, watched
	// through the dynamic client only when they are (multinet.go).
	Dynamic bool
	// Newer lists versions the kind is also served at, preferred to
	// Resource's where the API server serves them; their objects are the
	// model's through Canonical (ClusterNetworkPolicy as v1beta1).
	Newer []schema.GroupVersionResource

	goType reflect.Type
	set    func(c *Cluster, obj any)
	del    func(c *Cluster, namespace, name string)
}

var (
	core       = schema.GroupVersion{Version: "v1"}
	networking = schema.GroupVersion{Group: "networking.k8s.io", Version: "v1"}
	policyA1   = schema.GroupVersion{Group: v1alpha1.GroupName, Version: "v1alpha1"}
	policyA2   = schema.GroupVersion{Group: v1alpha2.GroupName, Version: "v1alpha2"}
	policyB1   = schema.GroupVersion{Group: v1beta1.GroupName, Version: "v1beta1"}
)

var kinds = []Kind{
	{
		Name: "Namespace", Resource: core.WithResource("namespaces"),
		goType: reflect.TypeFor[*v1.Namespace](),
		set:    func(c *Cluster, obj any) { c.setNamespace(obj.(*v1.Namespace)) },
		del:    func(c *Cluster, _, name string) { delete(c.Namespaces, name) },
	},
	{
		Name: "Pod", Namespaced: true, Resource: core.WithResource("pods"),
		goType: reflect.TypeFor[*v1.Pod](),
		set:    func(c *Cluster, obj any) { c.setPod(obj.(*v1.Pod)) },
		del:    (*Cluster).deletePod,
	},
	{
		Name: "Node", Resource: core.WithResource("nodes"),
		goType: reflect.TypeFor[*v1.Node](),
		set:    func(c *Cluster, obj any) { c.setNode(obj.(*v1.Node)) },
		del:    func(c *Cluster, _, name string) { delete(c.Nodes, name) },
	},
	{
		Name: "NetworkPolicy", Namespaced: true, Policy: true, Resource: networking.WithResource("networkpolicies"),
		goType: reflect.TypeFor[*networkingv1.NetworkPolicy](),
		set:    func(c *Cluster, obj any) { c.setPolicy(PolicyFromAPI(obj.(*networkingv1.NetworkPolicy))) },
		del:    (*Cluster).deletePolicy,
	},
	{
		Name: KindANP, Policy: true, Tier: true, Resource: policyA1.WithResource("adminnetworkpolicies"),
		goType: reflect.TypeFor[*v1alpha1.AdminNetworkPolicy](),
		set:    func(c *Cluster, obj any) { c.setTier(ANPFromAPI(obj.(*v1alpha1.AdminNetworkPolicy))) },
		del:    func(c *Cluster, _, name string) { delete(c.TierPolicies, KindANP+"/"+name) },
	},
	{
		Name: KindBANP, Policy: true, Tier: true, Resource: policyA1.WithResource("baselineadminnetworkpolicies"),
		goType: reflect.TypeFor[*v1alpha1.BaselineAdminNetworkPolicy](),
		set:    func(c *Cluster, obj any) { c.setTier(BANPFromAPI(obj.(*v1alpha1.BaselineAdminNetworkPolicy))) },
		del:    func(c *Cluster, _, name string) { delete(c.TierPolicies, KindBANP+"/"+name) },
	},
	{
		Name: KindCNP, Policy: true, Tier: true, Resource: policyA2.WithResource("clusternetworkpolicies"),
		Newer:  []schema.GroupVersionResource{policyB1.WithResource("clusternetworkpolicies")},
		goType: reflect.TypeFor[*v1alpha2.ClusterNetworkPolicy](),
		set:    func(c *Cluster, obj any) { c.setTier(CNPFromAPI(obj.(*v1alpha2.ClusterNetworkPolicy))) },
		del:    func(c *Cluster, _, name string) { delete(c.TierPolicies, KindCNP+"/"+name) },
	},
	{
		Name: KindNAD, Namespaced: true, Dynamic: true, Resource: NADVersion.WithResource("network-attachment-definitions"),
		goType: reflect.TypeFor[*NetworkAttachmentDefinition](),
		set:    func(c *Cluster, obj any) { c.setNetwork(NetworkFromAPI(obj.(*NetworkAttachmentDefinition))) },
		del:    (*Cluster).deleteNetwork,
	},
	{
		Name: KindMNP, Namespaced: true, Policy: true, Dynamic: true, Resource: MNPVersion.WithResource("multi-networkpolicies"),
		goType: reflect.TypeFor[*MultiNetworkPolicy](),
		set:    func(c *Cluster, obj any) { c.setMulti(MultiPolicyFromAPI(obj.(*MultiNetworkPolicy))) },
		del:    (*Cluster).deleteMulti,
	},
}

var (
	kindByType = map[reflect.Type]*Kind{}
	kindByName = map[string]*Kind{}
)

func init() {
	for i := range kinds {
		kindByType[kinds[i].goType] = &kinds[i]
		kindByName[kinds[i].Name] = &kinds[i]
	}
}

// Kinds returns every kind the model knows, in the order a cluster is fed
// to it (namespaces and nodes before what selects them); a copy, so no
// caller can change the table.
func Kinds() []Kind { return append([]Kind(nil), kinds...) }

// Canonical returns obj in the version the model takes: a
// ClusterNetworkPolicy read as v1beta1 becomes the v1alpha2 object it is
// (CNPFromBeta); any other object is returned as it is.
func Canonical(obj any) any {
	if o, ok := obj.(*v1beta1.ClusterNetworkPolicy); ok {
		return CNPFromBeta(o)
	}
	return obj
}

// KindOf returns the kind of obj, a pointer to one of the API types.
func KindOf(obj any) (Kind, bool) {
	k, ok := kindByType[reflect.TypeOf(obj)]
	if !ok {
		return Kind{}, false
	}
	return *k, true
}

// KindNamed returns the kind called name.
func KindNamed(name string) (Kind, bool) {
	k, ok := kindByName[name]
	if !ok {
		return Kind{}, false
	}
	return *k, true
}

// Versions lists the API versions the kind is read at: Resource's, the one
// the model takes, first, then Newer's.
func (k Kind) Versions() []schema.GroupVersion {
	out := []schema.GroupVersion{k.Resource.GroupVersion()}
	for _, r := range k.Newer {
		out = append(out, r.GroupVersion())
	}
	return out
}

// New returns a new, empty object of the kind.
func (k Kind) New() (runtime.Object, error) {
	obj, ok := reflect.New(k.goType.Elem()).Interface().(runtime.Object)
	if !ok {
		return nil, fmt.Errorf("%s is not a runtime.Object", k.Name)
	}
	return obj, nil
}
