package compile

import (
	"fmt"
	"math/rand"
	"net/netip"
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestRemotePeersAgreeWithEvaluator is the agreement test with a remote
// cluster (docs/multicluster.md): the random clusters get the pods,
// namespaces and a node of cluster "two" (its own namespace x as well,
// pods on a node that has a local node's name, an address a local pod
// also lists), and random selectors of every kind name the cluster label.
// The evaluator and the traced rulesets of the local nodes must agree, with
// and without a local cluster id and namespace sameness; the remote nodes
// run no agent of this cluster, so flows are traced through local nodes
// only.
func TestRemotePeersAgreeWithEvaluator(t *testing.T) {
	remoteMatched := 0
	for seed := range tu.Seeds(t, 200) {
		r := rand.New(rand.NewSource(seed))
		c := model.NewCluster()
		c.ClusterSet = model.ClusterSet{LocalID: []string{"", "one"}[r.Intn(2)], Sameness: r.Intn(3) == 0}
		objs := randomObjects(r)
		for _, o := range objs {
			withClusterKeys(r, reflect.ValueOf(o))
		}
		objs = append(objs, randomRemote(r)...)
		for _, o := range objs {
			if err := c.Set(o); err != nil {
				t.Fatal(err)
			}
		}
		srcs, dsts := flowAddrs(c)
		allowed := agreeWith(t, fmt.Sprintf("seed %d %+v", seed, c.ClusterSet), c, model.Options{}, srcs, dsts)
		ev := model.NewEvaluator(c)
		for f := range allowed {
			if p := ev.PodByAddr(f.Src); p != nil && p.Remote() {
				if v := ev.Judge(model.Ingress, f); v.Policy != "" {
					remoteMatched++ // a rule that let a remote pod in
				}
			}
		}
	}
	// The test means something only if remote pods do get matched.
	t.Logf("%d allowed flows from remote pods were admitted by a rule", remoteMatched)
	if remoteMatched < 100 {
		t.Fatalf("only %d allowed flows from remote pods were allowed by a rule", remoteMatched)
	}
}

// randomRemote is cluster two: namespaces x (the local one's name) and w,
// a node named like a local one, and pods there, one of them listing the
// address of a local random pod (local wins) and one on the node's
// unqualified name (the model qualifies it).
func randomRemote(r *rand.Rand) []any {
	var out []any
	for _, ns := range []string{"x", "w"} {
		l := randomLabels(r)
		if r.Intn(4) == 0 {
			l[model.ClusterLabel] = "one" // a remote label claiming the local cluster: ignored
		}
		out = append(out, tu.Namespace(model.RemoteName("two", ns), l))
	}
	node := randomNode(r, "n1", 21)
	node.Name = model.RemoteName("two", "n1")
	node.Spec.PodCIDRs = []string{"10.0.5.0/24", "fd00::5:0/112"}
	out = append(out, node)
	for i := 0; i < 5; i++ {
		p := randomPod(r, fmt.Sprintf("r%d", i), i)
		p.Namespace = model.RemoteName("two", []string{"x", "w"}[r.Intn(2)])
		p.Spec.NodeName = []string{model.RemoteName("two", "n1"), "n1"}[r.Intn(2)]
		ips := []string{fmt.Sprintf("10.0.5.%d", 2+i), fmt.Sprintf("fd00::5:%d", 2+i)}
		if i == 4 {
			ips = []string{"10.0.0.6"} // maybe a local pod's too
		}
		p.Status.PodIPs = nil
		for _, ip := range ips[:1+r.Intn(len(ips))] {
			p.Status.PodIPs = append(p.Status.PodIPs, v1.PodIP{IP: ip})
		}
		p.Status.PodIP = ips[0]
		out = append(out, p)
	}
	return out
}

// withClusterKeys adds, to about half of the label selectors found in v
// (policies' subjects and peers alike), a requirement on the cluster
// label.
func withClusterKeys(r *rand.Rand, v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		if s, ok := v.Interface().(*metav1.LabelSelector); ok {
			if r.Intn(2) == 0 {
				s.MatchExpressions = append(s.MatchExpressions, clusterRequirements[r.Intn(len(clusterRequirements))])
			}
			return
		}
		withClusterKeys(r, v.Elem())
	case reflect.Struct:
		if s, ok := v.Addr().Interface().(*metav1.LabelSelector); ok {
			withClusterKeys(r, reflect.ValueOf(s))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				withClusterKeys(r, v.Field(i))
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			withClusterKeys(r, v.Index(i))
		}
	}
}

var clusterRequirements = []metav1.LabelSelectorRequirement{
	{Key: model.ClusterLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"two"}},
	{Key: model.ClusterLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"one"}},
	{Key: model.ClusterLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"one", "two"}},
	{Key: model.ClusterLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"one"}},
	{Key: model.ClusterLabel, Operator: metav1.LabelSelectorOpExists},
}

// TestRemoteOwnership: a remote pod listing a local pod's address never
// takes it, whatever the keys' order.
func TestRemoteOwnership(t *testing.T) {
	c := model.NewCluster()
	for _, o := range []any{
		tu.Namespace("z", nil), tu.Namespace(model.RemoteName("a", "b"), nil),
		tu.Pod("z", "local", "n1", nil, []string{"10.0.0.9"}),
		tu.Pod(model.RemoteName("a", "b"), "remote", "n1", nil, []string{"10.0.0.9"}),
	} {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	addr := netip.MustParseAddr("10.0.0.9")
	local, remote := c.Pods["z/local"], c.Pods["a/b/remote"]
	if !c.Owns(local, addr) || c.Owns(remote, addr) {
		t.Fatalf("local owns: %v, remote owns: %v; want true, false", c.Owns(local, addr), c.Owns(remote, addr))
	}
	if got := model.NewEvaluator(c).PodByAddr(addr); got != local {
		t.Fatalf("evaluator's owner: %v", got.Key())
	}
	if remote.Node != "a/n1" {
		t.Fatalf("remote pod's node: %q, want a/n1", remote.Node)
	}
	if len(Node(c, "n1").Sets) == 0 {
		t.Fatal("no ruleset")
	}
}
