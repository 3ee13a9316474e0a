package compile

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Audit policies, traced through node-2's ruleset (auditCluster): what they
// would deny is accepted and logged once per audit policy that would deny
// it, as would-drop with that policy's origin; what they allow is not
// logged; the evaluator ignores them, and with EnforceAudit denies exactly
// the flows logged.
func TestAuditTraces(t *testing.T) {
	c := auditCluster(t)
	rs := Node(c, "node-2")
	origins := NewOrigins(rs)
	ya, xc := netip.MustParseAddr("10.244.2.20"), netip.MustParseAddr("10.244.2.10")
	doc := netip.MustParseAddr("192.0.2.5")
	for _, tc := range []struct {
		name  string
		chain string
		f     model.Flow
		want  []string // "tier policy rule" of each would-drop logged
	}{
		{"ingress the audit policy allows", ChainForwardIngress, model.Flow{Src: xc, Dst: ya, Proto: nft.ProtoTCP, Port: 80}, nil},
		{"ingress it would deny", ChainForwardIngress, model.Flow{Src: xc, Dst: ya, Proto: nft.ProtoUDP, Port: 53}, []string{"networkpolicy y/trial default-deny"}},
		{"egress the admin audit rule would deny, the audit NetworkPolicy allows", ChainForwardEgress, model.Flow{Src: ya, Dst: doc, Proto: nft.ProtoUDP, Port: 53},
			[]string{"admin AdminNetworkPolicy/trial 1"}},
		{"egress both would deny", ChainForwardEgress, model.Flow{Src: ya, Dst: doc, Proto: nft.ProtoTCP, Port: 80},
			[]string{"admin AdminNetworkPolicy/trial 1", "networkpolicy y/trial default-deny"}},
		{"egress the admin audit policy allows first", ChainForwardEgress, model.Flow{Src: ya, Dst: netip.MustParseAddr("192.0.2.200"), Proto: nft.ProtoUDP, Port: 53}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := rs.Trace(tc.chain, nft.Packet{Src: tc.f.Src, Dst: tc.f.Dst, Proto: tc.f.Proto, Port: tc.f.Port, CtState: "new"})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Accepted {
				t.Errorf("dropped; audit policies drop nothing (matched %v)", res.Matched)
			}
			var got []string
			for _, p := range res.Logged {
				o := origins.ByPrefix[p]
				if o == nil {
					t.Fatalf("log prefix %q has no origin", p)
				}
				if o.Verdict != VerdictWouldDrop {
					t.Errorf("logged %+v, want would-drops only", o)
				}
				got = append(got, o.Tier+" "+o.Policy+" "+o.Rule)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("would-drops logged %v, want %v", got, tc.want)
			}
			dir := model.Ingress
			if tc.chain == ChainForwardEgress {
				dir = model.Egress
			}
			if v := model.NewEvaluator(c).Judge(dir, tc.f); !v.Allowed {
				t.Errorf("evaluator: %v; audit policies do not exist for verdicts", v)
			}
			enforced := model.NewEvaluatorWith(c, model.Options{EnforceAudit: true}).Judge(dir, tc.f)
			if enforced.Allowed != (len(tc.want) == 0) {
				t.Errorf("enforced, the audit policies give %v; want denied exactly when a would-drop is logged (%v)", enforced, tc.want)
			}
		})
	}
}

// The prefix fits the kernel's limit whatever the names, and differs by
// verdict and rule.
func TestLogPrefix(t *testing.T) {
	long := &nft.Origin{Direction: "ingress", Tier: "networkpolicy", Policy: string(make([]byte, 400)), Rule: "default-deny", Verdict: VerdictDrop}
	if p := LogPrefix(long); len(p) > nft.MaxLogPrefixLen || len(p) != 13 {
		t.Errorf("prefix %q: %d bytes", p, len(p))
	}
	a := LogPrefix(&nft.Origin{Direction: "ingress", Tier: "networkpolicy", Policy: "x/a", Rule: "0", Verdict: VerdictAccept})
	b := LogPrefix(&nft.Origin{Direction: "ingress", Tier: "networkpolicy", Policy: "x/a", Rule: "1", Verdict: VerdictAccept})
	d := LogPrefix(&nft.Origin{Direction: "ingress", Tier: "networkpolicy", Policy: "x/a", Rule: "0", Verdict: VerdictDrop})
	if a == b || a[:5] != "np:A:" || d[:5] != "np:D:" {
		t.Errorf("prefixes %q %q %q", a, b, d)
	}
}
