package manifest

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftpolicy/nftpolicy/internal/model"
)

const netHead = `name: t
nodes: [node-1]
networks:
  - {name: vlan10, cidr: 192.168.10.0/24, vlan: 10}
`

func TestNetworksFormat(t *testing.T) {
	c, err := ParseCluster("f.yaml", []byte(netHead+`externals:
  - {name: gw, ips: [192.168.10.1], network: vlan10}
objects:
  - {apiVersion: v1, kind: Namespace, metadata: {name: x}}
  - {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: x, annotations: {k8s.v1.cni.cncf.io/networks: default/vlan10}}, spec: {containers: [{name: c}]}}
  - apiVersion: k8s.cni.cncf.io/v1beta1
    kind: MultiNetworkPolicy
    metadata: {name: p, namespace: x, annotations: {k8s.v1.cni.cncf.io/policy-for: default/vlan10}}
    spec: {podSelector: {}, policyTypes: [Ingress]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Networks) != 1 || c.Networks[0].Key() != "default/vlan10" || c.Networks[0].VLAN != 10 || c.Networks[0].Bridge() != "br-vlan10" {
		t.Errorf("networks %+v", c.Networks)
	}
	if c.Externals[0].Network != "vlan10" {
		t.Errorf("external %+v", c.Externals[0])
	}
	var mnp *model.MultiNetworkPolicy
	for _, o := range c.Objects {
		if m, ok := o.(*model.MultiNetworkPolicy); ok {
			mnp = m
		}
	}
	if mnp == nil || RefOf(mnp).Kind != model.KindMNP {
		t.Fatalf("no MultiNetworkPolicy among %d objects", len(c.Objects))
	}
	if n := model.NetworkFromAPI(c.Networks[0].NAD()); n.Bridge != "br-vlan10" || n.VLAN != 10 {
		t.Errorf("the lab's NAD reads as %+v", n)
	}
}

func TestNetworksFormatErrors(t *testing.T) {
	pod := func(ann string) string {
		return "objects:\n  - {apiVersion: v1, kind: Pod, metadata: {name: a, annotations: {k8s.v1.cni.cncf.io/networks: '" + ann + "'}}, spec: {containers: [{name: c}]}}\n"
	}
	for _, tc := range []struct{ body, want string }{
		{"networks:\n  - {name: v, cidr: 10.0.0.1/24, vlan: 10}\n", "host bits"},
		{"networks:\n  - {name: v, cidr: 10.0.0.0/24, vlan: 5000}\n", "not 1 to 4094"},
		{"networks:\n  - {name: v, cidr: 10.0.0.0/24}\n", "has no vlan"},
		{"networks:\n  - {name: v, cidr: 10.0.0.0/24, vlan: 10, bridge: b}\n", "bridge"},
		{"networks:\n  - {name: v, cidr: 10.0.0.0/24, vlan: 10}\n  - {name: w, cidr: 10.0.1.0/24, vlan: 10}\n", "share VLAN"},
		{"networks:\n  - {name: v, cidr: 'fd00::/64', vlan: 10}\n", "not in ipFamilies"},
		{netHead[len("name: t\nnodes: [node-1]\n"):] + pod("default/vlan20"), "not in the file's networks"},
		{netHead[len("name: t\nnodes: [node-1]\n"):] + pod(`[{"name":"vlan10","namespace":"default","ips":["10.1.1.1"]}]`), "not in network vlan10's range"},
		{netHead[len("name: t\nnodes: [node-1]\n"):] + pod("[oops"), "k8s.v1.cni.cncf.io/networks"},
		{netHead[len("name: t\nnodes: [node-1]\n"):] + "externals:\n  - {name: e, ips: [10.9.9.9], network: vlan10}\n", "not in network vlan10's range"},
		{"externals:\n  - {name: e, ips: [10.9.9.9], network: nope}\n", `no network "nope"`},
	} {
		_, err := ParseCluster("f.yaml", []byte("name: t\nnodes: [node-1]\n"+tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", tc.body, err, tc.want)
		}
	}
}

func TestRequests(t *testing.T) {
	p := &corev1.Pod{}
	p.Namespace = "x"
	p.Annotations = map[string]string{AnnotationNetworks: " a, y/b "}
	r, err := Requests(p)
	if err != nil || len(r) != 2 || r[0].Network != "x/a" || r[1].Network != "y/b" {
		t.Errorf("%+v %v", r, err)
	}
	p.Annotations[AnnotationNetworks] = "a,a"
	if _, err := Requests(p); err == nil {
		t.Error("a network twice: no error")
	}
}
