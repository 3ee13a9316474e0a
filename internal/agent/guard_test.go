package agent

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// guardLab starts an agent on a Fake kernel (seeded with seed, if any)
// whose list of pods fails until the returned release is called: the first
// sync cannot happen before. (Failing, not blocking: the fake clientset
// runs its reactors under one lock, so a blocked list would block the
// Node informer too.)
func guardLab(t *testing.T, opts model.Options, seed *nft.Ruleset) (*Agent, *nft.Fake, func()) {
	t.Helper()
	client := fake.NewClientset(guardObjects()...)
	gate := make(chan struct{})
	client.PrependReactor("list", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		select {
		case <-gate:
			return false, nil, nil // the default tracker answers
		default:
			return true, nil, errors.New("the API server is slow today")
		}
	})
	k := nft.NewFake()
	if seed != nil {
		k.Seed(seed)
	}
	a := New(Config{NodeName: node, Kernel: k, ResyncInterval: time.Hour, Model: opts}, client)
	ctx, cancel := context.WithCancel(context.Background())
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	runAgent(t, ctx, cancel, a, release)
	return a, k, release
}

// guardObjects are basic() and this node, with pod CIDRs.
func guardObjects() []runtime.Object {
	return append(basic(), &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: node},
		Spec: v1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24", "fd00:10:244:1::/64"}}})
}

// TestStartupGuardDeniesPodCIDRsUntilFirstSync: with no table, while the
// pods are still being listed, the kernel already holds the ruleset of the
// node alone: its pod CIDRs, no pod known, so the server is dropped (traced
// on that ruleset; the Fake reads rules back by their IDs only). The first
// sync then programs exactly the whole ruleset, where the client's
// connection to the server is what its policy says.
func TestStartupGuardDeniesPodCIDRsUntilFirstSync(t *testing.T) {
	a, k, release := guardLab(t, model.Options{}, nil)
	var got *nft.Ruleset
	eventually(t, "the startup table", func() bool { got, _ = k.Dump(context.Background()); return got != nil })
	if n := a.Stats().StartupGuards; n != 1 {
		t.Errorf("StartupGuards = %d, want 1", n)
	}
	if a.Ready() {
		t.Error("ready before the first sync")
	}
	alone, all := model.NewCluster(), model.NewCluster()
	for _, o := range guardObjects() {
		if err := all.Set(o); err != nil {
			t.Fatal(err)
		}
		if n, ok := o.(*v1.Node); ok {
			_ = alone.Set(n)
		}
	}
	guard := compile.Node(alone, node)
	if tx := diff.Diff(got, guard); !tx.Empty() {
		t.Errorf("before the first sync the kernel differs from the node's skeleton by:\n%s", tx)
	}
	server := nft.Packet{Src: netip.MustParseAddr("10.244.2.10"), Dst: netip.MustParseAddr("10.244.1.10"), Proto: 6, Port: 8080, CtState: "new"}
	if res, err := guard.Trace(compile.ChainForwardIngress, server); err != nil || !res.Dropped {
		t.Errorf("before the first sync, a new connection to the server: %+v %v; want dropped", res, err)
	}
	release()
	eventually(t, "the first sync", a.Ready)
	got, _ = k.Dump(context.Background())
	want := compile.Node(all, node)
	if tx := diff.Diff(got, want); !tx.Empty() {
		t.Errorf("after the first sync the kernel differs from the desired ruleset by:\n%s", tx)
	}
	if res, err := want.Trace(compile.ChainForwardIngress, server); err != nil || !res.Accepted {
		t.Errorf("after the first sync, the client's connection to the server: %+v %v; want accepted (its policy allows it)", res, err)
	}
}

// TestStartupGuardOnlyWithoutTable: a table left by a previous agent is
// adopted, not replaced by the guard; with --protect-new-pods=false no
// guard is made either.
func TestStartupGuardOnlyWithoutTable(t *testing.T) {
	prev := nft.NewRuleset()
	prev.AddChain(&nft.Chain{Name: compile.ChainForwardEgress, Hook: &nft.Hook{Hook: "forward", Priority: compile.PriorityEgress}})
	for _, tc := range []struct {
		name string
		opts model.Options
		seed *nft.Ruleset
	}{{"table left by an agent", model.Options{}, prev}, {"protection off", model.Options{OpenUnknown: true}, nil}} {
		t.Run(tc.name, func(t *testing.T) {
			a, k, release := guardLab(t, tc.opts, tc.seed)
			time.Sleep(300 * time.Millisecond) // the Node informer has long synced
			rs, _ := k.Dump(context.Background())
			if tc.seed == nil && rs != nil {
				t.Errorf("a table before the first sync with the protection off")
			}
			if tc.seed != nil && len(rs.Sets) != 0 {
				t.Errorf("the previous table was changed before the first sync: %d sets", len(rs.Sets))
			}
			release()
			eventually(t, "the first sync", a.Ready)
			if got := a.Stats().StartupGuards; got != 0 {
				t.Errorf("StartupGuards = %d, want 0", got)
			}
		})
	}
}
