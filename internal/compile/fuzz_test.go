package compile

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/yaml"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// The agent's untrusted input is the API objects it watches. One fuzz
// target per kind feeds an object of that kind into a small random cluster
// (added, or replacing the object of the same key) and checks:
//
//  1. nothing panics: conversion, the status conditions, the engine's Set
//     and Delete, a from-scratch compile, the differ;
//  2. the engine's ruleset after Set and after Delete equals a from-scratch
//     compile, its partial diff equals the full one, and the Fake kernel
//     accepts both, and the from-scratch ruleset applied to an empty Fake;
//  3. the evaluator and a trace of the compiled rulesets agree on every
//     flow (agree, the agreement test's own check);
//  4. an object the model finds invalid (a policy with Problems) allows
//     nothing the cluster without it does not: fail closed (docs/ruleset.md,
//     "Invalid input", says how the model does it).
//
// An input is a base cluster number, bytes decoded as YAML or JSON into the
// kind (what the API server would reject too: the decoder is not strict and
// nothing validates), and structural mutations applied to that object, or,
// when the bytes do not decode, to a valid object of the kind taken from
// the base cluster (see mutateJSON).

func FuzzPod(f *testing.F)           { fuzzKind[v1.Pod](f, "Pod") }
func FuzzNamespace(f *testing.F)     { fuzzKind[v1.Namespace](f, "Namespace") }
func FuzzNode(f *testing.F)          { fuzzKind[v1.Node](f, "Node") }
func FuzzNetworkPolicy(f *testing.F) { fuzzKind[networkingv1.NetworkPolicy](f, "NetworkPolicy") }
func FuzzAdminNetworkPolicy(f *testing.F) {
	fuzzKind[v1alpha1.AdminNetworkPolicy](f, model.KindANP)
}
func FuzzBaselineAdminNetworkPolicy(f *testing.F) {
	fuzzKind[v1alpha1.BaselineAdminNetworkPolicy](f, model.KindBANP)
}
func FuzzClusterNetworkPolicy(f *testing.F) {
	fuzzKind[v1alpha2.ClusterNetworkPolicy](f, model.KindCNP)
}

// fuzzBases is how many base clusters inputs choose from: few, so the
// fuzzer spends its effort on the object.
const fuzzBases = 16

func fuzzKind[T any](f *testing.F, kind string) {
	// Seeds: the base clusters' own objects of the kind, as YAML, and
	// the structured path with a few mutations. testdata/fuzz/<target>
	// holds more (what earlier runs found).
	for base := uint8(0); base < 4; base++ {
		for _, o := range ofKind(baseObjects(base), kind) {
			data, err := yaml.Marshal(o)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(base, data, []byte{})
		}
		f.Add(base, []byte{}, []byte{0, 3, 5, 0})
		f.Add(base, []byte{}, []byte{1, 7, 0, 0, 0, 11, 9, 2})
	}
	f.Fuzz(func(t *testing.T, base uint8, data, muts []byte) {
		if len(data) > 1<<12 || len(muts) > 64 {
			return // big inputs cost time (hundreds of rules) and find nothing small ones do not
		}
		checkObject(t, kind, base, fuzzObject[T](kind, base, data, muts))
	})
}

func baseObjects(base uint8) []any {
	return randomObjects(rand.New(rand.NewSource(int64(base%fuzzBases) + 1)))
}

func ofKind(objs []any, kind string) []any {
	var out []any
	for _, o := range objs {
		if k, _, _, _ := model.RefOf(o); k == kind {
			out = append(out, o)
		}
	}
	return out
}

// fuzzObject decodes data into a *T or, when it does not decode, takes an
// object of the kind from the base cluster (the first byte of muts picks
// which), and applies muts to it.
func fuzzObject[T any](kind string, base uint8, data, muts []byte) any {
	var obj any = new(T)
	if len(data) == 0 || yaml.Unmarshal(data, obj) != nil {
		obj = new(T)
		if objs := ofKind(baseObjects(base), kind); len(objs) > 0 {
			i := 0
			if len(muts) > 0 {
				i = int(muts[0]) % len(objs)
			}
			obj = objs[i]
		}
	}
	return mutateJSON(obj, func() any { return new(T) }, muts)
}

// checkObject runs the four properties on one object of kind put into the
// base cluster.
func checkObject(t *testing.T, kind string, base uint8, obj any) {
	k, ns, name, ok := model.RefOf(obj)
	if !ok || k != kind {
		t.Fatalf("%T is not a %s", obj, kind)
	}
	w := newWorld(t, rand.New(rand.NewSource(int64(base%fuzzBases)+1)))
	key := k + "/" + ns + "/" + name
	without := w.clone(0)
	delete(without.objects, key)
	with := without.clone(0)
	with.put(obj)

	cWith := with.cluster(t)
	cWithout := without.cluster(t)
	cWith.TierConditions() // the status the agent writes back: no panic
	label := fmt.Sprintf("base %d, %s %s/%s", base%fuzzBases, kind, ns, name)

	// (1, 2) The engine from the base cluster (which may hold an object of
	// the same key: then Set replaces it), through Set and Delete.
	nodes := map[string]bool{}
	for _, n := range append(nodeNames(cWith), nodeNames(w.cluster(t))...) {
		nodes[n] = true
	}
	for _, node := range sortedKeys(nodes) {
		e := NewEngine(w.cluster(t), node)
		kernel := nft.NewFake()
		if err := kernel.Apply(context.Background(), diff.Diff(nil, e.Ruleset())); err != nil {
			t.Fatalf("%s, node %q: the base cluster's ruleset is refused: %v", label, node, err)
		}
		shadow := e.Ruleset().Clone()
		e.TakeTouched()
		step := func(what string, change func() error, want *model.Cluster) {
			if err := change(); err != nil {
				t.Fatalf("%s, node %q: %s: %v", label, node, what, err)
			}
			full := Node(want, node)
			if got, want := e.Ruleset().Text(), full.Text(); got != want {
				t.Fatalf("%s, node %q: %s: the engine's ruleset differs from a full compile (-full +engine):\n%s", label, node, what, cmp.Diff(want, got))
			}
			partial := diff.Partial(shadow, e.Ruleset(), e.TakeTouched())
			if p, f := partial.String(), diff.Diff(shadow, e.Ruleset()).String(); p != f {
				t.Fatalf("%s, node %q: %s: the partial diff differs from the full diff (-full +partial):\n%s", label, node, what, cmp.Diff(f, p))
			}
			if err := kernel.Apply(context.Background(), partial); err != nil {
				t.Fatalf("%s, node %q: %s: the Fake kernel refuses the update: %v\n%s", label, node, what, err, partial)
			}
			shadow.ApplyOps(partial)
			if err := nft.NewFake().Apply(context.Background(), diff.Diff(nil, full)); err != nil {
				t.Fatalf("%s, node %q: %s: the Fake kernel refuses the ruleset from empty: %v", label, node, what, err)
			}
		}
		step("set", func() error { return e.Set(obj) }, cWith)
		step("delete", func() error { return e.Delete(k, ns, name) }, without.cluster(t))
	}

	// (3) Agreement, over the addresses of both clusters (a few of the
	// object's own: a pod may list thousands).
	srcs, dsts := flowAddrs(cWithout)
	s2, d2 := flowAddrs(cWith)
	srcs, dsts = union(srcs, s2, 24), union(dsts, d2, 32)
	allowedWith := agree(t, label+" (with)", cWith, srcs, dsts)

	// (4) Fail closed: an invalid policy adds no allowed flow.
	problems := policyProblems(cWith, k, ns, name)
	if len(problems) == 0 {
		return
	}
	allowedWithout := agree(t, label+" (without)", cWithout, srcs, dsts)
	var wider []model.Flow
	for f := range allowedWith {
		if !allowedWithout[f] {
			wider = append(wider, f)
		}
	}
	if len(wider) > 0 {
		sort.Slice(wider, func(i, j int) bool { return wider[i].String() < wider[j].String() })
		ev := model.NewEvaluator(cWith).Evaluate(wider[0])
		t.Fatalf("%s: an invalid policy (%s) allows %d flows the cluster without it denies, first %v (egress: %v; ingress: %v)\npolicies:\n%s",
			label, strings.Join(problems, "; "), len(wider), wider[0], ev.Egress, ev.Ingress, describe(cWith))
	}
}

// policyProblems is what the model found invalid in a policy; nil for
// the other kinds, which grant nothing.
func policyProblems(c *model.Cluster, kind, ns, name string) []string {
	switch kind {
	case "NetworkPolicy":
		if p := c.Policies[ns+"/"+name]; p != nil {
			return p.Problems
		}
	case model.KindANP, model.KindBANP, model.KindCNP:
		if p := c.TierPolicies[kind+"/"+name]; p != nil {
			return p.Problems
		}
	}
	return nil
}

// union is a followed by what b adds, at most max addresses in all.
func union(a, b []netip.Addr, max int) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, x := range append(append([]netip.Addr{}, a...), b...) {
		if !seen[x] && len(out) < max {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// mutateJSON applies structural mutations to an API object through its JSON
// form: each 4 bytes of muts are an operation, a node of the JSON tree (in
// a fixed walk order) and two arguments. The operations replace a value
// with one from fuzzValues (bad CIDRs, unknown operators, actions and
// protocols, out-of-range ports and priorities, empty names...), delete a
// field or list item, add a field from fuzzKeys, duplicate a list item,
// copy one part of the object over another, and stretch or cut a string.
// A mutation whose result no longer decodes into the type is skipped.
func mutateJSON(obj any, fresh func() any, muts []byte) any {
	raw, err := json.Marshal(obj)
	if err != nil {
		return obj
	}
	for i := 0; i+3 < len(muts); i += 4 {
		var tree any
		if json.Unmarshal(raw, &tree) != nil {
			return obj
		}
		var nodes []jsonNode
		walkJSON(tree, func(v any) { tree = v }, nil, &nodes)
		n := nodes[int(muts[i+1])%len(nodes)]
		a, b := int(muts[i+2]), int(muts[i+3])
		switch muts[i] % 6 {
		case 0:
			n.set(fuzzValue(a))
		case 1:
			if n.del != nil {
				n.del()
			}
		case 2:
			switch v := n.val.(type) {
			case map[string]any:
				v[fuzzKeys[a%len(fuzzKeys)]] = fuzzValue(b)
			case []any:
				n.set(append(v, fuzzValue(b)))
			}
		case 3:
			if v, ok := n.val.([]any); ok && len(v) > 0 {
				n.set(append(v, deepCopy(v[a%len(v)])))
			}
		case 4:
			n.set(deepCopy(nodes[a%len(nodes)].val))
		case 5:
			switch v := n.val.(type) {
			case string:
				switch b % 3 {
				case 0:
					n.set(v + string("x%!/.:-_"[a%8]))
				case 1:
					n.set(v[:len(v)/2])
				default:
					if len(v) < 256 { // repeated, a stretch would grow without bound
						n.set(strings.Repeat(v+"a", 1+a))
					}
				}
			case float64:
				n.set([]float64{v + 1, v - 1, -v, v * 65536, 0}[b%5])
			}
		}
		next, err := json.Marshal(tree)
		if err != nil {
			continue
		}
		o := fresh()
		if json.Unmarshal(next, o) != nil {
			continue
		}
		raw, obj = next, o
	}
	return obj
}

// jsonNode is one place in a JSON tree: its value, and how to replace or
// delete it.
type jsonNode struct {
	val any
	set func(any)
	del func()
}

// walkJSON lists v and everything under it, maps in key order.
func walkJSON(v any, set func(any), del func(), out *[]jsonNode) {
	*out = append(*out, jsonNode{v, set, del})
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walkJSON(x[k], func(n any) { x[k] = n }, func() { delete(x, k) }, out)
		}
	case []any:
		for i := range x {
			walkJSON(x[i], func(n any) { x[i] = n }, func() { set(append(append([]any{}, x[:i]...), x[i+1:]...)) }, out)
		}
	}
}

func deepCopy(v any) any {
	raw, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(raw, &out)
	return out
}

// fuzzKeys are fields the mutations add where they are missing.
var fuzzKeys = []string{
	"endPort", "except", "ipBlock", "podSelector", "namespaceSelector", "matchExpressions", "matchLabels",
	"policyTypes", "priority", "domainNames", "networks", "nodes", "ports", "protocol", "port", "action",
	"namespaces", "pods", "tier", "hostNetwork", "podIPs", "podIP", "phase", "addresses", "labels", "name",
	"namespace", "portNumber", "portRange", "namedPort", "start", "end", "protocols", "destinationNamedPort",
	"tcp", "udp", "sctp", "destinationPort", "number", "range", "containerPort", "ingress", "egress", "from", "to",
}

// fuzzValue is one of fuzzValues, a copy (the tree it goes into is
// mutated further).
func fuzzValue(i int) any { return deepCopy(fuzzValues[i%len(fuzzValues)]) }

// fuzzValues are the values the mutations put in: what the API server
// would reject next to what it accepts.
var fuzzValues = []any{
	nil, "", "bad", "Bogus", "Allow", "Deny", "Pass", "Accept", "In", "NotIn", "Exists", "DoesNotExist", "Gt",
	"TCP", "UDP", "SCTP", "ICMP", "tcp", "Ingress", "Egress", "Admin", "Baseline",
	"0.0.0.0/0", "::/0", "10.0.0.0/33", "10.0.0.1/8", "10.0.1.0/24", "10.0.0.0/16", "fd00::/64", "fe80::1%eth0",
	"::ffff:10.0.0.2", "10.0.0.2", "10.0.0.3", "10.0.0.2/32", "2001:db8::5", "172.18.0.11", "fd00::2", "999.0.0.1",
	"default", "x", "y", "app", "a", "b", "http", "dns", "n1", "n2", "n3", "Failed", "Succeeded", "Running",
	"InternalIP", "ExternalIP", "Hostname", "kubernetes.io/metadata.name", "a/b/c", strings.Repeat("z", 300),
	0.0, 1.0, -1.0, 79.0, 80.0, 81.0, 1000.0, 1001.0, 5353.0, 8080.0, 65535.0, 65536.0, -2147483648.0, 2147483647.0,
	true, false, map[string]any{}, []any{}, []any{""}, []any{"bad"},
	map[string]any{"matchExpressions": []any{map[string]any{"key": "app", "operator": "Bogus"}}},
	map[string]any{"matchExpressions": []any{map[string]any{"key": "app", "operator": "In"}}},
	map[string]any{"matchLabels": map[string]any{"app": "a"}},
	map[string]any{"matchLabels": map[string]any{"bad key!": "a"}},
	map[string]any{"cidr": "10.0.0.0/8", "except": []any{"10.0.0.0/33"}},
	map[string]any{"cidr": "10.0.0.0/8", "except": []any{"11.0.0.0/16", "::/0"}},
	map[string]any{"port": 81.0, "endPort": 80.0},
	map[string]any{"port": "http", "endPort": 90.0},
	map[string]any{"protocol": "TCP", "port": 70000.0},
	map[string]any{"ip": "10.0.0.2"},
	map[string]any{"ip": "fe80::1%eth0"},
	map[string]any{"type": "InternalIP", "address": "10.0.0.2"},
	map[string]any{"name": "http", "containerPort": 80.0, "protocol": "UDP"},
	map[string]any{"name": "http", "containerPort": 0.0},
	map[string]any{"start": 90.0, "end": 80.0},
	map[string]any{"namespaces": map[string]any{}, "pods": map[string]any{}},
	map[string]any{"domainNames": []any{"example.com"}},
	map[string]any{"networks": []any{"10.0.0.0/8", "bad"}},
	map[string]any{"tcp": map[string]any{}, "udp": map[string]any{}},
	map[string]any{"name": "r", "action": "Bogus", "to": []any{map[string]any{"namespaces": map[string]any{}}}},
}
