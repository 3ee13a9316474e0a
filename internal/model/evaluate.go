package model

import (
	"fmt"
	"net/netip"
)

// Flow is one new connection (or first datagram).
type Flow struct {
	Src, Dst netip.Addr
	Proto    uint8
	Port     uint16 // destination port
}

func (f Flow) String() string {
	return fmt.Sprintf("%s -> %s %s/%d", f.Src, f.Dst, protoName(f.Proto), f.Port)
}

func protoName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoSCTP:
		return "sctp"
	}
	return fmt.Sprint(p)
}

// Verdict is the decision for one direction of a flow: the source pod's
// egress or the destination pod's ingress.
type Verdict struct {
	Allowed bool
	// Pod is the pod whose policies were consulted; empty when the address
	// is not a pod's (nothing to isolate).
	Pod string
	// Isolated: some policy selects Pod for this direction.
	Isolated bool
	// Policy and Rule name the rule that allowed the flow (Rule is the
	// index in the policy's ingress or egress list); empty/-1 otherwise.
	Policy string
	Rule   int
}

func (v Verdict) String() string {
	switch {
	case v.Pod == "":
		return "allowed: not a pod"
	case !v.Isolated:
		return fmt.Sprintf("allowed: %s is not isolated", v.Pod)
	case v.Allowed:
		return fmt.Sprintf("allowed: %s rule %d", v.Policy, v.Rule)
	}
	return fmt.Sprintf("denied: %s is isolated and no rule matches", v.Pod)
}

// Decision is the evaluator's answer for a flow.
type Decision struct {
	Egress  Verdict // of the pod that sends
	Ingress Verdict // of the pod that receives
}

// Allowed: both directions allow the flow.
func (d Decision) Allowed() bool { return d.Egress.Allowed && d.Ingress.Allowed }

// Evaluator answers policy questions about one snapshot of a cluster.
type Evaluator struct {
	c      *Cluster
	byAddr map[netip.Addr]*Pod
}

// NewEvaluator indexes the cluster's active pods by address.
func NewEvaluator(c *Cluster) *Evaluator {
	e := &Evaluator{c: c, byAddr: map[netip.Addr]*Pod{}}
	for _, p := range c.SortedPods() {
		if !p.Active() {
			continue
		}
		for _, ip := range p.IPs {
			e.byAddr[ip] = p
		}
	}
	return e
}

// PodByAddr returns the active pod that owns addr, if any.
func (e *Evaluator) PodByAddr(addr netip.Addr) *Pod { return e.byAddr[addr.Unmap()] }

// Evaluate judges a flow in both directions, independently, as the kernel
// does: the sender's egress and the receiver's ingress must both allow it.
func (e *Evaluator) Evaluate(f Flow) Decision {
	f.Src, f.Dst = f.Src.Unmap(), f.Dst.Unmap()
	src, dst := e.PodByAddr(f.Src), e.PodByAddr(f.Dst)
	return Decision{
		Egress:  e.judge(Egress, src, f.Dst, dst, f),
		Ingress: e.judge(Ingress, dst, f.Src, src, f),
	}
}

// judge decides for subject (the pod whose policies apply) talking to the
// peer address (owned by peerPod, if a pod).
func (e *Evaluator) judge(dir Direction, subject *Pod, peer netip.Addr, peerPod *Pod, f Flow) Verdict {
	v := Verdict{Allowed: true, Rule: -1}
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
	for _, p := range e.c.SortedPolicies() {
		if !p.Isolates[dir] || !p.Selects(e.c, subject) {
			continue
		}
		v.Isolated = true
		for _, r := range p.Rules[dir] {
			if e.peerMatches(r, peer, peerPod) && portMatches(r, dst, f) {
				v.Allowed, v.Policy, v.Rule = true, p.Key(), r.Index
				return v
			}
		}
	}
	v.Allowed = !v.Isolated
	return v
}

func (e *Evaluator) peerMatches(r Rule, addr netip.Addr, pod *Pod) bool {
	if r.AllPeers {
		return true
	}
	for i := range r.Peers {
		peer := &r.Peers[i]
		if peer.Pods {
			if pod != nil && peer.MatchesPod(e.c, pod) {
				return true
			}
		} else if peer.MatchesAddr(addr) {
			return true
		}
	}
	return false
}

func portMatches(r Rule, dst *Pod, f Flow) bool {
	if r.AllPorts {
		return true
	}
	for _, p := range r.Ports {
		if p.Proto != f.Proto {
			continue
		}
		if p.Name != "" {
			if dst == nil {
				continue
			}
			if n, ok := dst.PortNumber(p.Name, p.Proto); ok && n == f.Port {
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
