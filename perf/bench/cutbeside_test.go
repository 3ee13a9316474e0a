package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/conntrack"
	"github.com/nftpolicy/nftpolicy/internal/netns"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// BenchmarkEventsBesideConntrack times the suite's rounds of events at S on
// node-000 (95 pods, 100 policies), from the write to the kernel's commit
// (on the Fake), with the conntrack cut off and with it on over a node
// namespace tracking 10,000 established connections of the node's pods to
// the node itself (always allowed, so they stay, and each is traced when
// judged). The cut runs beside the sync loop, so the table's size should
// show little in an event's latency; before, every transaction that could
// deny dumped and traced the whole table in the sync (BenchmarkDump,
// BenchmarkDenies in internal/conntrack).
func BenchmarkEventsBesideConntrack(b *testing.B) {
	c := gen.Generate(gen.S, 1)
	local, node := nodeUnderTestAddrs(c)
	for _, entries := range []int{0, 10000} {
		b.Run(fmt.Sprintf("conntrack=%d", entries), func(b *testing.B) {
			var table conntrack.Table
			if entries > 0 {
				table = trackedTable(b, local, node, entries)
			}
			run := newAgentRunWith(c.Objects(), nft.NewFake(), func(cfg *agent.Config) { cfg.Conntrack = table })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			run.start(ctx)
			defer run.stop()
			if _, err := run.kernel.next(ctx, time.Minute); err != nil {
				b.Fatalf("first sync: %v", err)
			}
			// The first sync's cut judges the whole table (0.2 s or more,
			// beside the sync loop); the events come after it and the
			// pause that follows it, so that cuts run during them.
			if entries > 0 {
				start := time.Now()
				for run.agent.Stats().FlowCuts == 0 {
					time.Sleep(5 * time.Millisecond)
				}
				time.Sleep(3*time.Since(start) + 50*time.Millisecond)
			}
			before := run.agent.Stats()
			var lat []time.Duration
			events := c.Events(gen.NodeUnderTest, b.N) // b.N rounds
			b.ResetTimer()
			for _, e := range events {
				wrote := time.Now()
				if err := run.apply(ctx, e); err != nil {
					b.Fatal(err)
				}
				got, err := run.kernel.next(ctx, 10*time.Second)
				if err != nil {
					b.Fatalf("%s: %v", e.Kind, err)
				}
				lat = append(lat, got.End.Sub(wrote))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "µs-p50-commit")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "µs-p99-commit")
			s := run.agent.Stats()
			if s.FlowsCut != 0 {
				b.Fatalf("%d entries cut: the table did not stay", s.FlowsCut)
			}
			b.ReportMetric(float64(s.FlowCuts-before.FlowCuts), "cuts")
			b.ReportMetric(float64(s.FlowsJudged-before.FlowsJudged), "entries-judged")
		})
	}
}

// trackedTable is the conntrack table of a throwaway namespace holding n
// established TCP connections from srcs to dst, each to its own port.
func trackedTable(b *testing.B, srcs []netip.Addr, dst netip.Addr, n int) conntrack.Table {
	f, err := os.Open(netns.Path(tu.NetNS(b)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	table, err := trackConnections(int(f.Fd()), srcs, dst, n)
	if err != nil {
		b.Fatal(err)
	}
	return table
}
