package bench

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// TestAgentRunEvents runs the suite's agent on the fake API server through
// a round of events, as eventStream does: each write reaches the agent and
// is one transaction. The fake API server stores what it is given, without
// the field management of NewClientset's tracker, whose work inside every
// create and update was timed as the agent's compute.
func TestAgentRunEvents(t *testing.T) {
	c := gen.Generate(gen.S, 1)
	run := newAgentRun(c.Objects(), nft.NewFake())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run.start(ctx)
	defer run.stop()
	if _, err := run.kernel.next(ctx, time.Minute); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	events := c.Events(gen.NodeUnderTest, 1)
	if len(events) != len(gen.EventKinds()) {
		t.Fatalf("%d events in a round, want %d", len(events), len(gen.EventKinds()))
	}
	for _, e := range events {
		if err := run.apply(ctx, e); err != nil {
			t.Fatal(err)
		}
		got, err := run.kernel.next(ctx, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", e.Kind, err)
		}
		if got.Tx.Empty() {
			t.Errorf("%s: empty transaction", e.Kind)
		}
		if e.Op == gen.Delete {
			continue
		}
		k, _ := model.KindOf(e.Object)
		m := e.Object.(metav1.Object)
		stored, err := run.client.Tracker().Get(k.Resource, m.GetNamespace(), m.GetName())
		if err != nil {
			t.Fatalf("%s: %v", e.Kind, err)
		}
		if mf := stored.(metav1.Object).GetManagedFields(); len(mf) != 0 {
			t.Errorf("%s: the fake API server computed %d managedFields entries in the write", e.Kind, len(mf))
		}
	}
}

// TestAgentKernelCountsBytes: the agent in the suite reads the batch size
// the netlink kernel counted (as on a node), and a kernel without the count
// is not given one.
func TestAgentKernelCountsBytes(t *testing.T) {
	if _, ok := newTimedKernel(nft.NewNetlink(-1)).agentKernel().(batchCounter); !ok {
		t.Error("the netlink kernel's LastBatchBytes is hidden from the agent")
	}
	if _, ok := newTimedKernel(nft.NewFake()).agentKernel().(batchCounter); ok {
		t.Error("the fake kernel gained a LastBatchBytes")
	}
}

// TestBurst: a burst of pod creations as quick as the fake API server takes
// them reaches the agent whole. Unthrottled, its writes outran the agent's
// informers and the fake watcher panicked ("channel full").
func TestBurst(t *testing.T) {
	c := gen.Generate(gen.S, 1)
	run := newAgentRun(c.Objects(), nft.NewFake())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run.start(ctx)
	defer run.stop()
	if _, err := run.kernel.next(ctx, time.Minute); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	if _, err := burst(ctx, run, c.Burst(BurstPods)); err != nil {
		t.Fatal(err)
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	if len(run.watchers) == 0 {
		t.Error("no watcher of the fake API server recorded: burst was not throttled")
	}
}
