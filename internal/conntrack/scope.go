package conntrack

import (
	"net/netip"

	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Scope is the flows whose verdict a transaction may have changed: those
// whose first packet's trace can meet one of its changes. A flow outside it
// is judged alike by the ruleset before and after, so a cut after a pod's
// event traces the flows of that pod's addresses, not every flow of the
// node.
//
// A trace meets a change when it looks up a changed element's key or runs a
// changed rule. Element keys name the flow's own fields: an address (one of
// its two), an address range, or a protocol and port range (its destination
// port). Rules are coarser: a rule added to or flushed from a chain that
// stays may be on any flow's path, so such a transaction's scope is every
// flow. Objects that are only created or deleted change no path by
// themselves: a new chain or set is reached only through a rule or element
// added with it, a deleted one was left only through rules or elements
// removed with it, and those are in the scope; so a transaction that only
// creates objects denies nothing. Base chains are the exception: a hook
// reaches them.
type Scope struct {
	all    bool
	addrs  map[netip.Addr]struct{}
	ranges []addrRange
	ports  []portRange
}

type addrRange struct{ first, last netip.Addr }

type portRange struct {
	proto       uint8
	first, last uint16
}

// Everything is the scope of every flow.
func Everything() Scope { return Scope{all: true} }

// All reports whether the scope holds every flow.
func (s *Scope) All() bool { return s.all }

// Empty reports whether the scope holds no flow.
func (s *Scope) Empty() bool {
	return !s.all && len(s.addrs) == 0 && len(s.ranges) == 0 && len(s.ports) == 0
}

// Merge adds o's flows to s.
func (s *Scope) Merge(o *Scope) {
	if s.all || o.all {
		*s = Everything()
		return
	}
	for a := range o.addrs {
		s.addAddr(a)
	}
	s.ranges = append(s.ranges, o.ranges...)
	s.ports = append(s.ports, o.ports...)
}

func (s *Scope) addAddr(a netip.Addr) {
	if s.addrs == nil {
		s.addrs = map[netip.Addr]struct{}{}
	}
	s.addrs[a] = struct{}{}
}

// addrList returns the scope's addresses when it is made of addresses
// alone; a nil scope is every flow.
func (s *Scope) addrList() ([]netip.Addr, bool) {
	if s == nil || s.all || len(s.ranges) > 0 || len(s.ports) > 0 {
		return nil, false
	}
	out := make([]netip.Addr, 0, len(s.addrs))
	for a := range s.addrs {
		out = append(out, a)
	}
	return out, true
}

// Has reports whether e's flow is in the scope.
func (s *Scope) Has(e Entry) bool {
	if s.all {
		return true
	}
	if _, ok := s.addrs[e.Src]; ok {
		return true
	}
	if _, ok := s.addrs[e.Dst]; ok {
		return true
	}
	for _, r := range s.ranges {
		if r.holds(e.Src) || r.holds(e.Dst) {
			return true
		}
	}
	for _, p := range s.ports {
		if p.proto == e.Proto && p.first <= e.Port && e.Port <= p.last {
			return true
		}
	}
	return false
}

func (r addrRange) holds(a netip.Addr) bool {
	return a.BitLen() == r.first.BitLen() && r.first.Compare(a) <= 0 && a.Compare(r.last) <= 0
}

// ScopeOf is the scope of tx applied to old, the ruleset before it (nil:
// none, and then every flow).
func ScopeOf(old *nft.Ruleset, tx *nft.Transaction) Scope {
	if old == nil {
		return Everything()
	}
	deleted := map[string]bool{}
	for _, op := range tx.Ops {
		if op.Kind == nft.OpDeleteChain {
			deleted[op.Name] = true
		}
	}
	var s Scope
	for _, op := range tx.Ops {
		switch op.Kind {
		case nft.OpDeleteTable:
			return Everything()
		case nft.OpAddChain:
			if op.Hook != nil {
				return Everything() // a base chain sees every packet of its hook
			}
		case nft.OpFlushChain:
			if !deleted[op.Name] {
				return Everything()
			}
		case nft.OpAddRule:
			if _, existed := old.Chains[op.Name]; existed {
				return Everything()
			}
		case nft.OpAddElements, nft.OpDeleteElements:
			if !s.addKeys(op.SetType, op.Elems) {
				return Everything()
			}
		}
	}
	return s
}

// addKeys adds the flows that look up elems' keys in a set of type t; false
// for a type it does not know.
func (s *Scope) addKeys(t nft.SetType, elems []nft.Elem) bool {
	switch t {
	case nft.SetIPv4, nft.SetIPv6, nft.MapIPv4Verdict, nft.MapIPv6Verdict,
		nft.SetIPv4ProtoPort, nft.SetIPv6ProtoPort: // by the address alone: wider, never narrower
		for _, el := range elems {
			s.addAddr(el.Addr)
		}
	case nft.SetIPv4Interval, nft.SetIPv6Interval, nft.MapIPv4IntervalVerdict, nft.MapIPv6IntervalVerdict:
		for _, el := range elems {
			last := el.AddrEnd
			if !last.IsValid() {
				last = el.Addr
			}
			s.ranges = append(s.ranges, addrRange{el.Addr, last})
		}
	case nft.SetProtoPortInterval, nft.MapProtoPortVerdict:
		for _, el := range elems {
			last := max(el.PortEnd, el.Port)
			s.ports = append(s.ports, portRange{el.Proto, el.Port, last})
		}
	default:
		return false
	}
	return true
}
