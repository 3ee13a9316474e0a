package model

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/nftpolicy/nftpolicy/internal/inet"
)

// Flow is one new connection (or first datagram).
type Flow struct {
	Src, Dst netip.Addr
	Proto    uint8
	Port     uint16 // destination port
}

func (f Flow) String() string {
	return fmt.Sprintf("%s -> %s %s/%d", f.Src, f.Dst, inet.ProtoName(f.Proto), f.Port)
}

// Verdict is the decision for one direction of a flow: the source pod's
// egress or the destination pod's ingress.
type Verdict struct {
	Allowed bool
	// Pod is the pod whose policies were consulted; empty when the address
	// is not a pod's (nothing to isolate).
	Pod string
	// Tier that decided: "admin", "networkpolicy", "baseline", or "" when
	// no policy had a say (allowed by default).
	Tier string
	// Isolated: a NetworkPolicy selects Pod for this direction.
	Isolated bool
	// Policy and Rule name the rule that decided (Rule is the index in the
	// policy's ingress or egress list); for a NetworkPolicy denial, Policy
	// is empty and Rule -1: no rule matched.
	Policy string
	Rule   int
	// Unknown names the node whose pod CIDRs hold the address when no pod
	// of that node has it (a pod the agent does not know yet): denied,
	// except between the address and that node itself.
	Unknown string
	// PassedBy and PassRule name the admin-tier Pass rule that handed the
	// flow to the later tiers, if one did (PassRule -1: none).
	PassedBy string
	PassRule int
}

func (v Verdict) String() string {
	switch {
	case v.Unknown != "" && v.Allowed:
		return fmt.Sprintf("allowed: an address of %s's pod CIDRs talks to its own node", v.Unknown)
	case v.Unknown != "":
		return fmt.Sprintf("denied: in %s's pod CIDRs and not a pod %s knows yet", v.Unknown, v.Unknown)
	case v.Pod == "":
		return "allowed: not a pod"
	case v.Tier == "":
		return fmt.Sprintf("allowed: no policy applies to %s", v.Pod)
	case v.Tier == "networkpolicy" && !v.Allowed:
		return fmt.Sprintf("denied: %s is isolated and no rule matches", v.Pod)
	case v.Tier == "networkpolicy" && v.Policy == "":
		return fmt.Sprintf("allowed: %s talks to its own node", v.Pod)
	}
	verb := "denied"
	if v.Allowed {
		verb = "allowed"
	}
	return fmt.Sprintf("%s: %s tier, %s rule %d", verb, v.Tier, v.Policy, v.Rule)
}

// Decision is the evaluator's answer for a flow.
type Decision struct {
	Egress  Verdict // of the pod that sends
	Ingress Verdict // of the pod that receives
}

// Allowed: both directions allow the flow.
func (d Decision) Allowed() bool { return d.Egress.Allowed && d.Ingress.Allowed }

// Options are the agent's choices that change what is enforced; the
// compiler and the evaluator take the same ones. The zero value is the
// agent's default.
type Options struct {
	// OpenUnknown turns off the protection of pods not yet known: an
	// address in a node's pod CIDRs that no pod of the node has is then
	// allowed like a pod no policy selects (--protect-new-pods=false).
	OpenUnknown bool
	// EnforceAudit judges audit policies (AuditOf) as if enforced: what
	// `nftpolicy explain` reports as their would-be verdict. The agent
	// never sets it: to the agent and to the evaluator by default an audit
	// policy does not exist for verdicts.
	EnforceAudit bool
	// Logs says which verdicts the kernel copies to the NFLOG group (the
	// compiler's only: logs change no verdict).
	Logs LogMode
	// LogGroup is the NFLOG group; 0 means DefaultLogGroup.
	LogGroup uint16
	// DNSGroup is the NFLOG group the kernel copies the DNS answers of
	// domainNames policies' subjects to (the compiler's only); 0 copies
	// none, and domain peers match only the bindings set by hand.
	DNSGroup uint16
	// Bridge, for the table of a secondary network (docs/multinetwork.md):
	// its base chains judge only what is bridged on this bridge (through
	// bridge netfilter) and let everything else pass.
	Bridge string
	// IPVS gives the table its output-hook chains, which judge the packets
	// IPVS re-sends to an endpoint after its DNAT (kube-proxy or kube-router
	// in IPVS mode): the compiler's only. Without IPVS nothing reaches a
	// pod through the output hook but the node's own traffic, which is
	// always allowed, and each hook whose chains reach the peer maps makes
	// the kernel walk them once more at every commit that adds a jump
	// (docs/nftables-notes.md).
	IPVS bool
}

// DefaultDNSGroup is the agent's NFLOG group for DNS answers.
const DefaultDNSGroup = 101

// LogMode selects the verdicts the kernel logs.
type LogMode uint8

const (
	LogDrops LogMode = iota // drops and would-drops (the default)
	LogAll                  // also accepts
	LogNone
)

// DefaultLogGroup is the NFLOG group of verdict logs unless chosen.
const DefaultLogGroup = 100

// ParseLogMode reads "drops", "all" or "none".
func ParseLogMode(s string) (LogMode, error) {
	switch s {
	case "drops":
		return LogDrops, nil
	case "all":
		return LogAll, nil
	case "none":
		return LogNone, nil
	}
	return 0, fmt.Errorf("verdict logs %q: want drops, all or none", s)
}

// Evaluator answers policy questions about one snapshot of a cluster.
type Evaluator struct {
	c      *Cluster
	opts   Options
	byAddr map[netip.Addr]*Pod
	nodes  map[netip.Addr][]*Node
	known  map[string]map[netip.Addr]bool // node -> addresses of its active pods
	// policies are the NetworkPolicies by namespace, each list in key
	// order: only a pod's own namespace's policies can select it, and
	// scanning every policy of a large cluster for each flow made
	// `nftpolicy preview` quadratic in the number of policies.
	policies map[string][]*Policy
	admin    []*TierPolicy
	baseline []*TierPolicy
}

// NewEvaluator indexes the cluster's active pods and nodes by address, and
// judges as the agent does by default.
func NewEvaluator(c *Cluster) *Evaluator { return NewEvaluatorWith(c, Options{}) }

// NewEvaluatorWith is NewEvaluator for an agent run with opts.
//
// Pods not yet known: an address in node N's pod CIDRs that is not an
// address of an active pod on N (nor of N itself) is a pod N's agent has
// not programmed. Its traffic is denied in both directions, except
// between it and N. The model assumes what IPAM guarantees: nodes' pod
// CIDRs are disjoint and a pod's addresses lie in its own node's CIDRs
// (or in none), so such an address lives on N and its packets cross N.
func NewEvaluatorWith(c *Cluster, opts Options) *Evaluator {
	e := &Evaluator{c: c, opts: opts, byAddr: map[netip.Addr]*Pod{}, nodes: map[netip.Addr][]*Node{},
		known:    map[string]map[netip.Addr]bool{},
		policies: map[string][]*Policy{}, admin: c.SortedTier(TierAdmin), baseline: c.SortedTier(TierBaseline)}
	for _, p := range c.SortedPolicies() {
		if !p.Audit || opts.EnforceAudit {
			e.policies[p.Namespace] = append(e.policies[p.Namespace], p)
		}
	}
	if !opts.EnforceAudit {
		e.admin, e.baseline = enforced(e.admin), enforced(e.baseline)
	}
	for _, p := range c.SortedPods() {
		if !p.Active() {
			continue
		}
		for _, ip := range p.IPs {
			if c.Owns(p, ip) {
				e.byAddr[ip] = p
			}
			if e.known[p.Node] == nil {
				e.known[p.Node] = map[netip.Addr]bool{}
			}
			e.known[p.Node][ip] = true
		}
	}
	for _, n := range c.Nodes {
		for _, ip := range n.Addresses {
			e.nodes[ip] = append(e.nodes[ip], n)
		}
	}
	return e
}

// PodByAddr returns the active pod that owns addr, if any.
func (e *Evaluator) PodByAddr(addr netip.Addr) *Pod { return e.byAddr[addr.Unmap()] }

// Evaluate judges a flow in both directions, independently, as the kernel
// does: the sender's egress and the receiver's ingress must both allow it.
func (e *Evaluator) Evaluate(f Flow) Decision {
	return Decision{Egress: e.Judge(Egress, f), Ingress: e.Judge(Ingress, f)}
}

// unknownOn returns the first node among nodes whose pod CIDRs hold addr
// when addr is a pod that node does not know (no active pod of the node
// has it, and it is not the node's own); "" otherwise, and always when the
// protection is off.
func (e *Evaluator) unknownOn(addr netip.Addr, nodes ...string) string {
	if e.opts.OpenUnknown {
		return ""
	}
	for _, name := range nodes {
		n := e.c.Nodes[name]
		if n == nil || n.Cluster != "" {
			continue // a remote node's new pods are its own cluster's agents' to protect
		}
		for _, p := range n.PodCIDRs {
			if p.Contains(addr) && !e.known[n.Name][addr] && !e.isNodeAddr(addr, n.Name) {
				return n.Name
			}
		}
	}
	return ""
}

// forwardNodes are the nodes whose forward chains a packet from src to dst
// crosses, where the rules that drop pods not yet known are: the sender's
// node (unless the sender is the node itself, whose own traffic leaves on
// the output path) and the receiver's (unless the receiver is a node's own
// address, which the input path takes). A pod talking to its own node
// crosses none. On a cluster whose IPAM keeps every pod in its node's pod
// CIDRs, the node whose CIDRs hold an address is on the path of every
// packet to or from it; where an address lies in another node's CIDRs, that
// node drops only what crosses it.
func (e *Evaluator) forwardNodes(src, dst netip.Addr) []string {
	srcNode, fromNode := e.endpointNode(src)
	dstNode, toNode := e.endpointNode(dst)
	switch p := e.byAddr[dst]; {
	case toNode && e.isNodeAddr(dst, srcNode):
		dstNode = srcNode // Node objects share the address: the sender's own takes it
	case toNode && p != nil:
		// A pod's address that another node's object lists too goes to
		// the pod: only the sender's own node takes it as local.
		dstNode, toNode = p.Node, false
	}
	if toNode && srcNode == dstNode {
		return nil
	}
	var out []string
	if srcNode != "" && !fromNode {
		out = append(out, srcNode)
	}
	if dstNode != "" && dstNode != srcNode && !toNode {
		out = append(out, dstNode)
	}
	return out
}

// endpointNode is the node where addr is: the node that has it as its own
// address (isNode), else the node of the active pod that owns it, else the
// first node by name whose pod CIDRs hold it; "" outside the cluster.
func (e *Evaluator) endpointNode(addr netip.Addr) (node string, isNode bool) {
	if ns := e.nodes[addr]; len(ns) > 0 {
		return ns[0].Name, true
	}
	if p := e.byAddr[addr]; p != nil {
		return p.Node, false
	}
	for _, name := range slices.Sorted(maps.Keys(e.c.Nodes)) {
		for _, p := range e.c.Nodes[name].PodCIDRs {
			if p.Contains(addr) {
				return name, false
			}
		}
	}
	return "", false
}

// senderNode is the node a packet from src leaves (endpointNode's).
func (e *Evaluator) senderNode(src netip.Addr) string {
	n, _ := e.endpointNode(src)
	return n
}

// isNodeAddr reports whether addr is an address of node.
func (e *Evaluator) isNodeAddr(addr netip.Addr, node string) bool {
	for _, n := range e.nodes[addr] {
		if n.Name == node {
			return true
		}
	}
	return false
}

// Judge decides one direction of a flow: the source pod's egress or the
// destination pod's ingress. Evaluate is both; a caller that knows only one
// direction can have changed (nftpolicy preview) asks for that one.
func (e *Evaluator) Judge(dir Direction, f Flow) Verdict {
	f.Src, f.Dst = f.Src.Unmap(), f.Dst.Unmap()
	src, dst := e.PodByAddr(f.Src), e.PodByAddr(f.Dst)
	// The class of pods not yet known comes before every policy: nothing
	// the agent has not programmed is judged by policies it does not know.
	subject, peer := f.Src, f.Dst
	if dir == Ingress {
		subject, peer = f.Dst, f.Src
	}
	if n := e.unknownOn(subject, e.forwardNodes(f.Src, f.Dst)...); n != "" {
		return Verdict{Unknown: n, Rule: -1, PassRule: -1}
	}
	// Between a pod not yet known and its own node nothing drops: say so.
	if n, _ := e.endpointNode(subject); e.isNodeAddr(peer, n) && e.unknownOn(subject, n) != "" {
		return Verdict{Allowed: true, Unknown: n, Rule: -1, PassRule: -1}
	}
	if dir == Egress {
		return e.judge(Egress, src, f.Dst, dst, f)
	}
	if dst != nil && e.isNodeAddr(f.Dst, e.senderNode(f.Src)) {
		dst = nil // the sender's own node takes its address as local: no pod receives it
	}
	return e.judge(Ingress, dst, f.Src, src, f)
}

// judge decides for subject (the pod whose policies apply) talking to the
// peer address (owned by peerPod, if a pod): the admin tier, then the
// NetworkPolicies, then the baseline tier, then allowed.
func (e *Evaluator) judge(dir Direction, subject *Pod, peer netip.Addr, peerPod *Pod, f Flow) Verdict {
	v := Verdict{Allowed: true, Rule: -1, PassRule: -1}
	if subject == nil {
		return v
	}
	v.Pod = subject.Key()
	// Named ports resolve on the destination pod: the subject for ingress,
	// the peer for egress.
	dst := subject
	if dir == Egress {
		dst = peerPod
	}
	if p, r, ok := e.tier(e.admin, dir, subject, peer, peerPod, dst, f); ok {
		if r.Action != Pass {
			v.Tier, v.Policy, v.Rule, v.Allowed = "admin", p.Key(), r.Index, r.Action == Allow
			return v
		}
		v.PassedBy, v.PassRule = p.Key(), r.Index
	}
	for _, p := range e.policies[subject.Namespace] {
		if !p.Isolates[dir] || !p.Selects(e.c, subject) {
			continue
		}
		v.Isolated, v.Tier, v.Allowed = true, "networkpolicy", false
		if dir == Egress && p.Valid() && e.isNodeOf(peer, subject) {
			// Traffic between a pod and its own node is always allowed,
			// by a valid policy's isolation: an invalid policy's alone
			// would open it where the baseline tier, which isolation
			// hides, denied it.
			v.Allowed = true
			return v
		}
		for _, r := range p.Rules[dir] {
			if e.peerMatches(r.AllPeers, r.Peers, peer, peerPod) && portMatches(r.AllPorts, r.Ports, dst, f) {
				v.Allowed, v.Policy, v.Rule = true, p.Key(), r.Index
				return v
			}
		}
	}
	if v.Isolated {
		return v
	}
	if p, r, ok := e.tier(e.baseline, dir, subject, peer, peerPod, dst, f); ok {
		// Pass in the last tier hands the flow to the default: allowed.
		v.Tier, v.Policy, v.Rule, v.Allowed = "baseline", p.Key(), r.Index, r.Action != Deny
	}
	return v
}

// isNodeOf reports whether addr is an address of pod's node.
func (e *Evaluator) isNodeOf(addr netip.Addr, pod *Pod) bool { return e.isNodeAddr(addr, pod.Node) }

// tier finds the first rule of a tier that matches: policies in order, and
// in each its rules in order.
func (e *Evaluator) tier(policies []*TierPolicy, dir Direction, subject *Pod, peer netip.Addr, peerPod, dst *Pod, f Flow) (*TierPolicy, TierRule, bool) {
	for _, p := range policies {
		if !p.Selects(e.c, subject) {
			continue
		}
		for _, r := range p.Rules[dir] {
			if e.peerMatches(r.AllPeers, r.Peers, peer, peerPod) && portMatches(r.AllPorts, r.Ports, dst, f) {
				return p, r, true
			}
		}
	}
	return nil, TierRule{}, false
}

func (e *Evaluator) peerMatches(all bool, peers []Peer, addr netip.Addr, pod *Pod) bool {
	if all {
		return true
	}
	for i := range peers {
		peer := &peers[i]
		switch {
		case peer.Pods:
			if pod != nil && peer.MatchesPod(e.c, pod) {
				return true
			}
		case peer.Nodes:
			for _, n := range e.nodes[addr] {
				if peer.MatchesNode(n) {
					return true
				}
			}
		case len(peer.Domains) > 0:
			if !peer.Invalid && e.c.DomainBound(peer.Domains, addr) {
				return true
			}
		default:
			if peer.MatchesAddr(addr) {
				return true
			}
		}
	}
	return false
}

// portMatches: a port with protocol 0 is a tier policy's named port,
// which matches whatever protocol the destination declares it with.
func portMatches(all bool, ports []Port, dst *Pod, f Flow) bool {
	if all {
		return true
	}
	for _, p := range ports {
		if p.Proto != 0 && p.Proto != f.Proto {
			continue
		}
		if p.Name != "" {
			if dst == nil {
				continue
			}
			if n, ok := dst.PortNumber(p.Name, f.Proto); ok && n == f.Port {
				return true
			}
			continue
		}
		if p.Port == 0 || (f.Port >= p.Port && f.Port <= p.EndPort) {
			return true
		}
	}
	return false
}

// enforced drops audit policies: for verdicts they do not exist.
func enforced(ps []*TierPolicy) []*TierPolicy {
	out := ps[:0:0]
	for _, p := range ps {
		if !p.Audit {
			out = append(out, p)
		}
	}
	return out
}
