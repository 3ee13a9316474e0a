package model

import (
	"fmt"
	"net/netip"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// NamespaceFromAPI normalises a Namespace.
func NamespaceFromAPI(ns *v1.Namespace) *Namespace {
	l := labels.Set{}
	for k, v := range ns.Labels {
		l[k] = v
	}
	// The API server always sets this label; objects built by hand (tests,
	// offline compile) may lack it.
	cluster, name := SplitRemote(ns.Name)
	l[v1.LabelMetadataName] = name
	if cluster != "" {
		l[ClusterLabel] = cluster // its own cluster's id, whatever it says
	}
	return &Namespace{Name: ns.Name, Labels: l, Cluster: cluster}
}

// PodFromAPI normalises a Pod. Addresses that do not parse are left out.
func PodFromAPI(pod *v1.Pod) *Pod {
	p := &Pod{
		Namespace:   pod.Namespace,
		Name:        pod.Name,
		Node:        pod.Spec.NodeName,
		Labels:      labels.Set(pod.Labels),
		HostNetwork: pod.Spec.HostNetwork,
		Terminal:    pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed,
	}
	if cluster, _ := SplitRemote(pod.Namespace); cluster != "" {
		// A remote pod's node is the remote cluster's, even under a
		// local node's name: it is never this cluster's to enforce.
		p.Cluster = cluster
		if c, _ := SplitRemote(p.Node); c == "" && p.Node != "" {
			p.Node = RemoteName(cluster, p.Node)
		}
	}
	seen := map[netip.Addr]bool{}
	add := func(s string) {
		a, ok := parseAddr(s)
		if !ok || seen[a] {
			return
		}
		seen[a] = true
		p.IPs = append(p.IPs, a)
	}
	for _, ip := range pod.Status.PodIPs {
		add(ip.IP)
	}
	if len(pod.Status.PodIPs) == 0 && pod.Status.PodIP != "" {
		add(pod.Status.PodIP)
	}
	// A bad annotation gives no attachment (multinet.go).
	p.Networks, _ = ParseNetworkStatus(pod.Namespace, pod.Annotations[AnnotationNetworkStatus])
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == "" || cp.ContainerPort <= 0 || cp.ContainerPort > 65535 {
				continue
			}
			p.Ports = append(p.Ports, NamedPort{Name: cp.Name, Proto: protoFromAPI(cp.Protocol), Port: uint16(cp.ContainerPort)})
		}
	}
	return p
}

// NodeFromAPI normalises a Node.
func NodeFromAPI(node *v1.Node) *Node {
	n := &Node{Name: node.Name, Labels: labels.Set(node.Labels)}
	if cluster, _ := SplitRemote(node.Name); cluster != "" {
		n.Cluster, n.Labels = cluster, withCluster(n.Labels, cluster, true)
	}
	for _, a := range node.Status.Addresses {
		if a.Type != v1.NodeInternalIP && a.Type != v1.NodeExternalIP {
			continue
		}
		if ip, ok := parseAddr(a.Address); ok {
			n.Addresses = append(n.Addresses, ip)
		}
	}
	cidrs := node.Spec.PodCIDRs
	if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
		cidrs = []string{node.Spec.PodCIDR}
	}
	for _, s := range cidrs {
		// A range that does not parse protects nothing; it never opens
		// anything either (the class only ever denies).
		p, err := netip.ParsePrefix(s)
		if err != nil {
			continue
		}
		if p.Addr().Is4In6() { // ::ffff:10.0.0.0/104 is 10.0.0.0/8
			if p.Bits() < 96 {
				continue
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		n.PodCIDRs = append(n.PodCIDRs, p.Masked())
	}
	return n
}

// parseAddr reads an object's address, IPv4-mapped IPv6 as IPv4. An
// address with a zone ("fe80::1%eth0", which the API server rejects) is
// not read: no set holds a zone, and without it the address is another.
func parseAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// protoFromAPI maps a protocol; empty means TCP, as the API server defaults.
func protoFromAPI(p v1.Protocol) uint8 {
	switch p {
	case v1.ProtocolUDP:
		return ProtoUDP
	case v1.ProtocolSCTP:
		return ProtoSCTP
	}
	return ProtoTCP
}

// PolicyFromAPI normalises a NetworkPolicy. It never fails: what is invalid
// is recorded in Problems, and a policy with any problem (one the API
// server would reject) fails closed as a whole: it isolates its pods (every
// pod of the namespace when its podSelector is invalid; both directions
// when a policyType is unknown) and allows nothing. Keeping its valid rules
// would not be safe: a NetworkPolicy's rules add to what the pod's other
// policies allow, and the podSelector or policyTypes that say which pods
// they apply to may be what is invalid.
func PolicyFromAPI(np *networkingv1.NetworkPolicy) *Policy {
	p := &Policy{Namespace: np.Namespace, Name: np.Name, Audit: AuditOf(np), LogAccepts: LogAcceptsOf(np)}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		p.problem("podSelector: %v; isolating every pod of the namespace", err)
		sel = labels.Everything()
	}
	p.Subject = sel

	types := np.Spec.PolicyTypes
	if len(types) == 0 {
		// The API server's default: Ingress always, Egress when there are
		// egress rules.
		types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			types = append(types, networkingv1.PolicyTypeEgress)
		}
	}
	for _, t := range types {
		switch t {
		case networkingv1.PolicyTypeIngress:
			p.Isolates[Ingress] = true
		case networkingv1.PolicyTypeEgress:
			p.Isolates[Egress] = true
		default:
			p.problem("unknown policyType %q; isolating both directions", t)
			p.Isolates = [2]bool{true, true}
		}
	}
	if p.Isolates[Ingress] {
		for i, r := range np.Spec.Ingress {
			p.Rules[Ingress] = append(p.Rules[Ingress], p.rule(i, r.From, r.Ports, "ingress"))
		}
	}
	if p.Isolates[Egress] {
		for i, r := range np.Spec.Egress {
			p.Rules[Egress] = append(p.Rules[Egress], p.rule(i, r.To, r.Ports, "egress"))
		}
	}
	if len(p.Problems) > 0 {
		p.Rules = [2][]Rule{}
		p.problem("the policy is invalid: it isolates its pods and allows nothing")
	}
	return p
}

// Valid reports whether the policy had no problems. An invalid policy
// isolates and allows nothing, not even a pod's traffic to its own node:
// that exception comes with a valid policy's isolation (see Evaluator).
func (p *Policy) Valid() bool { return len(p.Problems) == 0 }

func (p *Policy) problem(format string, args ...any) {
	p.Problems = append(p.Problems, fmt.Sprintf(format, args...))
}

func (p *Policy) rule(index int, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, dir string) Rule {
	r := Rule{Index: index, Match: Match{AllPeers: len(peers) == 0, AllPorts: len(ports) == 0}}
	where := func(what string, i int) string { return fmt.Sprintf("%s rule %d %s %d", dir, index, what, i) }
	for i, peer := range peers {
		r.Peers = append(r.Peers, p.peer(peer, where("peer", i)))
	}
	for i, port := range ports {
		if pp, ok := p.port(port, where("port", i)); ok {
			r.Ports = append(r.Ports, pp)
		}
	}
	if !r.AllPorts && len(r.Ports) == 0 {
		// Every port was invalid: the rule must match nothing rather than
		// fall back to "all ports".
		r.Peers, r.AllPeers = nil, false
	}
	return r
}

func (p *Policy) peer(in networkingv1.NetworkPolicyPeer, where string) Peer {
	if in.IPBlock != nil {
		out := Peer{}
		if in.PodSelector != nil || in.NamespaceSelector != nil {
			p.problem("%s: ipBlock together with selectors; peer ignored", where)
			out.Invalid = true
			return out
		}
		cidr, err := netip.ParsePrefix(in.IPBlock.CIDR)
		if err != nil {
			p.problem("%s: cidr %q: %v; peer ignored", where, in.IPBlock.CIDR, err)
			out.Invalid = true
			return out
		}
		out.CIDR = cidr.Masked()
		for _, e := range in.IPBlock.Except {
			ep, err := netip.ParsePrefix(e)
			if err != nil {
				// A hole we cannot read: drop the whole peer rather than
				// allow the addresses the hole was meant to exclude.
				p.problem("%s: except %q: %v; peer ignored", where, e, err)
				out.Invalid = true
				return out
			}
			out.Except = append(out.Except, ep.Masked())
		}
		return out
	}
	out := Peer{Pods: true, Namespace: p.Namespace}
	if in.PodSelector == nil && in.NamespaceSelector == nil {
		p.problem("%s: empty peer; peer ignored", where)
		out.Invalid = true
		return out
	}
	if in.PodSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(in.PodSelector)
		if err != nil {
			p.problem("%s: podSelector: %v; peer ignored", where, err)
			out.Invalid = true
			return out
		}
		if !s.Empty() {
			out.PodSelector = s
		}
	}
	if in.NamespaceSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(in.NamespaceSelector)
		if err != nil {
			p.problem("%s: namespaceSelector: %v; peer ignored", where, err)
			out.Invalid = true
			return out
		}
		out.NamespaceSelector = s
		out.Namespace = ""
	}
	return out
}

func (p *Policy) port(in networkingv1.NetworkPolicyPort, where string) (Port, bool) {
	out := Port{Proto: ProtoTCP}
	if in.Protocol != nil {
		switch *in.Protocol {
		case v1.ProtocolTCP, v1.ProtocolUDP, v1.ProtocolSCTP:
			out.Proto = protoFromAPI(*in.Protocol)
		default:
			p.problem("%s: unknown protocol %q; port ignored", where, *in.Protocol)
			return out, false
		}
	}
	if in.Port == nil {
		return out, true
	}
	if in.Port.Type == intstr.String {
		if in.Port.StrVal == "" {
			p.problem("%s: empty port name; port ignored", where)
			return out, false
		}
		out.Name = in.Port.StrVal
		return out, true
	}
	n := in.Port.IntVal
	if n < 1 || n > 65535 {
		p.problem("%s: port %d out of range; port ignored", where, n)
		return out, false
	}
	out.Port, out.EndPort = uint16(n), uint16(n)
	if in.EndPort != nil {
		if *in.EndPort < n || *in.EndPort > 65535 {
			p.problem("%s: endPort %d invalid for port %d; port ignored", where, *in.EndPort, n)
			return out, false
		}
		out.EndPort = uint16(*in.EndPort)
	}
	return out, true
}

// AnnotationEnforcement, set to EnforcementAudit on a policy of any kind,
// compiles it so that what it would deny is logged and counted as
// would-drop and nothing it would deny is dropped: everything else behaves
// as if the policy did not exist.
const (
	AnnotationEnforcement = "nftpolicy.io/enforcement"
	EnforcementAudit      = "audit"
)

// AnnotationLogAccepts set to "true" on a policy of any kind has the
// kernel log what its rules accept, besides the drops every policy logs.
const AnnotationLogAccepts = "nftpolicy.io/log-accepts"

// LogAcceptsOf reports whether a policy object asks for its accepts to be
// logged.
func LogAcceptsOf(o metav1.Object) bool { return o.GetAnnotations()[AnnotationLogAccepts] == "true" }

// AuditOf reports whether a policy object is annotated for audit. Any
// other value, or none, enforces: a typo never opens traffic.
func AuditOf(o metav1.Object) bool {
	return o.GetAnnotations()[AnnotationEnforcement] == EnforcementAudit
}
