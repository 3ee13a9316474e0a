package compile

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

func fqdnPolicy(patterns ...v1alpha2.DomainName) *v1alpha2.ClusterNetworkPolicy {
	p := &v1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "egress-allowlist"}}
	p.Spec.Tier, p.Spec.Priority = v1alpha2.AdminTier, 10
	p.Spec.Subject.Namespaces = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "web"}}
	p.Spec.Egress = []v1alpha2.ClusterNetworkPolicyEgressRule{
		{Action: "Accept", To: []v1alpha2.ClusterNetworkPolicyEgressPeer{{DomainNames: patterns}}},
		{Action: "Deny", To: []v1alpha2.ClusterNetworkPolicyEgressPeer{{Networks: []v1alpha2.CIDR{"0.0.0.0/0", "::/0"}}}},
	}
	return p
}

// TestDomainPeersIncremental walks a node through domain bindings and
// policy changes: at every step the engine's ruleset is the one a fresh
// compile of the same cluster gives, its partial transaction is the full
// one and the Fake kernel takes it, and the traced verdicts are the
// evaluator's. The DNS answer chain and its sets exist exactly while a
// local pod is a subject of a policy with domain peers.
func TestDomainPeersIncremental(t *testing.T) {
	opts := model.Options{DNSGroup: 101}
	objects := map[string]any{}
	bindings := map[string][]netip.Addr{}
	put := func(o any) {
		kind, ns, name, _ := model.RefOf(o)
		objects[kind+"/"+ns+"/"+name] = o
	}
	put(tu.Namespace("web", map[string]string{"team": "web"}))
	put(tu.Namespace("other", nil))
	put(tu.Pod("web", "client", "n1", nil, []string{"10.0.1.10", "fd00:1::10"}))
	put(tu.Pod("other", "bystander", "n1", nil, []string{"10.0.1.11"}))
	fresh := func() *model.Cluster {
		c := model.NewCluster()
		for _, o := range objects {
			if err := c.Set(o); err != nil {
				t.Fatal(err)
			}
		}
		for name, addrs := range bindings {
			c.SetDomain(name, addrs)
		}
		return c
	}
	e := NewEngineWith(fresh(), "n1", opts)
	kernel := nft.NewFake()
	kernel.Seed(e.Ruleset())
	shadow := e.Ruleset().Clone()
	e.TakeTouched()

	www, api, ext := netip.MustParseAddr("192.0.2.80"), netip.MustParseAddr("2001:db8::443"), netip.MustParseAddr("198.51.100.1")
	client, client6 := netip.MustParseAddr("10.0.1.10"), netip.MustParseAddr("fd00:1::10")
	steps := []struct {
		what    string
		do      func()
		chain   bool         // the DNS answer chain exists
		allowed []netip.Addr // of www, api, ext: what the client may reach on tcp/443
	}{
		{what: "no policy", do: func() {}, allowed: []netip.Addr{www, api, ext}},
		{what: "the allowlist, nothing learned", do: func() {
			p := fqdnPolicy("*.example.com")
			put(p)
			must(t, e.Set(p))
		}, chain: true},
		{what: "www learned", do: func() {
			bindings["www.example.com"] = []netip.Addr{www}
			e.SetDomain("www.example.com", bindings["www.example.com"])
		}, chain: true, allowed: []netip.Addr{www}},
		{what: "the apex is not under the wildcard", do: func() {
			bindings["example.com"] = []netip.Addr{ext}
			e.SetDomain("example.com", bindings["example.com"])
		}, chain: true, allowed: []netip.Addr{www}},
		{what: "api learned (IPv6)", do: func() {
			bindings["api.example.com"] = []netip.Addr{api}
			e.SetDomain("api.example.com", bindings["api.example.com"])
		}, chain: true, allowed: []netip.Addr{www, api}},
		{what: "www expired", do: func() {
			delete(bindings, "www.example.com")
			e.SetDomain("www.example.com", nil)
		}, chain: true, allowed: []netip.Addr{api}},
		{what: "www back, the subject's namespace relabelled away", do: func() {
			bindings["www.example.com"] = []netip.Addr{www}
			e.SetDomain("www.example.com", bindings["www.example.com"])
			ns := tu.Namespace("web", nil)
			put(ns)
			must(t, e.Set(ns))
		}, allowed: []netip.Addr{www, api, ext}},
		{what: "relabelled back", do: func() {
			ns := tu.Namespace("web", map[string]string{"team": "web"})
			put(ns)
			must(t, e.Set(ns))
		}, chain: true, allowed: []netip.Addr{www, api}},
		{what: "the policy deleted", do: func() {
			delete(objects, model.KindCNP+"//egress-allowlist")
			must(t, e.Delete(model.KindCNP, "", "egress-allowlist"))
		}, allowed: []netip.Addr{www, api, ext}},
	}
	for _, s := range steps {
		s.do()
		c := fresh()
		want := NodeWith(c, "n1", opts)
		if got := e.Ruleset().Text(); got != want.Text() {
			t.Fatalf("%s: incremental differs from fresh (-fresh +incremental):\n%s", s.what, cmp.Diff(want.Text(), got))
		}
		touched := e.TakeTouched()
		partial, full := diff.Partial(shadow, e.Ruleset(), touched), diff.Diff(shadow, e.Ruleset())
		if partial.String() != full.String() {
			t.Fatalf("%s: partial diff differs from the full one:\n%s", s.what, cmp.Diff(full.String(), partial.String()))
		}
		if err := kernel.Apply(context.Background(), partial); err != nil {
			t.Fatalf("%s: the kernel refuses: %v\n%s", s.what, err, partial)
		}
		shadow.ApplyOps(partial)
		if _, ok := e.Ruleset().Chains[ChainDNSAnswers]; ok != s.chain {
			t.Fatalf("%s: DNS answer chain present %v, want %v", s.what, ok, s.chain)
		}
		if s.chain {
			if got := e.Ruleset().Sets[DNSClientSet(nft.IPv4)].Sorted(); len(got) != 1 || got[0].Addr != client {
				t.Fatalf("%s: DNS clients %v, want only the client %v (not the bystander)", s.what, got, client)
			}
		}
		ev := model.NewEvaluator(c)
		for _, dst := range []netip.Addr{www, api, ext} {
			src := client
			if dst.Is6() {
				src = client6
			}
			f := model.Flow{Src: src, Dst: dst, Proto: nft.ProtoTCP, Port: 443}
			traced, err := e.Ruleset().Trace(ChainForwardEgress, nft.Packet{Src: src, Dst: dst, Proto: nft.ProtoTCP, Port: 443, CtState: "new"})
			must(t, err)
			want := false
			for _, a := range s.allowed {
				want = want || a == dst
			}
			if got := ev.Evaluate(f).Allowed(); got != want {
				t.Errorf("%s: evaluator: %v allowed %v, want %v", s.what, dst, got, want)
			}
			if traced.Accepted != want {
				t.Errorf("%s: trace: %v allowed %v, want %v: %s", s.what, dst, traced.Accepted, want, strings.Join(traced.Matched, " → "))
			}
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
