package agent

import (
	"context"
	"net/netip"
	"strconv"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/fakeapi"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// remoteHarness is the harness with one remote cluster, "two", behind a
// fake API server that can be taken away.
type remoteHarness struct {
	*harness
	remote *fake.Clientset
	outage *fakeapi.Outage
}

func startRemote(t *testing.T, local []runtime.Object, remote []runtime.Object) *remoteHarness {
	t.Helper()
	rc := fake.NewClientset()
	rh := &remoteHarness{remote: rc, outage: fakeapi.Install(rc)}
	rh.harness = start(t, func(cfg *Config) {
		cfg.Remotes = []Remote{{Name: "two", Client: rc}}
		cfg.RemoteCheckInterval = 20 * time.Millisecond
	}, local...)
	for _, o := range remote {
		rh.applyRemote(o)
	}
	return rh
}

// applyRemote writes obj to the remote server (down or not) and records it
// as the agent should see it.
func (rh *remoteHarness) applyRemote(obj runtime.Object) {
	rh.t.Helper()
	obj = obj.DeepCopyObject()
	rh.rv++
	m := obj.(metav1.Object)
	m.SetResourceVersion(strconv.Itoa(rh.rv))
	k, _ := model.KindOf(obj)
	seen, err := RemoteTransform("two")(obj.DeepCopyObject())
	if err != nil {
		rh.t.Fatal(err)
	}
	key := ObjectKey(seen)
	if _, exists := rh.objects[key]; exists {
		err = rh.remote.Tracker().Update(k.Resource, obj, m.GetNamespace(), metav1.UpdateOptions{})
	} else {
		err = rh.remote.Tracker().Create(k.Resource, obj, m.GetNamespace(), metav1.CreateOptions{})
	}
	if err != nil {
		rh.t.Fatal(err)
	}
	rh.objects[key] = seen.(runtime.Object)
}

func (rh *remoteHarness) deleteRemote(kind, ns, name string) {
	rh.t.Helper()
	k, _ := model.KindNamed(kind)
	if err := rh.remote.Tracker().Delete(k.Resource, ns, name, metav1.DeleteOptions{}); err != nil {
		rh.t.Fatal(err)
	}
	rns, rname := ns, name
	if ns != "" {
		rns = model.RemoteName("two", ns)
	} else {
		rname = model.RemoteName("two", name)
	}
	delete(rh.objects, objectKey(kind, rns, rname))
}

// holding counts the kernel's sets that hold addr.
func (rh *remoteHarness) identified(addr string) bool {
	rh.t.Helper()
	rs, err := rh.kernel.Fake.Dump(context.Background())
	if err != nil {
		rh.t.Fatal(err)
	}
	a := netip.MustParseAddr(addr)
	for el := range rs.Sets[compile.IDsMap(model.Ingress, nft.IPv4)].All() {
		if el.Addr == a {
			return true
		}
	}
	return false
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const (
	betaClient = "10.245.1.10" // two: beta/client
	xClient    = "10.245.1.11" // two: x/client, a namespace named like a local one
)

// TestRemoteCluster: a remote cluster's pods are peers of a local policy
// that names their cluster and namespace, and of no other; a remote
// change is a partial sync of exactly the operations it needs; while the
// remote cluster is unreachable its last known pods stay enforced and the
// metric says so; when it is back its changes are synced.
func TestRemoteCluster(t *testing.T) {
	beta := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: m{model.ClusterLabel: "two", v1.LabelMetadataName: "beta"}}}
	local := []runtime.Object{
		tu.Namespace("x", nil),
		tu.Pod("x", "server", node, m{"role": "server"}, []string{"10.244.1.10"}),
		tu.Pod("x", "client", "node-2", m{"role": "client"}, []string{"10.244.2.10"}),
		tu.Policy("x", "from-beta", m{"role": "server"}, tu.Ingress([]networkingv1.NetworkPolicyPeer{beta})),
		// All namespaces, from every role=client pod: the local ones only.
		tu.Policy("x", "clients", m{"role": "server"}, tu.Ingress([]networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{}, PodSelector: &metav1.LabelSelector{MatchLabels: m{"role": "client"}}}}, tu.Port(v1.ProtocolTCP, 81, 0))),
	}
	remote := []runtime.Object{
		tu.Namespace("beta", nil),
		tu.Namespace("x", nil),
		tu.Pod("beta", "client", node, m{"role": "client"}, []string{betaClient}),
		tu.Pod("x", "client", node, m{"role": "client"}, []string{xClient}),
	}
	rh := startRemote(t, local, remote)
	rh.wait()
	rh.checkKernel()
	if !rh.identified(betaClient) {
		t.Errorf("two's beta/client has no peer identity, want from-beta's peers")
	}
	if rh.identified(xClient) {
		t.Errorf("two's x/client has a peer identity, want none")
	}
	if !rh.identified("10.244.2.10") {
		t.Errorf("the local client has no peer identity, want clients' peers")
	}
	eventually(t, "the remote cluster up", func() bool { return rh.agent.RemoteUp("two") })
	if got := gaugeValue(t, rh.reg, "nftpolicy_remote_cluster_up", "cluster", "two"); got != 1 {
		t.Errorf("nftpolicy_remote_cluster_up = %v, want 1", got)
	}
	if got := gaugeValue(t, rh.reg, "nftpolicy_pods", "", ""); got != 2 {
		t.Errorf("nftpolicy_pods = %v, want 2 (local pods only)", got)
	}

	// A remote relabel that takes the pod out of nothing, and a move of
	// its namespace out of the selector: one element operation each.
	dumps := rh.kernel.dumps.Load()
	rh.applyRemote(tu.Namespace("beta", m{"moved": "yes"}))
	rh.wait()
	if got := rh.agent.Stats().LastOps.Ops; got != 0 {
		t.Errorf("a label no selector reads cost %d ops, want 0", got)
	}
	rh.deleteRemote("Pod", "beta", "client")
	rh.wait()
	rh.checkKernel()
	// The pod leaves the ingress ids map (1 element; only an ingress rule
	// names it); it was the only member of its identity, so the identity
	// goes with it: its chain (flushed, deleted), its map of local pods,
	// and the group and verdict chain only it led to (7 more; the rule
	// takes every port, so the group needs no port map). Still nothing
	// that grows with the cluster.
	if got := rh.agent.Stats().LastOps.Ops; got != 8 {
		t.Errorf("a remote pod's deletion cost %d ops, want 8 (1 element, its identity's 7)", got)
	}
	if rh.kernel.dumps.Load() != dumps {
		t.Error("a remote change caused a full sync")
	}
	rh.applyRemote(tu.Pod("beta", "client", node, m{"role": "client"}, []string{betaClient}))
	rh.wait()
	if !rh.identified(betaClient) {
		t.Fatal("two's beta/client is not back")
	}

	// The remote cluster goes away: its last known pods stay enforced.
	rh.outage.SetDown(true)
	eventually(t, "the remote cluster down", func() bool { return !rh.agent.RemoteUp("two") })
	if got := gaugeValue(t, rh.reg, "nftpolicy_remote_cluster_up", "cluster", "two"); got != 0 {
		t.Errorf("nftpolicy_remote_cluster_up = %v while down, want 0", got)
	}
	rh.deleteRemote("Pod", "beta", "client") // unseen while down
	time.Sleep(300 * time.Millisecond)
	if !rh.identified(betaClient) {
		t.Fatal("an unreachable cluster's last known pod was dropped")
	}
	if f := rh.agent.Stats().Failures; f != 0 {
		t.Errorf("%d sync failures while a remote cluster was down, want 0", f)
	}

	// Back: the deletion made while it was away is synced.
	rh.outage.SetDown(false)
	rh.wait()
	rh.checkKernel()
	if rh.identified(betaClient) {
		t.Error("a pod deleted while its cluster was away is still enforced after it came back")
	}
	eventually(t, "the remote cluster up again", func() bool { return rh.agent.RemoteUp("two") })
}

// TestRemoteTransform: remote objects get qualified names, once.
func TestRemoteTransform(t *testing.T) {
	tr := RemoteTransform("two")
	pod := tu.Pod("beta", "p", "n1", nil, []string{"10.0.0.1"})
	out, _ := tr(pod)
	out, _ = tr(out) // idempotent
	p := out.(*v1.Pod)
	if p.Namespace != "two/beta" || p.Spec.NodeName != "two/n1" || p.Name != "p" {
		t.Fatalf("pod: %s/%s on %s", p.Namespace, p.Name, p.Spec.NodeName)
	}
	ns, _ := tr(tu.Namespace("beta", nil))
	ns, _ = tr(ns)
	if got := ns.(*v1.Namespace).Name; got != "two/beta" {
		t.Fatalf("namespace %q", got)
	}
}
