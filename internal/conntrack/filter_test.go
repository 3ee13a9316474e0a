package conntrack

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	ct "github.com/ti-mo/conntrack"

	"github.com/nftpolicy/nftpolicy/internal/netns"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestDumpAddrsIsTheKernelFiltered: a dump of a few addresses' entries,
// filtered by the kernel, gives exactly the entries of the full dump that
// their scope holds, in both families, as source or destination, each
// once.
func TestDumpAddrsIsTheKernelFiltered(t *testing.T) {
	tbl, c := throwawayTable(t)
	ip := netip.MustParseAddr
	flows := []ct.Flow{
		ct.NewFlow(protoTCP, 0, ip("10.0.0.1"), ip("10.0.0.2"), 40001, 80, 600, 0),
		ct.NewFlow(protoTCP, 0, ip("10.0.0.3"), ip("10.0.0.2"), 40002, 80, 600, 0),
		ct.NewFlow(protoUDP, 0, ip("10.0.0.1"), ip("10.0.0.4"), 40003, 53, 600, 0),
		ct.NewFlow(protoTCP, 0, ip("10.0.0.5"), ip("10.0.0.6"), 40004, 22, 600, 0),
		ct.NewFlow(protoTCP, 0, ip("10.0.0.1"), ip("10.0.0.1"), 40005, 8080, 600, 0), // to itself: one entry, both sides
		ct.NewFlow(protoTCP, 0, ip("fd00::1"), ip("fd00::2"), 40006, 443, 600, 0),
	}
	for _, fl := range flows {
		if fl.TupleOrig.Proto.Protocol == protoTCP {
			fl.ProtoInfo.TCP = &ct.ProtoInfoTCP{State: 3} // established
		}
		if err := c.Create(fl); err != nil {
			t.Fatalf("creating %v: %v", fl, err)
		}
	}
	ctx := context.Background()
	all, err := tbl.Dump(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(flows) {
		t.Fatalf("full dump: %d entries, want %d", len(all), len(flows))
	}
	for _, tc := range []struct {
		name  string
		addrs []string
		want  int
	}{
		{"a source", []string{"10.0.0.3"}, 1},
		{"a destination", []string{"10.0.0.2"}, 2},
		{"source and destination of several, and of one entry", []string{"10.0.0.1", "10.0.0.2"}, 4},
		{"IPv6", []string{"fd00::2"}, 1},
		{"an address with no entry", []string{"10.9.9.9"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var scope Scope
			var addrs []netip.Addr
			for _, a := range tc.addrs {
				scope.addAddr(ip(a))
				addrs = append(addrs, ip(a))
			}
			got, err := tbl.dumpAddrs(ctx, addrs)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, e := range all {
				if scope.Has(e) {
					want = append(want, e.String())
				}
			}
			gotS := strs(got)
			slices.Sort(want)
			slices.Sort(gotS)
			if len(got) != tc.want {
				t.Errorf("%d entries, want %d", len(got), tc.want)
			}
			if d := cmp.Diff(want, gotS); d != "" {
				t.Errorf("entries (-full dump in scope +scoped dump):\n%s", d)
			}
		})
	}
	// The entries a filtered dump gives are deleted like the others.
	got, err := tbl.dumpAddrs(ctx, []netip.Addr{ip("10.0.0.5")})
	if err != nil || len(got) != 1 {
		t.Fatalf("dump of 10.0.0.5: %v, %v", got, err)
	}
	if n, err := tbl.Delete(ctx, got); n != 1 || err != nil {
		t.Fatalf("Delete = %d, %v; want 1", n, err)
	}
	if left, _ := tbl.Dump(ctx, nil); len(left) != len(flows)-1 {
		t.Errorf("%d entries left, want %d", len(left), len(flows)-1)
	}
}

// throwawayTable is the conntrack table of a throwaway namespace, and a
// connection to it that the test may create entries with; both go when the
// test ends.
func throwawayTable(tb testing.TB) (*Netlink, *ct.Conn) {
	tb.Helper()
	f, err := os.Open(netns.Path(tu.NetNS(tb)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	tbl := NewNetlink(int(f.Fd()))
	c, err := tbl.dial()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return tbl, c
}

// TestFilterPays: filtered dumps are chosen when two per address cost less
// than the last full dump, by the costs measured (or, before any filtered
// dump, firstWalk), never before a full dump was timed.
func TestFilterPays(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		full, walk time.Duration
		k          int
		want       bool
	}{
		{0, 0, 1, false},
		{15 * ms, 0, 1, false},        // a small table: 2 walks cost more
		{340 * ms, 0, 1, true},        // 50,000 entries
		{340 * ms, 0, 16, true},       // 32 walks of 10 ms
		{340 * ms, 0, 17, false},      // 34
		{340 * ms, 30 * ms, 6, false}, // a slow walk, measured
		{340 * ms, 2 * ms, 80, true},  // a quick one
	} {
		n := &Netlink{full: tc.full, walk: tc.walk}
		if got := n.filterPays(tc.k); got != tc.want {
			t.Errorf("full %v, walk %v, %d addresses: filterPays = %v, want %v", tc.full, tc.walk, tc.k, got, tc.want)
		}
	}
}
