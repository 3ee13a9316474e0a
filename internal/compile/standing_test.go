package compile

import (
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestStandingSelectorsMoveNoPeerOnPodAdd: a pod whose class is the first
// on its node to use a selector of namespaces by label changes no peer's
// identity (the selector stands on every node from the moment a policy
// names it); the members move when the policy comes or goes, and a peer
// within the policy's own namespace does not stand. Exact element counts
// per set, through the partial diff.
func TestStandingSelectorsMoveNoPeerOnPodAdd(t *testing.T) {
	const members = 12
	c := model.NewCluster()
	set := func(obj any) {
		t.Helper()
		if err := c.Set(obj); err != nil {
			t.Fatal(err)
		}
	}
	set(tu.Namespace("web", nil))
	for i, ns := range []string{"a-1", "a-2"} {
		set(tu.Namespace(ns, map[string]string{"team": "a"}))
		for j := range members / 2 {
			set(tu.Pod(ns, fmt.Sprintf("p%d", j), "n2", nil, []string{fmt.Sprintf("10.0.%d.%d", i+1, j+1)}))
		}
	}
	fromTeam := func(name string, team string) *networkingv1.NetworkPolicy {
		return tu.Policy("web", name, map[string]string{"app": "web"},
			tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.NSPeer(map[string]string{"team": team}, nil)}, tu.Port(v1.ProtocolTCP, 80, 0)))
	}
	set(fromTeam("from-team-a", "a"))

	e := NewEngine(c, "n1")
	e.TakeTouched()
	shadow := e.Ruleset().Clone()
	step := func(what string, change func() error) map[string]int {
		t.Helper()
		if err := change(); err != nil {
			t.Fatal(err)
		}
		tx := diff.Partial(shadow, e.Ruleset(), e.TakeTouched())
		shadow.ApplyOps(tx)
		if want := Node(e.Cluster(), "n1").Text(); e.Ruleset().Text() != want {
			t.Fatalf("%s: the engine's ruleset differs from a full compile", what)
		}
		return elemsBySet(tx)
	}
	ids := IDsMap(model.Ingress, nft.IPv4)

	// No pod of web on n1 yet: the team's pods are in the ids map anyway.
	if n := len(e.Ruleset().Sets[ids].Elements); n != members {
		t.Fatalf("before any pod uses it, %s holds %d addresses, want the selector's %d members", ids, n, members)
	}

	// The first pod of web on n1: its own elements only. Its class's
	// dispatch element and its address in the local-pods set (2), its
	// element in the map of the team's identity (1), which sends it to the
	// group of the policy's rule, and the one element of that group's new
	// port map (tcp . 80 to the rule's verdict chain).
	got := step("pod add", func() error {
		return e.Set(tu.Pod("web", "w1", "n1", map[string]string{"app": "web"}, []string{"10.0.9.1"}))
	})
	if got[ids] != 0 {
		t.Errorf("pod add: %d elements of %s changed, want 0 (the selector stands)", got[ids], ids)
	}
	if total := sum(got); total != 4 {
		t.Errorf("pod add: %d elements changed (%v), want 4", total, got)
	}

	// A peer within web itself does not stand: a policy naming it, with no
	// pod on n1 that it selects, changes nothing on n1.
	got = step("same-namespace policy", func() error {
		return e.Set(tu.Policy("web", "from-db", map[string]string{"app": "db"},
			tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(map[string]string{"app": "client"})})))
	})
	if total := sum(got); total != 0 {
		t.Errorf("a policy of web's own peers for pods not on n1: %d elements changed (%v), want 0", total, got)
	}

	// A policy naming a new team, though it selects no pod of n1: the
	// team's members move into the ids map (each an add, the team's pods
	// being in no other standing selector).
	set(tu.Namespace("b-1", map[string]string{"team": "b"}))
	for j := range 5 {
		set(tu.Pod("b-1", fmt.Sprintf("p%d", j), "n2", nil, []string{fmt.Sprintf("10.0.7.%d", j+1)}))
	}
	e = NewEngine(c, "n1")
	e.TakeTouched()
	shadow = e.Ruleset().Clone()
	got = step("new selector", func() error {
		return e.Set(tu.Policy("web", "from-team-b", map[string]string{"app": "none"},
			tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.NSPeer(map[string]string{"team": "b"}, nil)})))
	})
	if got[ids] != 5 {
		t.Errorf("a policy naming team b: %d elements of %s changed, want its 5 members", got[ids], ids)
	}

	// Deleting the team-a policy: its members leave the ids map (12), and
	// w1, no longer isolated, loses its dispatch element (1; the team's
	// identity map goes whole, and w1 stays in the local-pods set).
	got = step("policy delete", func() error { return e.Delete("NetworkPolicy", "web", "from-team-a") })
	if got[ids] != members {
		t.Errorf("policy delete: %d elements of %s changed, want the %d members", got[ids], ids, members)
	}
	if total := sum(got); total != members+1 {
		t.Errorf("policy delete: %d elements changed (%v), want %d", total, got, members+1)
	}
}

// elemsBySet counts a transaction's added and deleted elements per set.
func elemsBySet(tx *nft.Transaction) map[string]int {
	out := map[string]int{}
	for _, op := range tx.Ops {
		if op.Kind == nft.OpAddElements || op.Kind == nft.OpDeleteElements {
			out[op.Name] += len(op.Elems)
		}
	}
	return out
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
