package compile

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestIdentityFallsToItsBase: a local pod's element is in a pod identity's
// map only when that identity matches other rules of its class than the
// identity of its ipBlocks alone (its base) does; otherwise the identity's
// chain goes on to the base, whose map holds it. web's class has only an
// ipBlock rule, api's a pod-selector rule too: a peer pod selected by
// that selector has an identity whose map holds api and not web.
func TestIdentityFallsToItsBase(t *testing.T) {
	c := model.NewCluster()
	for _, o := range []any{
		tu.Namespace("x", nil),
		tu.Pod("x", "web", "n1", m{"app": "web"}, []string{"10.0.1.1"}),
		tu.Pod("x", "api", "n1", m{"app": "api"}, []string{"10.0.1.2"}),
		tu.Pod("x", "a", "n2", m{"pod": "a"}, []string{"10.0.2.1"}),
		tu.Policy("x", "open", m{"app": "web"}, tu.Ingress(peers{tu.Block("0.0.0.0/0")}, tu.Port(v1.ProtocolTCP, 443, 0))),
		tu.Policy("x", "api", m{"app": "api"},
			tu.Ingress(peers{tu.PodPeer(m{"pod": "a"})}, tu.Port(v1.ProtocolTCP, 80, 0)),
			tu.Ingress(peers{tu.Block("0.0.0.0/0")}, tu.Port(v1.ProtocolTCP, 443, 0))),
	} {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	rs := Node(c, "n1")
	web, api, a := netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("10.0.2.1")

	// a's identity chain: its own map, then its base.
	idChain := ""
	for el := range rs.Sets[IDsMap(model.Ingress, nft.IPv4)].All() {
		if el.Addr == a {
			idChain = el.Chain
		}
	}
	ch := rs.Chains[idChain]
	if ch == nil || len(ch.Rules) != 2 || ch.Rules[1].Verdict.Kind != nft.Goto {
		t.Fatalf("a's identity chain %q: want its map's lookup, then a goto to its base; got %+v", idChain, ch)
	}
	holds := func(set string) []netip.Addr {
		var out []netip.Addr
		for el := range rs.Sets[set].All() {
			out = append(out, el.Addr)
		}
		slices.SortFunc(out, netip.Addr.Compare)
		return out
	}
	if got := holds(ch.Rules[0].Verdict.Map); !slices.Equal(got, []netip.Addr{api}) {
		t.Errorf("a's identity map holds %v, want api only", got)
	}
	base := rs.Chains[ch.Rules[1].Verdict.Chain]
	if base == nil || len(base.Rules) == 0 || !strings.Contains(base.Rules[0].Comment, "identity cidrs-v4") {
		t.Fatalf("a's base %q: want the identity of the ipBlock", ch.Rules[1].Verdict.Chain)
	}
	if got := holds(base.Rules[0].Verdict.Map); !slices.Equal(got, []netip.Addr{web, api}) {
		t.Errorf("the base's map holds %v, want web and api", got)
	}

	for _, tc := range []struct {
		dst  netip.Addr
		port uint16
		rule string // "" dropped
	}{
		{web, 443, "x/open ingress rule 0"},
		{web, 80, ""},
		{api, 80, "x/api ingress rule 0"},
		{api, 443, "x/api ingress rule 1"},
		{api, 8080, ""},
	} {
		res, err := rs.Trace(ChainForwardIngress, nft.Packet{Src: a, Dst: tc.dst, Proto: nft.ProtoTCP, Port: tc.port, CtState: "new"})
		if err != nil {
			t.Fatal(err)
		}
		byRule := slices.ContainsFunc(res.Matched, func(c string) bool { return tc.rule != "" && strings.HasPrefix(c, tc.rule+" [") })
		if res.Accepted != (tc.rule != "") || res.Accepted && !byRule {
			t.Errorf("a -> %s:%d: accepted %v, matched %v; want %q", tc.dst, tc.port, res.Accepted, res.Matched, tc.rule)
		}
	}
}

// blueTeam is a cluster of an empty namespace x and six namespaces with
// labels, each of 200 pods on node n2, whose addresses it returns sorted.
func blueTeam(t *testing.T, labels map[string]string) (*model.Cluster, []netip.Addr) {
	t.Helper()
	c := model.NewCluster()
	set := func(o any) {
		t.Helper()
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	set(tu.Namespace("x", nil))
	var members []netip.Addr
	for n := range 6 {
		ns := fmt.Sprintf("blue-%d", n)
		set(tu.Namespace(ns, labels))
		for i := range 200 {
			ip := netip.AddrFrom4([4]byte{10, 1, byte(n), byte(i)})
			members = append(members, ip)
			set(tu.Pod(ns, fmt.Sprintf("p%d", i), "n2", m{"app": "client"}, []string{ip.String()}))
		}
	}
	return c, members
}

// TestNewSelectorOfManyPods: a local pod whose policy names a peer
// selector over namespaces of 1,200 pods brings the selector's set to the
// node (the shape of the costliest event at L): every member's address
// gets an element in the ingress ids map, exactly as a compile from
// scratch gives. The set was filled before, for the cluster's policy
// (filled.go), while it changed nothing in the ruleset; it goes with the
// policy.
func TestNewSelectorOfManyPods(t *testing.T) {
	c, members := blueTeam(t, m{"team": "blue"})
	if err := c.Set(tu.Policy("x", "from-blue", m{"app": "web"}, tu.Ingress(peers{tu.NSPeer(m{"team": "blue"}, nil)}, tu.Port(v1.ProtocolTCP, 80, 0)))); err != nil {
		t.Fatal(err)
	}
	e := NewEngine(c, "n1")
	if got := e.Ruleset().Sets[IDsMap(model.Ingress, nft.IPv4)].Len(); got != 0 {
		t.Fatalf("before the local pod: %d ids-map elements, want none (no class uses the selector)", got)
	}
	var filled string // the selector's IPv4 set: the only dynamic IPv4 set the engine has
	for name, ls := range e.sets {
		if ls.def != nil && ls.def.fam == nft.IPv4 {
			if filled != "" {
				t.Fatalf("dynamic sets %s and %s, want only the selector's", filled, name)
			}
			filled = name
		}
	}
	if got := len(e.counts[filled]); got != len(members) {
		t.Fatalf("before the local pod: the selector's set %q holds %d members, want all %d filled already", filled, got, len(members))
	}
	if _, ok := e.Ruleset().Sets[filled]; ok {
		t.Fatalf("before the local pod: the filled set %s is in the ruleset", filled)
	}
	if err := e.Set(tu.Pod("x", "web", "n1", m{"app": "web"}, []string{"10.0.1.1"})); err != nil {
		t.Fatal(err)
	}
	ids := e.Ruleset().Sets[IDsMap(model.Ingress, nft.IPv4)]
	var got []netip.Addr
	for el := range ids.All() {
		got = append(got, el.Addr)
	}
	slices.SortFunc(got, netip.Addr.Compare)
	if !slices.Equal(got, members) {
		t.Errorf("the ingress ids map holds %d addresses, want the selector's %d members", len(got), len(members))
	}
	if want := Node(c, "n1").Text(); e.Ruleset().Text() != want {
		t.Errorf("the engine's ruleset differs from a compile from scratch")
	}
	if err := e.Delete("NetworkPolicy", "x", "from-blue"); err != nil {
		t.Fatal(err)
	}
	if ls, ok := e.sets[filled]; ok {
		t.Errorf("after the policy's delete: its set is still kept (%d refs)", ls.refs)
	}
	if got := e.Ruleset().Sets[IDsMap(model.Ingress, nft.IPv4)].Len(); got != 0 {
		t.Errorf("after the policy's delete: %d ids-map elements, want none", got)
	}
}

// TestNewIdentityAsksOnlyItsPods: a new identity places the local pods
// whose class names one of its sets that its base lacks, and only those
// (mayPlace): the identity of the 1,200 blue peers asks web, whose class
// names them, and none of the ten api pods, whose class names another
// selector; and no pod with an element in any identity's map was one
// mayPlace would have skipped.
func TestNewIdentityAsksOnlyItsPods(t *testing.T) {
	c, members := blueTeam(t, m{"team": "blue"})
	objs := []any{
		tu.Pod("x", "web", "n1", m{"app": "web"}, []string{"10.0.1.1"}),
		tu.Pod("x", "a", "n2", m{"pod": "a"}, []string{"10.0.2.1"}),
		tu.Policy("x", "from-blue", m{"app": "web"}, tu.Ingress(peers{tu.NSPeer(m{"team": "blue"}, nil)}, tu.Port(v1.ProtocolTCP, 80, 0))),
		tu.Policy("x", "from-a", m{"app": "api"}, tu.Ingress(peers{tu.PodPeer(m{"pod": "a"})}, tu.Port(v1.ProtocolTCP, 80, 0)),
			tu.Ingress(peers{tu.Block("0.0.0.0/0")}, tu.Port(v1.ProtocolTCP, 443, 0))),
	}
	for i := range 10 {
		objs = append(objs, tu.Pod("x", fmt.Sprintf("api-%d", i), "n1", m{"app": "api"}, []string{fmt.Sprintf("10.0.1.%d", 10+i)}))
	}
	for _, o := range objs {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	e := NewEngine(c, "n1")
	asked := func(id *identity) []string {
		var keys []string
		for key, pl := range e.podClass {
			if e.mayPlace(id, pl) {
				keys = append(keys, key)
			}
		}
		slices.Sort(keys)
		return keys
	}
	blue := e.addrs[members[0]].id[space{model.Ingress, npTier}.index()]
	if blue == nil || blue.base == nil {
		t.Fatalf("a blue peer's ingress identity: %+v, want one with a base", blue)
	}
	if got := asked(blue); !slices.Equal(got, []string{"x/web"}) {
		t.Errorf("the blue peers' identity asks %v, want x/web only", got)
	}
	placed := 0
	for _, ids := range e.ids {
		for _, id := range ids {
			for key := range id.elems {
				placed++
				if !e.mayPlace(id, e.podClass[key]) {
					t.Errorf("%s has an element in identity %s, which mayPlace skips", key, id.desc)
				}
			}
		}
	}
	if placed == 0 {
		t.Fatal("no local pod has an element in any identity's map")
	}
	if want := Node(c, "n1").Text(); e.Ruleset().Text() != want {
		t.Errorf("the engine's ruleset differs from a compile from scratch")
	}
}

// TestSignature: a group's signature names its identity's family and its
// rules as "v<family> <policy>#<index>…", which group chains' names hash
// and parseSignature reads back.
func TestSignature(t *testing.T) {
	id := &identity{fam: nft.IPv6}
	rules := []matchedRule{{key: "x/a", index: 0}, {key: "y/b-2", index: 12}}
	if got, want := signature(id, rules), "v6 x/a#0 y/b-2#12"; got != want {
		t.Errorf("signature %q, want %q", got, want)
	}
	fams, keys := parseSignature(signature(id, rules))
	if !slices.Equal(fams, []nft.Family{nft.IPv6}) || !keys["x/a#0"] || !keys["y/b-2#12"] || len(keys) != 2 {
		t.Errorf("parsed back: %v %v", fams, keys)
	}
	if got := signature(&identity{}, nil); got != "v0" {
		t.Errorf("empty identity's signature %q", got)
	}
}
