package compile_test

import (
	"fmt"
	"math/rand"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/explain"
	"github.com/nftpolicy/nftpolicy/internal/inet"
	"github.com/nftpolicy/nftpolicy/internal/manifest"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestExplainAgrees: on the random clusters of the evaluator/tracer
// agreement test, for every flow it checks, `nftpolicy explain` gives the
// verdict the compiled rulesets give when traced, names in each direction
// the tier and rule the evaluator decided with (every tier occurs), and
// that rule is one the traced packet met in the compiled ruleset.
func TestExplainAgrees(t *testing.T) {
	tiers := map[string]int{}
	for seed := range testutil.Seeds(t, 300) {
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
				for _, pp := range compile.FlowPorts {
					f := model.Flow{Src: src, Dst: dst, Proto: pp.Proto, Port: pp.Port}
					rep, err := x.Explain(explain.Question{From: src.String(), To: dst.String(), Proto: pp.Proto, Port: pp.Port})
					if err != nil {
						t.Fatalf("seed %d: %v: %v", seed, f, err)
					}
					kernel, path := compile.KernelAllows(t, c, ev, rulesets, f, true)
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

// TestPreviewAgrees: a random cluster of the agreement test, changed by a
// random part of another one (the objects share names, so they replace
// pods, namespaces, nodes and policies of every tier, or add them), and
// deletions of others: preview lists exactly the flows whose evaluator
// verdict flips, found by judging every pair of pods on every port it
// checks.
func TestPreviewAgrees(t *testing.T) {
	total := 0
	for seed := range testutil.Seeds(t, 200) {
		r := rand.New(rand.NewSource(seed))
		base := compile.RandomObjects(r)
		other := compile.RandomObjects(r)
		before, after := model.NewCluster(), model.NewCluster()
		var refs []explain.Ref
		deleted := map[explain.Ref]bool{}
		for _, o := range base {
			kind, ns, name, _ := model.RefOf(o)
			if kind != "Node" && kind != "Namespace" && r.Intn(8) == 0 {
				ref := explain.Ref{Kind: kind, Namespace: ns, Name: name}
				deleted[ref] = true
				refs = append(refs, ref)
			}
		}
		for _, o := range base {
			if err := before.Set(o); err != nil {
				t.Fatal(err)
			}
			kind, ns, name, _ := model.RefOf(o)
			if !deleted[explain.Ref{Kind: kind, Namespace: ns, Name: name}] {
				if err := after.Set(o); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, o := range other {
			if r.Intn(4) != 0 {
				continue
			}
			kind, ns, name, _ := model.RefOf(o)
			ref := explain.Ref{Kind: kind, Namespace: ns, Name: name}
			if deleted[ref] {
				continue
			}
			refs = append(refs, ref)
			if err := after.Set(o); err != nil {
				t.Fatal(err)
			}
		}
		res := explain.Preview(before, after, refs, nil)
		var got []explain.Flip
		for _, g := range res.Groups {
			got = append(got, g.Flips...)
		}
		want := bruteForce(before, after, append(res.Ports, res.OtherPorts...))
		total += len(want)
		if len(got) != len(want) {
			t.Fatalf("seed %d: changes %v: preview lists %d flips, brute force finds %d\npreview: %v\nbrute force: %v", seed, refs, len(got), len(want), got, want)
		}
		index := map[string]bool{}
		for _, f := range want {
			index[flipKey(f)] = true
		}
		for _, f := range got {
			if !index[flipKey(f)] {
				t.Fatalf("seed %d: preview lists %v, brute force does not\nbrute force: %v", seed, f, want)
			}
		}
	}
	if total < 1000 {
		t.Errorf("only %d flips in 200 changes: the test proves little", total)
	}
	t.Logf("%d flips, all found", total)
}

func flipKey(f explain.Flip) string {
	return fmt.Sprintf("%s>%s %s %s/%d %v>%v", f.From, f.To, f.Family, f.Protocol, f.Port, f.Before, f.After)
}

// bruteForce judges every pair of pods active in both clusters, in each
// family both have, on the ports preview reports plus the destination's
// declared ports, before and after.
func bruteForce(before, after *model.Cluster, ports []string) []explain.Flip {
	evB, evA := model.NewEvaluator(before), model.NewEvaluator(after)
	var out []explain.Flip
	for _, s := range before.SortedPods() {
		for _, d := range before.SortedPods() {
			sa, da := after.Pods[s.Key()], after.Pods[d.Key()]
			if s == d || sa == nil || da == nil || !s.Active() || !d.Active() || !sa.Active() || !da.Active() {
				continue
			}
			pps := map[string]bool{}
			for _, p := range ports {
				pps[p] = true
			}
			for _, pod := range []*model.Pod{d, da} {
				for _, np := range pod.Ports {
					pps[fmt.Sprintf("%s/%d", inetName(np.Proto), np.Port)] = true
				}
			}
			for _, is4 := range []bool{true, false} {
				ab, bb, ok1 := addrs(s, d, is4)
				aa, ba, ok2 := addrs(sa, da, is4)
				if !ok1 || !ok2 {
					continue
				}
				for pp := range pps {
					proto, port, err := explain.ParsePort(pp)
					if err != nil {
						panic(err)
					}
					wb := evB.Evaluate(model.Flow{Src: ab, Dst: bb, Proto: proto, Port: port}).Allowed()
					wa := evA.Evaluate(model.Flow{Src: aa, Dst: ba, Proto: proto, Port: port}).Allowed()
					if wb != wa {
						fam := "IPv6"
						if is4 {
							fam = "IPv4"
						}
						out = append(out, explain.Flip{From: s.Key(), To: d.Key(), Family: fam, Protocol: inetName(proto), Port: port, Before: wb, After: wa})
					}
				}
			}
		}
	}
	return out
}

func addrs(s, d *model.Pod, is4 bool) (netip.Addr, netip.Addr, bool) {
	var a, b netip.Addr
	for _, ip := range s.IPs {
		if ip.Is4() == is4 {
			a = ip
			break
		}
	}
	for _, ip := range d.IPs {
		if ip.Is4() == is4 {
			b = ip
			break
		}
	}
	return a, b, a.IsValid() && b.IsValid()
}

var inetName = inet.ProtoName

// TestPreviewSmallCluster: explain's test cluster and changes in each
// tier, with the flips each must list, exactly, and brute force agreeing.
func TestPreviewSmallCluster(t *testing.T) {
	base, err := manifest.ReadFile("../explain/testdata/cluster.yaml", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, change string
		deletes      []explain.Ref
		want         []string
	}{
		{"a NetworkPolicy added, an AdminNetworkPolicy deleted", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: lockdown, namespace: tools}
spec:
  podSelector: {matchLabels: {app: dig}}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {tier: app}}}], ports: [{port: 8080}]}]
`, []explain.Ref{{Kind: "AdminNetworkPolicy", Name: "ops-out-of-apps"}}, []string{
			"tools/dig>shop/cart IPv4 tcp/8080 false>true",
			"tools/dig>shop/front IPv4 tcp/8080 false>true",
			// the lockdown allows only tcp/8080 to the apps: curl is cut
			// off on every port, 8080 and the ports nothing names
			"tools/dig>tools/curl IPv4 sctp/1 true>false",
			"tools/dig>tools/curl IPv4 tcp/1 true>false",
			"tools/dig>tools/curl IPv4 tcp/8080 true>false",
			"tools/dig>tools/curl IPv4 udp/1 true>false",
		}},
		{"an admin Pass moved behind the Deny", `
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: curl-is-up-to-the-apps}
spec:
  priority: 30
  subject: {namespaces: {matchLabels: {tier: app}}}
  ingress:
    - {name: pass-from-curl, action: Pass, from: [{pods: {namespaceSelector: {matchLabels: {tier: ops}}, podSelector: {matchLabels: {app: curl}}}}]}
`, nil, []string{
			// cart, which no NetworkPolicy isolates, was passed to the
			// default; now the Deny at 20 comes first, on every port
			"tools/curl>shop/cart IPv4 sctp/1 true>false",
			"tools/curl>shop/cart IPv4 tcp/1 true>false",
			"tools/curl>shop/cart IPv4 udp/1 true>false",
			"tools/curl>shop/front IPv4 tcp/8080 true>false",
		}},
		{"a baseline ClusterNetworkPolicy denying udp/5353 into ops", `
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: no-dns}
spec:
  tier: Baseline
  priority: 5
  subject: {namespaces: {matchLabels: {tier: ops}}}
  ingress:
    - {action: Deny, from: [{namespaces: {}}], protocols: [{udp: {destinationPort: {number: 5353}}}]}
`, nil, []string{"tools/curl>tools/dig IPv4 udp/5353 true>false", "tools/dig>tools/curl IPv4 udp/5353 true>false"}},
		{"a pod relabelled out of shop/web's reach", `
apiVersion: v1
kind: Pod
metadata: {name: cart, namespace: shop, labels: {app: basket}}
spec: {nodeName: node-2, containers: [{name: c}]}
status: {podIPs: [{ip: 10.244.2.10}]}
`, nil, []string{
			// web's egress admits app=cart on every port
			"shop/front>shop/cart IPv4 sctp/1 true>false",
			"shop/front>shop/cart IPv4 tcp/1 true>false",
			"shop/front>shop/cart IPv4 udp/1 true>false",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			change, err := manifest.Decode("change", []byte(tc.change))
			if err != nil {
				t.Fatal(err)
			}
			before, after := model.NewCluster(), model.NewCluster()
			refs := tc.deletes
			for _, o := range base {
				before.Set(o)
				after.Set(o)
			}
			for _, d := range tc.deletes {
				if err := after.Delete(d.Kind, d.Namespace, d.Name); err != nil {
					t.Fatal(err)
				}
			}
			for _, o := range change {
				kind, ns, name, _ := model.RefOf(o)
				refs = append(refs, explain.Ref{Kind: kind, Namespace: ns, Name: name})
				if err := after.Set(o); err != nil {
					t.Fatal(err)
				}
			}
			res := explain.Preview(before, after, refs, nil)
			var got []string
			for _, g := range res.Groups {
				for _, f := range g.Flips {
					got = append(got, flipKey(f))
				}
			}
			var brute []string
			for _, f := range bruteForce(before, after, append(res.Ports, res.OtherPorts...)) {
				brute = append(brute, flipKey(f))
			}
			slices.Sort(brute)
			if !slices.Equal(got, tc.want) || !slices.Equal(brute, tc.want) {
				t.Errorf("preview: %q\nbrute force: %q\nwant: %q", got, brute, tc.want)
			}
		})
	}
}
