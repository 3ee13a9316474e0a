package compile_test

import (
	"fmt"
	"math/rand"
	"net/netip"
	"strings"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/explain"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// TestExplainAgrees: on the random clusters of the evaluator/tracer
// agreement test, for every flow it checks, `nftpolicy explain` gives the
// verdict the compiled rulesets give when traced, names in each direction
// the tier and rule the evaluator decided with (every tier occurs), and
// that rule is one the traced packet met in the compiled ruleset.
func TestExplainAgrees(t *testing.T) {
	tiers := map[string]int{}
	for seed := int64(1); seed <= 300; seed++ {
		r := rand.New(rand.NewSource(seed))
		c := model.NewCluster()
		for _, o := range compile.RandomObjects(r) {
			if err := c.Set(o); err != nil {
				t.Fatal(err)
			}
		}
		rulesets := map[string]*nft.Ruleset{"n1": compile.Node(c, "n1"), "n2": compile.Node(c, "n2")}
		ev := model.NewEvaluator(c)
		x := explain.New(c)
		addrs := []netip.Addr{netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("2001:db8::5")}
		for _, p := range c.SortedPods() {
			if p.Active() {
				addrs = append(addrs, p.IPs...)
			}
		}
		dsts := append([]netip.Addr{}, addrs...)
		for _, n := range c.Nodes {
			dsts = append(dsts, n.Addresses...)
		}
		for _, src := range addrs {
			for _, dst := range dsts {
				if src == dst || src.Is4() != dst.Is4() {
					continue
				}
				for _, pp := range []struct {
					proto uint8
					port  uint16
				}{{model.ProtoTCP, 80}, {model.ProtoTCP, 81}, {model.ProtoUDP, 80}, {model.ProtoTCP, 8080}, {model.ProtoSCTP, 80}, {model.ProtoUDP, 5353}} {
					f := model.Flow{Src: src, Dst: dst, Proto: pp.proto, Port: pp.port}
					rep, err := x.Explain(explain.Question{From: src.String(), To: dst.String(), Proto: pp.proto, Port: pp.port})
					if err != nil {
						t.Fatalf("seed %d: %v: %v", seed, f, err)
					}
					kernel, path := compile.KernelAllows(t, c, ev, rulesets, f)
					want := ev.Evaluate(f)
					if rep.Allowed != kernel || len(rep.Problems) > 0 {
						t.Fatalf("seed %d: %v: explain says allowed=%v, the traced rulesets %v (path %v); problems %v", seed, f, rep.Allowed, kernel, path, rep.Problems)
					}
					for _, d := range []struct {
						side explain.Side
						v    model.Verdict
					}{{rep.Egress, want.Egress}, {rep.Ingress, want.Ingress}} {
						if msg := sameRule(d.side, d.v); msg != "" {
							t.Fatalf("seed %d: %v %s: %s", seed, f, d.side.Direction, msg)
						}
						tiers[d.side.Tier+"/"+verdict(d.side.Allowed)]++
						if d.side.Rule != nil && !met(rep.Compiled, d.side.Rule) && decisive(rep, d.side) {
							t.Fatalf("seed %d: %v: explain names %s, which the traced packet never met: %+v", seed, f, d.side.Rule, rep.Compiled)
						}
					}
				}
			}
		}
	}
	// Every tier decided both ways somewhere, or the test proved less than
	// it says.
	for _, k := range []string{"admin/allowed", "admin/denied", "networkpolicy/allowed", "networkpolicy/denied", "baseline/allowed", "baseline/denied", "/allowed"} {
		if tiers[k] == 0 {
			t.Errorf("no direction decided as %s in 300 clusters: %v", k, tiers)
		}
	}
	t.Logf("directions decided, by tier/verdict: %v", tiers)
}

func verdict(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}

// sameRule compares explain's side with the evaluator's verdict.
func sameRule(s explain.Side, v model.Verdict) string {
	if s.Allowed != v.Allowed || s.Tier != v.Tier || s.Pod != v.Pod {
		return fmt.Sprintf("explain %+v, evaluator %+v", s, v)
	}
	if (s.Rule == nil) != (v.Policy == "") {
		return fmt.Sprintf("explain names rule %v, evaluator %q rule %d", s.Rule, v.Policy, v.Rule)
	}
	if s.Rule != nil {
		key := s.Rule.Kind + "/" + s.Rule.Name
		if s.Rule.Kind == "NetworkPolicy" {
			key = s.Rule.Namespace + "/" + s.Rule.Name
		}
		if key != v.Policy || s.Rule.Index != v.Rule {
			return fmt.Sprintf("explain names %s, evaluator %s rule %d", s.Rule, v.Policy, v.Rule)
		}
	}
	if (s.PassedBy == nil) != (v.PassedBy == "") || (s.PassedBy != nil && (s.PassedBy.Kind+"/"+s.PassedBy.Name != v.PassedBy || s.PassedBy.Index != v.PassRule)) {
		return fmt.Sprintf("explain names the Pass %v, evaluator %q rule %d", s.PassedBy, v.PassedBy, v.PassRule)
	}
	return ""
}

// met reports whether the packet met rule in the compiled rulesets: a
// matched rule's comment names its policy and "direction rule N".
func met(hops []explain.Hop, rule *explain.RuleRef) bool {
	prefix := rule.Kind + "/" + rule.Name + " "
	if rule.Kind == "NetworkPolicy" {
		prefix = rule.Namespace + "/" + rule.Name + " "
	}
	what := fmt.Sprintf(" %s rule %d", rule.Direction, rule.Index)
	for _, h := range hops {
		for _, r := range h.Rules {
			if strings.HasPrefix(r, prefix) && (strings.HasSuffix(r, what) || strings.Contains(r, what+" ") || strings.Contains(r, what+":")) {
				return true
			}
		}
	}
	return false
}

// decisive: the trace reaches the side's chain. An egress drop ends the
// packet's path before the receiver's ingress is judged.
func decisive(rep *explain.Report, s explain.Side) bool {
	return s.Direction == "egress" || rep.Egress.Allowed
}
