package model

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const vlan10Status = `[{"name":"k8s-pod-network","ips":["10.244.1.5"],"default":true},
 {"name":"harvester/vlan10","interface":"net1","ips":["192.168.10.5"],"mac":"02:00:00:00:00:05"},
 {"name":"vlan20","interface":"net2","ips":["192.168.20.5","fd00:20::5"]}]`

func TestParseNetworkStatus(t *testing.T) {
	got, err := ParseNetworkStatus("vms", vlan10Status)
	if err != nil {
		t.Fatal(err)
	}
	want := []Attachment{
		{Network: "harvester/vlan10", Interface: "net1", MAC: "02:00:00:00:00:05", IPs: []netip.Addr{netip.MustParseAddr("192.168.10.5")}},
		{Network: "vms/vlan20", Interface: "net2", IPs: []netip.Addr{netip.MustParseAddr("192.168.20.5"), netip.MustParseAddr("fd00:20::5")}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

// Bad annotations never crash and never give an address that is not
// there: whatever does not parse is left out.
func TestParseNetworkStatusBadInput(t *testing.T) {
	for _, tc := range []struct {
		in    string
		err   bool
		nets  int
		addrs int
	}{
		{in: "", nets: 0},
		{in: "not json", err: true},
		{in: `{"name":"a"}`, err: true},                    // an object, not a list
		{in: `[{"name":"a","ips":"10.0.0.1"}]`, err: true}, // ips not a list
		{in: `[{"ips":["10.0.0.1"]}]`, nets: 0},            // no name
		{in: `[{"name":"a/b/c","ips":["10.0.0.1"]}]`, nets: 0},
		{in: `[{"name":"/b","ips":["10.0.0.1"]}]`, nets: 0},
		{in: `[{"name":"a","ips":["10.0.0.300","fe80::1%eth0","x"]}]`, nets: 1, addrs: 0},
		{in: `[{"name":"a","ips":["10.0.0.1/24","::ffff:10.0.0.2"]}]`, nets: 1, addrs: 2},
		{in: `[{"name":"a","ips":["10.0.0.1"]},{"name":"a","ips":["10.0.0.1","10.0.0.3"]}]`, nets: 1, addrs: 2},
		{in: `[null, {"name":"a","ips":[null]}]`, nets: 1, addrs: 0},
	} {
		got, err := ParseNetworkStatus("ns", tc.in)
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v, want error %v", tc.in, err, tc.err)
		}
		addrs := 0
		for _, a := range got {
			addrs += len(a.IPs)
		}
		if len(got) != tc.nets || addrs != tc.addrs {
			t.Errorf("%q: %d networks, %d addresses; want %d, %d", tc.in, len(got), addrs, tc.nets, tc.addrs)
		}
	}
}

func TestMultiPolicyFromAPI(t *testing.T) {
	mnp := &MultiNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "vms", Name: "p", Annotations: map[string]string{
			AnnotationPolicyFor: " vlan10, harvester/vlan20 ,vlan10,,a/b/c"}},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
	mp := MultiPolicyFromAPI(mnp)
	if want := []string{"harvester/vlan20", "vms/vlan10"}; !reflect.DeepEqual(mp.Networks, want) {
		t.Errorf("networks %v, want %v", mp.Networks, want)
	}
	if len(mp.Ignored) != 1 || mp.Ignored[0] != "a/b/c" || !mp.Valid() {
		t.Errorf("ignored %q, problems %q", mp.Ignored, mp.Problems)
	}
	if !mp.Isolates[Ingress] || mp.Isolates[Egress] || mp.Subject == nil {
		t.Errorf("policy %+v", mp.Policy)
	}
	delete(mnp.Annotations, AnnotationPolicyFor)
	if n := MultiPolicyFromAPI(mnp).Networks; len(n) != 0 {
		t.Errorf("without policy-for: networks %v", n)
	}
}

func TestNetworkFromAPI(t *testing.T) {
	for cfg, want := range map[string]string{
		`{"cniVersion":"0.3.1","type":"bridge","bridge":"br-vlan10","vlan":10}`: "br-vlan10",
		`{"type":"bridge"}`: "cni0",
		`{"cniVersion":"0.4.0","plugins":[{"type":"bridge","bridge":"br1"},{"type":"tuning"}]}`: "br1",
		`{"type":"macvlan","master":"eth1"}`:                                                    "",
		`not json`:                                                                              "",
		`{"type":"bridge","bridge":"a-very-long-bridge-name"}`:                                  "",
	} {
		n := NetworkFromAPI(&NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "n"}, Spec: NetworkAttachmentDefinitionSpec{Config: cfg}})
		if n.Bridge != want || (want == "") != (n.Problem != "") {
			t.Errorf("%s: bridge %q problem %q, want bridge %q", cfg, n.Bridge, n.Problem, want)
		}
	}
}

func vm(name, node string, lbl map[string]string, primary, status string) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "vms", Name: name, Labels: lbl, Annotations: map[string]string{AnnotationNetworkStatus: status}},
		Spec:       v1.PodSpec{NodeName: node},
		Status:     v1.PodStatus{Phase: v1.PodRunning, PodIPs: []v1.PodIP{{IP: primary}}},
	}
}

// The projection of a network holds the pods attached to it, with their
// addresses there only, and the MultiNetworkPolicies for it as
// NetworkPolicies; the evaluator then judges that network's flows. A pod
// whose annotation is bad is not on the network: it is no peer, so an MNP
// that allows its peers allows nothing more.
func TestProject(t *testing.T) {
	c := NewCluster()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Set(&v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vms"}}))
	must(c.Set(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: v1.NodeSpec{PodCIDR: "10.244.1.0/24"}}))
	must(c.Set(vm("vm1", "n1", map[string]string{"app": "db"}, "10.244.1.5", `[{"name":"vlan10","ips":["192.168.10.5"]}]`)))
	must(c.Set(vm("vm2", "n1", map[string]string{"app": "web"}, "10.244.1.6", `[{"name":"vlan10","ips":["192.168.10.6"]},{"name":"vlan20","ips":["192.168.20.6"]}]`)))
	must(c.Set(vm("vm3", "n1", map[string]string{"app": "web"}, "10.244.1.7", `[{"name":"vlan10","ips":["192.168.10.7"]`))) // truncated: bad
	must(c.Set(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "vms", Name: "primary-deny"}, Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}))
	web := metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	must(c.Set(&MultiNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "vms", Name: "db", Annotations: map[string]string{AnnotationPolicyFor: "vlan10"}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &web}}}},
		},
	}))

	if got := c.SecondaryNetworks("n1"); !reflect.DeepEqual(got, []string{"vms/vlan10", "vms/vlan20"}) {
		t.Errorf("secondary networks %v", got)
	}
	p := Project(c, "vms/vlan10")
	if len(p.Pods) != 2 || len(p.Policies) != 1 || p.Policies["vms/db"] == nil || len(p.Nodes["n1"].PodCIDRs) != 0 {
		t.Fatalf("projection: %d pods, policies %v, node %+v", len(p.Pods), p.Policies, p.Nodes["n1"])
	}
	if ips := p.Pods["vms/vm2"].IPs; len(ips) != 1 || ips[0] != netip.MustParseAddr("192.168.10.6") {
		t.Errorf("vm2 on vlan10: %v", ips)
	}
	ev := NewEvaluator(p)
	flow := func(src, dst string) bool {
		return ev.Evaluate(Flow{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: ProtoTCP, Port: 80}).Allowed()
	}
	if !flow("192.168.10.6", "192.168.10.5") {
		t.Error("vm2 (web) -> vm1 (db) on vlan10: denied, want allowed")
	}
	if flow("192.168.10.7", "192.168.10.5") {
		t.Error("vm3 (bad annotation) -> vm1 on vlan10: allowed, want denied")
	}
	if flow("192.168.10.99", "192.168.10.5") {
		t.Error("an unknown address -> vm1 on vlan10: allowed, want denied")
	}
	if !flow("192.168.10.5", "192.168.10.6") {
		t.Error("vm1 -> vm2 on vlan10 (vm2 not selected): denied, want allowed")
	}
	// The primary NetworkPolicy is not on vlan20, nor the MNP: open.
	p20 := Project(c, "vms/vlan20")
	if len(p20.Pods) != 1 || len(p20.Policies) != 0 {
		t.Errorf("vlan20: %d pods, %d policies", len(p20.Pods), len(p20.Policies))
	}
	// The primary network keeps its own policy and never sees the MNP.
	if len(c.Policies) != 1 || c.Policies["vms/primary-deny"] == nil {
		t.Errorf("primary policies %v", c.Policies)
	}
}

// FuzzNetworkStatus: any annotation parses without panicking, and every
// address it yields is written in it (nothing is made up); a pod built
// with it projects onto each network it names with those addresses only.
func FuzzNetworkStatus(f *testing.F) {
	for _, s := range []string{vlan10Status, "", "[]", "null", `[{"name":"a","ips":["10.0.0.1","::1"]}]`, `[{"name":"a/b","ips":["1.2.3.4/24"],"default":false}]`, `[{"name":"","ips":["1.1.1.1"]}]`, `{"name":"a"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		atts, err := ParseNetworkStatus("ns", s)
		if err != nil && len(atts) > 0 {
			t.Fatalf("an error and %d attachments", len(atts))
		}
		// The addresses the entries' ips spell, however written.
		written := map[netip.Addr]bool{}
		var raw []struct{ IPs []string }
		_ = json.Unmarshal([]byte(s), &raw)
		for _, e := range raw {
			for _, x := range e.IPs {
				x, _, _ = strings.Cut(x, "/")
				if a, err := netip.ParseAddr(x); err == nil {
					written[a.Unmap()] = true
				}
			}
		}
		c := NewCluster()
		pod := vm("p", "n1", nil, "10.244.1.5", s)
		pod.Namespace = "ns"
		if err := c.Set(pod); err != nil {
			t.Fatal(err)
		}
		for _, a := range atts {
			if a.Network == "" || strings.Count(a.Network, "/") != 1 {
				t.Fatalf("network %q", a.Network)
			}
			for _, ip := range a.IPs {
				if !written[ip] {
					t.Fatalf("address %s is not in %q", ip, s)
				}
			}
			p := Project(c, a.Network).Pods["ns/p"]
			if len(a.IPs) == 0 {
				if p != nil {
					t.Fatalf("projection onto %s holds a pod without an address there", a.Network)
				}
				continue
			}
			if p == nil || len(p.IPs) != len(a.IPs) {
				t.Fatalf("projection onto %s: %+v, want the attachment's %v", a.Network, p, a.IPs)
			}
		}
	})
}
