package netlab

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/nftpolicy/nftpolicy/internal/netns"
)

// The pod-side default gateways. Nothing owns these addresses: a pod's static
// neighbour entry maps them to podGatewayMAC, the MAC of every node-side pod
// veth, so the node receives the frame and routes it (Calico does the same).
var (
	podGateway4   = netip.MustParseAddr("169.254.1.1")
	podGateway6   = netip.MustParseAddr("fe80::1")
	podGatewayMAC = net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
)

// Addresses the lab picks for nodes and externals given none; they exist only
// inside lab namespaces.
var (
	defaultNode4     = netip.MustParseAddr("172.18.0.10")
	defaultNode6     = netip.MustParseAddr("fd00:ffff::10")
	defaultExternal4 = netip.MustParseAddr("203.0.113.10")
	defaultExternal6 = netip.MustParseAddr("2001:db8::10")
)

// nameRE accepts Kubernetes-style names (and a little more). Names end up
// in ip batch lines and namespace names, so nothing else gets through.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// AddNode creates a node: a namespace with IP forwarding on, linked to the
// fabric, holding ips (the node's InternalIPs). With no ips the lab picks one
// IPv4 and one IPv6 address; Addrs tells which.
func (l *Lab) AddNode(name string, ips []netip.Addr) error {
	return l.addMember(nodeKind, name, ips, defaultNode4, defaultNode6)
}

// AddExternal creates a host outside the pod network, on the fabric. It
// reaches pods through their nodes, without NAT. With no ips the lab picks
// one IPv4 and one IPv6 address.
func (l *Lab) AddExternal(name string, ips []netip.Addr) error {
	return l.addMember(externalKind, name, ips, defaultExternal4, defaultExternal6)
}

// AddControlPlane creates the namespace a real control plane runs in (its
// processes are the caller's), on the fabric at ip, so that every node
// reaches it directly; it is not an endpoint of probes. It returns the
// namespace's name (under /run/netns).
func (l *Lab) AddControlPlane(ip netip.Addr) (string, error) {
	if err := l.addMember(controlPlaneKind, "cp", []netip.Addr{ip}, netip.Addr{}, netip.Addr{}); err != nil {
		return "", err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.members[controlPlaneKind+"/cp"].netns, nil
}

// DialFrom returns a dial function whose connections are made from
// inside an endpoint's namespace ("node/n1", or "controlplane/cp"), for
// clients in this process that talk to something in the lab.
func (l *Lab) DialFrom(endpoint string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		path := l.NetNSPath(endpoint)
		if path == "" {
			return nil, fmt.Errorf("netlab: no endpoint %q", endpoint)
		}
		var conn net.Conn
		err := netns.DoPath(path, func() error {
			var err error
			// The socket is made on this thread, in the namespace, and
			// keeps it for life.
			conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
}

func (l *Lab) addMember(kind, name string, ips []netip.Addr, def4, def6 netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.ensureUp(); err != nil {
		return err
	}
	id := kind + "/" + name
	if !nameRE.MatchString(name) {
		return fmt.Errorf("netlab: bad %s name %q", kind, name)
	}
	if _, ok := l.members[id]; ok {
		return fmt.Errorf("netlab: %s already exists", id)
	}
	ips, err := l.claimAddrs(id, ips)
	if err != nil {
		return err
	}
	if len(ips) == 0 {
		ips = []netip.Addr{l.pickAddr(id, def4), l.pickAddr(id, def6)}
	}
	nsKind := "node"
	switch kind {
	case externalKind:
		nsKind = "ext"
	case controlPlaneKind:
		nsKind = "cp"
	}
	l.nMembers++
	m := &member{
		id:    id,
		kind:  kind,
		name:  name,
		netns: l.newNetnsName(nsKind, name),
		link:  fmt.Sprintf("m%d", l.nMembers),
		mac:   labMAC(1, l.nMembers),
		ips:   ips,
	}
	l.members[id] = m
	l.order = append(l.order, m)
	l.netns[m.netns] = true

	if err := ip("netns", "add", m.netns); err != nil {
		return err
	}
	settings := [][]sysctl{commonSysctls}
	if kind == nodeKind {
		settings = append(settings, nodeSysctls)
	}
	if err := writeSysctls(netns.Path(m.netns), settings...); err != nil {
		return err
	}
	if err := ipBatch(l.fabricNetns(), []string{
		fmt.Sprintf("link add %s type veth peer name fab0 address %s netns %s", m.link, m.mac, m.netns),
		fmt.Sprintf("link set %s alias %s", m.link, id),
		fmt.Sprintf("link set %s master br0", m.link),
		fmt.Sprintf("link set %s up", m.link),
	}); err != nil {
		return err
	}

	// The new member learns everyone; everyone else learns the new member.
	lines := []string{"link set lo up", "link set fab0 up"}
	for _, a := range m.ips {
		lines = append(lines, addrLine(a, "fab0"))
	}
	for _, o := range l.order {
		if o != m {
			lines = append(lines, memberRoutes(o)...)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(l.pods)) {
		lines = append(lines, l.podRoutes(l.pods[id])...)
	}
	if err := ipBatch(m.netns, lines); err != nil {
		return err
	}
	for _, o := range l.order {
		if o != m {
			if err := ipBatch(o.netns, memberRoutes(m)); err != nil {
				return err
			}
		}
	}
	return nil
}

// AddPod creates pod id ("namespace/name") on node with ips (at least one;
// IPv4 and/or IPv6). The pod's eth0 holds them as /32 and /128; its traffic
// is routed through the node, and every other node and external gets a host
// route to each address via the node.
func (l *Lab) AddPod(id, node string, ips []netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.ensureUp(); err != nil {
		return err
	}
	ns, name, ok := strings.Cut(id, "/")
	if !ok || !nameRE.MatchString(ns) || !nameRE.MatchString(name) {
		return fmt.Errorf("netlab: pod id %q is not NAMESPACE/NAME", id)
	}
	if ns == nodeKind || ns == externalKind {
		return fmt.Errorf("netlab: pod id %q: namespace %q is reserved", id, ns)
	}
	if _, exists := l.pods[id]; exists {
		return fmt.Errorf("netlab: pod %s already exists", id)
	}
	n, ok := l.members[nodeKind+"/"+node]
	if !ok {
		return fmt.Errorf("netlab: pod %s: no node %q", id, node)
	}
	if len(ips) == 0 {
		return fmt.Errorf("netlab: pod %s has no addresses", id)
	}
	ips, err := l.claimAddrs(id, ips)
	if err != nil {
		return err
	}
	l.nPods++
	p := &pod{
		id:    id,
		node:  n.id,
		netns: l.newNetnsName("pod", id),
		link:  fmt.Sprintf("pod%d", l.nPods),
		mac:   labMAC(2, l.nPods),
		ips:   ips,
	}
	l.pods[id] = p
	l.netns[p.netns] = true

	if err := ip("netns", "add", p.netns); err != nil {
		return err
	}
	if err := writeSysctls(netns.Path(p.netns), commonSysctls); err != nil {
		return err
	}
	// Node side: the veth, a host route and a static neighbour per address.
	lines := []string{
		fmt.Sprintf("link add %s address %s type veth peer name eth0 address %s netns %s", p.link, podGatewayMAC, p.mac, p.netns),
		fmt.Sprintf("link set %s alias %s", p.link, id),
		fmt.Sprintf("link set %s up", p.link),
	}
	for _, a := range p.ips {
		lines = append(lines,
			fmt.Sprintf("route replace %s dev %s", hostPrefix(a), p.link),
			fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", a, p.mac, p.link))
	}
	if err := ipBatch(n.netns, lines); err != nil {
		return err
	}
	// Pod side: addresses and a default route per family via the gateway.
	lines = []string{"link set lo up", "link set eth0 up"}
	has4, has6 := false, false
	for _, a := range p.ips {
		lines = append(lines, addrLine(a, "eth0"))
		has4 = has4 || a.Is4()
		has6 = has6 || a.Is6()
	}
	if has4 {
		lines = append(lines,
			fmt.Sprintf("route add %s dev eth0 scope link", hostPrefix(podGateway4)),
			fmt.Sprintf("neigh add %s lladdr %s dev eth0 nud permanent", podGateway4, podGatewayMAC),
			fmt.Sprintf("route add 0.0.0.0/0 via %s dev eth0", podGateway4))
	}
	if has6 {
		lines = append(lines,
			fmt.Sprintf("neigh add %s lladdr %s dev eth0 nud permanent", podGateway6, podGatewayMAC),
			fmt.Sprintf("route add ::/0 via %s dev eth0", podGateway6))
	}
	if err := ipBatch(p.netns, lines); err != nil {
		return err
	}
	if err := waitLinkReady(n.netns, p.link); err != nil {
		return err
	}
	if err := waitLinkReady(p.netns, "eth0"); err != nil {
		return err
	}
	// Every other member routes the pod's addresses via its node.
	for _, o := range l.order {
		if o != n {
			if err := ipBatch(o.netns, l.podRoutes(p)); err != nil {
				return err
			}
		}
	}
	return nil
}

// RemovePod deletes a pod's namespace, its veth and every route to it.
func (l *Lab) RemovePod(id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	p, ok := l.pods[id]
	if !ok {
		return fmt.Errorf("netlab: no pod %q", id)
	}
	l.closeListeners(id)
	n := l.members[p.node]
	// Deleting the veth takes the node's routes and neighbours with it, and
	// does so now: a namespace outlives `ip netns del` while any socket
	// (say, an in-flight probe) still holds it.
	if err := ipBatch(n.netns, []string{"link del " + p.link}); err != nil {
		return err
	}
	if err := netns.Delete([]string{p.netns}); err != nil {
		return err
	}
	var del []string
	for _, a := range p.ips {
		del = append(del, "route del "+hostPrefix(a))
	}
	for _, o := range l.order {
		if o != n {
			if err := ipBatch(o.netns, del); err != nil {
				return err
			}
		}
	}
	delete(l.pods, id)
	delete(l.netns, p.netns)
	for _, a := range p.ips {
		delete(l.addrs, a)
	}
	return nil
}

// memberRoutes are the lines that let another member reach m directly over
// the bridge: a host route and a static neighbour per address, plus m's
// link-local address, which is the IPv6 next hop for pods on m.
func memberRoutes(m *member) []string {
	lines := []string{fmt.Sprintf("neigh replace %s lladdr %s dev fab0 nud permanent", linkLocal(m.mac), m.mac)}
	for _, a := range m.ips {
		lines = append(lines,
			fmt.Sprintf("route replace %s dev fab0", hostPrefix(a)),
			fmt.Sprintf("neigh replace %s lladdr %s dev fab0 nud permanent", a, m.mac))
	}
	return lines
}

// podRoutes are the lines that route p's addresses via its node, for any
// member other than that node. IPv6 goes via the node's link-local address,
// IPv4 via the node's first IPv4 address, or via its link-local address
// (RFC 5549, Linux 5.2+) when the node has none.
func (l *Lab) podRoutes(p *pod) []string {
	n := l.members[p.node]
	ll := linkLocal(n.mac)
	var v4 netip.Addr
	for _, a := range n.ips {
		if a.Is4() {
			v4 = a
			break
		}
	}
	var lines []string
	for _, a := range p.ips {
		switch {
		case a.Is6():
			lines = append(lines, fmt.Sprintf("route replace %s via %s dev fab0", hostPrefix(a), ll))
		case v4.IsValid():
			lines = append(lines, fmt.Sprintf("route replace %s via %s dev fab0 onlink", hostPrefix(a), v4))
		default:
			lines = append(lines, fmt.Sprintf("route replace %s via inet6 %s dev fab0", hostPrefix(a), ll))
		}
	}
	return lines
}

// claimAddrs validates addresses and records them as owned by id. Callers
// hold l.mu.
func (l *Lab) claimAddrs(id string, ips []netip.Addr) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(ips))
	seen := map[netip.Addr]bool{}
	for _, a := range ips {
		a = a.Unmap()
		switch {
		case !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() ||
			a.IsLinkLocalUnicast() || a.Zone() != "":
			return nil, fmt.Errorf("netlab: %s: unusable address %v", id, a)
		case seen[a]:
			return nil, fmt.Errorf("netlab: %s: address %v given twice", id, a)
		case l.addrs[a] != "":
			return nil, fmt.Errorf("netlab: %s: address %v already belongs to %s", id, a, l.addrs[a])
		}
		seen[a] = true
		out = append(out, a)
	}
	for _, a := range out {
		l.addrs[a] = id
	}
	return out, nil
}

// pickAddr claims the first free address from start on. Callers hold l.mu.
func (l *Lab) pickAddr(id string, start netip.Addr) netip.Addr {
	a := start
	for l.addrs[a] != "" {
		a = a.Next()
	}
	l.addrs[a] = id
	return a
}

// addrLine adds a as a host address. IPv6 addresses skip duplicate address
// detection, which would keep them unusable ("tentative") for about a second.
func addrLine(a netip.Addr, dev string) string {
	if a.Is6() {
		return fmt.Sprintf("addr add %s dev %s nodad", hostPrefix(a), dev)
	}
	return fmt.Sprintf("addr add %s dev %s", hostPrefix(a), dev)
}

// hostPrefix renders a as a /32 or /128.
func hostPrefix(a netip.Addr) string {
	return netip.PrefixFrom(a, a.BitLen()).String()
}

// labMAC is a locally administered unicast MAC: 02:6e:70 ("np"), a kind
// byte (1 members, 2 pods) and a 16-bit counter.
func labMAC(kind byte, n int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0x6e, 0x70, kind, byte(n >> 8), byte(n)}
}

// linkLocal is the EUI-64 link-local address the kernel derives from mac.
// Neighbour entries are static, so only its MAC mapping matters.
func linkLocal(mac net.HardwareAddr) netip.Addr {
	b := [16]byte{0: 0xfe, 1: 0x80,
		8: mac[0] ^ 0x02, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe, 13: mac[3], 14: mac[4], 15: mac[5]}
	return netip.AddrFrom16(b)
}
