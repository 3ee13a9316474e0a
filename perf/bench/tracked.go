package bench

import (
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"

	"github.com/nftpolicy/nftpolicy/internal/conntrack"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// TrackedConnections is how many established connections the node under
// test tracks while the suite's agent runs, as deployed, cutting the
// connections each change denies: a busy node's table, whose dump takes
// about 50 ms (internal/conntrack BenchmarkDump).
const TrackedConnections = 10000

// trackConnections fills the conntrack table of the namespace fd with n
// established TCP connections from srcs to dst, each to its own port, and
// returns that table. From a node's pods to the node itself they are
// always allowed: every cut judges them and none deletes them, so the
// table stays the same through the events.
func trackConnections(fd int, srcs []netip.Addr, dst netip.Addr, n int) (conntrack.Table, error) {
	conn, err := ct.Dial(&netlink.Config{NetNS: fd})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	for i := range n {
		fl := ct.NewFlow(6, 0, srcs[i%len(srcs)], dst, 40000, uint16(10000+i), 3600, 0)
		fl.ProtoInfo.TCP = &ct.ProtoInfoTCP{State: 3} // established
		if err := conn.Create(fl); err != nil {
			return nil, fmt.Errorf("creating conntrack entry %d: %w", i, err)
		}
	}
	return conntrack.NewNetlink(fd), nil
}

// nodeUnderTestAddrs are the IPv4 addresses of the pods on the node under
// test, and the node's own.
func nodeUnderTestAddrs(c *gen.Cluster) (pods []netip.Addr, node netip.Addr) {
	for _, p := range c.Pods {
		if p.Spec.NodeName == gen.NodeUnderTest {
			for _, ip := range p.Status.PodIPs {
				if a := netip.MustParseAddr(ip.IP); a.Is4() {
					pods = append(pods, a)
				}
			}
		}
	}
	for _, n := range c.Nodes {
		if n.Name == gen.NodeUnderTest {
			node = netip.MustParseAddr(n.Status.Addresses[0].Address)
		}
	}
	return pods, node
}
