package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftpolicy/nftpolicy/internal/conntrack"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// memTable is a conntrack table in memory, safe for the sync loop and the
// test at once.
type memTable struct {
	mu      sync.Mutex
	entries []conntrack.Entry
	dumps   int
}

func (m *memTable) Dump(context.Context, *conntrack.Scope) ([]conntrack.Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dumps++
	return append([]conntrack.Entry(nil), m.entries...), nil
}

func (m *memTable) Delete(_ context.Context, gone []conntrack.Entry) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	drop := map[conntrack.Entry]bool{}
	for _, e := range gone {
		drop[e] = true
	}
	var keep []conntrack.Entry
	for _, e := range m.entries {
		if !drop[e] {
			keep = append(keep, e)
		}
	}
	n := len(m.entries) - len(keep)
	m.entries = keep
	return n, nil
}

func (m *memTable) left() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, e := range m.entries {
		out = append(out, e.String())
	}
	return out
}

func tcpEntry(src, dst string, port uint16) conntrack.Entry {
	return conntrack.Entry{Proto: 6, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Port: port}
}

// TestSyncCutsDeniedEntries: after each transaction the agent deletes the
// conntrack entries its new ruleset drops, and keeps the others.
func TestSyncCutsDeniedEntries(t *testing.T) {
	allowed := tcpEntry("10.244.2.10", "10.244.1.10", 8080) // client -> server's named port http
	otherPort := tcpEntry("10.244.2.10", "10.244.1.10", 9090)
	outsider := tcpEntry("203.0.113.5", "10.244.1.10", 8080)
	unrelated := tcpEntry("203.0.113.5", "10.244.2.10", 22) // no pod of this node
	tbl := &memTable{entries: []conntrack.Entry{allowed, otherPort, outsider, unrelated}}
	h := start(t, func(c *Config) { c.Conntrack = tbl }, basic()...)
	h.wait()
	if d := cmp.Diff([]string{allowed.String(), unrelated.String()}, tbl.left()); d != "" {
		t.Errorf("after the first sync (-want +got):\n%s", d)
	}
	// The server's policy loses its rule: the client's connection goes too.
	h.apply(tu.Policy("x", "servers", m{"role": "server"}, tu.Types(networkingv1.PolicyTypeIngress)))
	h.wait()
	if d := cmp.Diff([]string{unrelated.String()}, tbl.left()); d != "" {
		t.Errorf("after the deny (-want +got):\n%s", d)
	}
	if s := h.agent.Stats(); s.FlowCuts != 2 || s.FlowsCut != 3 {
		t.Errorf("stats: %d cuts deleting %d entries, want 2 deleting 3", s.FlowCuts, s.FlowsCut)
	}
	// A change on another node sends no transaction: nothing to judge.
	h.apply(tu.Pod("x", "elsewhere", "node-3", m{"role": "x"}, []string{"10.244.3.10"}))
	h.wait()
	if s := h.agent.Stats(); s.FlowCuts != 2 {
		t.Errorf("stats: %d cuts after a change that sent no transaction, want still 2", s.FlowCuts)
	}
}

// brokenTable fails every dump, as a node without ctnetlink would.
type brokenTable struct{}

func (brokenTable) Dump(context.Context, *conntrack.Scope) ([]conntrack.Entry, error) {
	return nil, errors.New("conntrack: dial: protocol not supported")
}

func (brokenTable) Delete(context.Context, []conntrack.Entry) (int, error) { return 0, nil }

// TestCutFailureDoesNotFailTheSync: the rules are committed whatever
// happens to the cut; a failed cut is logged, not retried as a failed sync.
func TestCutFailureDoesNotFailTheSync(t *testing.T) {
	h := start(t, func(c *Config) { c.Conntrack = brokenTable{} }, basic()...)
	h.wait()
	h.checkKernel()
	if s := h.agent.Stats(); s.Failures != 0 || s.FlowCuts != 1 || s.FlowsCut != 0 {
		t.Errorf("stats %+v, want no failed sync and one cut that deleted nothing", s)
	}
}

// TestCutJudgesTheChangesScope: a cut traces only the entries whose flows
// the transaction may have changed. A client joining the server's allowed
// peers, and leaving them, is one address: one entry of six is judged each
// time, and the second time cut.
func TestCutJudgesTheChangesScope(t *testing.T) {
	client := tcpEntry("10.244.2.10", "10.244.1.10", 8080)
	tbl := &memTable{entries: []conntrack.Entry{client}}
	for i := range 4 {
		tbl.entries = append(tbl.entries, tcpEntry("10.244.1.10", fmt.Sprintf("10.244.3.%d", i+1), 443)) // the server's egress: open
	}
	h := start(t, func(c *Config) { c.Conntrack = tbl }, basic()...)
	h.wait()
	if s := h.agent.Stats(); s.FlowCuts != 1 || s.FlowsJudged != 5 || s.FlowsCut != 0 {
		t.Fatalf("first sync: stats %+v, want 1 cut judging all 5 entries, deleting none", s)
	}
	second := tcpEntry("10.244.2.11", "10.244.1.10", 8080)
	tbl.mu.Lock()
	tbl.entries = append(tbl.entries, second)
	tbl.mu.Unlock()
	client2 := tu.Pod("x", "client-2", "node-2", m{"role": "client"}, []string{"10.244.2.11"})
	h.apply(client2)
	h.wait()
	if s := h.agent.Stats(); s.FlowCuts != 2 || s.FlowsJudged != 6 || s.FlowsCut != 0 {
		t.Fatalf("after client-2 came: stats %+v, want 2 cuts, 6 entries judged (its own the sixth), none deleted", s)
	}
	h.remove(client2)
	h.wait()
	if s := h.agent.Stats(); s.FlowCuts != 3 || s.FlowsJudged != 7 || s.FlowsCut != 1 {
		t.Errorf("after client-2 went: stats %+v, want 3 cuts, 7 entries judged, its entry deleted", s)
	}
	if slices.Contains(tbl.left(), second.String()) || !slices.Contains(tbl.left(), client.String()) {
		t.Errorf("entries left: %v, want client-2's gone and the client's kept", tbl.left())
	}
	for name, want := range map[string]float64{"nftpolicy_conntrack_entries_judged_total": 7, "nftpolicy_conntrack_entries_cut_total": 1, "nftpolicy_conntrack_cut_failures_total": 0} {
		if got := counterValue(t, h.reg, name, "", ""); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if n := histogramCount(t, h.reg, "nftpolicy_conntrack_cut_duration_seconds"); n != 3 {
		t.Errorf("nftpolicy_conntrack_cut_duration_seconds counts %d cuts, want 3", n)
	}
}

// gatedTable is a memTable whose dumps wait for the gate to open.
type gatedTable struct {
	memTable
	gate chan struct{}
}

func (g *gatedTable) Dump(ctx context.Context, scope *conntrack.Scope) ([]conntrack.Entry, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.memTable.Dump(ctx, scope)
}

// TestCutRunsBesideTheSyncs: a dump that takes long (a node tracking many
// connections) delays no sync: the rules are in the kernel while it runs.
// WaitApplied, the lab's barrier, waits for the cut as well, and WaitCut
// for the cut alone.
func TestCutRunsBesideTheSyncs(t *testing.T) {
	denied := tcpEntry("10.244.2.10", "10.244.1.10", 9090)
	tbl := &gatedTable{memTable: memTable{entries: []conntrack.Entry{denied}}, gate: make(chan struct{})}
	h := start(t, func(c *Config) { c.Conntrack = tbl }, basic()...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.agent.WaitIncludes(ctx, h.versions()); err != nil {
		t.Fatalf("the first sync waited for the dump: %v", err)
	}
	h.checkKernel()
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	if err := h.agent.WaitApplied(short, h.versions()); err == nil {
		t.Fatal("WaitApplied returned before the cut")
	}
	if err := h.agent.WaitCut(short); err == nil {
		t.Fatal("WaitCut returned before the cut")
	}
	close(tbl.gate)
	if err := h.agent.WaitCut(ctx); err != nil {
		t.Fatal(err)
	}
	if s := h.agent.Stats(); s.FlowCuts != 1 {
		t.Fatalf("WaitCut returned with %d cuts done, want 1", s.FlowCuts)
	}
	h.wait()
	if s := h.agent.Stats(); s.FlowCuts != 1 || s.FlowsCut != 1 || len(tbl.left()) != 0 {
		t.Errorf("stats %+v, entries left %v: want one cut deleting the denied entry", s, tbl.left())
	}
}

// failingKernel refuses every transaction while failing is set.
type failingKernel struct {
	nft.Kernel
	failing atomic.Bool
}

func (k *failingKernel) Apply(ctx context.Context, tx *nft.Transaction) error {
	if k.failing.Load() {
		return errors.New("injected: operation not permitted")
	}
	return k.Kernel.Apply(ctx, tx)
}

// TestCutWaitsForTheKernel: a cut that finds the last sync failed does not
// judge by rules the kernel may not hold; it waits, and judges by those of
// the sync that succeeds.
func TestCutWaitsForTheKernel(t *testing.T) {
	client := tcpEntry("10.244.2.10", "10.244.1.10", 8080)
	tbl := &gatedTable{memTable: memTable{entries: []conntrack.Entry{client}}, gate: make(chan struct{})}
	var k *failingKernel
	h := start(t, func(c *Config) {
		k = &failingKernel{Kernel: c.Kernel}
		c.Conntrack, c.Kernel = tbl, k
	}, basic()...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.agent.WaitIncludes(ctx, h.versions()); err != nil {
		t.Fatal(err)
	}
	// The first sync's cut is in its dump. The server stops allowing the
	// client, and the kernel refuses that.
	k.failing.Store(true)
	h.apply(tu.Policy("x", "servers", m{"role": "server"}, tu.Types(networkingv1.PolicyTypeIngress)))
	eventually(t, "a failed sync", func() bool { return h.agent.Stats().Failures > 0 })
	close(tbl.gate)
	eventually(t, "the cut to wait", func() bool { return h.agent.Stats().CutsPostponed == 1 })
	if s := h.agent.Stats(); s.FlowCuts != 0 || len(tbl.left()) != 1 {
		t.Fatalf("stats %+v, entries %v: a cut judged while the kernel's rules were unknown", s, tbl.left())
	}
	k.failing.Store(false)
	h.wait()
	h.checkKernel()
	if s := h.agent.Stats(); s.FlowCuts != 1 || s.FlowsCut != 1 || len(tbl.left()) != 0 {
		t.Errorf("stats %+v, entries left %v: want one cut, after the sync that succeeded, deleting the client's entry", s, tbl.left())
	}
}
