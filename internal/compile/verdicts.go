package compile

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Verdict logs. A rule whose verdict is logged is preceded by a copy of its
// matches that logs: `limit rate ... log prefix "np:D:1a2b3c4d" group N`.
// The limit stops that rule, not the packet, when over the rate (which is
// why the log is a rule of its own: a limit in the verdict's rule would skip
// the verdict too). The prefix is compact, at most 13 bytes of the
// kernel's 127: "np", the verdict (D drop, W would-drop, A accept), and a
// hash of the origin (direction, tier, policy, rule) that the agent maps
// back with Origins. Policy names can be 253 characters: they would not
// fit.

// LogRate and LogBurst are each logged rule's limit in the kernel, in
// packets per second: a flood of denied packets costs at most this many
// copies per rule, and the agent limits its own lines on top.
const (
	LogRate  = 10
	LogBurst = 20
)

// Verdict labels of an Origin.
const (
	VerdictAccept    = "accept"
	VerdictDrop      = "drop"
	VerdictPass      = "pass"
	VerdictWouldDrop = "would-drop"
)

// LogPrefix is the log prefix of the rules that implement o.
func LogPrefix(o *nft.Origin) string {
	code := map[string]string{VerdictDrop: "D", VerdictWouldDrop: "W", VerdictAccept: "A", VerdictPass: "P"}[o.Verdict]
	h := fnv.New32a()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s", o.Direction, o.Tier, o.Policy, o.Rule, o.Verdict)
	return fmt.Sprintf("np:%s:%08x", code, h.Sum32())
}

func (e *Engine) logGroup() uint16 {
	if e.opts.LogGroup != 0 {
		return e.opts.LogGroup
	}
	return model.DefaultLogGroup
}

// logs reports whether the kernel logs verdict v.
func (e *Engine) logs(v string) bool {
	switch e.opts.Logs {
	case model.LogNone:
		return false
	case model.LogAll:
		return v != VerdictPass
	}
	return v == VerdictDrop || v == VerdictWouldDrop
}

// withOrigin sets o on rules, and puts a log rule before each when its
// verdict is logged: by the mode, or, for accepts, because the policy asks
// (logAccepts: nftpolicy.io/log-accepts).
func (e *Engine) withOrigin(rules []*nft.Rule, o *nft.Origin, logAccepts bool) []*nft.Rule {
	if o == nil {
		return rules
	}
	for _, r := range rules {
		r.Origin = o
	}
	logged := e.logs(o.Verdict) || (logAccepts && o.Verdict == VerdictAccept && e.opts.Logs != model.LogNone)
	if !logged {
		return rules
	}
	out := make([]*nft.Rule, 0, 2*len(rules))
	log := &nft.Log{Group: e.logGroup(), Prefix: LogPrefix(o), Rate: LogRate, Burst: LogBurst}
	for _, r := range rules {
		out = append(out, &nft.Rule{Matches: r.Matches, Log: log, Origin: o, Comment: r.Comment + ": log"}, r)
	}
	return out
}

func ruleLabel(i int) string { return strconv.Itoa(i) }

// npOrigin is a NetworkPolicy rule's origin.
func npOrigin(dir model.Direction, key string, rule int) *nft.Origin {
	return &nft.Origin{Direction: dir.String(), Tier: "networkpolicy", Policy: key, Rule: ruleLabel(rule), Verdict: VerdictAccept}
}

// isolationOrigin is the drop at the end of a class chain: no rule of the
// policies that isolate the pod matched.
func isolationOrigin(dir model.Direction, keys []string, verdict string) *nft.Origin {
	return &nft.Origin{Direction: dir.String(), Tier: "networkpolicy", Policy: strings.Join(keys, ","), Rule: "default-deny", Verdict: verdict}
}

// tierOrigin is an admin or baseline rule's origin.
func tierOrigin(p *model.TierPolicy, dir model.Direction, r model.TierRule) *nft.Origin {
	v := map[model.Action]string{model.Allow: VerdictAccept, model.Deny: VerdictDrop, model.Pass: VerdictPass}[r.Action]
	if v == "" {
		v = VerdictDrop // an unknown action is a Deny
	}
	if p.Audit {
		v = VerdictWouldDrop
	}
	return &nft.Origin{Direction: dir.String(), Tier: p.Tier.String(), Policy: p.Key(), Rule: ruleLabel(r.Index), RuleName: r.Name, Verdict: v}
}

// unknownOrigin is the drop of pods not yet known.
func unknownOrigin(src bool) *nft.Origin {
	dir := model.Ingress
	if src {
		dir = model.Egress
	}
	return &nft.Origin{Direction: dir.String(), Tier: "unknown-pod", Verdict: VerdictDrop}
}

// Origins indexes the origins of a ruleset's rules by log prefix and by
// rule ID (the comment the kernel keeps, by which counters are read
// back). Call Add with the chains a sync touched: entries are never wrong,
// only possibly unused, so a full Reset now and then bounds them.
type Origins struct {
	ByPrefix map[string]*nft.Origin
	ByID     map[string]*nft.Origin
}

// NewOrigins indexes every chain of rs.
func NewOrigins(rs *nft.Ruleset) *Origins {
	o := &Origins{ByPrefix: map[string]*nft.Origin{}, ByID: map[string]*nft.Origin{}}
	for _, c := range rs.Chains {
		o.AddChain(c)
	}
	return o
}

// AddChain indexes one chain's rules.
func (o *Origins) AddChain(c *nft.Chain) {
	for _, r := range c.Rules {
		if r.Origin == nil {
			continue
		}
		if r.Log != nil {
			o.ByPrefix[r.Log.Prefix] = r.Origin
		}
		if r.Counter {
			o.ByID[r.ID()] = r.Origin
		}
	}
}

// AfterMap is the verdict map from a local pod that only audit
// NetworkPolicies isolate (in one direction) to where it goes without them:
// its baseline chain or no-later-tier-accept.
func AfterMap(dir model.Direction, fam nft.Family) string {
	return fmt.Sprintf("%s-after-audit-v%d", dir, fam)
}

func auditPolicyDef(key string, dir model.Direction) chainDef {
	return chainDef{kind: chainAuditPolicy, dir: dir, keys: []string{key}}
}

// afterVerdict looks the subject pod up in the after map, made (maybe
// empty) when a rule first refers to it.
func (e *Engine) afterVerdict(dir model.Direction, fam nft.Family) nft.Verdict {
	if name := AfterMap(dir, fam); !e.hasSet(name) {
		e.newSet(nft.NewSet(name, mapType(fam), fmt.Sprintf("local pods only audit %s policies isolate -> where they go without them", dir)), nil)
	}
	return nft.Verdict{Kind: nft.Vmap, Map: AfterMap(dir, fam), Family: fam, Src: dir == model.Egress}
}

// auditClassChain is shared by the local pods that the same audit
// NetworkPolicies alone isolate: each policy's chain goes on through the
// after map when one of its rules allows; what none allows is logged and
// counted as would-drop and goes on the same way. Nothing is dropped here.
func (e *Engine) auditClassChain(d chainDef) *nft.Chain {
	ch := &nft.Chain{Name: d.name()}
	if d.dir == model.Egress {
		for _, fam := range families {
			ch.Rules = append(ch.Rules, &nft.Rule{Matches: []nft.Match{nft.MatchFibDaddrLocal{}}, Verdict: e.afterVerdict(d.dir, fam), Comment: "the pod's own node (audit)"})
		}
	}
	for _, t := range d.targets() {
		ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Jump, Chain: t.name()}, Comment: t.keys[0]})
	}
	comment := fmt.Sprintf("%s isolated by %s (audit): no rule matched, would drop", d.dir, strings.Join(d.keys, ", "))
	var last []*nft.Rule
	for _, fam := range families {
		last = append(last, &nft.Rule{Matches: []nft.Match{e.familyGuard(fam, d.dir)}, Counter: true, Verdict: e.afterVerdict(d.dir, fam), Comment: comment})
	}
	ch.Rules = append(ch.Rules, e.withOrigin(last, isolationOrigin(d.dir, d.keys, VerdictWouldDrop), false)...)
	return ch
}

// familyGuard matches the pod's own address of family fam: in the after
// map by construction, so the counter counts each packet once, in its
// family's rule.
func (e *Engine) familyGuard(fam nft.Family, dir model.Direction) nft.Match {
	e.afterVerdict(dir, fam) // makes the map
	return nft.MatchAddrInSet{Family: fam, Src: dir == model.Egress, Set: AfterMap(dir, fam)}
}

// auditPolicyChain holds one audit NetworkPolicy's rules for one direction:
// what a rule allows goes on through the after map.
func (e *Engine) auditPolicyChain(p *model.Policy, d chainDef) *nft.Chain {
	ch := &nft.Chain{Name: d.name()}
	for _, r := range p.Rules[d.dir] {
		comment := fmt.Sprintf("%s %s rule %d (audit)", p.Key(), d.dir, r.Index)
		verdict := func(fam nft.Family) nft.Verdict {
			if fam == 0 {
				return nft.Verdict{Kind: nft.Vmap} // split per family below
			}
			return e.afterVerdict(d.dir, fam)
		}
		for _, rule := range e.rules(d.dir, r.Match, comment, verdict) {
			rule.Counter = false // only would-drops are counted
			if rule.Verdict.Family == 0 {
				// A rule of any address: once per family, as the map is.
				for _, fam := range families {
					c := *rule
					c.Verdict = e.afterVerdict(d.dir, fam)
					c.Matches = append([]nft.Match{e.familyGuard(fam, d.dir)}, rule.Matches...)
					ch.Rules = append(ch.Rules, &c)
				}
				continue
			}
			ch.Rules = append(ch.Rules, rule)
		}
	}
	return ch
}
