package model

import (
	"unsafe"

	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// ClusterNetworkPolicy is served in two versions since network-policy-api
// v0.3.0: v1beta1, its storage version, and v1alpha2, whose schema is the
// same field for field (the release needs no conversion webhook for it).
// The model, the compiler and the tests speak v1alpha2; an object read as
// v1beta1 (from a manifest, a scenario or an informer) is taken as the
// v1alpha2 object it is. The Go types are two declarations of one layout,
// so the conversion is a reinterpretation, as Kubernetes' generated
// conversions do for identical types; TestCNPVersionsShareOneLayout
// compares the two type trees field by field, so a release that lets them
// drift fails the build's tests instead of corrupting policies.

// CNPFromBeta returns a ClusterNetworkPolicy read as v1beta1 as the
// v1alpha2 object it is: a shallow copy, which shares o's maps and slices,
// so neither may be changed afterwards (the informers' and the decoders'
// objects never are). A set apiVersion names v1alpha2.
func CNPFromBeta(o *v1beta1.ClusterNetworkPolicy) *v1alpha2.ClusterNetworkPolicy {
	out := sameLayoutCopy[v1alpha2.ClusterNetworkPolicy](o)
	if out != nil && out.APIVersion != "" {
		out.APIVersion = v1alpha2.GroupVersion.String()
	}
	return out
}

// CNPToBeta is CNPFromBeta's inverse, for writing a policy's status
// through the version the agent watches.
func CNPToBeta(o *v1alpha2.ClusterNetworkPolicy) *v1beta1.ClusterNetworkPolicy {
	out := sameLayoutCopy[v1beta1.ClusterNetworkPolicy](o)
	if out != nil && out.APIVersion != "" {
		out.APIVersion = v1beta1.GroupVersion.String()
	}
	return out
}

// sameLayoutCopy copies *o into a To, a type of the same layout
// (TestCNPVersionsShareOneLayout).
func sameLayoutCopy[To, From any](o *From) *To {
	if o == nil {
		return nil
	}
	out := *(*To)(unsafe.Pointer(o))
	return &out
}
