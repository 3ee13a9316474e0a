// Package explain answers operators' questions about one cluster snapshot
// in words: why a flow is allowed or denied (the deciding rule of each
// direction, checked against the compiled rulesets and, on a node, against
// the table the kernel holds), and which flows a change to the cluster
// would flip (Preview).
package explain

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nftpolicy/nftpolicy/internal/inet"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// ErrNoEndpoint marks a question about a pod that does not exist (or has
// no address of its own): the command exits 2 for it, not 0 with a verdict.
var ErrNoEndpoint = errors.New("no such endpoint")

// Endpoint is one end of the flow: the address used and what owns it.
type Endpoint struct {
	Given   string `json:"given"`
	Address string `json:"address"`
	Pod     string `json:"pod,omitempty"`  // namespace/name, when a pod owns the address
	Node    string `json:"node,omitempty"` // the pod's node, or the node whose address it is
}

// RuleRef names one rule of one policy.
type RuleRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Direction string `json:"direction"`
	Index     int    `json:"index"`
	RuleName  string `json:"ruleName,omitempty"` // the admin kinds' rules have names
	Action    string `json:"action"`             // Allow, Deny or Pass
}

// Policy is "Kind namespace/name" (namespace/name for NetworkPolicies, the
// name alone for the cluster-scoped kinds).
func (r RuleRef) Policy() string { return policyName(r.Kind, r.Namespace, r.Name) }

func (r RuleRef) String() string {
	s := fmt.Sprintf("%s, %s rule %d", r.Policy(), r.Direction, r.Index)
	if r.RuleName != "" {
		s += fmt.Sprintf(" %q", r.RuleName)
	}
	return s + " (" + r.Action + ")"
}

func policyName(kind, namespace, name string) string {
	if namespace == "" {
		return kind + " " + name
	}
	return kind + " " + namespace + "/" + name
}

// Side is the verdict of one direction: the sender's egress or the
// receiver's ingress.
type Side struct {
	Direction string `json:"direction"`
	Pod       string `json:"pod,omitempty"` // whose policies were consulted; empty: not a pod
	Allowed   bool   `json:"allowed"`
	// Tier that decided: admin, networkpolicy, baseline; empty when no
	// policy had a say.
	Tier string   `json:"tier,omitempty"`
	Rule *RuleRef `json:"rule,omitempty"` // the rule that decided, if a rule did
	// PassedBy is the admin-tier Pass rule that handed the flow to the
	// later tiers, if one did.
	PassedBy *RuleRef `json:"passedBy,omitempty"`
	// Isolating are the NetworkPolicies that isolate Pod in this direction
	// ("NetworkPolicy ns/name"), when the NetworkPolicy tier decided.
	Isolating []string `json:"isolating,omitempty"`
	Reason    string   `json:"reason"`
	// Audit is the verdict this direction would get if the policies in
	// audit mode (nftpolicy.io/enforcement: audit) were enforced, when it
	// differs: what the kernel logs and counts as would-drop.
	Audit *Side `json:"audit,omitempty"`
}

// Hop is one base chain of one node the flow crosses, and what the compiled
// ruleset of that node does with the flow's first packet there.
type Hop struct {
	Node    string   `json:"node"`
	Chain   string   `json:"chain"`
	Verdict string   `json:"verdict"` // accept or drop
	Rules   []string `json:"rules"`   // comments of the rules with a verdict that matched, in order
	// Logged are the verdict logs the packet causes (the kernel's rate
	// limits aside): "would-drop networkpolicy y/trial default-deny".
	Logged []string `json:"logged,omitempty"`
}

// Report is the answer to one question.
type Report struct {
	From     Endpoint `json:"from"`
	To       Endpoint `json:"to"`
	Protocol string   `json:"protocol"`
	Port     uint16   `json:"port"`
	Allowed  bool     `json:"allowed"`
	Egress   Side     `json:"egress"`
	Ingress  Side     `json:"ingress"`
	// Compiled is the first packet traced through the rulesets the agent
	// compiles for the nodes it crosses (the `nft list` a person reads).
	Compiled []Hop `json:"compiled"`
	// Problems are disagreements between the evaluator and the compiled
	// rulesets (a bug if ever not empty).
	Problems []string `json:"problems,omitempty"`
	// Node is the comparison with one node's kernel (--node-ruleset).
	Node *NodeCheck `json:"nodeCheck,omitempty"`
}

// Question is a flow as a person asks about it.
type Question struct {
	From, To string // "namespace/pod" or an IP address
	Proto    uint8
	Port     uint16
}

// ParsePort reads PORT[/PROTO] ("80", "53/udp"), or PROTO/PORT as explain
// and preview print ports ("udp/53"); the protocol defaults to TCP.
func ParsePort(s string) (proto uint8, port uint16, err error) {
	num, name, _ := strings.Cut(s, "/")
	if _, err := strconv.Atoi(num); err != nil && name != "" {
		num, name = name, num
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return 0, 0, fmt.Errorf("port %q: want a number 1-65535, then optionally /tcp, /udp or /sctp", s)
	}
	switch strings.ToLower(name) {
	case "", "tcp":
		proto = inet.TCP
	case "udp":
		proto = inet.UDP
	case "sctp":
		proto = inet.SCTP
	default:
		return 0, 0, fmt.Errorf("port %q: unknown protocol %q (tcp, udp or sctp)", s, name)
	}
	return proto, uint16(n), nil
}

// Explainer answers questions about one cluster snapshot.
type Explainer struct {
	c  *model.Cluster
	ev *model.Evaluator
	// audit judges with the audit policies enforced; nil when the cluster
	// has none.
	audit *model.Evaluator
	// rulesets are the compiled rulesets by node, compiled on first use.
	rulesets map[string]*nft.Ruleset
}

// New indexes a cluster for questions.
func New(c *model.Cluster) *Explainer {
	x := &Explainer{c: c, ev: model.NewEvaluator(c), rulesets: map[string]*nft.Ruleset{}}
	if hasAudit(c) {
		x.audit = model.NewEvaluatorWith(c, model.Options{EnforceAudit: true})
	}
	return x
}

func hasAudit(c *model.Cluster) bool {
	for _, p := range c.Policies {
		if p.Audit {
			return true
		}
	}
	for _, p := range c.TierPolicies {
		if p.Audit {
			return true
		}
	}
	return false
}

// Explain answers q. Its error wraps ErrNoEndpoint when an endpoint names a
// pod that does not exist.
func (x *Explainer) Explain(q Question) (*Report, error) {
	from, to, f, err := x.resolve(q)
	if err != nil {
		return nil, err
	}
	d := x.ev.Evaluate(f)
	r := &Report{From: from, To: to, Protocol: inet.ProtoName(f.Proto), Port: f.Port, Allowed: d.Allowed(),
		Egress: x.side(model.Egress, d.Egress, f, false), Ingress: x.side(model.Ingress, d.Ingress, f, false)}
	if x.audit != nil {
		for _, s := range []*Side{&r.Egress, &r.Ingress} {
			dir := model.Egress
			if s == &r.Ingress {
				dir = model.Ingress
			}
			if v := x.audit.Judge(dir, f); v.Allowed != s.Allowed {
				a := x.side(dir, v, f, true)
				s.Audit = &a
			}
		}
	}
	hops := x.Path(f)
	allowed := true
	for _, h := range hops {
		hop, err := traceHop(x.ruleset(h.Node), h, f)
		if err != nil {
			r.Problems = append(r.Problems, err.Error())
			continue
		}
		r.Compiled = append(r.Compiled, hop)
		if hop.Verdict == "drop" {
			allowed = false
			break // a drop is final: the packet goes no further
		}
	}
	if len(r.Problems) == 0 && allowed != r.Allowed {
		r.Problems = append(r.Problems, fmt.Sprintf("the compiled rulesets %s the flow but the evaluator says %s: a compiler bug, please report it",
			verdictWord(allowed), verdictWord(r.Allowed)))
	}
	return r, nil
}

func (x *Explainer) ruleset(node string) *nft.Ruleset {
	rs, ok := x.rulesets[node]
	if !ok {
		rs = compileNode(x.c, node)
		x.rulesets[node] = rs
	}
	return rs
}

func verdictWord(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}

// resolve turns the question's endpoints into addresses of one family
// (IPv4 first when both ends have both) and the flow.
func (x *Explainer) resolve(q Question) (from, to Endpoint, f model.Flow, err error) {
	fromAddrs, err := x.addresses(q.From)
	if err != nil {
		return from, to, f, err
	}
	toAddrs, err := x.addresses(q.To)
	if err != nil {
		return from, to, f, err
	}
	for _, want4 := range []bool{true, false} {
		src, okS := pick(fromAddrs, want4)
		dst, okD := pick(toAddrs, want4)
		if okS && okD {
			f = model.Flow{Src: src, Dst: dst, Proto: q.Proto, Port: q.Port}
			return x.endpoint(q.From, src), x.endpoint(q.To, dst), f, nil
		}
	}
	return from, to, f, fmt.Errorf("%s (%v) and %s (%v) have no IP family in common", q.From, fromAddrs, q.To, toAddrs)
}

func pick(addrs []netip.Addr, want4 bool) (netip.Addr, bool) {
	for _, a := range addrs {
		if a.Is4() == want4 {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// addresses reads an endpoint: an address (any: one outside the cluster is
// a valid question), or a pod, which must exist and own addresses.
func (x *Explainer) addresses(s string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("%q: want namespace/pod or an IP address", s)
	}
	p := x.c.Pods[s]
	switch {
	case p == nil:
		return nil, fmt.Errorf("pod %s: %w", s, ErrNoEndpoint)
	case p.HostNetwork:
		return nil, fmt.Errorf("pod %s uses the host's network: ask about its node's address instead: %w", s, ErrNoEndpoint)
	case !p.Active():
		return nil, fmt.Errorf("pod %s has no address of its own (pending, or finished): %w", s, ErrNoEndpoint)
	}
	return p.IPs, nil
}

func (x *Explainer) endpoint(given string, a netip.Addr) Endpoint {
	e := Endpoint{Given: given, Address: a.String()}
	if p := x.ev.PodByAddr(a); p != nil {
		e.Pod, e.Node = p.Key(), p.Node
	} else {
		e.Node = x.nodeOf(a)
	}
	return e
}

// nodeOf names the node that owns addr, if one does (the first by name).
func (x *Explainer) nodeOf(addr netip.Addr) string {
	best := ""
	for _, n := range x.c.Nodes {
		for _, a := range n.Addresses {
			if a == addr && (best == "" || n.Name < best) {
				best = n.Name
			}
		}
	}
	return best
}

// side turns one direction of the evaluator's decision into words, naming
// the rule (and its name and action where the API has them) or the
// isolating policies.
func (x *Explainer) side(dir model.Direction, v model.Verdict, f model.Flow, audit bool) Side {
	s := Side{Direction: dir.String(), Pod: v.Pod, Allowed: v.Allowed, Tier: v.Tier}
	s.Reason = x.reason(&s, dir, v, f, audit)
	if v.PassedBy != "" {
		s.PassedBy = x.tierRule(v.PassedBy, dir, v.PassRule)
		s.Reason += fmt.Sprintf("; before that, %s handed it to the later tiers", s.PassedBy)
	}
	return s
}

func (x *Explainer) reason(s *Side, dir model.Direction, v model.Verdict, f model.Flow, audit bool) string {
	peer := f.Dst
	if dir == model.Ingress {
		peer = f.Src
	}
	switch {
	case v.Pod == "":
		return "not a pod's address: no policy applies"
	case v.Tier == "":
		return fmt.Sprintf("allowed: no policy decides for %s in %s", v.Pod, dir)
	case v.Tier == "networkpolicy":
		for _, p := range x.c.Isolating(x.c.Pods[v.Pod], dir) {
			if p.Audit && !audit {
				continue // not enforced: it isolates nothing
			}
			s.Isolating = append(s.Isolating, policyName("NetworkPolicy", p.Namespace, p.Name))
		}
		iso := strings.Join(s.Isolating, ", ")
		switch {
		case !v.Allowed:
			return fmt.Sprintf("denied: %s is isolated for %s by %s and none of their rules matches", v.Pod, dir, iso)
		case v.Policy == "":
			return fmt.Sprintf("allowed: %s is isolated for %s by %s, but %s is its own node's address, which is always allowed", v.Pod, dir, iso, peer)
		}
		p := x.c.Policies[v.Policy]
		s.Rule = &RuleRef{Kind: "NetworkPolicy", Namespace: p.Namespace, Name: p.Name, Direction: dir.String(), Index: v.Rule, Action: "Allow"}
		return fmt.Sprintf("allowed by %s, networkpolicy tier", s.Rule)
	}
	s.Rule = x.tierRule(v.Policy, dir, v.Rule)
	r := fmt.Sprintf("%s by %s, %s tier", verdictWord(v.Allowed), s.Rule, v.Tier)
	if s.Rule.Action == model.Pass.String() {
		r += " (a Pass in the last tier leaves the flow to the default: allowed)"
	}
	return r
}

// tierRule names rule index of a tier policy in dir.
func (x *Explainer) tierRule(key string, dir model.Direction, index int) *RuleRef {
	p := x.c.TierPolicies[key]
	ref := &RuleRef{Kind: p.Kind, Name: p.Name, Direction: dir.String(), Index: index}
	for _, r := range p.Rules[dir] {
		if r.Index == index {
			ref.RuleName, ref.Action = r.Name, r.Action.String()
			break
		}
	}
	return ref
}
