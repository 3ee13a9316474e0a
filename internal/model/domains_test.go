package model_test

import (
	"net/netip"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

func TestDomainPatterns(t *testing.T) {
	for _, tt := range []struct {
		pattern, name string
		ok, match     bool
	}{
		{"kubernetes.io", "kubernetes.io", true, true},
		{"Kubernetes.IO.", "kubernetes.io", true, true},
		{"kubernetes.io", "www.kubernetes.io", true, false},
		{"*.kubernetes.io", "www.kubernetes.io", true, true},
		{"*.kubernetes.io", "latest.blog.kubernetes.io", true, true},
		{"*.kubernetes.io", "kubernetes.io", true, false},
		{"*.kubernetes.io", "my-kubernetes.io", true, false},
		{"blog.kubernetes.io", "www.kubernetes.io", true, false},
		{"*", "", false, false},
		{"www.*.io", "", false, false},
		{"localhost", "", false, false}, // one label: the API wants a dot
		{"-bad.io", "", false, false},
	} {
		p, err := model.ParseDomainPattern(tt.pattern)
		if (err == nil) != tt.ok {
			t.Errorf("ParseDomainPattern(%q): err %v, want ok %v", tt.pattern, err, tt.ok)
			continue
		}
		if tt.ok && model.DomainMatches(p, tt.name) != tt.match {
			t.Errorf("%q matches %q = %v, want %v", p, tt.name, !tt.match, tt.match)
		}
	}
}

func TestDomainBindings(t *testing.T) {
	c := model.NewCluster()
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	c.SetDomain("www.example.com", []netip.Addr{b, a, a})
	if got := c.DomainAddrs("www.example.com"); len(got) != 2 || got[0] != a || got[1] != b {
		t.Fatalf("addresses %v, want [%v %v]", got, a, b)
	}
	if !c.DomainBound([]string{"*.example.com"}, a) || c.DomainBound([]string{"example.com"}, a) {
		t.Fatal("wildcard must match www.example.com's address, the exact apex must not")
	}
	c.SetDomain("www.example.com", []netip.Addr{b})
	if c.DomainBound([]string{"*.example.com"}, a) {
		t.Fatal("an address the name lost is still bound")
	}
	c.SetDomain("www.example.com", nil)
	if c.DomainBound([]string{"*.example.com"}, b) || len(c.DomainNames()) != 0 {
		t.Fatalf("unbinding left %v", c.DomainNames())
	}
}

func TestDomainPeers(t *testing.T) {
	noEgress := tu.Policy("y", "no-egress", nil, tu.Types(networkingv1.PolicyTypeEgress))
	allowWWW := cnpEgress("www", v1alpha2.AdminTier, 1, "Accept", v1alpha2.ClusterNetworkPolicyEgressPeer{DomainNames: []v1alpha2.DomainName{"*.example.com"}})
	denyByName := cnpEgress("deny", v1alpha2.AdminTier, 1, "Deny", v1alpha2.ClusterNetworkPolicyEgressPeer{DomainNames: []v1alpha2.DomainName{"www.example.com"}})
	badName := cnpEgress("bad", v1alpha2.AdminTier, 1, "Accept", v1alpha2.ClusterNetworkPolicyEgressPeer{DomainNames: []v1alpha2.DomainName{"*.*.example.com"}})
	tests := []struct {
		name    string
		objects []any
		bound   string // the address www.example.com is bound to
		want    bool
		problem bool
	}{
		{name: "bound address allowed", objects: []any{noEgress, allowWWW}, bound: ext, want: true},
		{name: "nothing bound: the NetworkPolicy denies", objects: []any{noEgress, allowWWW}, want: false},
		{name: "a Deny with domainNames fails closed", objects: []any{denyByName}, want: false, problem: true},
		{name: "an invalid name matches nothing", objects: []any{noEgress, badName}, bound: ext, want: false, problem: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cluster(t, tt.objects...)
			if tt.bound != "" {
				c.SetDomain("www.example.com", []netip.Addr{netip.MustParseAddr(tt.bound)})
			}
			if got := model.NewEvaluator(c).Evaluate(flow(ya, ext, tcp, 443)).Allowed(); got != tt.want {
				t.Fatalf("allowed = %v, want %v", got, tt.want)
			}
			problems := 0
			for _, p := range c.TierPolicies {
				problems += len(p.Problems)
			}
			if (problems > 0) != tt.problem {
				t.Fatalf("%d problems, want some: %v", problems, tt.problem)
			}
		})
	}
}
