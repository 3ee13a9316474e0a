package nft

import (
	"fmt"
	"net/netip"
)

// Packet is what Trace needs to know about a packet.
type Packet struct {
	Src, Dst netip.Addr
	Proto    uint8
	Port     uint16 // destination port
	CtState  string // "new", "established", "related" or "invalid"
	// FromLocal: the source is an address of the node itself.
	FromLocal bool
	// ToLocal: the destination is an address of the node itself.
	ToLocal bool
	// Iif and Oif name the input and output interfaces, for MatchIfname
	// (a bridged packet has its bridge as both).
	Iif, Oif string
}

// TraceResult is what a base chain decided and the rules that matched on
// the way, by ID.
type TraceResult struct {
	Accepted bool // accept verdict, or fell through to the chain's accept policy
	Dropped  bool
	Matched  []string
	// Evaluated is the number of rules the packet met on its way, matched
	// or not: the work its verdict cost.
	Evaluated int
	// Logged are the log prefixes of the log rules that matched on the
	// way (the kernel's rate limits aside).
	Logged []string
}

// Trace runs a packet through one base chain of the ruleset, the way the
// kernel evaluates it. It exists to check the compiler against the model's
// evaluator, and to explain a verdict.
func (rs *Ruleset) Trace(base string, p Packet) (TraceResult, error) {
	return rs.trace(base, p, true)
}

// Drops reports whether base drops p: Trace without its record of the
// rules met, which took half of a trace's time in formatting their IDs
// (a cut judges thousands of conntrack entries in a row).
func (rs *Ruleset) Drops(base string, p Packet) (bool, error) {
	res, err := rs.trace(base, p, false)
	return res.Dropped, err
}

// trace is Trace; record keeps the rules that matched and the log prefixes.
func (rs *Ruleset) trace(base string, p Packet, record bool) (TraceResult, error) {
	var res TraceResult
	type frame struct {
		chain *Chain
		next  int
	}
	c, ok := rs.Chains[base]
	if !ok || c.Hook == nil {
		return res, fmt.Errorf("no base chain %q", base)
	}
	stack := []frame{{chain: c}}
	for steps := 0; len(stack) > 0; steps++ {
		if steps > 100000 {
			return res, fmt.Errorf("trace of %s does not end", base)
		}
		top := &stack[len(stack)-1]
		if top.next >= len(top.chain.Rules) {
			stack = stack[:len(stack)-1] // implicit return
			continue
		}
		r := top.chain.Rules[top.next]
		top.next++
		res.Evaluated++
		// The kernel would not have taken a rule that names a missing set.
		if name := rs.missingSet(r); name != "" {
			return res, fmt.Errorf("rule %q refers to missing set %q", r.ID(), name)
		}
		if !rs.matches(r, p) {
			continue
		}
		if r.Log != nil && record {
			res.Logged = append(res.Logged, r.Log.Prefix)
		}
		v := r.Verdict
		if v.Kind == Vmap {
			target, ok := rs.lookupVerdict(v, p)
			if !ok {
				continue
			}
			v = Verdict{Kind: Goto, Chain: target}
		}
		if v.Kind != VerdictNone && record {
			res.Matched = append(res.Matched, r.ID())
		}
		switch v.Kind {
		case Accept:
			res.Accepted = true
			return res, nil
		case Drop:
			res.Dropped = true
			return res, nil
		case Return:
			stack = stack[:len(stack)-1]
		case Jump, Goto:
			next, ok := rs.Chains[v.Chain]
			if !ok {
				return res, fmt.Errorf("rule %q: no chain %q", r.ID(), v.Chain)
			}
			if v.Kind == Goto {
				stack = stack[:len(stack)-1]
			}
			stack = append(stack, frame{chain: next})
		}
	}
	res.Accepted = true // base chain policy accept
	return res, nil
}

func (rs *Ruleset) missingSet(r *Rule) string {
	var buf [4]string // on the stack: this runs for every rule a trace meets
	for _, n := range appendRuleSets(buf[:0], r) {
		if _, ok := rs.Sets[n]; !ok {
			return n
		}
	}
	return ""
}

func (rs *Ruleset) lookupVerdict(v Verdict, p Packet) (string, bool) {
	s, ok := rs.Sets[v.Map]
	if !ok {
		return "", false
	}
	if v.ProtoPort {
		if s.Type != MapProtoPortVerdict {
			return "", false
		}
		e, ok := s.find(Elem{Proto: p.Proto, Port: p.Port})
		return e.Chain, ok
	}
	addr := p.Dst
	if v.Src {
		addr = p.Src
	}
	if FamilyOf(addr) != v.Family {
		return "", false
	}
	e, ok := s.find(Elem{Addr: addr})
	return e.Chain, ok
}

// find returns the element whose key holds key (an address, or a protocol
// and port), honouring intervals; the set's elements are disjoint.
func (s *Set) find(key Elem) (Elem, bool) {
	if s.byAddr() {
		c, ok := s.verdict(key.Addr)
		return Elem{Addr: key.Addr, Chain: c}, ok
	}
	for e := range s.All() {
		switch {
		case s.Type.IsProtoPort():
			if e.Proto == key.Proto && key.Port >= e.Port && key.Port <= e.PortEnd {
				return e, true
			}
		case s.Type.IsInterval():
			if !key.Addr.Less(e.Addr) && !e.AddrEnd.Less(key.Addr) {
				return e, true
			}
		}
	}
	return Elem{}, false
}

// FamilyOf is the family of an address.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

func (rs *Ruleset) matches(r *Rule, p Packet) bool {
	for _, m := range r.Matches {
		if !rs.match(m, p) {
			return false
		}
	}
	return true
}

func (rs *Ruleset) match(m Match, p Packet) bool {
	switch m := m.(type) {
	case MatchCtState:
		for _, s := range m.States {
			if s == p.CtState {
				return true
			}
		}
		return false
	case MatchAddrInSet:
		addr := p.Dst
		if m.Src {
			addr = p.Src
		}
		// A rule guarded by meta nfproto matches no packet of the other
		// family, negated or not.
		return FamilyOf(addr) == m.Family && rs.contains(m.Set, Elem{Addr: addr}) != m.Not
	case MatchProtoPortInSet:
		return rs.contains(m.Set, Elem{Proto: p.Proto, Port: p.Port})
	case MatchDaddrProtoPortInSet:
		return FamilyOf(p.Dst) == m.Family && rs.contains(m.Set, Elem{Addr: p.Dst, Proto: p.Proto, Port: p.Port})
	case MatchICMPv6ND:
		return false // Packet models TCP, UDP and SCTP only
	case MatchIfname:
		return traceIfname(m, p)
	case MatchFibSaddrLocal:
		return p.FromLocal
	case MatchFibDaddrLocal:
		return p.ToLocal
	case MatchDNSAnswer:
		return false // a Packet is a flow's first packet, never a reply
	}
	return false
}

// contains looks a key up in a set, honouring intervals.
func (rs *Ruleset) contains(name string, key Elem) bool {
	s, ok := rs.Sets[name]
	if !ok {
		return false
	}
	if s.Type.IsInterval() || s.Type.IsMap() {
		// A match on a map's keys (no verdict) holds for any element of
		// that key.
		_, ok := s.find(key)
		return ok
	}
	return s.Has(key)
}
