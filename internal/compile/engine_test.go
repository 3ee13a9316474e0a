package compile

import (
	"context"
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
)

// TestIncrementalEqualsFromScratch applies random event sequences to an
// engine and checks, after every event, that its ruleset is exactly what a
// from-scratch compile of the same cluster gives, that the partial diff of
// what the event touched equals the full diff, and that a kernel (the Fake,
// which checks references as the kernel does) accepts it and then holds
// the new ruleset.
func TestIncrementalEqualsFromScratch(t *testing.T) {
	seeds, steps := 150, 40
	if testing.Short() {
		seeds = 25
	}
	for seed := range tu.Seeds(t, int64(seeds)) {
		r := rand.New(rand.NewSource(seed))
		w := newWorld(t, r)
		for _, node := range []string{"n1", "n2"} {
			e := NewEngine(w.cluster(t), node)
			e.TakeTouched()
			kernel := nft.NewFake()
			kernel.Seed(e.Ruleset())
			shadow := e.Ruleset().Clone()
			w2 := w.clone(r.Int63())
			for step := 0; step < steps; step++ {
				ev := w2.event()
				if err := ev.apply(e); err != nil {
					t.Fatalf("seed %d node %s step %d %s: %v", seed, node, step, ev, err)
				}
				fresh := NewEngine(w2.cluster(t), node)
				want := fresh.Ruleset().Text()
				if got := e.Ruleset().Text(); got != want {
					t.Fatalf("seed %d node %s step %d %s: incremental ruleset differs from a full compile (-full +incremental):\n%s",
						seed, node, step, ev, cmp.Diff(want, got))
				}
				// What the ruleset does not show: the live sets and their
				// references, the sets kept filled (a leak of either would
				// pass every check above).
				if got, want := liveSets(e), liveSets(fresh); !maps.Equal(got, want) {
					t.Fatalf("seed %d node %s step %d %s: the engine's live sets differ from a full compile's (-full +incremental):\n%s",
						seed, node, step, ev, cmp.Diff(want, got))
				}
				touched := e.TakeTouched()
				// The records of peer addresses (their ids-map elements
				// are views of them): none left behind by an address that
				// left every set.
				fresh.TakeTouched()
				if got, want := peerAddrs(e), peerAddrs(fresh); !slices.Equal(got, want) {
					t.Fatalf("seed %d node %s step %d %s: the engine's peer address records differ from a full compile's (-full +incremental):\n%s",
						seed, node, step, ev, cmp.Diff(want, got))
				}
				partial := diff.Partial(shadow, e.Ruleset(), touched)
				full := diff.Diff(shadow, e.Ruleset())
				if partial.String() != full.String() {
					t.Fatalf("seed %d node %s step %d %s: partial diff differs from the full diff (-full +partial):\n%s",
						seed, node, step, ev, cmp.Diff(full.String(), partial.String()))
				}
				if err := kernel.Apply(context.Background(), partial); err != nil {
					t.Fatalf("seed %d node %s step %d %s: the kernel refuses the transaction: %v\n%s", seed, node, step, ev, err, partial)
				}
				shadow.ApplyOps(partial)
				if d := diff.Diff(shadow, e.Ruleset()); !d.Empty() {
					t.Fatalf("seed %d node %s step %d %s: shadow after the transaction still differs:\n%s", seed, node, step, ev, d)
				}
				held, _ := kernel.Dump(context.Background())
				if d := diff.Diff(held, e.Ruleset()); !d.Empty() {
					t.Fatalf("seed %d node %s step %d %s: the kernel holds something else:\n%s", seed, node, step, ev, d)
				}
			}
		}
	}
}

// peerAddrs lists the engine's peer address records, sorted.
func peerAddrs(e *Engine) []string {
	var out []string
	for a, pa := range e.addrs {
		out = append(out, fmt.Sprintf("%s in %d sets", a, len(pa.sets)))
	}
	slices.Sort(out)
	return out
}

// liveSets is the engine's live sets, each with its references and, for a
// set kept filled, how many policy rules keep it.
func liveSets(e *Engine) map[string]string {
	out := map[string]string{}
	for name, ls := range e.sets {
		out[name] = fmt.Sprintf("refs %d", ls.refs)
		if k := e.kept[name]; k != nil {
			out[name] += fmt.Sprintf(", kept by %d", k.refs)
		}
	}
	return out
}

// world is a random cluster as API objects, and the events that change it.
type world struct {
	r       *rand.Rand
	objects map[string]any // by "Kind/ns/name"
	next    int
}

func newWorld(t *testing.T, r *rand.Rand) *world {
	w := &world{r: r, objects: map[string]any{}, next: 100}
	for _, o := range randomObjects(r) {
		w.put(o)
	}
	return w
}

func (w *world) clone(seed int64) *world {
	out := &world{r: rand.New(rand.NewSource(seed)), objects: map[string]any{}, next: w.next}
	for k, v := range w.objects {
		out.objects[k] = v
	}
	return out
}

func (w *world) put(o any) {
	kind, ns, name, _ := model.RefOf(o)
	w.objects[kind+"/"+ns+"/"+name] = o
}

// cluster builds a fresh model of the world.
func (w *world) cluster(t *testing.T) *model.Cluster {
	c := model.NewCluster()
	for _, o := range w.objects {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// event is one change: an object set, or deleted when obj is nil.
type event struct {
	what           string
	kind, ns, name string
	obj            any
}

func (ev event) String() string { return fmt.Sprintf("%s %s/%s/%s", ev.what, ev.kind, ev.ns, ev.name) }

func (ev event) apply(e *Engine) error {
	if ev.obj == nil {
		return e.Delete(ev.kind, ev.ns, ev.name)
	}
	return e.Set(ev.obj)
}

func (w *world) pick(kind string) (any, bool) {
	var keys []string
	for k := range w.objects {
		if strings.HasPrefix(k, kind+"/") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, false
	}
	sort.Strings(keys)
	return w.objects[keys[w.r.Intn(len(keys))]], true
}

func (w *world) set(what string, o any) event {
	w.put(o)
	kind, ns, name, _ := model.RefOf(o)
	return event{what: what, kind: kind, ns: ns, name: name, obj: o}
}

func (w *world) del(o any) event {
	kind, ns, name, _ := model.RefOf(o)
	delete(w.objects, kind+"/"+ns+"/"+name)
	return event{what: "delete", kind: kind, ns: ns, name: name}
}

// event makes a random change and returns it; the world already holds it.
func (w *world) event() event {
	r := w.r
	w.next++
	for {
		switch r.Intn(15) {
		case 0:
			return w.set("add pod", randomPod(r, fmt.Sprintf("new%d", w.next), w.next))
		case 1:
			if o, ok := w.pick("Pod"); ok {
				return w.del(o)
			}
		case 2, 3:
			if o, ok := w.pick("Pod"); ok {
				p := o.(*v1.Pod).DeepCopy()
				p.Labels = randomLabels(r)
				return w.set("relabel", p)
			}
		case 4:
			if o, ok := w.pick("Pod"); ok {
				p := randomPod(r, o.(*v1.Pod).Name, w.next) // new addresses: no two pods share one
				p.Namespace = o.(*v1.Pod).Namespace
				return w.set("replace pod (move, phase, addresses, ports)", p)
			}
		case 5:
			if o, ok := w.pick("Namespace"); ok {
				ns := o.(*v1.Namespace).DeepCopy()
				ns.Labels = randomLabels(r)
				return w.set("relabel", ns)
			}
		case 6:
			name := []string{"x", "y", "z", "w"}[r.Intn(4)]
			if o, ok := w.objects["Namespace//"+name]; ok && r.Intn(2) == 0 {
				return w.del(o)
			}
			return w.set("add namespace", tu.Namespace(name, randomLabels(r)))
		case 7:
			name := []string{"n1", "n2", "n3"}[r.Intn(3)]
			if o, ok := w.objects["Node//"+name]; ok && r.Intn(3) == 0 {
				return w.del(o)
			}
			return w.set("set node", randomNode(r, name, 13))
		case 8, 9:
			name := fmt.Sprintf("pol%d", r.Intn(4))
			if o, ok := w.pick("NetworkPolicy"); ok && r.Intn(3) == 0 {
				return w.del(o)
			}
			np := randomPolicy(r, []string{"x", "y", "z"}[r.Intn(3)], name)
			if r.Intn(8) == 0 { // invalid: it must narrow, never widen
				np.Spec.PodSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Bogus"}}
			}
			return w.set("set policy", np)
		case 10:
			if o, ok := w.pick("AdminNetworkPolicy"); ok && r.Intn(3) == 0 {
				return w.del(o)
			}
			return w.set("set anp", randomANP(r, fmt.Sprintf("anp%d", r.Intn(3))))
		case 11:
			if o, ok := w.pick("BaselineAdminNetworkPolicy"); ok && r.Intn(3) == 0 {
				return w.del(o)
			}
			return w.set("set banp", randomBANP(r))
		case 12:
			if o, ok := w.pick("ClusterNetworkPolicy"); ok && r.Intn(3) == 0 {
				return w.del(o)
			}
			return w.set("set cnp", randomCNP(r, fmt.Sprintf("cnp%d", r.Intn(3))))
		case 13:
			if o, ok := w.pick("AdminNetworkPolicy"); ok {
				p := o.(*v1alpha1.AdminNetworkPolicy).DeepCopy()
				p.Spec.Priority = int32(r.Intn(3))
				return w.set("reprioritise anp", p)
			}
		case 14:
			// An address reused before its previous pod is gone: two pods
			// list it, and its owner (model.Cluster.Owns) may change.
			if o, ok := w.pick("Pod"); ok {
				p := randomPod(r, fmt.Sprintf("twin%d", r.Intn(3)), w.next)
				p.Namespace = []string{"x", "y", "z"}[r.Intn(3)]
				p.Status.PodIPs = o.(*v1.Pod).DeepCopy().Status.PodIPs
				return w.set("add a pod with another's addresses", p)
			}
		}
	}
}

// twoPods is a cluster of namespace x with pod a (app=a) on n1 and pod b
// (app=b) on n2, and a must that fails the test on an error.
func twoPods(t *testing.T) (*model.Cluster, func(error)) {
	t.Helper()
	c := model.NewCluster()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Set(tu.Namespace("x", nil)))
	must(c.Set(tu.Pod("x", "a", "n1", m{"app": "a"}, []string{"10.0.0.2"})))
	must(c.Set(tu.Pod("x", "b", "n2", m{"app": "b"}, []string{"10.0.0.3"})))
	return c, must
}

// TestEngineMutationIsCaught checks that the property test can fail: an
// engine whose pod index misses one update must be told apart from a full
// compile.
func TestEngineMutationIsCaught(t *testing.T) {
	c, must := twoPods(t)
	must(c.Set(tu.Policy("x", "p", map[string]string{"app": "a"}, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(map[string]string{"app": "b"})}))))
	relabel := tu.Pod("x", "b", "n2", map[string]string{"app": "c"}, []string{"10.0.0.3"})

	// Through the engine, the relabel takes b's address out of the peer set.
	seen := NewEngine(c, "n1")
	must(seen.Set(relabel))
	if got, want := seen.Ruleset().Text(), Node(c, "n1").Text(); got != want {
		t.Fatalf("after the engine saw the change:\n%s", cmp.Diff(want, got))
	}

	// Behind the engine's back (an index update skipped), the peer set
	// keeps it, and the comparison with a full compile says so.
	must(c.Set(tu.Pod("x", "b", "n2", map[string]string{"app": "b"}, []string{"10.0.0.3"})))
	missed := NewEngine(c, "n1")
	must(c.Set(relabel))
	if missed.Ruleset().Text() == Node(c, "n1").Text() {
		t.Fatal("a change the engine did not see went unnoticed")
	}
}

// TestPeerNamesForgetsOnlyTheChangedPolicy: the cache of rules' peer set
// names drops a changed policy's entries, and only those. Updating one
// policy many times leaves the cache the size it was (no entry for a rule
// list that is gone), and the other policy's entry is still the one made
// before the updates (not named again).
func TestPeerNamesForgetsOnlyTheChangedPolicy(t *testing.T) {
	c, must := twoPods(t)
	must(c.Set(tu.Policy("x", "stays", m{"app": "a"}, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(m{"app": "b"})}))))
	policy := func(app string) *networkingv1.NetworkPolicy {
		return tu.Policy("x", "changes", m{"app": "a"}, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(m{"app": app})}))
	}
	must(c.Set(policy("b")))
	e := NewEngine(c, "n1")
	stays := c.Policies["x/stays"].Rules[model.Ingress][0].Peers
	key := peerKey{&stays[0], len(stays), model.Ingress}
	before, ok := e.peerNames[key]
	if !ok {
		t.Fatal("the unchanged policy's rule has no cached names after the build")
	}
	size := len(e.peerNames)
	for i := range 20 {
		must(e.Set(policy(fmt.Sprintf("b%d", i%3))))
	}
	must(e.Set(policy("b")))
	if got := len(e.peerNames); got != size {
		t.Errorf("cache holds %d entries after 21 updates of one policy, %d before", got, size)
	}
	after, ok := e.peerNames[key]
	if !ok || &after[0] != &before[0] {
		t.Errorf("the unchanged policy's entry was dropped or made again")
	}
	if got, want := e.Ruleset().Text(), Node(c, "n1").Text(); got != want {
		t.Fatalf("engine differs from a full compile:\n%s", cmp.Diff(want, got))
	}
}

// TestSetIPVS turns the output chains on and off in a running engine: each
// time the ruleset is what a full compile with that option gives, and the
// partial diff, the full one: two chains added, then two deleted.
func TestSetIPVS(t *testing.T) {
	c := goldenCluster(t)
	e := NewEngine(c, "node-1")
	e.TakeTouched()
	shadow := e.Ruleset().Clone()
	for _, on := range []bool{true, false} {
		e.SetIPVS(on)
		if got, want := e.Ruleset().Text(), NodeWith(c, "node-1", model.Options{IPVS: on}).Text(); got != want {
			t.Fatalf("IPVS %v: differs from a full compile (-full +incremental):\n%s", on, cmp.Diff(want, got))
		}
		partial := diff.Partial(shadow, e.Ruleset(), e.TakeTouched())
		if full := diff.Diff(shadow, e.Ruleset()); partial.String() != full.String() {
			t.Fatalf("IPVS %v: partial diff differs from the full diff (-full +partial):\n%s", on, cmp.Diff(full.String(), partial.String()))
		}
		// On: both chains and their 8 rules each (established, the
		// node's own, two dispatch maps, the pods not yet known's log and
		// drop in two families); off: both chains flushed and deleted.
		want := diff.Counts{Ops: 2 * 2}
		if on {
			want = diff.Counts{Ops: 2 + 2*8}
		}
		if got := diff.Count(partial); got.Ops != want.Ops {
			t.Errorf("IPVS %v: %d operations, want %d:\n%s", on, got.Ops, want.Ops, partial)
		}
		shadow.ApplyOps(partial)
	}
}

// TestSetIPVSInABridgeTable: output chains added to a secondary network's
// table start, as its other base chains, with the guard for its bridge.
func TestSetIPVSInABridgeTable(t *testing.T) {
	opts := model.Options{Bridge: "br0", OpenUnknown: true}
	e := NewEngineWith(goldenCluster(t), "node-1", opts)
	e.SetIPVS(true)
	for _, name := range []string{ChainForwardEgress, ChainOutputEgress, ChainOutputIngress} {
		first := e.Ruleset().Chains[name].Rules[0]
		if m, ok := first.Matches[0].(nft.MatchIfname); !ok || m.Name != "br0" || !m.Not || m.Out != (name != ChainForwardEgress) {
			t.Errorf("%s starts with %+v, not the guard of br0", name, first)
		}
	}
}
