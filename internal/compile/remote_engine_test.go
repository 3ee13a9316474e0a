package compile

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestRemoteRelabelCostsTheSameAtAnySize: a remote pod's relabel is an
// element operation whatever the number of remote pods, as a local one is.
func TestRemoteRelabelCostsTheSameAtAnySize(t *testing.T) {
	two := model.RemoteName("two", "web")
	cost := map[int]diff.Counts{}
	for _, n := range []int{10, 1000} {
		c := model.NewCluster()
		objs := []any{
			tu.Namespace("x", nil),
			tu.Namespace(two, nil),
			tu.Pod("x", "db", "n1", map[string]string{"app": "db"}, []string{"10.0.0.2"}),
			tu.Policy("x", "db", map[string]string{"app": "db"}, tu.Ingress([]networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{model.ClusterLabel: "two"}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}},
			}})),
		}
		for i := 0; i < n; i++ {
			objs = append(objs, tu.Pod(two, fmt.Sprintf("p%d", i), "n1", map[string]string{"role": "client"}, []string{fmt.Sprintf("10.5.%d.%d", i/250, 1+i%250)}))
		}
		for _, o := range objs {
			if err := c.Set(o); err != nil {
				t.Fatal(err)
			}
		}
		e := NewEngine(c, "n1")
		e.TakeTouched()
		shadow := e.Ruleset().Clone()
		if err := e.Set(tu.Pod(two, "p0", "n1", map[string]string{"role": "other"}, []string{"10.5.0.1"})); err != nil {
			t.Fatal(err)
		}
		tx := diff.Partial(shadow, e.Ruleset(), e.TakeTouched())
		if full := diff.Diff(shadow, e.Ruleset()); full.String() != tx.String() {
			t.Fatalf("partial diff differs from the full one:\n%s\n%s", tx, full)
		}
		cost[n] = diff.Count(tx)
	}
	// The pod leaves the ingress ids map (peer identities, identity.go;
	// no egress rule names it, so it has no egress identity); the
	// identity itself stays, the other clients still have it. The peer
	// set it leaves is not in the kernel: no rule reads it.
	if want := (diff.Counts{Ops: 1, Elements: 1}); cost[10] != want || cost[1000] != want {
		t.Errorf("a remote relabel costs %+v with 10 remote pods and %+v with 1000, want %+v", cost[10], cost[1000], want)
	}
}

// TestRemoteEventsIncremental: random remote pods, namespaces and nodes
// set and deleted one by one through the engine give, after each event,
// exactly what a full compile gives, with a partial diff equal to the full
// one.
func TestRemoteEventsIncremental(t *testing.T) {
	for seed := range tu.Seeds(t, 40) {
		r := rand.New(rand.NewSource(seed))
		c := model.NewCluster()
		c.ClusterSet = model.ClusterSet{LocalID: "one", Sameness: r.Intn(3) == 0}
		objs := randomObjects(r)
		for _, o := range objs {
			withClusterKeys(r, reflect.ValueOf(o))
		}
		for _, o := range objs {
			if err := c.Set(o); err != nil {
				t.Fatal(err)
			}
		}
		e := NewEngine(c, "n1")
		e.TakeTouched()
		shadow := e.Ruleset().Clone()
		events := randomRemote(r)
		for round := 0; round < 3; round++ {
			events = append(events, randomRemote(r)...)
		}
		for i, ev := range events {
			var err error
			if r.Intn(4) == 0 {
				kind, ns, name, _ := model.RefOf(ev)
				err = e.Delete(kind, ns, name)
			} else {
				err = e.Set(ev)
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Node(c, "n1").Text() // from scratch, on the model as it is now
			if got := e.Ruleset().Text(); got != want {
				t.Fatalf("seed %d event %d: incremental ruleset differs from a full compile", seed, i)
			}
			tx := diff.Partial(shadow, e.Ruleset(), e.TakeTouched())
			if d := diff.Diff(shadow, e.Ruleset()); d.String() != tx.String() {
				t.Fatalf("seed %d event %d: partial diff differs from the full one", seed, i)
			}
			shadow.ApplyOps(tx)
		}
	}
}
