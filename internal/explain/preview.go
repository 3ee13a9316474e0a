package explain

import (
	"fmt"
	"net/netip"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/nftpolicy/nftpolicy/internal/inet"
	"github.com/nftpolicy/nftpolicy/internal/model"
)

// Ref names an object a change touches, as model.RefOf does.
type Ref struct {
	Kind, Namespace, Name string
}

func (r Ref) String() string { return policyName(r.Kind, r.Namespace, r.Name) }

// Flip is one flow whose verdict the change flips.
type Flip struct {
	From     string `json:"from"` // namespace/pod
	To       string `json:"to"`
	Family   string `json:"family"` // IPv4 or IPv6
	Protocol string `json:"protocol"`
	Port     uint16 `json:"port"`
	// AnyOtherPort: Port stands for every port of Protocol that no policy
	// names, no range holds and no pod declares.
	AnyOtherPort bool `json:"anyOtherPort,omitempty"`
	Before       bool `json:"allowedBefore"`
	After        bool `json:"allowedAfter"`
	// Why is the evaluator's account of the verdict after the change: the
	// direction that denies it, or both directions' deciding rules.
	Why string `json:"why"`
}

// Group is the flips between one (namespace, app label) of sources and
// one of destinations.
type Group struct {
	From       string `json:"from"` // "namespace app=VALUE", or "namespace" when pods have no app label
	To         string `json:"to"`
	Flows      int    `json:"flows"`
	NowAllowed int    `json:"nowAllowed"`
	NowDenied  int    `json:"nowDenied"`
	Flips      []Flip `json:"flips"`
}

// PreviewResult is every flow between pods whose verdict the change flips.
type PreviewResult struct {
	Changes []string `json:"changes"` // "NetworkPolicy shop/web: replaced"
	// Ports are the policy-named ports checked for every pair of pods;
	// each destination's declared container ports are checked too.
	Ports []string `json:"ports"`
	// OtherPorts stand each for every port of its protocol that no policy
	// names, no range holds and no pod declares.
	OtherPorts []string `json:"otherPorts"`
	// Evaluated counts the flows the preview judged, before and after (it
	// judges only the pairs of pods whose verdicts can change).
	Evaluated  int     `json:"evaluated"`
	Flows      int     `json:"flows"`
	NowAllowed int     `json:"nowAllowed"`
	NowDenied  int     `json:"nowDenied"`
	Groups     []Group `json:"groups"`
}

type protoPort struct {
	proto uint8
	port  uint16
}

// Preview lists every flow between two pods (present and running in both
// clusters) whose verdict differs between before and after, on the ports
// policies of either cluster name (single ports and both ends of ranges)
// and the destination's declared container ports, in each IP family both
// pods have. changed are the objects that differ between the clusters;
// only flows of the pods they can affect are judged:
//
//   - a policy's subjects (before or after the change), in the directions
//     it has rules for: every flow from them (egress) or to them (ingress);
//   - a changed pod and any pod with one of its addresses, the pods of a
//     changed namespace, and pods holding an address of a changed node:
//     every flow from and to them.
//
// A flow none of these touches has the same verdict in both clusters, so
// the cost is O(affected pods × pods × ports), not O(pods² × ports). Where
// only one direction can change, the other is judged only when the first
// flips.
func Preview(before, after *model.Cluster, changed []Ref, changes []string) *PreviewResult {
	p := &previewer{before: before, after: after, evB: model.NewEvaluator(before), evA: model.NewEvaluator(after),
		egress: map[string]bool{}, ingress: map[string]bool{}, full: map[string]bool{}}
	for _, r := range changed {
		p.mark(r)
	}
	ports := map[protoPort]bool{}
	ranges := append(policyPorts(before, ports), policyPorts(after, ports)...)
	res := &PreviewResult{Changes: changes, Ports: []string{}, Groups: []Group{}}
	for _, pp := range sortedPorts(ports) {
		res.Ports = append(res.Ports, portName(pp))
	}
	p.other = map[protoPort]bool{}
	for _, pp := range otherPorts([]*model.Cluster{before, after}, ports, ranges) {
		ports[pp] = true
		p.other[pp] = true
		res.OtherPorts = append(res.OtherPorts, portName(pp))
	}
	p.global = sortedPorts(ports)
	p.run()
	res.Evaluated = p.evaluated
	groups := map[[2]string]*Group{}
	names := map[string]string{} // pod key -> group, formatted once
	group := func(key string) string {
		g, ok := names[key]
		if !ok {
			g = p.group(key)
			names[key] = g
		}
		return g
	}
	for _, f := range p.flips {
		key := [2]string{group(f.From), group(f.To)}
		g := groups[key]
		if g == nil {
			g = &Group{From: key[0], To: key[1]}
			groups[key] = g
		}
		g.Flips = append(g.Flips, f)
		g.Flows++
		res.Flows++
		if f.After {
			g.NowAllowed++
			res.NowAllowed++
		} else {
			g.NowDenied++
			res.NowDenied++
		}
	}
	for _, g := range groups {
		res.Groups = append(res.Groups, *g)
	}
	sort.Slice(res.Groups, func(i, j int) bool {
		a, b := res.Groups[i], res.Groups[j]
		if a.From != b.From {
			return a.From < b.From
		}
		return a.To < b.To
	})
	return res
}

type previewer struct {
	before, after *model.Cluster
	evB, evA      *model.Evaluator
	// The pods whose egress, ingress, or everything may change, by key.
	egress, ingress, full map[string]bool
	global                []protoPort
	other                 map[protoPort]bool

	mu        sync.Mutex
	flips     []Flip
	evaluated int
}

// mark records which pods a changed object can affect, in both clusters.
func (p *previewer) mark(r Ref) {
	for _, c := range []*model.Cluster{p.before, p.after} {
		switch r.Kind {
		case "NetworkPolicy":
			pol := c.Policies[r.Namespace+"/"+r.Name]
			if pol == nil {
				continue
			}
			for key, pod := range c.PodsIn(pol.Namespace) {
				if pol.Selects(c, pod) {
					p.subject(key, pol.Isolates[model.Egress], pol.Isolates[model.Ingress])
				}
			}
		case model.KindANP, model.KindBANP, model.KindCNP:
			pol := c.TierPolicies[r.Kind+"/"+r.Name]
			if pol == nil {
				continue
			}
			for key, pod := range c.Pods {
				if pol.Selects(c, pod) {
					p.subject(key, len(pol.Rules[model.Egress]) > 0, len(pol.Rules[model.Ingress]) > 0)
				}
			}
		case "Pod":
			key := r.Namespace + "/" + r.Name
			p.full[key] = true
			// Another pod with the same address (reused, or a conflict):
			// the evaluators resolve the address to one of them, so its
			// flows may change owner too.
			if pod := c.Pods[key]; pod != nil {
				for _, a := range pod.IPs {
					for _, ev := range []*model.Evaluator{p.evB, p.evA} {
						if other := ev.PodByAddr(a); other != nil {
							p.full[other.Key()] = true
						}
					}
				}
			}
		case "Namespace":
			for key := range c.PodsIn(r.Name) {
				p.full[key] = true
			}
		case "Node":
			// Node peers and the own-node rule match node addresses: they
			// change pod-to-pod flows only for a pod holding one.
			n := c.Nodes[r.Name]
			if n == nil {
				continue
			}
			for _, a := range n.Addresses {
				for _, ev := range []*model.Evaluator{p.evB, p.evA} {
					if pod := ev.PodByAddr(a); pod != nil {
						p.full[pod.Key()] = true
					}
				}
			}
		}
	}
}

func (p *previewer) subject(key string, egress, ingress bool) {
	if egress {
		p.egress[key] = true
	}
	if ingress {
		p.ingress[key] = true
	}
}

// policyPorts adds the ports the policies of c name (single ports; a
// range's first and last port and the port after it) and returns the
// ranges, as [proto, first, last].
func policyPorts(c *model.Cluster, out map[protoPort]bool) [][3]int {
	var ranges [][3]int
	add := func(ports []model.Port) {
		for _, pt := range ports {
			if pt.Name != "" || pt.Port == 0 || pt.Proto == 0 {
				continue
			}
			out[protoPort{pt.Proto, pt.Port}] = true
			if pt.EndPort > pt.Port {
				out[protoPort{pt.Proto, pt.EndPort}] = true
				if pt.EndPort < 65535 {
					out[protoPort{pt.Proto, pt.EndPort + 1}] = true
				}
				ranges = append(ranges, [3]int{int(pt.Proto), int(pt.Port), int(pt.EndPort)})
			}
		}
	}
	for _, pol := range c.Policies {
		for _, rules := range pol.Rules {
			for _, r := range rules {
				add(r.Ports)
			}
		}
	}
	for _, pol := range c.TierPolicies {
		for _, rules := range pol.Rules {
			for _, r := range rules {
				add(r.Ports)
			}
		}
	}
	return ranges
}

// otherPorts adds, for each protocol, the lowest port that no policy
// names, no range holds and no pod declares: every such port has the same
// verdict, so this one stands for them all (a default deny shows there).
func otherPorts(clusters []*model.Cluster, named map[protoPort]bool, ranges [][3]int) []protoPort {
	declared := map[protoPort]bool{}
	for _, c := range clusters {
		for _, pod := range c.Pods {
			for _, np := range pod.Ports {
				declared[protoPort{np.Proto, np.Port}] = true
			}
		}
	}
	var out []protoPort
	for _, proto := range []uint8{inet.TCP, inet.UDP, inet.SCTP} {
	next:
		for port := 1; port <= 65535; port++ {
			pp := protoPort{proto, uint16(port)}
			if named[pp] || declared[pp] {
				continue
			}
			for _, r := range ranges {
				if r[0] == int(proto) && port >= r[1] && port <= r[2] {
					continue next
				}
			}
			out = append(out, pp)
			break
		}
	}
	return out
}

func sortedPorts(m map[protoPort]bool) []protoPort {
	out := make([]protoPort, 0, len(m))
	for pp := range m {
		if pp.port != 0 {
			out = append(out, pp)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].proto != out[j].proto {
			return out[i].proto < out[j].proto
		}
		return out[i].port < out[j].port
	})
	return out
}

// endpoint is a pod as both clusters have it.
type endpoint struct {
	key  string
	b, a *model.Pod
}

// class is pods the evaluators cannot tell apart, as source or as
// destination, in either cluster: same namespace, labels, declared ports
// and IP families, their addresses in the same ipBlocks, and the same
// marks. One representative pair of two classes is judged for all of their
// pairs: in the suite's M cluster (10,000 pods) there are about 2,000
// classes, apps' replicas.
type class struct {
	members               []*endpoint // by key
	egress, ingress, full bool
	ports                 []protoPort // as destination: the global ports and the members' own
}

// classes sorts the pods running in both clusters into classes. A pod
// whose address is a node's, or is resolved to another pod (a conflict),
// is a class of its own: there the address itself matters.
func (p *previewer) classes() []*class {
	blocks := ipBlocks(p.before, p.after)
	byKey := map[string]*class{}
	var out []*class
	for _, pb := range p.before.SortedPods() {
		pa := p.after.Pods[pb.Key()]
		if !pb.Active() || pa == nil || !pa.Active() {
			continue
		}
		e := &endpoint{key: pb.Key(), b: pb, a: pa}
		k := pb.Key()
		var id strings.Builder
		fmt.Fprintf(&id, "%s|%v|%v|%v", pb.Namespace, p.egress[k], p.ingress[k], p.full[k])
		for i, pod := range []*model.Pod{pb, pa} {
			ev := []*model.Evaluator{p.evB, p.evA}[i]
			c := []*model.Cluster{p.before, p.after}[i]
			fmt.Fprintf(&id, "|%s|%v", pod.Labels, pod.Ports)
			for _, ip := range pod.IPs {
				if ev.PodByAddr(ip) != pod || addressOfNode(c, ip) {
					id.WriteString("|alone " + k)
				}
				fmt.Fprintf(&id, "|%v:", ip.Is4())
				for j, bl := range blocks {
					if bl.MatchesAddr(ip) {
						fmt.Fprintf(&id, "%d,", j)
					}
				}
			}
		}
		cl := byKey[id.String()]
		if cl == nil {
			cl = &class{egress: p.egress[k], ingress: p.ingress[k], full: p.full[k], ports: destinationPorts(p.global, pb, pa)}
			byKey[id.String()] = cl
			out = append(out, cl)
		}
		cl.members = append(cl.members, e)
	}
	return out
}

// ipBlocks are the distinct ipBlock and network peers of both clusters.
func ipBlocks(clusters ...*model.Cluster) []*model.Peer {
	seen := map[string]bool{}
	var out []*model.Peer
	add := func(m model.Match) {
		for i := range m.Peers {
			pr := &m.Peers[i]
			if pr.Pods || pr.Nodes || pr.Invalid {
				continue
			}
			k := fmt.Sprint(pr.CIDR, pr.Except)
			if !seen[k] {
				seen[k] = true
				out = append(out, pr)
			}
		}
	}
	for _, c := range clusters {
		for _, pol := range c.SortedPolicies() {
			for _, rules := range pol.Rules {
				for _, r := range rules {
					add(r.Match)
				}
			}
		}
		for _, t := range []model.Tier{model.TierAdmin, model.TierBaseline} {
			for _, pol := range c.SortedTier(t) {
				for _, rules := range pol.Rules {
					for _, r := range rules {
						add(r.Match)
					}
				}
			}
		}
	}
	return out
}

func addressOfNode(c *model.Cluster, ip netip.Addr) bool {
	for _, n := range c.Nodes {
		for _, a := range n.Addresses {
			if a == ip {
				return true
			}
		}
	}
	return false
}

// run judges the affected pairs of classes: every class whose egress may
// change with every class, and every other class with every class whose
// ingress may change.
func (p *previewer) run() {
	all := p.classes()
	var srcs, dsts []*class
	for _, c := range all {
		if c.egress || c.full {
			srcs = append(srcs, c)
		}
		if c.ingress || c.full {
			dsts = append(dsts, c)
		}
	}
	// Rows of work, on every core (two here); the evaluators are
	// read-only.
	type row struct {
		src  *class
		dsts []*class
	}
	work := make(chan row)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var flips []Flip
			n := 0
			for r := range work {
				for _, d := range r.dsts {
					flips, n = p.pair(r.src, d, flips, n)
				}
			}
			p.mu.Lock()
			p.flips = append(p.flips, flips...)
			p.evaluated += n
			p.mu.Unlock()
		}()
	}
	for _, s := range srcs {
		work <- row{s, all}
	}
	if len(dsts) > 0 {
		for _, s := range all {
			if !s.egress && !s.full {
				work <- row{s, dsts}
			}
		}
	}
	close(work)
	wg.Wait()
	sort.Slice(p.flips, func(i, j int) bool {
		a, b := p.flips[i], p.flips[j]
		switch {
		case a.From != b.From:
			return a.From < b.From
		case a.To != b.To:
			return a.To < b.To
		case a.Protocol != b.Protocol:
			return a.Protocol < b.Protocol
		case a.Port != b.Port:
			return a.Port < b.Port
		}
		return a.Family < b.Family
	})
}

// destinationPorts: the global ports and the pod's declared ports (before
// and after), sorted.
func destinationPorts(global []protoPort, pods ...*model.Pod) []protoPort {
	own := map[protoPort]bool{}
	for _, pod := range pods {
		for _, np := range pod.Ports {
			own[protoPort{np.Proto, np.Port}] = true
		}
	}
	if len(own) == 0 {
		return global
	}
	for _, pp := range global {
		own[pp] = true
	}
	return sortedPorts(own)
}

// pair judges a representative flow from class sc to class dc in each
// family they have on each port, and for each that flips lists the flow
// between every two distinct members; n counts the flows judged.
func (p *previewer) pair(sc, dc *class, flips []Flip, n int) ([]Flip, int) {
	s, d := sc.members[0], dc.members[0]
	if sc == dc {
		if len(sc.members) < 2 {
			return flips, n
		}
		d = sc.members[1]
	}
	egressMay := sc.egress || sc.full || dc.full
	ingressMay := dc.ingress || dc.full || sc.full
	for _, is4 := range []bool{true, false} {
		sb, ok1 := pick(s.b.IPs, is4)
		db, ok2 := pick(d.b.IPs, is4)
		sa, ok3 := pick(s.a.IPs, is4)
		da, ok4 := pick(d.a.IPs, is4)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			continue
		}
		for _, pp := range dc.ports {
			fb := model.Flow{Src: sb, Dst: db, Proto: pp.proto, Port: pp.port}
			fa := model.Flow{Src: sa, Dst: da, Proto: pp.proto, Port: pp.port}
			n++
			before, after, flipped := p.judge(fb, fa, egressMay, ingressMay)
			if !flipped {
				continue
			}
			f := Flip{Family: familyName(is4), Protocol: inet.ProtoName(pp.proto), Port: pp.port,
				AnyOtherPort: p.other[pp], Before: before, After: after, Why: p.why(p.evA.Evaluate(fa))}
			for _, sm := range sc.members {
				for _, dm := range dc.members {
					if sm != dm {
						f.From, f.To = sm.key, dm.key
						flips = append(flips, f)
					}
				}
			}
		}
	}
	return flips, n
}

// judge decides whether a flow's verdict flips. A direction that cannot
// change is judged (once, after the change) only when the other flips.
func (p *previewer) judge(fb, fa model.Flow, egressMay, ingressMay bool) (before, after, flipped bool) {
	var eb, ea, ib, ia bool
	if egressMay {
		eb, ea = p.evB.Judge(model.Egress, fb).Allowed, p.evA.Judge(model.Egress, fa).Allowed
	}
	if ingressMay {
		ib, ia = p.evB.Judge(model.Ingress, fb).Allowed, p.evA.Judge(model.Ingress, fa).Allowed
	}
	switch {
	case egressMay && ingressMay:
	case egressMay:
		if eb == ea {
			return false, false, false
		}
		ib = p.evA.Judge(model.Ingress, fa).Allowed
		ia = ib
	default:
		if ib == ia {
			return false, false, false
		}
		eb = p.evA.Judge(model.Egress, fa).Allowed
		ea = eb
	}
	before, after = eb && ib, ea && ia
	return before, after, before != after
}

func portName(pp protoPort) string { return fmt.Sprintf("%s/%d", inet.ProtoName(pp.proto), pp.port) }

func familyName(is4 bool) string {
	if is4 {
		return "IPv4"
	}
	return "IPv6"
}

// why says what decides a flow after the change: the denying
// direction(s), or both. It names no pod: it stands for every pair of the
// two classes.
func (p *previewer) why(d model.Decision) string {
	switch {
	case !d.Egress.Allowed && !d.Ingress.Allowed:
		return "egress " + p.whyOne(model.Egress, d.Egress) + "; ingress " + p.whyOne(model.Ingress, d.Ingress)
	case !d.Egress.Allowed:
		return "egress " + p.whyOne(model.Egress, d.Egress)
	case !d.Ingress.Allowed:
		return "ingress " + p.whyOne(model.Ingress, d.Ingress)
	}
	return "egress " + p.whyOne(model.Egress, d.Egress) + "; ingress " + p.whyOne(model.Ingress, d.Ingress)
}

func (p *previewer) whyOne(dir model.Direction, v model.Verdict) string {
	switch {
	case v.Pod == "" || v.Tier == "":
		return "allowed: no policy decides"
	case v.Tier == "networkpolicy" && v.Policy == "":
		var keys []string
		for _, pol := range p.after.Isolating(p.after.Pods[v.Pod], dir) {
			keys = append(keys, pol.Key())
		}
		if v.Allowed {
			return "allowed: its own node"
		}
		return "denied: isolated by NetworkPolicy " + strings.Join(keys, ", ") + ", no rule matches"
	case v.Tier == "networkpolicy":
		return fmt.Sprintf("allowed by NetworkPolicy %s rule %d", v.Policy, v.Rule)
	}
	return fmt.Sprintf("%s by %s rule %d (%s tier)", verdictWord(v.Allowed), v.Policy, v.Rule, v.Tier)
}

// group names a pod's group: its namespace and app label after the change
// (app.kubernetes.io/name when it has no app label).
func (p *previewer) group(key string) string {
	pod := p.after.Pods[key]
	for _, l := range []string{"app", "app.kubernetes.io/name"} {
		if v, ok := pod.Labels[l]; ok {
			return fmt.Sprintf("%s %s=%s", pod.Namespace, l, v)
		}
	}
	return pod.Namespace
}
