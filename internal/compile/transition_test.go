package compile

import (
	"context"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// transitionSeeds is how many random clusters the transition tests start
// from. Each gives, on each of two nodes, a walk of four transitions: to an
// unrelated cluster and back, to a mutated copy and back, and a replacement
// of the whole table by the unrelated cluster's.
const transitionSeeds = 100

// walk is a sequence of rulesets one node's agent goes through. The first
// is loaded as it is; each next one is reached with the differ's
// transaction from the one before.
type walk struct {
	name  string
	steps []step // steps[0].to is the start
}

type step struct {
	what string
	to   *nft.Ruleset
	// replace: reach to with diff.Replace, the agent's fallback, rather
	// than with diff.Diff.
	replace bool
}

// randomWalks pairs random clusters: each with an unrelated one (everything
// appears and disappears) and with a copy changed in a few places (a
// subject that selects nothing, a policy or pod gone or added, a relabel),
// in both directions, on both nodes.
func randomWalks(t *testing.T) []walk {
	var out []walk
	for seed := range tu.Seeds(t, transitionSeeds) {
		a := randomCluster(t, rand.New(rand.NewSource(seed)))
		other := randomCluster(t, rand.New(rand.NewSource(seed+100000)))
		mutated := randomCluster(t, rand.New(rand.NewSource(seed)))
		changes := fmt.Sprint(mutate(t, rand.New(rand.NewSource(-seed)), mutated))
		for _, n := range []string{"n1", "n2"} {
			ra, ro := Node(a, n), Node(other, n)
			out = append(out, walk{name: fmt.Sprintf("seed %d node %s", seed, n), steps: []step{
				{what: "start", to: ra},
				{what: "to an unrelated cluster", to: ro},
				{what: "back", to: ra},
				{what: "after " + changes, to: Node(mutated, n)},
				{what: "back", to: ra},
				{what: "replaced by the unrelated cluster's", to: ro, replace: true},
			}})
		}
	}
	return out
}

// mutate changes c in one to three places and says how.
func mutate(t *testing.T, r *rand.Rand, c *model.Cluster) []string {
	var done []string
	for i := 1 + r.Intn(3); i > 0; i-- {
		done = append(done, mutateOnce(t, r, c))
	}
	return done
}

func mutateOnce(t *testing.T, r *rand.Rand, c *model.Cluster) string {
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	pods, tiers, policies := c.SortedPods(), sortedTierPolicies(c), c.SortedPolicies()
	switch k := r.Intn(8); {
	case k == 0 && len(tiers) > 0:
		// The tracker's case: a subject that no longer selects any pod.
		p := tiers[r.Intn(len(tiers))]
		p.NamespaceSelector = labels.Nothing()
		return "subject of " + p.Key() + " selects nothing"
	case k == 1 && len(tiers) > 0:
		p := tiers[r.Intn(len(tiers))]
		must(c.Delete(p.Kind, "", p.Name))
		return "delete " + p.Key()
	case k == 2 && len(policies) > 0:
		p := policies[r.Intn(len(policies))]
		must(c.Delete("NetworkPolicy", p.Namespace, p.Name))
		return "delete NetworkPolicy " + p.Key()
	case k == 3:
		must(c.Set(randomANP(r, "anp-new")))
		return "add AdminNetworkPolicy anp-new"
	case k == 4:
		must(c.Set(randomCNP(r, "cnp-new")))
		return "add ClusterNetworkPolicy cnp-new"
	case k == 5:
		must(c.Set(randomBANP(r)))
		return "replace the BaselineAdminNetworkPolicy"
	case k == 6 && len(pods) > 0:
		p := pods[r.Intn(len(pods))]
		must(c.Delete("Pod", p.Namespace, p.Name))
		return "delete pod " + p.Key()
	case len(pods) > 0:
		p := pods[r.Intn(len(pods))]
		p.Labels = randomLabels(r)
		p.Node = []string{"n1", "n2"}[r.Intn(2)]
		return "relabel or move pod " + p.Key()
	}
	return "nothing"
}

func sortedTierPolicies(c *model.Cluster) []*model.TierPolicy {
	return append(c.SortedTier(model.TierAdmin), c.SortedTier(model.TierBaseline)...)
}

// TestTransitionsOnFake: along every random walk the differ's transactions
// commit on the Fake kernel, and after each the Fake holds exactly the
// ruleset wanted.
func TestTransitionsOnFake(t *testing.T) {
	for _, w := range randomWalks(t) {
		k := nft.NewFake()
		k.Seed(w.steps[0].to)
		for i := 1; i < len(w.steps); i++ {
			applyAndCheck(t, w, i, k)
		}
	}
}

// TestTransitionsOnKernel is the same on the real kernel, in a throwaway
// namespace, in step with the Fake: the start is loaded with `nft -f` (as
// a previous agent or a person would have left it), the transactions go
// over netlink, and after each the kernel holds what the Fake holds.
func TestTransitionsOnKernel(t *testing.T) {
	ns := tu.NetNS(t) // gated by tu.NeedKernel
	f, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kernel := nft.NewNetlink(int(f.Fd()))
	for _, w := range randomWalks(t) {
		// `table` first makes the delete valid whether or not the table
		// exists; the three are one nft transaction.
		script := "table inet nftpolicy\ndelete table inet nftpolicy\n" + w.steps[0].to.Text()
		if out, err := tu.NftIn(t, ns, script, "-f", "-"); err != nil {
			t.Fatalf("%s: loading the start: %v\n%s", w.name, err, out)
		}
		fake := nft.NewFake()
		fake.Seed(w.steps[0].to)
		for i := 1; i < len(w.steps); i++ {
			got := applyAndCheck(t, w, i, kernel)
			want := applyAndCheck(t, w, i, fake)
			if d := cmp.Diff(want, got, rulesetCmp...); d != "" {
				t.Fatalf("%s, step %d (%s): the kernel and the Fake differ (-fake +kernel):\n%s", w.name, i, w.steps[i].what, d)
			}
		}
	}
}

var rulesetCmp = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

// applyAndCheck applies the transaction of step i of w to k, which holds
// step i-1, and checks that k then holds step i: nothing is left to change.
// It returns k's read-back.
func applyAndCheck(t *testing.T, w walk, i int, k nft.Kernel) *nft.Ruleset {
	t.Helper()
	ctx := context.Background()
	tx := diff.Diff(w.steps[i-1].to, w.steps[i].to)
	if w.steps[i].replace {
		tx = diff.Replace(w.steps[i].to)
	}
	if err := k.Apply(ctx, tx); err != nil {
		t.Fatalf("%s, step %d (%s): %v\n%s", w.name, i, w.steps[i].what, err, tx)
	}
	got, err := k.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rest := diff.Diff(got, w.steps[i].to); !rest.Empty() {
		t.Fatalf("%s, step %d (%s): after the transaction the kernel still differs by:\n%s\ntransaction:\n%s", w.name, i, w.steps[i].what, rest, tx)
	}
	return got
}
