package main

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fakediscovery "k8s.io/client-go/discovery/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestInstalledAdminKinds: each admin kind is watched at the newest
// version the API server serves, and not at all where its CRD is absent.
func TestInstalledAdminKinds(t *testing.T) {
	group := func(version string, resources ...string) *metav1.APIResourceList {
		l := &metav1.APIResourceList{GroupVersion: "policy.networking.k8s.io/" + version}
		for _, r := range resources {
			l.APIResources = append(l.APIResources, metav1.APIResource{Name: r}, metav1.APIResource{Name: r + "/status"})
		}
		return l
	}
	anp := group("v1alpha1", "adminnetworkpolicies", "baselineadminnetworkpolicies")
	for _, tc := range []struct {
		name   string
		served []*metav1.APIResourceList
		want   string
	}{
		{"network-policy-api v0.3.0", []*metav1.APIResourceList{anp, group("v1alpha2", "clusternetworkpolicies"), group("v1beta1", "clusternetworkpolicies")},
			"map[AdminNetworkPolicy:policy.networking.k8s.io/v1alpha1, Resource=adminnetworkpolicies BaselineAdminNetworkPolicy:policy.networking.k8s.io/v1alpha1, Resource=baselineadminnetworkpolicies ClusterNetworkPolicy:policy.networking.k8s.io/v1beta1, Resource=clusternetworkpolicies]"},
		{"v0.2.0's ClusterNetworkPolicy alone", []*metav1.APIResourceList{group("v1alpha2", "clusternetworkpolicies")},
			"map[ClusterNetworkPolicy:policy.networking.k8s.io/v1alpha2, Resource=clusternetworkpolicies]"},
		{"none", nil, "map[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakediscovery.FakeDiscovery{Fake: &k8stesting.Fake{Resources: tc.served}}
			got, err := installedAdminKinds(context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != tc.want {
				t.Errorf("watched %v\nwant    %s", got, tc.want)
			}
		})
	}
}
