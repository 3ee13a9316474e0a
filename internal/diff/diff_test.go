package diff_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

type m = map[string]string

const node = "node-1"

// cluster has n pods in namespace x, half on our node, labelled
// role=client or role=server, and policies that isolate the servers.
func cluster(t *testing.T, n int) *model.Cluster {
	c := model.NewCluster()
	set := func(o any) {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	set(tu.Namespace("x", m{"ns": "x"}))
	set(tu.Namespace("y", m{"ns": "y"}))
	for i := 0; i < n; i++ {
		role := "client"
		if i%2 == 0 {
			role = "server"
		}
		set(tu.Pod("x", fmt.Sprintf("p%d", i), []string{"node-1", "node-2"}[i%4/2], m{"role": role},
			[]string{fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)}, tu.WithPort("http", v1.ProtocolTCP, 8080)))
	}
	set(tu.Policy("x", "servers", m{"role": "server"},
		tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(m{"role": "client"})}, tu.NamedPort(v1.ProtocolTCP, "http")),
		tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.Block("10.0.0.0/8", "10.1.0.0/16")}, tu.Port(v1.ProtocolTCP, 80, 90))))
	set(tu.Policy("x", "clients-egress", m{"role": "client"}, tu.Types(networkingv1.PolicyTypeEgress),
		tu.Egress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(m{"role": "server"})})))
	return c
}

// program applies the ruleset for c to a fresh Fake and returns it.
func program(t *testing.T, c *model.Cluster) (*nft.Fake, *nft.Ruleset) {
	t.Helper()
	k := nft.NewFake()
	desired := compile.Node(c, node)
	if err := k.Apply(context.Background(), diff.Diff(nil, desired)); err != nil {
		t.Fatal(err)
	}
	return k, desired
}

func TestNoChangeSendsNothing(t *testing.T) {
	c := cluster(t, 10)
	k, desired := program(t, c)
	if tx := diff.Diff(desired, compile.Node(c, node)); !tx.Empty() {
		t.Errorf("recompiling the same cluster gives %d ops:\n%s", tx.Len(), tx)
	}
	// The kernel's read-back (rules known only by their comments) must
	// compare equal to the compiled ruleset, or every restart would churn.
	back, err := k.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tx := diff.Diff(back, desired); !tx.Empty() {
		t.Errorf("diff against the read-back gives %d ops:\n%s", tx.Len(), tx)
	}
}

// step applies a change to the model, diffs, applies the transaction to the
// Fake (which checks references as the kernel does), and checks that the
// kernel now holds exactly the desired ruleset.
func step(t *testing.T, k *nft.Fake, current *nft.Ruleset, c *model.Cluster, change func()) (*nft.Ruleset, diff.Counts) {
	t.Helper()
	change()
	desired := compile.Node(c, node)
	tx := diff.Diff(current, desired)
	if err := k.Apply(context.Background(), tx); err != nil {
		t.Fatalf("applying the diff: %v\n%s", err, tx)
	}
	back, _ := k.Dump(context.Background())
	if rest := diff.Diff(back, desired); !rest.Empty() {
		t.Fatalf("after the diff the kernel still differs by:\n%s", rest)
	}
	return desired, diff.Count(tx)
}

func TestRelabelCostsTheSameAtAnySize(t *testing.T) {
	cost := map[int]diff.Counts{}
	for _, n := range []int{10, 1000} {
		c := cluster(t, n)
		k, current := program(t, c)
		// p0 is a server on node-1: it becomes a client.
		_, cost[n] = step(t, k, current, c, func() {
			if err := c.Set(tu.Pod("x", "p0", "node-1", m{"role": "client"}, []string{"10.1.0.1"}, tu.WithPort("http", v1.ProtocolTCP, 8080))); err != nil {
				t.Fatal(err)
			}
		})
	}
	if cost[10] != cost[1000] {
		t.Errorf("a relabel costs %+v with 10 pods and %+v with 1000", cost[10], cost[1000])
	}
	// The pod leaves the servers' ingress dispatch and joins the clients'
	// egress dispatch (a delete and an add); as a peer its address leaves
	// the egress ids map (the clients' egress rule names servers) and
	// joins the ingress one (the servers' ingress rule names clients); as
	// a local pod it leaves the maps of the two identities the servers'
	// ingress rules match (the clients and the ipBlock) and joins the one
	// the clients' egress rule matches (the servers): one element each, no
	// rule rewritten. The peer sets it leaves and joins are not in the
	// kernel (no rule reads them).
	if want := (diff.Counts{Ops: 7, Elements: 7}); cost[10] != want {
		t.Errorf("a relabel costs %+v, want %+v", cost[10], want)
	}
}

func TestUpdatesApplyCleanly(t *testing.T) {
	c := cluster(t, 20)
	k, current := program(t, c)
	// Node-1 holds the ten pods p0, p1, p4, ... p17: five servers (ingress
	// isolated) and five clients (egress isolated).
	changes := []struct {
		name   string
		change func()
		want   diff.Counts
	}{
		// A new port map with its one range, the one group chain whose
		// identity (the ipBlock) that rule matches flushed and its one
		// rule re-added, the old port map deleted.
		{name: "policy edit rewrites only its group", change: func() {
			c.Set(tu.Policy("x", "servers", m{"role": "server"},
				tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(m{"role": "client"})}, tu.NamedPort(v1.ProtocolTCP, "http")),
				tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.Block("10.0.0.0/8", "10.1.0.0/16")}, tu.Port(v1.ProtocolTCP, 80, 91))))
		}, want: diff.Counts{Ops: 5, Elements: 1}},
		// Two chains (the classes deny-all and deny-all+servers) with six
		// rules (each class's jump, log and drop); the five servers'
		// dispatch elements replaced and the five clients' added (one
		// delete, one add: 15 elements); the servers-only class flushed
		// and deleted. The servers' elements in the identities' maps stay:
		// deny-all has no rule, so their groups (named by the rules they
		// hold, not by the class) are the same.
		{name: "new policy", change: func() {
			c.Set(tu.Policy("x", "deny-all", nil, tu.Types(networkingv1.PolicyTypeIngress)))
		}, want: diff.Counts{Ops: 12, Elements: 15}},
		// The reverse: the servers-only class back, the elements moved
		// back, the two classes flushed and deleted.
		{name: "policy delete", change: func() { c.Delete("NetworkPolicy", "x", "deny-all") }, want: diff.Counts{Ops: 10, Elements: 15}},
		// p0 leaves the ingress dispatch, this node's named-port set and
		// the set of known local pods; its address leaves the egress ids
		// map (only the clients' egress rule names servers), and the pod
		// the maps of the two identities its class has rules for.
		{name: "pod delete", change: func() { c.Delete("Pod", "x", "p0") }, want: diff.Counts{Ops: 6, Elements: 6}},
		{name: "namespace relabel", change: func() { c.Set(tu.Namespace("y", m{"ns": "y", "team": "blue"})) }},
		// The nine remaining isolated pods leave both dispatch maps, the
		// nine servers the egress ids map, the ten clients the ingress
		// one and the ipBlock's two ranges the ingress cidr map (5
		// deletes, 30 elements); eleven chains flushed (classes, groups,
		// identities, verdicts), five sets and maps deleted (the peer sets
		// were never in the kernel), then the eleven chains.
		{name: "every policy deleted", change: func() {
			c.Delete("NetworkPolicy", "x", "servers")
			c.Delete("NetworkPolicy", "x", "clients-egress")
		}, want: diff.Counts{Ops: 32, Elements: 30}},
	}
	for _, ch := range changes {
		var counts diff.Counts
		current, counts = step(t, k, current, c, ch.change)
		if counts != ch.want {
			t.Errorf("%s: costs %+v, want %+v", ch.name, counts, ch.want)
		}
	}
	// With no policy left only the static skeleton remains: the base
	// chains (no output chains without IPVS), the dispatch maps, the pod CIDR and known pod sets of the
	// class of pods not yet known, and the identity layout's fixed part
	// in each of its six spaces (NetworkPolicy, admin and baseline, by
	// direction): a peer chain and the empty identity's chain; the ids,
	// cidr and empty identity's maps, two each.
	back, _ := k.Dump(context.Background())
	if len(back.Chains) != 3+6*2 || len(back.Sets) != 4+4+6*6 {
		t.Errorf("after deleting every policy: %d chains, %d sets; want 3 base chains and 12 of the identity layout, 4 dispatch maps, 4 sets of pods not yet known and 36 maps of the identity layout", len(back.Chains), len(back.Sets))
	}
}

func TestDiffRecoversFromDrift(t *testing.T) {
	c := cluster(t, 10)
	k, desired := program(t, c)
	// Someone deletes the table behind our back: a resync reads the kernel
	// (no table) and rebuilds it.
	if err := k.Apply(context.Background(), &nft.Transaction{Ops: []nft.Op{{Kind: nft.OpDeleteTable}}}); err != nil {
		t.Fatal(err)
	}
	back, _ := k.Dump(context.Background())
	if err := k.Apply(context.Background(), diff.Diff(back, desired)); err != nil {
		t.Fatal(err)
	}
	back, _ = k.Dump(context.Background())
	if tx := diff.Diff(back, desired); !tx.Empty() {
		t.Errorf("table not restored:\n%s", tx)
	}
}

func adminPolicy(name string, prio int32, action string) *v1alpha1.AdminNetworkPolicy {
	p := &v1alpha1.AdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	p.Spec.Priority = prio
	p.Spec.Subject.Namespaces = &metav1.LabelSelector{MatchLabels: m{"ns": "x"}}
	p.Spec.Ingress = []v1alpha1.AdminNetworkPolicyIngressRule{{Action: v1alpha1.AdminNetworkPolicyRuleAction(action),
		From: []v1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: m{"ns": "y"}}}}}}
	return p
}

// TestPriorityChangeLeavesOtherPoliciesAlone: reordering the admin tier
// rewrites, in place, the groups of the classes that list the policy (they
// hold the tier's order) and the policy's verdict chain (its comments carry
// the priority): no set or map element changes, no pod moves, whatever the
// number of pods.
func TestPriorityChangeLeavesOtherPoliciesAlone(t *testing.T) {
	cost := map[int]int{}
	for _, n := range []int{10, 200} {
		c := cluster(t, n)
		// A peer in y, which the admin rules name: without one no identity
		// matches them, and they take no place in the ruleset.
		if err := c.Set(tu.Pod("y", "peer", "node-2", nil, []string{"10.2.0.1"})); err != nil {
			t.Fatal(err)
		}
		for i, name := range []string{"a", "b", "c"} {
			if err := c.Set(adminPolicy(name, int32(10*(i+1)), []string{"Allow", "Deny", "Pass"}[i])); err != nil {
				t.Fatal(err)
			}
		}
		k, current := program(t, c)
		var tx *nft.Transaction
		step(t, k, current, c, func() {
			c.Set(adminPolicy("b", 5, "Deny"))
			tx = diff.Diff(current, compile.Node(c, node))
		})
		for _, op := range tx.Ops {
			if op.Kind == nft.OpAddSet || op.Kind == nft.OpDeleteSet || op.Kind == nft.OpAddElements || op.Kind == nft.OpDeleteElements {
				t.Errorf("n=%d: a priority change touched %q: %s", n, op.Name, op)
			}
		}
		cost[n] = tx.Len()
	}
	// The one ingress group (the identity of y's pod; its rules all take
	// every port, so the first decides) flushed and its goto, now to b's
	// verdict chain, re-added; b's verdict chain added with its log and
	// drop rules; a's, no longer reached, flushed and deleted.
	for n, ops := range cost {
		if ops != 7 {
			t.Errorf("n=%d: a priority change costs %d ops, want 7", n, ops)
		}
	}
}

// TestAdminSubjectSelectingNothing is the tracker's case: an admin policy
// with Pass rules whose subject stops selecting any pod on the node takes
// the admin tier, the rest maps and no-later-tier-accept away with it. The
// rest maps' elements point to no-later-tier-accept, so the maps must go
// before the chain (the kernel answers EBUSY otherwise, and a resync would
// send the same transaction forever).
func TestAdminSubjectSelectingNothing(t *testing.T) {
	c := cluster(t, 10)
	pass := adminPolicy("a", 10, "Pass")
	pass.Spec.Egress = []v1alpha1.AdminNetworkPolicyEgressRule{{Action: "Pass",
		To: []v1alpha1.AdminNetworkPolicyEgressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: m{"ns": "y"}}}}}}
	baseline := &v1alpha1.BaselineAdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	baseline.Spec.Subject.Namespaces = &metav1.LabelSelector{MatchLabels: m{"ns": "x"}}
	baseline.Spec.Ingress = []v1alpha1.BaselineAdminNetworkPolicyIngressRule{{Action: "Deny",
		From: []v1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: m{"ns": "y"}}}}}}
	for _, o := range []any{pass, baseline} {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	k, current := program(t, c)
	if _, ok := current.Chains[compile.ChainAccept]; !ok {
		t.Fatalf("the setup does not use %s:\n%s", compile.ChainAccept, current.Text())
	}

	var tx *nft.Transaction
	step(t, k, current, c, func() {
		pass.Spec.Subject.Namespaces = &metav1.LabelSelector{MatchLabels: m{"ns": "none"}}
		if err := c.Set(pass); err != nil {
			t.Fatal(err)
		}
		tx = diff.Diff(current, compile.Node(c, node))
	})

	// The six pods of x on this node leave the admin class chains in both
	// dispatch maps (2 deletes); the three clients go to their egress
	// class and all six to their ingress class or the baseline (2 adds).
	// Three chains go (the two admin class chains and
	// no-later-tier-accept: flushed, then deleted; no pod is in y, so no
	// identity matches the admin rules and they have no chains) and the
	// four rest maps with them.
	got := map[nft.OpKind]int{}
	for _, op := range tx.Ops {
		got[op.Kind]++
	}
	want := map[nft.OpKind]int{nft.OpDeleteElements: 2, nft.OpAddElements: 2, nft.OpFlushChain: 3, nft.OpDeleteSet: 4, nft.OpDeleteChain: 3}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("operations by kind (-want +got):\n%s\n%s", d, tx)
	}
	if n := diff.Count(tx).Elements; n != 6+6+3+6 {
		t.Errorf("%d elements touched, want 21:\n%s", n, tx)
	}
	lastSetDelete, firstChainDelete := -1, len(tx.Ops)
	for i, op := range tx.Ops {
		switch {
		case op.Kind == nft.OpDeleteSet:
			lastSetDelete = i
		case op.Kind == nft.OpDeleteChain && i < firstChainDelete:
			firstChainDelete = i
		}
	}
	if lastSetDelete > firstChainDelete {
		t.Errorf("a chain is deleted (op %d) before a map (op %d):\n%s", firstChainDelete, lastSetDelete, tx)
	}
}

// TestReplace: the fallback transaction builds the desired table whatever
// the kernel holds, a table with other contents or none, in one batch.
func TestReplace(t *testing.T) {
	c := cluster(t, 10)
	desired := compile.Node(c, node)
	build := diff.Diff(nil, desired)
	other, _ := program(t, cluster(t, 4))
	for _, k := range []*nft.Fake{other, nft.NewFake()} {
		tx := diff.Replace(desired)
		if tx.Len() != build.Len()+2 {
			t.Errorf("replacement of %d ops, want the build's %d and 2 (add and delete the table)", tx.Len(), build.Len())
		}
		before := k.Transactions
		if err := k.Apply(context.Background(), tx); err != nil {
			t.Fatalf("replacement: %v", err)
		}
		if k.Transactions != before+1 {
			t.Errorf("the replacement took %d transactions, want 1", k.Transactions-before)
		}
		back, _ := k.Dump(context.Background())
		if rest := diff.Diff(back, desired); !rest.Empty() {
			t.Errorf("after the replacement the kernel still differs by:\n%s", rest)
		}
	}
}

// An element touched more than once between two syncs (its set gained and
// lost it, or two sets' changes named it) is sent once.
func TestPartialSendsARepeatedElementOnce(t *testing.T) {
	el := func(a string) nft.Elem { return nft.Elem{Addr: netip.MustParseAddr(a), Chain: "c"} }
	current := nft.NewRuleset()
	current.AddChain(&nft.Chain{Name: "c"})
	current.AddSet(nft.NewSet("ids", nft.MapIPv4Verdict, ""))
	current.Sets["ids"].Add(el("10.0.0.1"), el("10.0.0.2"))
	desired := current.Clone()
	desired.Sets["ids"].Delete(el("10.0.0.1"))
	desired.Sets["ids"].Add(el("10.0.0.3"))

	touched := nft.NewTouched()
	for _, a := range []string{"10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.3"} {
		touched.Elem("ids", el(a))
	}
	got := diff.Partial(current, desired, touched)
	if diff := cmp.Diff(diff.Diff(current, desired).String(), got.String()); diff != "" {
		t.Errorf("partial diff (-full +partial):\n%s", diff)
	}
	if c := diff.Count(got); c != (diff.Counts{Ops: 2, Elements: 2}) {
		t.Errorf("counts %+v, want 2 ops of one element each", c)
	}
}

// A change of thousands of elements of one map (the event that brings a
// peer selector new to a node) is compared and sorted on two goroutines:
// the transaction is the full diff's, each element once, with repeats
// across the halves.
func TestPartialOfManyElements(t *testing.T) {
	el := func(i int, chain string) nft.Elem {
		return nft.Elem{Addr: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Chain: chain}
	}
	current := nft.NewRuleset()
	current.AddChain(&nft.Chain{Name: "a"})
	current.AddChain(&nft.Chain{Name: "b"})
	current.AddSet(nft.NewSet("ids", nft.MapIPv4Verdict, ""))
	for i := range 6000 {
		current.Sets["ids"].Add(el(i, "a"))
	}
	desired := current.Clone()
	touched := nft.NewTouched()
	for i := range 3000 { // 3,000 move to b, each touched twice
		desired.Sets["ids"].Delete(el(i, "a"))
		desired.Sets["ids"].Add(el(i, "b"))
		touched.Elem("ids", el(i, "b"), el(i, "a"))
	}
	for i := range 3000 { // and again, in the other half of the list
		touched.Elem("ids", el(i, "a"), el(i, "b"))
	}
	got := diff.Partial(current, desired, touched)
	if diff := cmp.Diff(diff.Diff(current, desired).String(), got.String()); diff != "" {
		t.Errorf("partial diff (-full +partial):\n%s", diff)
	}
	if c := diff.Count(got); c != (diff.Counts{Ops: 2, Elements: 6000}) {
		t.Errorf("counts %+v, want 2 ops of 3,000 elements each", c)
	}
}

// TestPartialTakesMovesAsGiven: a set's exact moves (the compile engine's
// ids maps) go into the transaction as they are, sorted, without a lookup
// in either ruleset; with touched elements of the same set beside them,
// or for a set the current table lacks, the diff compares as for touched
// elements.
func TestPartialTakesMovesAsGiven(t *testing.T) {
	el := func(a, chain string) nft.Elem { return nft.Elem{Addr: netip.MustParseAddr(a), Chain: chain} }
	current := nft.NewRuleset()
	current.AddChain(&nft.Chain{Name: "a"})
	current.AddChain(&nft.Chain{Name: "b"})
	current.AddSet(nft.NewSet("ids", nft.MapIPv4Verdict, ""))
	current.Sets["ids"].Add(el("10.0.0.1", "a"), el("10.0.0.2", "a"))
	desired := current.Clone()
	desired.Sets["ids"].Add(el("10.0.0.2", "b"), el("10.0.0.3", "b"))

	moves := func() *nft.Touched {
		tc := nft.NewTouched()
		// Unsorted, and naming an element neither ruleset holds: taken as given.
		tc.Moved("ids", []nft.Elem{el("10.0.0.2", "a")}, []nft.Elem{el("10.0.0.9", "b"), el("10.0.0.3", "b"), el("10.0.0.2", "b")})
		return tc
	}
	want := "delete element inet nftpolicy ids { 10.0.0.2 }\n" +
		"add element inet nftpolicy ids { 10.0.0.2 : goto b, 10.0.0.3 : goto b, 10.0.0.9 : goto b }\n"
	if got := diff.Partial(current, desired, moves()).String(); got != want {
		t.Errorf("moves alone:\n%s\nwant\n%s", got, want)
	}

	tc := moves()
	tc.Elem("ids", el("10.0.0.1", "a"))
	want = "delete element inet nftpolicy ids { 10.0.0.2 }\n" +
		"add element inet nftpolicy ids { 10.0.0.2 : goto b, 10.0.0.3 : goto b }\n"
	if got := diff.Partial(current, desired, tc).String(); got != want {
		t.Errorf("moves and touched elements:\n%s\nwant\n%s", got, want)
	}

	empty := current.Clone()
	delete(empty.Sets, "ids")
	got := diff.Partial(empty, desired, moves()).String()
	if want := diff.Diff(empty, desired).String(); got != want {
		t.Errorf("moves of a set new to the table:\n%s\nwant the full diff\n%s", got, want)
	}
}
