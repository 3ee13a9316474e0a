package nft

import (
	"fmt"

	"github.com/google/nftables/expr"
)

// MatchIfname matches the name of the packet's input interface (with Out,
// its output interface); Not negates. A secondary network's table guards
// its base chains with it: a packet bridged through bridge netfilter
// reaches the inet forward hook with the bridge itself as both its input
// and output interface (measured on this kernel: the port is never seen
// there, and `meta ibrname` is refused in an inet table; docs/multinetwork.md).
type MatchIfname struct {
	Name     string
	Out, Not bool
}

func (m MatchIfname) matchText() string {
	kw, op := "iifname", ""
	if m.Out {
		kw = "oifname"
	}
	if m.Not {
		op = "!= "
	}
	return fmt.Sprintf("%s %s%q", kw, op, m.Name)
}

// ifnameSize is IFNAMSIZ: the meta key's register holds the name padded
// with zeros to it, so comparing all of it is an exact match.
const ifnameSize = 16

func ifnameExprs(m MatchIfname) ([]expr.Any, error) {
	if m.Name == "" || len(m.Name) >= ifnameSize {
		return nil, fmt.Errorf("interface name %q: must be 1 to %d bytes", m.Name, ifnameSize-1)
	}
	key, op := expr.MetaKeyIIFNAME, expr.CmpOpEq
	if m.Out {
		key = expr.MetaKeyOIFNAME
	}
	if m.Not {
		op = expr.CmpOpNeq
	}
	data := make([]byte, ifnameSize)
	copy(data, m.Name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: reg32(0)},
		&expr.Cmp{Op: op, Register: reg32(0), Data: data},
	}, nil
}

// traceIfname is what the tracer makes of MatchIfname.
func traceIfname(m MatchIfname, p Packet) bool {
	name := p.Iif
	if m.Out {
		name = p.Oif
	}
	return (name == m.Name) != m.Not
}
