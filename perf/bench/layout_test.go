package bench

import (
	"slices"
	"strings"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// BenchmarkRelabelBytesByLayout estimates what a pod relabel would send
// in layouts the agent does not have, to say which one the target on
// bytes per relabel (L ÷ S ≤ 1.5) needs: it is an estimate from the
// agent's own transactions, not a measurement of a kernel. For the 20
// relabels of each of S and L (the suite's events, engine alone) it
// reports the p50 of the bytes sent now (as the suite counts them), and:
//
//   - nogroups: each identity's map keyed on the local pod's address .
//     protocol . port range, to the rule's chain, so no group chain, port
//     map or named-port set: each (pod, identity) element becomes one per
//     range its group's rules cut the ports into (a named port is the
//     pod's own number; a rule of every protocol and port, four ranges of
//     protocol numbers and, for TCP, UDP and SCTP, the gaps the rules
//     before it leave), each 8 bytes longer than a port map's element
//     (the address in its key and its key's end);
//   - sharedclass: that, and one class chain per direction for every
//     isolated pod (its class's policies named from its address by the
//     verdict-log reader, not by a chain of its own);
//   - norulechains: that, and no chain per NetworkPolicy rule new to the
//     node;
//   - nspolicies: the agent's layout, but with every policy of a
//     namespace on each node that has a pod of it, used by a local pod
//     or not: a relabel then sends no rule's chain and no port map (nor
//     their elements), but still its class and group chains.
//
// Run it with:
//
//	go test -run '^$' -bench RelabelBytesByLayout ./perf/bench -benchtime 1x
func BenchmarkRelabelBytesByLayout(b *testing.B) {
	var now [2]float64
	var estimates [2][4]float64
	for i, size := range []gen.Size{gen.S, gen.L} {
		c, node, e, shadow := engineOn(b, size)
		var sent []float64
		var est [4][]float64
		for _, ev := range c.Events(node, 20) {
			if err := applyEvent(e, ev); err != nil {
				b.Fatal(err)
			}
			tx := diff.Partial(shadow, e.Ruleset(), e.TakeTouched())
			if ev.Kind == gen.PodRelabel {
				total, parts := relabelParts(b, tx, shadow, e.Ruleset())
				sent = append(sent, total)
				est[0] = append(est[0], parts.kept+parts.class+parts.rules)
				est[1] = append(est[1], parts.kept+parts.rules)
				est[2] = append(est[2], parts.kept)
				est[3] = append(est[3], total-policyBytes(b, tx))
			}
			shadow.ApplyOps(tx)
		}
		now[i] = DistOfFloats(sent).P50
		for j := range est {
			estimates[i][j] = DistOfFloats(est[j]).P50
		}
	}
	b.ReportMetric(now[1]/now[0], "L÷S-now")
	for j, name := range []string{"nogroups", "sharedclass", "norulechains", "nspolicies"} {
		b.ReportMetric(estimates[1][j]/estimates[0][j], "L÷S-"+name)
		b.ReportMetric(estimates[1][j], "B-L-"+name)
		b.ReportMetric(estimates[0][j], "B-S-"+name)
	}
	b.ReportMetric(now[1], "B-L-now")
	b.ReportMetric(now[0], "B-S-now")
}

// policyBytes is what tx sends for NetworkPolicy rules' own objects:
// their verdict chains and port maps, with their rules and elements.
func policyBytes(b *testing.B, tx *nft.Transaction) float64 {
	sizes, err := nft.OpBytes(tx)
	if err != nil {
		b.Fatal(err)
	}
	var n float64
	for i, op := range tx.Ops {
		if strings.HasPrefix(op.Name, "v-ingress-") || strings.HasPrefix(op.Name, "v-egress-") || strings.HasPrefix(op.Name, "ports-to-") {
			n += float64(sizes[i])
		}
	}
	return n
}

// layoutParts is a relabel's bytes in the layout without group chains:
// what stays (identity elements as ranges included), class chains, and
// NetworkPolicy rules' chains.
type layoutParts struct{ kept, class, rules float64 }

// relabelParts splits tx's bytes (now) into layoutParts; before and after
// are the rulesets around it.
func relabelParts(b *testing.B, tx *nft.Transaction, before, after *nft.Ruleset) (float64, layoutParts) {
	sizes, err := nft.OpBytes(tx)
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	var p layoutParts
	for i, op := range tx.Ops {
		n := float64(sizes[i])
		total += n
		switch name := op.Name; {
		case strings.Contains(name, "-grp-"), strings.HasPrefix(name, "ports-to-"), strings.HasPrefix(name, "named-local"):
		case bytesKindOf(op) == bytesGroups: // a local pod's element in an identity's map
			add := op.Kind == nft.OpAddElements
			p.kept += n - float64(len(op.Elems))*elemBytes(b, op) // the op's own header
			for _, el := range op.Elems {
				rs := after
				if !add {
					rs, el = before, oldElem(b, before.Sets[name], el)
				}
				for _, target := range portRanges(b, rs, el) {
					p.kept += rangeBytes(b, target, add)
				}
			}
		case strings.Contains(name, "-class-"):
			p.class += n
		case strings.HasPrefix(name, "v-ingress-"), strings.HasPrefix(name, "v-egress-"):
			p.rules += n
		default:
			p.kept += n
		}
	}
	return total, p
}

// portRanges lists the rule chain of each range a (local pod, identity)
// element would have instead of its group chain.
func portRanges(b *testing.B, rs *nft.Ruleset, el nft.Elem) []string {
	var out []string
	taken := map[uint8][][2]int{} // by protocol: the port ranges of the rules before
	for _, r := range rs.Chains[el.Chain].Rules {
		switch m := r.Matches; {
		case r.Verdict.Kind == nft.Vmap && r.Verdict.ProtoPort:
			for pe := range rs.Sets[r.Verdict.Map].All() {
				out = append(out, pe.Chain)
				taken[pe.Proto] = append(taken[pe.Proto], [2]int{int(pe.Port), int(pe.PortEnd)})
			}
		case len(m) == 1:
			named, ok := m[0].(nft.MatchDaddrProtoPortInSet)
			if !ok {
				b.Fatalf("group %s: a rule matching %T", el.Chain, m[0])
			}
			for ne := range rs.Sets[named.Set].All() {
				if ne.Addr == el.Addr {
					out = append(out, r.Verdict.Chain)
					taken[ne.Proto] = append(taken[ne.Proto], [2]int{int(ne.Port), int(ne.Port)})
				}
			}
		case len(m) == 0 && r.Verdict.Kind == nft.Goto:
			// Every protocol and port: the protocol numbers other than
			// TCP, UDP and SCTP in four ranges (0-5, 7-16, 18-131,
			// 133-255) of every port, and for each of those three the
			// gaps the rules before it leave.
			n := 4
			for _, proto := range []uint8{nft.ProtoTCP, nft.ProtoUDP, nft.ProtoSCTP} {
				n += gaps(taken[proto])
			}
			out = append(out, slices.Repeat([]string{r.Verdict.Chain}, n)...)
		default:
			b.Fatalf("group %s: rule %s", el.Chain, r.Text())
		}
	}
	return out
}

// gaps counts the ranges of ports 0-65535 that none of taken covers.
func gaps(taken [][2]int) int {
	slices.SortFunc(taken, func(a, b [2]int) int { return a[0] - b[0] })
	n, next := 0, 0
	for _, t := range taken {
		if t[0] > next {
			n++
		}
		next = max(next, t[1]+1)
	}
	if next <= 65535 {
		n++
	}
	return n
}

// oldElem is an address's element in an ids map before the change.
func oldElem(b *testing.B, s *nft.Set, el nft.Elem) nft.Elem {
	for x := range s.All() {
		if x.Addr == el.Addr {
			return x
		}
	}
	b.Fatalf("%s: no element of %v before", s.Name, el.Addr)
	return el
}

// elemBytes is what one element of op adds to its message.
func elemBytes(b *testing.B, op nft.Op) float64 {
	one := op
	one.Elems = op.Elems[:1]
	two := one
	two.Elems = []nft.Elem{op.Elems[0], op.Elems[0]}
	return float64(opBytes(b, two) - opBytes(b, one))
}

// rangeBytes is what one element of a protocol . port range map to chain
// adds to its message (a delete sends no chain), with 4 bytes more in its
// key and its key's end for the pod's IPv4 address.
func rangeBytes(b *testing.B, chain string, add bool) float64 {
	op := nft.Op{Kind: nft.OpAddElements, Name: "ingress-idmap-v4-0123456789abcdef", SetType: nft.MapProtoPortVerdict,
		Elems: []nft.Elem{{Proto: nft.ProtoTCP, Port: 80, PortEnd: 80, Chain: chain}}}
	if !add {
		op.Kind, op.Elems[0].Chain = nft.OpDeleteElements, ""
	}
	return elemBytes(b, op) + 8
}

func opBytes(b *testing.B, op nft.Op) int {
	sizes, err := nft.OpBytes(&nft.Transaction{Ops: []nft.Op{op}})
	if err != nil {
		b.Fatal(err)
	}
	return sizes[0]
}
