package lab

import (
	"os"
	"slices"
	"testing"
)

// TestParseProxyTable reads tables the real kube-proxy v1.37 wrote in lab
// nodes (testdata/kube-proxy-ip*.nft, from `nft list table`): the sets and
// maps the barrier compares, and the endpoints of a one-endpoint and a
// two-endpoint service chain.
func TestParseProxyTable(t *testing.T) {
	read := func(name string) proxyTable {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return parseProxyTable(string(data))
	}
	v4 := read("testdata/kube-proxy-ip.nft")
	if got, want := v4.elements["cluster-ips"], []string{"10.96.0.1", "10.96.136.185"}; !slices.Equal(got, want) {
		t.Errorf("cluster-ips %q, want %q", got, want)
	}
	if !v4.has("no-endpoint-services", "10.96.0.1 . tcp . 443") || len(v4.elements["no-endpoint-services"]) != 1 {
		t.Errorf("no-endpoint-services %q, want default/kubernetes only (its comment dropped)", v4.elements["no-endpoint-services"])
	}
	if !v4.has("service-ips", "10.96.136.185 . tcp . 80") || !v4.has("service-nodeports", "tcp . 30156") {
		t.Errorf("service-ips %q, service-nodeports %q", v4.elements["service-ips"], v4.elements["service-nodeports"])
	}
	if got, ok := v4.elements["no-endpoint-nodeports"]; !ok || len(got) != 0 {
		t.Errorf("no-endpoint-nodeports %q (present %v), want present and empty", got, ok)
	}
	if got, ok := v4.chainEndpoints("service-", "shop/web/tcp/"); !ok || !slices.Equal(got, []string{"10.244.1.102:8080"}) {
		t.Errorf("service chain endpoints %q (%v)", got, ok)
	}
	if _, ok := v4.chainEndpoints("local-", "shop/web/tcp/"); ok {
		t.Error("a local chain where kube-proxy wrote none")
	}
	if _, ok := v4.chainEndpoints("service-", "shop/we/tcp/"); ok {
		t.Error("a chain matched a name it only ends like")
	}
	v6 := read("testdata/kube-proxy-ip6.nft")
	want := []string{"[fd00:10:244:1::65]:8080", "[fd00:10:244:2::65]:8080"}
	if got, ok := v6.chainEndpoints("service-", "shop/web/tcp/"); !ok || !slices.Equal(got, want) {
		t.Errorf("IPv6 service chain endpoints %q (%v), want %q", got, ok, want)
	}
	if got := v6.elements["cluster-ips"]; !slices.Equal(got, []string{"fd00:10:96::4596"}) {
		t.Errorf("IPv6 cluster-ips %q", got)
	}
}
