package manifest

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The lab's address plan. Node addresses not given start here, the next
// free one for each node in order (the lab's fabric holds them; nothing
// outside a lab's namespaces uses them). Pod addresses not given come from
// 10.244.<n>.0/24 and fd00:10:244:<n>::/64, n the node's position in
// Cluster.Nodes, from host number 101 up: files that fix addresses tend to
// use low numbers.
var (
	firstNode4 = netip.MustParseAddr("172.18.0.10")
	firstNode6 = netip.MustParseAddr("fd00:ffff::10")
)

const firstPodHost = 100

// Addresses gives nodes and pods their addresses as the lab does, so that
// `nftpolicy compile` of a scenario file and a lab run of it agree. Node
// and pod addresses the file gives are kept and never handed out again.
type Addresses struct {
	nodes   []string
	fams    []Family
	used    map[netip.Addr]string // address -> owner ("node/NAME" or a pod's "ns/name")
	pods    map[string][]netip.Addr
	nodeIPs map[string][]netip.Addr
	next    map[string]int // node -> last host number tried for its pods
	base    int            // nodes before the first one (WithNodeBase)
}

// WithNodeBase numbers the nodes from base+1 and starts their addresses
// base after the first: a cluster of a file with clusters, whose nodes
// come after those of the clusters before it (Cluster.NodeBase), gets pod
// CIDRs and node addresses of its own on the one flat network.
func (a *Addresses) WithNodeBase(base int) *Addresses {
	a.base = base
	return a
}

// NewAddresses plans addresses for a cluster of nodes (in Cluster.Nodes
// order) and IP families. The addresses that objects (every object the
// file holds, in any step) give Nodes and Pods are never handed out to
// others, so that a node or pod placed early cannot take the address of
// one that fixes it later.
func NewAddresses(nodes []string, fams []Family, objs []runtime.Object) *Addresses {
	a := &Addresses{nodes: nodes, fams: fams, used: map[netip.Addr]string{}, pods: map[string][]netip.Addr{}, nodeIPs: map[string][]netip.Addr{}, next: map[string]int{}}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Node:
			for _, ip := range NodeInternalIPs(o) {
				a.used[ip] = "node/" + o.Name
			}
		case *corev1.Pod:
			for _, ip := range PodIPs(o) {
				a.used[ip] = o.Namespace + "/" + o.Name
			}
		}
	}
	return a
}

// Node returns a node's addresses: given ones, else the next free IPv4 and
// IPv6 addresses of the node range (a lab node always has both families,
// so that it can carry pods of either).
func (a *Addresses) Node(name string, given []netip.Addr) []netip.Addr {
	owner := "node/" + name
	switch {
	case len(given) > 0:
		for _, ip := range given {
			a.used[ip] = owner
		}
		a.nodeIPs[name] = given
	case a.nodeIPs[name] == nil:
		a.nodeIPs[name] = []netip.Addr{a.pick(owner, nth(firstNode4, a.base)), a.pick(owner, nth(firstNode6, a.base))}
	}
	return a.nodeIPs[name]
}

// nth is the address n after a.
func nth(a netip.Addr, n int) netip.Addr {
	for ; n > 0; n-- {
		a = a.Next()
	}
	return a
}

func (a *Addresses) pick(owner string, start netip.Addr) netip.Addr {
	ip := start
	for a.used[ip] != "" {
		ip = ip.Next()
	}
	a.used[ip] = owner
	return ip
}

// Pod returns the addresses of pod id ("namespace/name") on node: those it
// got before, else those the file gives, else the next free ones in the
// node's ranges, one per family of the cluster.
func (a *Addresses) Pod(id, node string, given []netip.Addr) []netip.Addr {
	if ips, ok := a.pods[id]; ok {
		return ips
	}
	ips := given
	if len(ips) == 0 {
		ips = a.allocate(node)
	}
	for _, ip := range ips {
		a.used[ip] = id
	}
	a.pods[id] = ips
	return ips
}

// Release frees the addresses of a deleted pod for later pods.
func (a *Addresses) Release(id string) {
	for _, ip := range a.pods[id] {
		delete(a.used, ip)
	}
	delete(a.pods, id)
}

// PodCIDRs are the ranges a node's pods take their addresses from, as its
// spec.podCIDRs says: 10.244.<n>.0/24 and fd00:10:244:<n>::/64, n the
// node's position. Pods given no address get theirs there; the scenario
// files that fix addresses keep to the same plan (a test checks it), as
// IPAM would.
func (a *Addresses) PodCIDRs(node string) []netip.Prefix {
	n := a.nodeNumber(node)
	return []netip.Prefix{
		netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", n)),
		netip.MustParsePrefix(fmt.Sprintf("fd00:10:244:%x::/64", n)),
	}
}

func (a *Addresses) nodeNumber(node string) int {
	n := 1
	for i, name := range a.nodes {
		if name == node {
			n = i + 1
		}
	}
	return a.base + n
}

func (a *Addresses) allocate(node string) []netip.Addr {
	n := a.nodeNumber(node)
	for {
		a.next[node]++
		h := firstPodHost + a.next[node]
		v4 := netip.MustParseAddr(fmt.Sprintf("10.244.%d.%d", n, h%250+1))
		v6 := netip.MustParseAddr(fmt.Sprintf("fd00:10:244:%x::%x", n, h))
		if a.used[v4] != "" || a.used[v6] != "" {
			continue
		}
		var out []netip.Addr
		for _, f := range a.fams {
			if f == IPv4 {
				out = append(out, v4)
			} else {
				out = append(out, v6)
			}
		}
		return out
	}
}

// Assign writes into a Node or Pod the addresses the lab gives it, as the
// kubelet and the node IPAM controller would report them: a Node's
// InternalIPs and podCIDRs (unless the file gives them), a Pod's podIPs (a
// hostNetwork pod has its node's). Other objects are left alone.
func (a *Addresses) Assign(obj runtime.Object) {
	switch o := obj.(type) {
	case *corev1.Node:
		given := NodeInternalIPs(o)
		ips := a.Node(o.Name, given)
		if len(given) == 0 {
			for _, ip := range ips {
				o.Status.Addresses = append(o.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip.String()})
			}
		}
		if len(o.Spec.PodCIDRs) == 0 && o.Spec.PodCIDR == "" {
			for _, p := range a.PodCIDRs(o.Name) {
				o.Spec.PodCIDRs = append(o.Spec.PodCIDRs, p.String())
			}
			o.Spec.PodCIDR = o.Spec.PodCIDRs[0]
		}
	case *corev1.Pod:
		if o.Spec.HostNetwork {
			SetPodIPs(o, a.nodeIPs[o.Spec.NodeName])
			return
		}
		SetPodIPs(o, a.Pod(o.Namespace+"/"+o.Name, o.Spec.NodeName, PodIPs(o)))
	}
}

// NodeInternalIPs returns the InternalIP addresses of a node's status.
func NodeInternalIPs(n *corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, na := range n.Status.Addresses {
		if ip, err := netip.ParseAddr(na.Address); err == nil && na.Type == corev1.NodeInternalIP {
			out = append(out, ip)
		}
	}
	return out
}

// PodIPs returns the addresses a pod's status gives (the loader has
// checked that they parse).
func PodIPs(pod *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	for _, p := range pod.Status.PodIPs {
		if ip, err := netip.ParseAddr(p.IP); err == nil {
			out = append(out, ip)
		}
	}
	return out
}

// SetPodIPs writes a pod's addresses into its status, as a kubelet
// reports a running pod.
func SetPodIPs(pod *corev1.Pod, ips []netip.Addr) {
	pod.Status.PodIPs = nil
	for _, ip := range ips {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ip.String()})
	}
	if len(ips) > 0 {
		pod.Status.PodIP = ips[0].String()
	}
	if pod.Status.Phase == "" {
		pod.Status.Phase = corev1.PodRunning
	}
}
