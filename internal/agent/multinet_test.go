package agent

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// netHarness is an agent with secondary networks on Fake kernels, one per
// table, fed by the fake clientset and the fake dynamic client.
type netHarness struct {
	fakeAPI
	primary *nft.Fake
	mu      sync.Mutex
	tables  map[string]*nft.Fake
}

func startNet(t *testing.T, objs ...runtime.Object) *netHarness {
	return startNetWith(t, nil, objs...)
}

// startNetWith starts the agent with these tables already in the kernel.
func startNetWith(t *testing.T, tables map[string]*nft.Fake, objs ...runtime.Object) *netHarness {
	t.Helper()
	lists := map[schema.GroupVersionResource]string{}
	for _, k := range model.Kinds() {
		if k.Dynamic {
			lists[k.Resource] = k.Name + "List"
		}
	}
	h := &netHarness{fakeAPI: newFakeAPI(t, dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), lists)), primary: nft.NewFake(), tables: map[string]*nft.Fake{}}
	for name, k := range tables {
		h.tables[name] = k
	}
	for _, o := range objs {
		h.apply(o)
	}
	cfg := Config{NodeName: node, Kernel: h.primary, ResyncInterval: time.Hour, Dynamic: h.dyn,
		NetworkKernel: func(table string) nft.Kernel {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.tables[table] == nil {
				h.tables[table] = nft.NewFake()
			}
			return h.tables[table]
		},
		ListNetworkTables: func(ctx context.Context) ([]string, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			var out []string
			for name, k := range h.tables {
				if rs, err := k.Dump(ctx); err == nil && rs != nil {
					out = append(out, name)
				}
			}
			return out, nil
		}}
	h.agent = New(cfg, h.client)
	ctx, cancel := context.WithCancel(context.Background())
	runAgent(t, ctx, cancel, h.agent, nil)
	return h
}

func (h *netHarness) table(name string) *nft.Ruleset {
	h.t.Helper()
	h.mu.Lock()
	k := h.tables[name]
	h.mu.Unlock()
	if k == nil {
		return nil
	}
	rs, err := k.Dump(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return rs
}

func onNetwork(pod *v1.Pod, status string) *v1.Pod {
	pod.Annotations = map[string]string{model.AnnotationNetworkStatus: status}
	return pod
}

func nad(ns, name, config string) *model.NetworkAttachmentDefinition {
	return &model.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: model.NetworkAttachmentDefinitionSpec{Config: config}}
}

// The agent programs a table per secondary network a local pod is on, as
// the projection compiles it, guards the primary table's forward chains
// for the network's bridge, and deletes the table when its last local pod
// goes. A pod whose network-status does not parse is on no network.
func TestSecondaryNetworkTables(t *testing.T) {
	const table = "nftpolicy-net-default.vlan10"
	vm1 := onNetwork(tu.Pod("vms", "vm1", node, m{"vm": "vm1"}, []string{"10.244.1.10"}), `[{"name":"default/vlan10","ips":["192.168.10.10"]}]`)
	vm2 := onNetwork(tu.Pod("vms", "vm2", "node-2", m{"vm": "vm2"}, []string{"10.244.2.10"}), `[{"name":"default/vlan10","ips":["192.168.10.11"]}]`)
	mnp := &model.MultiNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "vms", Name: "vm1", Annotations: map[string]string{model.AnnotationPolicyFor: "default/vlan10"}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: m{"vm": "vm1"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{tu.PodPeer(m{"vm": "vm2"})}}},
		},
	}
	h := startNet(t, tu.Namespace("vms", nil), vm1, vm2, mnp,
		nad("default", "vlan10", `{"cniVersion":"0.3.1","type":"bridge","bridge":"br-vlan10","vlan":10}`))
	h.wait()

	got := h.table(table)
	if got == nil {
		t.Fatalf("no table %s", table)
	}
	want := compile.NewEngineWith(model.Project(h.model(), "default/vlan10"), node, model.Options{Bridge: "br-vlan10", OpenUnknown: true}).Ruleset()
	if tx := diff.Diff(got, want); !tx.Empty() {
		t.Errorf("%s differs from the projection's ruleset:\n%s", table, tx)
	}
	ingress := got.Sets[compile.DispatchMap(model.Ingress, nft.IPv4)]
	if ingress.Len() != 1 {
		t.Errorf("ingress map of %s: %d elements, want vm1's address only", table, ingress.Len())
	}
	guarded := func() int {
		rs, err := h.primary.Dump(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, name := range []string{compile.ChainForwardEgress, compile.ChainForwardIngress} {
			// The kernel's rules are read back by their IDs (comments).
			if r := rs.Chains[name].Rules[0]; strings.HasPrefix(r.ID(), "judged by another table: br-vlan10 ") {
				n++
			}
		}
		return n
	}
	if n := guarded(); n != 2 {
		t.Errorf("%d primary forward chains start with the bridge's guard, want 2", n)
	}

	// A local pod with a bad annotation is on no network: nothing opens,
	// nothing breaks.
	h.apply(onNetwork(tu.Pod("vms", "bad", node, nil, []string{"10.244.1.11"}), `{"not": "a list"`))
	h.wait()
	if tx := diff.Diff(h.table(table), want); !tx.Empty() {
		t.Errorf("a pod with a bad annotation changed %s:\n%s", table, tx)
	}

	// vm1 goes: no local pod is on the network, its table goes.
	h.remove(vm1)
	h.wait()
	if rs := h.table(table); rs != nil {
		t.Errorf("%s still exists with no local pod on the network", table)
	}
	if n := guarded(); n != 0 {
		t.Errorf("%d primary forward chains still guard the bridge", n)
	}
}

// At its first sync the agent deletes the tables of networks its node has
// no pod on (left by an earlier agent), and keeps the others.
func TestStaleNetworkTablesDeleted(t *testing.T) {
	stale := nft.NewFake()
	rs := nft.NewRuleset()
	rs.AddChain(&nft.Chain{Name: "forward-ingress", Hook: &nft.Hook{Hook: "forward", Priority: 20}, Rules: []*nft.Rule{
		{Matches: []nft.Match{nft.MatchIfname{Name: "br-old", Out: true}}, Verdict: nft.Verdict{Kind: nft.Drop}, Comment: "left from before"}}})
	if err := stale.Apply(context.Background(), diff.Diff(nil, rs)); err != nil {
		t.Fatal(err)
	}
	vm := onNetwork(tu.Pod("vms", "vm", node, nil, []string{"10.244.1.10"}), `[{"name":"default/vlan10","ips":["192.168.10.10"]}]`)
	h := startNetWith(t, map[string]*nft.Fake{NetworkTablePrefix + "default.old": stale}, tu.Namespace("vms", nil), vm,
		nad("default", "vlan10", `{"type":"bridge","bridge":"br-vlan10"}`))
	h.wait()
	if rs := h.table(NetworkTablePrefix + "default.old"); rs != nil {
		t.Error("the stale table is still there")
	}
	if rs := h.table(NetworkTablePrefix + "default.vlan10"); rs == nil {
		t.Error("the table of the node's network is missing")
	}
}

// The networks' engines fed projected changes program exactly what a
// from-scratch compile of the projection gives, after every change: pods
// relabelled, added, given other addresses on the network, moved off it;
// a namespace relabelled under a namespaceSelector; a MultiNetworkPolicy
// changed, moved to another network and back, deleted.
func TestNetworkTablesFollowChanges(t *testing.T) {
	const net, table = "default/vlan10", "nftpolicy-net-default.vlan10"
	status := func(ip string) string { return `[{"name":"default/vlan10","ips":["` + ip + `"]}]` }
	mnp := func(policyFor string, from networkingv1.NetworkPolicyPeer) *model.MultiNetworkPolicy {
		return &model.MultiNetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "vms", Name: "db", Annotations: map[string]string{model.AnnotationPolicyFor: policyFor}},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: m{"app": "db"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{from}}},
				Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{tu.Block("192.168.10.0/25")}}},
			},
		}
	}
	db := onNetwork(tu.Pod("vms", "db", node, m{"app": "db"}, []string{"10.244.1.10"}), status("192.168.10.10"))
	web := onNetwork(tu.Pod("vms", "web", "node-2", m{"app": "web"}, []string{"10.244.2.10"}), status("192.168.10.20"))
	h := startNet(t, tu.Namespace("vms", m{"team": "a"}), tu.Namespace("other", m{"team": "b"}), db, web,
		mnp("default/vlan10", tu.PodPeer(m{"app": "web"})),
		nad("default", "vlan10", `{"type":"bridge","bridge":"br-vlan10"}`))
	check := func(step string) {
		t.Helper()
		h.wait()
		want := compile.NewEngineWith(model.Project(h.model(), net), node, model.Options{Bridge: "br-vlan10", OpenUnknown: true}).Ruleset()
		got := h.table(table)
		if got == nil {
			t.Fatalf("%s: no table", step)
		}
		if tx := diff.Diff(got, want); !tx.Empty() {
			t.Fatalf("%s: the table differs from the projection's compile by:\n%s", step, tx)
		}
	}
	check("start")
	full := h.agent.Stats().FullSyncs
	h.apply(onNetwork(tu.Pod("vms", "web", "node-2", m{"app": "cache"}, []string{"10.244.2.10"}), status("192.168.10.20")))
	check("peer relabelled")
	h.apply(onNetwork(tu.Pod("vms", "web2", "node-2", m{"app": "web"}, []string{"10.244.2.11"}), status("192.168.10.21")))
	check("peer added")
	h.apply(onNetwork(tu.Pod("vms", "web2", "node-2", m{"app": "web"}, []string{"10.244.2.11"}), status("192.168.10.22")))
	check("peer's address on the network changed")
	h.apply(onNetwork(tu.Pod("vms", "db2", node, m{"app": "db"}, []string{"10.244.1.11"}), status("192.168.10.11")))
	check("a second local subject")
	h.apply(onNetwork(tu.Pod("vms", "db2", node, m{"app": "db"}, []string{"10.244.1.11"}), `[]`))
	check("the second subject left the network")
	h.apply(mnp("default/vlan10", tu.NSPeer(m{"team": "b"}, nil)))
	check("policy changed to a namespace peer")
	h.apply(onNetwork(tu.Pod("other", "x", "node-2", nil, []string{"10.244.2.12"}), status("192.168.10.30")))
	check("a pod in the peer namespace")
	h.apply(tu.Namespace("other", m{"team": "c"}))
	check("namespace relabelled")
	h.apply(mnp("default/vlan20", tu.PodPeer(nil)))
	check("policy moved to another network")
	h.apply(mnp("default/vlan10, default/vlan20", tu.PodPeer(nil)))
	check("policy back, for two networks")
	h.remove(h.objects["MultiNetworkPolicy/vms/db"])
	check("policy deleted")
	if got := h.agent.Stats().FullSyncs; got != full {
		t.Errorf("%d full syncs during the changes, want none (the engines were fed the changes)", got-full)
	}
}
