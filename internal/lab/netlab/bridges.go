package netlab

import (
	"fmt"
	"net/netip"

	"github.com/nftpolicy/nftpolicy/internal/netns"
)

// Secondary networks (docs/multinetwork.md). Each network is its own L2
// segment: a bridge in the fabric namespace (seg<VLAN>) standing for the
// VLAN on the physical trunk. This kernel has no 802.1Q support ("ip link
// add ... type vlan": Unknown device type; a bridge with vlan_filtering 1:
// Operation not supported), so a VLAN is emulated by a segment of its own,
// which isolates networks as tags would: two networks with the same range
// never see each other's frames. A node gets, per network, a leg on its
// segment (up<VLAN>) enslaved to the network's own Linux bridge, as a
// Multus/bridge-CNI node has; a pod gets a second veth (net1, net2, ...)
// whose node side is a port of that bridge. Traffic between two pods of a
// network is bridged, never routed: nodes see it through bridge
// netfilter, which each node namespace turns on for itself (the host's
// own setting is never touched).

// bridgeSysctls make bridged IPv4 and IPv6 packets traverse the node's
// inet forward hook, conntrack included.
var bridgeSysctls = []sysctl{
	{"bridge/bridge-nf-call-iptables", "1"},
	{"bridge/bridge-nf-call-ip6tables", "1"},
}

// Network is a secondary network as the lab builds it.
type Network struct {
	Name   string // as endpoints name it
	Bridge string // the bridge's name in every node
	VLAN   int
}

// AddNetwork declares a secondary network; nothing is built until a pod or
// external is attached to it.
func (l *Lab) AddNetwork(n Network) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !nameRE.MatchString(n.Name) || !nameRE.MatchString(n.Bridge) || len(n.Bridge) > 15 || n.VLAN < 1 || n.VLAN > 4094 {
		return fmt.Errorf("netlab: bad network %+v", n)
	}
	if l.networks == nil {
		l.networks = map[string]Network{}
		l.built = map[string]bool{}
	}
	for _, o := range l.networks {
		if o.VLAN == n.VLAN || o.Bridge == n.Bridge {
			return fmt.Errorf("netlab: networks %s and %s share a VLAN or bridge", o.Name, n.Name)
		}
	}
	l.networks[n.Name] = n
	return nil
}

// segmentLeg links namespace ns to network n's segment as dev, creating
// the segment on first use. Callers hold l.mu.
func (l *Lab) segmentLeg(n Network, ns, dev string) error {
	seg := fmt.Sprintf("seg%d", n.VLAN)
	if !l.built[seg] {
		if err := ipBatch(l.fabricNetns(), []string{"link add " + seg + " type bridge", "link set " + seg + " up"}); err != nil {
			return err
		}
		l.built[seg] = true
	}
	l.nMembers++
	link := fmt.Sprintf("s%d", l.nMembers)
	if err := ipBatch(l.fabricNetns(), []string{
		fmt.Sprintf("link add %s type veth peer name %s netns %s", link, dev, ns),
		fmt.Sprintf("link set %s master %s", link, seg),
		fmt.Sprintf("link set %s up", link),
	}); err != nil {
		return err
	}
	return ipBatch(ns, []string{fmt.Sprintf("link set %s up", dev)})
}

// nodeBridge makes sure node has network n's bridge, with a leg on the
// network's segment. Callers hold l.mu.
func (l *Lab) nodeBridge(node *member, n Network) error {
	key := node.id + "@" + n.Name
	if l.built[key] {
		return nil
	}
	if !l.built[node.id+"@sysctls"] {
		if err := writeSysctls(netns.Path(node.netns), bridgeSysctls); err != nil {
			return err
		}
		l.built[node.id+"@sysctls"] = true
	}
	uplink := fmt.Sprintf("up%d", n.VLAN)
	if err := ipBatch(node.netns, []string{
		fmt.Sprintf("link add %s type bridge", n.Bridge),
		fmt.Sprintf("link set %s up", n.Bridge),
	}); err != nil {
		return err
	}
	if err := l.segmentLeg(n, node.netns, uplink); err != nil {
		return err
	}
	if err := ipBatch(node.netns, []string{fmt.Sprintf("link set %s master %s", uplink, n.Bridge)}); err != nil {
		return err
	}
	l.built[key] = true
	return nil
}

// AttachPod gives pod id an interface dev on network, a port of the
// network's bridge on its node, holding addrs (with their prefix: the
// network's range is on-link).
func (l *Lab) AttachPod(id, network, dev string, addrs []netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.pods[id]
	if !ok {
		return fmt.Errorf("netlab: no pod %q", id)
	}
	n, ok := l.networks[network]
	if !ok {
		return fmt.Errorf("netlab: no network %q", network)
	}
	if !nameRE.MatchString(dev) || len(dev) > 15 {
		return fmt.Errorf("netlab: bad interface name %q", dev)
	}
	node := l.members[p.node]
	if err := l.nodeBridge(node, n); err != nil {
		return err
	}
	l.nPods++
	link := fmt.Sprintf("pod%dn", l.nPods)
	if err := ipBatch(node.netns, []string{
		fmt.Sprintf("link add %s type veth peer name %s netns %s", link, dev, p.netns),
		fmt.Sprintf("link set %s alias %s@%s", link, id, network),
		fmt.Sprintf("link set %s master %s", link, n.Bridge),
		fmt.Sprintf("link set %s up", link),
	}); err != nil {
		return err
	}
	lines := []string{fmt.Sprintf("link set %s up", dev)}
	for _, a := range addrs {
		lines = append(lines, prefixLine(a, dev))
	}
	return ipBatch(p.netns, lines)
}

// AddNetworkExternal creates external host name on a network only: its
// namespace has a leg on the network's segment holding addrs.
// It is the endpoint "external/NAME", reached by the network's pods over
// the VLAN (bridged on their nodes), never through the fabric.
func (l *Lab) AddNetworkExternal(name, network string, addrs []netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.ensureUp(); err != nil {
		return err
	}
	n, ok := l.networks[network]
	if !ok {
		return fmt.Errorf("netlab: no network %q", network)
	}
	id := externalKind + "/" + name
	if !nameRE.MatchString(name) {
		return fmt.Errorf("netlab: bad external name %q", name)
	}
	if _, ok := l.members[id]; ok {
		return fmt.Errorf("netlab: %s already exists", id)
	}
	m := &member{id: id, kind: externalKind, name: name, netns: l.newNetnsName("ext", name)}
	for _, a := range addrs {
		m.ips = append(m.ips, a.Addr())
	}
	// Not in l.order: no fabric leg, so no routes to or from it.
	l.members[id] = m
	l.netns[m.netns] = true
	if err := ip("netns", "add", m.netns); err != nil {
		return err
	}
	if err := writeSysctls(netns.Path(m.netns), commonSysctls); err != nil {
		return err
	}
	if err := l.segmentLeg(n, m.netns, "eth0"); err != nil {
		return err
	}
	lines := []string{"link set lo up"}
	for _, a := range addrs {
		lines = append(lines, prefixLine(a, "eth0"))
	}
	return ipBatch(m.netns, lines)
}

// prefixLine adds an on-link address; an IPv6 one without duplicate
// address detection, usable at once, as the lab's other addresses.
func prefixLine(a netip.Prefix, dev string) string {
	if a.Addr().Is6() {
		return fmt.Sprintf("addr add %s dev %s nodad", a, dev)
	}
	return fmt.Sprintf("addr add %s dev %s", a, dev)
}
