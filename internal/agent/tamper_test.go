package agent

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// netnsKernel starts an agent on the netlink kernel of a throwaway
// namespace, with a 1 s coalescing period and a 1 h resync, watching for
// tampering when watch is set.
func netnsKernel(t *testing.T, watch bool) (*harness, string, *nft.Netlink) {
	ns := tu.NetNS(t)
	f, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	reader := nft.NewNetlink(int(f.Fd()))
	t.Cleanup(func() { reader.Close() })
	h := start(t, func(c *Config) {
		k := nft.NewNetlink(int(f.Fd()))
		c.Kernel = k
		c.MinSyncInterval = time.Second
		if watch {
			c.Tamper = nft.NewMonitor(int(f.Fd()), k.SentFrom)
		}
	}, basic()...)
	h.wait()
	return h, ns, reader
}

// untilRepaired polls the kernel until it holds the desired ruleset again,
// and returns how long that took; it gives up after limit.
func untilRepaired(t *testing.T, h *harness, k *nft.Netlink, limit time.Duration) (time.Duration, bool) {
	t.Helper()
	want := h.desired()
	start := time.Now()
	for time.Since(start) < limit {
		got, err := k.Dump(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got != nil && diff.Diff(got, want).Empty() {
			return time.Since(start), true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return limit, false
}

// tamperings are what someone with nft might do to the table, each of
// which opens traffic: the table gone, the server's dispatch element gone
// (it is no longer isolated), its class chain emptied (no final drop).
func tamperings(t *testing.T, h *harness) []string {
	class := ""
	for name := range h.desired().Chains {
		if strings.HasPrefix(name, "ingress-class-") {
			class = name
		}
	}
	if class == "" {
		t.Fatal("no ingress class chain in the desired ruleset")
	}
	return []string{
		"delete table inet " + nft.TableName,
		"delete element inet " + nft.TableName + " ingress-pods-v4 { 10.244.1.10 }",
		"flush chain inet " + nft.TableName + " " + class,
	}
}

// TestTamperingIsRepairedAtOnce: with a 1 h resync, every tampering with
// the table is undone well under a second after the nft command returns,
// and the agent's own transactions trigger no repair.
func TestTamperingIsRepairedAtOnce(t *testing.T) {
	h, ns, reader := netnsKernel(t, true)
	// Let the first sync's own events pass: they must not count as drift.
	time.Sleep(200 * time.Millisecond)
	before := h.agent.Stats()
	if before.Drift != 0 || before.FullSyncs != 1 {
		t.Fatalf("after the first sync: %+v, want 1 full sync and no drift (our own batch is not tampering)", before)
	}
	for i, cmd := range tamperings(t, h) {
		if out, err := tu.NftIn(t, ns, "", strings.Fields(cmd)...); err != nil {
			t.Fatalf("nft %s: %v: %s", cmd, err, out)
		}
		took, ok := untilRepaired(t, h, reader, 2*time.Second)
		if !ok {
			t.Fatalf("%s: not repaired within 2 s (stats %+v)", cmd, h.agent.Stats())
		}
		t.Logf("%s: repaired %v after nft returned", cmd, took)
		if took > 100*time.Millisecond {
			t.Errorf("%s: repaired after %v, want within 100 ms", cmd, took)
		}
		// The kernel is repaired a moment before the sync ends and counts
		// itself (its drift is counted before it applies).
		s := h.agent.Stats()
		for deadline := time.Now().Add(time.Second); s.FullSyncs < i+2 && time.Now().Before(deadline); s = h.agent.Stats() {
			time.Sleep(time.Millisecond)
		}
		if s.Drift != i+1 || s.FullSyncs != i+2 {
			t.Errorf("after %s: %d drifts in %d full syncs, want %d in %d", cmd, s.Drift, s.FullSyncs, i+1, i+2)
		}
	}
	// The repairs were the agent's own batches: no further repair follows.
	time.Sleep(300 * time.Millisecond)
	if s := h.agent.Stats(); s.FullSyncs != 4 {
		t.Errorf("%d full syncs after the repairs settled, want 4 (repairs must not trigger repairs)", s.FullSyncs)
	}
}

// TestWithoutTamperWatchDriftWaitsForResync is the same without the
// monitor: the deleted table stays deleted (until the 1 h resync), so the
// test above would fail without it.
func TestWithoutTamperWatchDriftWaitsForResync(t *testing.T) {
	h, ns, reader := netnsKernel(t, false)
	cmd := tamperings(t, h)[0]
	if out, err := tu.NftIn(t, ns, "", strings.Fields(cmd)...); err != nil {
		t.Fatalf("nft %s: %v: %s", cmd, err, out)
	}
	if took, ok := untilRepaired(t, h, reader, time.Second); ok {
		t.Errorf("%s: repaired after %v without the monitor, want it left until the resync", cmd, took)
	}
}
