package model

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
)

// Tier is where a cluster-wide policy sits relative to NetworkPolicies.
type Tier int

const (
	// TierAdmin is evaluated before NetworkPolicies.
	TierAdmin Tier = iota
	// TierBaseline decides only for pods no NetworkPolicy isolates.
	TierBaseline
)

func (t Tier) String() string {
	if t == TierBaseline {
		return "baseline"
	}
	return "admin"
}

// Action is what a tier rule does with traffic it matches.
type Action int

const (
	// Allow (v1alpha1 Allow, v1alpha2 Accept) ends evaluation: allowed.
	Allow Action = iota
	// Deny ends evaluation: dropped.
	Deny
	// Pass skips the rest of the tier: the next tier decides.
	Pass
)

func (a Action) String() string {
	switch a {
	case Deny:
		return "Deny"
	case Pass:
		return "Pass"
	}
	return "Allow"
}

// The kinds of tier policies, as object keys name them.
const (
	KindANP  = "AdminNetworkPolicy"
	KindBANP = "BaselineAdminNetworkPolicy"
	KindCNP  = "ClusterNetworkPolicy"
)

// Priorities range over 0..MaxPriority, lower first.
const MaxPriority = 1000

// TierPolicy is one AdminNetworkPolicy, BaselineAdminNetworkPolicy or
// ClusterNetworkPolicy: both API versions normalise into it.
type TierPolicy struct {
	Kind     string
	Name     string
	Tier     Tier
	Priority int32
	// Subject: pods in namespaces NamespaceSelector selects, and of those
	// the ones PodSelector selects (nil: all of them).
	NamespaceSelector labels.Selector
	PodSelector       labels.Selector
	Rules             [2][]TierRule // by Direction
	// Audit: annotated nftpolicy.io/enforcement: audit (AuditOf).
	Audit      bool
	LogAccepts bool // as Policy.LogAccepts
	Problems   []string
}

// Key is "Kind/name".
func (p *TierPolicy) Key() string { return p.Kind + "/" + p.Name }

// TierRule is one rule of a tier policy: traffic to or from any of Peers on
// any of Ports (all ports when AllPorts) gets Action.
type TierRule struct {
	Index  int
	Name   string
	Action Action
	Match
}

// Selects reports whether the policy applies to pod.
func (p *TierPolicy) Selects(c *Cluster, pod *Pod) bool {
	if !pod.Active() || pod.Remote() || p.NamespaceSelector == nil {
		return false
	}
	ns, ok := c.Namespaces[pod.Namespace]
	if !ok || !p.NamespaceSelector.Matches(ns.Labels) {
		return false
	}
	return p.PodSelector == nil || p.PodSelector.Matches(pod.Labels)
}

// SortedTier returns the policies of one tier in evaluation order:
// priority, then kind, then name. Equal priorities are allowed by the API
// with an undefined order; this one is deterministic and documented.
func (c *Cluster) SortedTier(t Tier) []*TierPolicy {
	var out []*TierPolicy
	for _, p := range c.TierPolicies {
		if p.Tier == t {
			out = append(out, p)
		}
	}
	SortTier(out)
	return out
}

// SortTier sorts tier policies into evaluation order: priority, then
// kind, then name.
func SortTier(ps []*TierPolicy) {
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
}

// tierBuilder collects one policy's normalisation and its problems.
type tierBuilder struct {
	p *TierPolicy
}

func (b *tierBuilder) problem(format string, args ...any) {
	b.p.Problems = append(b.p.Problems, fmt.Sprintf(format, args...))
}

func (b *tierBuilder) priority(prio int32) {
	b.p.Priority = prio
	if prio < 0 || prio > MaxPriority {
		// Without a valid priority the policy cannot be ordered: it goes
		// last in the tier, where its Deny rules (all finish keeps) still
		// narrow access.
		b.problem("priority %d out of range 0-%d; evaluated last", prio, MaxPriority)
		b.p.Priority = MaxPriority + 1
	}
}

func (b *tierBuilder) subject(namespaces *metav1.LabelSelector, pods *v1alpha1.NamespacedPod) {
	switch {
	case namespaces != nil && pods == nil:
		b.p.NamespaceSelector = b.selector(namespaces, "subject.namespaces")
	case pods != nil && namespaces == nil:
		b.p.NamespaceSelector = b.selector(&pods.NamespaceSelector, "subject.pods.namespaceSelector")
		switch s := b.selector(&pods.PodSelector, "subject.pods.podSelector"); {
		case s == nil:
			b.p.PodSelector = labels.Nothing()
		case !s.Empty():
			b.p.PodSelector = s
		}
	default:
		b.problem("subject must set exactly one of namespaces and pods; the policy selects no pod")
	}
}

func (b *tierBuilder) selector(s *metav1.LabelSelector, where string) labels.Selector {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		b.problem("%s: %v", where, err)
		return nil
	}
	return sel
}

// finish fails an invalid policy closed as a whole: a policy with any
// problem keeps only its Deny rules (an invalid Deny or Pass rule is
// already "Deny everything"). Its Allow rules could open what the cluster
// without it denies, and so could its Pass rules, which skip the admin
// tier's later Deny rules; a Deny rule only ever narrows.
func (b *tierBuilder) finish() *TierPolicy {
	if len(b.p.Problems) == 0 {
		return b.p
	}
	dropped := 0
	for dir, rules := range b.p.Rules {
		var kept []TierRule
		for _, r := range rules {
			if r.Action == Deny {
				kept = append(kept, r)
			} else {
				dropped++
			}
		}
		b.p.Rules[dir] = kept
	}
	if dropped > 0 {
		b.problem("the policy is invalid: its %d Allow and Pass rules are not enforced, only its Deny rules", dropped)
	}
	return b.p
}

// peer is the union of what v1alpha1 and v1alpha2 peers can say.
type peer struct {
	namespaces *metav1.LabelSelector
	pods       *v1alpha1.NamespacedPod
	nodes      *metav1.LabelSelector
	networks   []string
	domains    []string
}

// rule normalises one rule. Anything invalid fails closed: in an Allow rule
// it matches nothing; a Deny or Pass rule becomes "Deny everything", as the
// API asks (a Pass that matched less would let later Deny rules be skipped
// for less traffic than intended, a Deny that matched less would allow).
func (b *tierBuilder) rule(dir Direction, index int, name string, action Action, peers []peer, ports []Port, allPorts, portsInvalid bool) {
	where := fmt.Sprintf("%s rule %d", dir, index)
	if name != "" {
		where += fmt.Sprintf(" (%s)", name)
	}
	r := TierRule{Index: index, Name: name, Action: action, Match: Match{AllPorts: allPorts, Ports: ports}}
	invalid := portsInvalid
	for i, in := range peers {
		p, ok := b.peer(in, fmt.Sprintf("%s peer %d", where, i))
		if !ok {
			invalid = true
			continue
		}
		r.Peers = append(r.Peers, p...)
	}
	if len(peers) == 0 {
		b.problem("%s: no peers", where)
		invalid = true
	}
	if action != Allow && slices.ContainsFunc(r.Peers, func(p Peer) bool { return len(p.Domains) > 0 }) {
		b.problem("%s: domainNames are only allowed in Accept rules", where)
		invalid = true
	}
	if invalid {
		if action == Allow {
			if len(r.Peers) == 0 || portsInvalid {
				b.problem("%s: fails closed: matches nothing", where)
				return
			}
		} else {
			b.problem("%s: fails closed: denies all traffic", where)
			r = TierRule{Index: index, Name: name, Action: Deny, Match: Match{AllPeers: true, AllPorts: true}}
		}
	}
	b.p.Rules[dir] = append(b.p.Rules[dir], r)
}

// peer converts one peer; a peer may become several model peers (a list of
// networks). ok is false when the peer is invalid or unsupported.
func (b *tierBuilder) peer(in peer, where string) ([]Peer, bool) {
	set := 0
	for _, isSet := range []bool{in.namespaces != nil, in.pods != nil, in.nodes != nil, len(in.networks) > 0, len(in.domains) > 0} {
		if isSet {
			set++
		}
	}
	if set != 1 {
		b.problem("%s: must set exactly one field", where)
		return nil, false
	}
	switch {
	case in.namespaces != nil:
		s := b.selector(in.namespaces, where+" namespaces")
		if s == nil {
			return nil, false
		}
		return []Peer{{Pods: true, NamespaceSelector: s}}, true
	case in.pods != nil:
		ns := b.selector(&in.pods.NamespaceSelector, where+" pods.namespaceSelector")
		ps := b.selector(&in.pods.PodSelector, where+" pods.podSelector")
		if ns == nil || ps == nil {
			return nil, false
		}
		p := Peer{Pods: true, NamespaceSelector: ns}
		if !ps.Empty() {
			p.PodSelector = ps
		}
		return []Peer{p}, true
	case in.nodes != nil:
		s := b.selector(in.nodes, where+" nodes")
		if s == nil {
			return nil, false
		}
		return []Peer{{Nodes: true, NodeSelector: s}}, true
	case len(in.networks) > 0:
		var out []Peer
		for _, n := range in.networks {
			cidr, err := netip.ParsePrefix(n)
			if err != nil {
				b.problem("%s: network %q: %v", where, n, err)
				return nil, false
			}
			out = append(out, Peer{CIDR: cidr.Masked()})
		}
		return out, true
	}
	var names []string
	for _, d := range in.domains {
		name, err := ParseDomainPattern(d)
		if err != nil {
			b.problem("%s: %v", where, err)
			return nil, false
		}
		names = append(names, name)
	}
	return []Peer{{Domains: names}}, true
}

// v1alpha1Ports converts AdminNetworkPolicyPorts; invalid is set when any
// port could not be read.
func (b *tierBuilder) v1alpha1Ports(in *[]v1alpha1.AdminNetworkPolicyPort, where string) (ports []Port, all, invalid bool) {
	if in == nil {
		return nil, true, false
	}
	for i, p := range *in {
		w := fmt.Sprintf("%s port %d", where, i)
		switch {
		case p.PortNumber != nil && p.NamedPort == nil && p.PortRange == nil:
			port, ok := b.port(p.PortNumber.Protocol, p.PortNumber.Port, p.PortNumber.Port, w)
			invalid = invalid || !ok
			if ok {
				ports = append(ports, port)
			}
		case p.PortRange != nil && p.PortNumber == nil && p.NamedPort == nil:
			port, ok := b.port(p.PortRange.Protocol, p.PortRange.Start, p.PortRange.End, w)
			invalid = invalid || !ok
			if ok {
				ports = append(ports, port)
			}
		case p.NamedPort != nil && p.PortNumber == nil && p.PortRange == nil && *p.NamedPort != "":
			ports = append(ports, Port{Name: *p.NamedPort})
		default:
			b.problem("%s: must set exactly one of portNumber, namedPort and portRange", w)
			invalid = true
		}
	}
	if len(ports) == 0 && !invalid {
		invalid = true
		b.problem("%s: empty ports list", where)
	}
	return ports, false, invalid
}

// v1alpha2Protocols converts ClusterNetworkPolicyProtocols.
func (b *tierBuilder) v1alpha2Protocols(in []v1alpha2.ClusterNetworkPolicyProtocol, where string) (ports []Port, all, invalid bool) {
	if len(in) == 0 {
		return nil, true, false
	}
	for i, p := range in {
		w := fmt.Sprintf("%s protocol %d", where, i)
		type proto struct {
			name v1.Protocol
			port *v1alpha2.Port
			set  bool
		}
		var set []proto
		if p.TCP != nil {
			set = append(set, proto{v1.ProtocolTCP, p.TCP.DestinationPort, true})
		}
		if p.UDP != nil {
			set = append(set, proto{v1.ProtocolUDP, p.UDP.DestinationPort, true})
		}
		if p.SCTP != nil {
			set = append(set, proto{v1.ProtocolSCTP, p.SCTP.DestinationPort, true})
		}
		switch {
		case len(set) == 1 && p.DestinationNamedPort == "":
			pr := set[0]
			var port Port
			ok := true
			switch {
			case pr.port == nil:
				port = Port{Proto: protoFromAPI(pr.name)} // every port of the protocol
			case pr.port.Range != nil && pr.port.Number == 0:
				port, ok = b.port(pr.name, pr.port.Range.Start, pr.port.Range.End, w)
			case pr.port.Range == nil && pr.port.Number != 0:
				port, ok = b.port(pr.name, pr.port.Number, pr.port.Number, w)
			default:
				b.problem("%s: destinationPort must set exactly one of number and range", w)
				ok = false
			}
			invalid = invalid || !ok
			if ok {
				ports = append(ports, port)
			}
		case len(set) == 0 && p.DestinationNamedPort != "":
			ports = append(ports, Port{Name: p.DestinationNamedPort})
		default:
			b.problem("%s: must set exactly one of tcp, udp, sctp and destinationNamedPort", w)
			invalid = true
		}
	}
	return ports, false, invalid
}

func (b *tierBuilder) port(protocol v1.Protocol, start, end int32, where string) (Port, bool) {
	switch protocol {
	case "", v1.ProtocolTCP, v1.ProtocolUDP, v1.ProtocolSCTP:
	default:
		b.problem("%s: unknown protocol %q", where, protocol)
		return Port{}, false
	}
	if start < 1 || end > 65535 || end < start {
		b.problem("%s: invalid port range %d-%d", where, start, end)
		return Port{}, false
	}
	return Port{Proto: protoFromAPI(protocol), Port: uint16(start), EndPort: uint16(end)}, true
}

func (b *tierBuilder) action(a string, where string) Action {
	switch a {
	case "Allow", "Accept":
		return Allow
	case "Deny":
		return Deny
	case "Pass":
		return Pass
	}
	// An action we do not know cannot be allowed to widen access.
	b.problem("%s: unknown action %q; treated as Deny", where, a)
	return Deny
}

// v1alpha1Rule is what AdminNetworkPolicy and BaselineAdminNetworkPolicy
// rules share.
type v1alpha1Rule struct {
	name, action string
	peers        []peer
	ports        *[]v1alpha1.AdminNetworkPolicyPort
}

func (b *tierBuilder) v1alpha1Rules(dir Direction, rules []v1alpha1Rule) {
	for i, r := range rules {
		where := fmt.Sprintf("%s rule %d", dir, i)
		ports, all, invalid := b.v1alpha1Ports(r.ports, where)
		b.rule(dir, i, r.name, b.action(r.action, where), r.peers, ports, all, invalid)
	}
}

func ingressPeers(from []v1alpha1.AdminNetworkPolicyIngressPeer) []peer {
	var out []peer
	for _, p := range from {
		out = append(out, peer{namespaces: p.Namespaces, pods: p.Pods})
	}
	return out
}

// ANPFromAPI normalises an AdminNetworkPolicy.
func ANPFromAPI(o *v1alpha1.AdminNetworkPolicy) *TierPolicy {
	b := &tierBuilder{p: &TierPolicy{Kind: KindANP, Name: o.Name, Tier: TierAdmin, Audit: AuditOf(o), LogAccepts: LogAcceptsOf(o)}}
	b.priority(o.Spec.Priority)
	b.subject(o.Spec.Subject.Namespaces, o.Spec.Subject.Pods)
	var ingress, egress []v1alpha1Rule
	for _, r := range o.Spec.Ingress {
		ingress = append(ingress, v1alpha1Rule{r.Name, string(r.Action), ingressPeers(r.From), r.Ports})
	}
	for _, r := range o.Spec.Egress {
		var peers []peer
		for _, p := range r.To {
			peers = append(peers, peer{namespaces: p.Namespaces, pods: p.Pods, nodes: p.Nodes, networks: cidrs(p.Networks), domains: domainNames(p.DomainNames)})
		}
		egress = append(egress, v1alpha1Rule{r.Name, string(r.Action), peers, r.Ports})
	}
	b.v1alpha1Rules(Ingress, ingress)
	b.v1alpha1Rules(Egress, egress)
	return b.finish()
}

// BANPFromAPI normalises the BaselineAdminNetworkPolicy. It is a singleton
// with no priority; among the baseline tier it sorts after every
// ClusterNetworkPolicy of that tier.
func BANPFromAPI(o *v1alpha1.BaselineAdminNetworkPolicy) *TierPolicy {
	b := &tierBuilder{p: &TierPolicy{Kind: KindBANP, Name: o.Name, Tier: TierBaseline, Priority: MaxPriority + 1, Audit: AuditOf(o), LogAccepts: LogAcceptsOf(o)}}
	if o.Name != "default" {
		b.problem("a BaselineAdminNetworkPolicy must be named \"default\"; ignored")
		return b.p
	}
	b.subject(o.Spec.Subject.Namespaces, o.Spec.Subject.Pods)
	var ingress, egress []v1alpha1Rule
	for _, r := range o.Spec.Ingress {
		ingress = append(ingress, v1alpha1Rule{r.Name, string(r.Action), ingressPeers(r.From), r.Ports})
	}
	for _, r := range o.Spec.Egress {
		var peers []peer
		for _, p := range r.To {
			peers = append(peers, peer{namespaces: p.Namespaces, pods: p.Pods, nodes: p.Nodes, networks: cidrs(p.Networks)})
		}
		egress = append(egress, v1alpha1Rule{r.Name, string(r.Action), peers, r.Ports})
	}
	b.v1alpha1Rules(Ingress, ingress)
	b.v1alpha1Rules(Egress, egress)
	return b.finish()
}

// CNPFromAPI normalises a ClusterNetworkPolicy.
func CNPFromAPI(o *v1alpha2.ClusterNetworkPolicy) *TierPolicy {
	b := &tierBuilder{p: &TierPolicy{Kind: KindCNP, Name: o.Name, Audit: AuditOf(o), LogAccepts: LogAcceptsOf(o)}}
	switch o.Spec.Tier {
	case v1alpha2.AdminTier:
		b.p.Tier = TierAdmin
	case v1alpha2.BaselineTier:
		b.p.Tier = TierBaseline
	default:
		// An unknown tier: keep its Deny rules in the admin tier, where they
		// narrow access the most predictably.
		b.problem("unknown tier %q; only its Deny rules are kept, in the admin tier, evaluated last", o.Spec.Tier)
		b.p.Tier = TierAdmin
		o = o.DeepCopy()
		o.Spec.Priority = -1
	}
	b.priority(o.Spec.Priority)
	var nsSel *metav1.LabelSelector
	var pods *v1alpha1.NamespacedPod
	if s := o.Spec.Subject.Namespaces; s != nil {
		nsSel = s
	}
	if s := o.Spec.Subject.Pods; s != nil {
		pods = &v1alpha1.NamespacedPod{NamespaceSelector: s.NamespaceSelector, PodSelector: s.PodSelector}
	}
	b.subject(nsSel, pods)
	for i, r := range o.Spec.Ingress {
		var peers []peer
		for _, p := range r.From {
			peers = append(peers, peer{namespaces: p.Namespaces, pods: v1alpha2Pods(p.Pods)})
		}
		where := fmt.Sprintf("ingress rule %d", i)
		ports, all, invalid := b.v1alpha2Protocols(r.Protocols, where)
		b.rule(Ingress, i, r.Name, b.action(string(r.Action), where), peers, ports, all, invalid)
	}
	for i, r := range o.Spec.Egress {
		var peers []peer
		for _, p := range r.To {
			var nets []string
			for _, n := range p.Networks {
				nets = append(nets, string(n))
			}
			peers = append(peers, peer{namespaces: p.Namespaces, pods: v1alpha2Pods(p.Pods), nodes: p.Nodes, networks: nets, domains: domainNames(p.DomainNames)})
		}
		where := fmt.Sprintf("egress rule %d", i)
		ports, all, invalid := b.v1alpha2Protocols(r.Protocols, where)
		b.rule(Egress, i, r.Name, b.action(string(r.Action), where), peers, ports, all, invalid)
	}
	return b.finish()
}

func v1alpha2Pods(p *v1alpha2.NamespacedPod) *v1alpha1.NamespacedPod {
	if p == nil {
		return nil
	}
	return &v1alpha1.NamespacedPod{NamespaceSelector: p.NamespaceSelector, PodSelector: p.PodSelector}
}

func domainNames[S ~string](in []S) []string {
	out := make([]string, len(in))
	for i, d := range in {
		out[i] = string(d)
	}
	return out
}

func cidrs(in []v1alpha1.CIDR) []string {
	out := make([]string, len(in))
	for i, c := range in {
		out[i] = string(c)
	}
	return out
}
