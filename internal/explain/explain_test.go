package explain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/inet"
	"github.com/nftpolicy/nftpolicy/internal/manifest"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

// loadCluster reads a testdata manifest into a model.
func loadCluster(t *testing.T, name string) *model.Cluster {
	t.Helper()
	objs, err := manifest.ReadFile(filepath.Join("testdata", name), 0)
	if err != nil {
		t.Fatal(err)
	}
	c := model.NewCluster()
	for _, o := range objs {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// goldenQuestions: each tier deciding each way, an admin Pass, the own-node
// exception, an outside address, and a pod's named port.
var goldenQuestions = []struct{ from, to, port string }{
	{"tools/curl", "shop/front", "8080"},
	{"tools/curl", "shop/front", "80"},
	{"tools/dig", "shop/front", "8080"},
	{"shop/front", "shop/cart", "80"},
	{"shop/front", "tools/dig", "5353/udp"},
	{"shop/cart", "tools/curl", "80"},
	{"shop/front", "172.18.0.11", "10250"},
	{"10.244.1.10", "8.8.8.8", "443"},
	{"tools/dig", "tools/curl", "53/udp"},
}

func TestGoldenText(t *testing.T) {
	x := New(loadCluster(t, "cluster.yaml"))
	var out bytes.Buffer
	for _, q := range goldenQuestions {
		proto, port, err := ParsePort(q.port)
		if err != nil {
			t.Fatal(err)
		}
		r, err := x.Explain(Question{From: q.from, To: q.to, Proto: proto, Port: port})
		if err != nil {
			t.Fatalf("%v: %v", q, err)
		}
		if len(r.Problems) > 0 {
			t.Errorf("%v: problems %v", q, r.Problems)
		}
		r.WriteText(&out)
		out.WriteString("\n")
	}
	golden := filepath.Join("testdata", "explain.golden")
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), out.String()); d != "" {
		t.Errorf("explain text differs from %s (go test ./internal/explain -update rewrites it):\n%s", golden, d)
	}
}

func TestJSONParses(t *testing.T) {
	x := New(loadCluster(t, "cluster.yaml"))
	r, err := x.Explain(Question{From: "tools/dig", To: "shop/front", Proto: inet.TCP, Port: 8080})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil {
		t.Fatalf("%v:\n%s", err, buf.String())
	}
	if d := cmp.Diff(r, &back); d != "" {
		t.Errorf("JSON does not round-trip:\n%s", d)
	}
	want := &RuleRef{Kind: "AdminNetworkPolicy", Name: "ops-out-of-apps", Direction: "ingress", Index: 0, RuleName: "deny-from-ops", Action: "Deny"}
	if back.Allowed || back.Ingress.Tier != "admin" || !cmp.Equal(back.Ingress.Rule, want) {
		t.Errorf("decoded %+v, want denied by %v", back.Ingress, want)
	}
}

func TestBadQuestions(t *testing.T) {
	x := New(loadCluster(t, "cluster.yaml"))
	for _, tc := range []struct {
		from, to   string
		noEndpoint bool
		msg        string
	}{
		{"shop/nope", "shop/front", true, "pod shop/nope"},
		{"shop/front", "nope/front", true, "pod nope/front"},
		{"front", "shop/front", false, "want namespace/pod or an IP address"},
		{"shop/front", "fd00::1", false, "no IP family in common"},
	} {
		_, err := x.Explain(Question{From: tc.from, To: tc.to, Proto: inet.TCP, Port: 80})
		if err == nil || errors.Is(err, ErrNoEndpoint) != tc.noEndpoint || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s -> %s: error %v, want one containing %q (no endpoint: %v)", tc.from, tc.to, err, tc.msg, tc.noEndpoint)
		}
	}
	for _, bad := range []string{"", "0", "65536", "80/icmp", "icmp/80", "http", "tcp/http"} {
		if _, _, err := ParsePort(bad); err == nil {
			t.Errorf("ParsePort(%q): no error", bad)
		}
	}
	for _, s := range []string{"53/UDP", "udp/53"} {
		if p, n, err := ParsePort(s); err != nil || p != inet.UDP || n != 53 {
			t.Errorf("ParsePort(%s) = %d %d %v", s, p, n, err)
		}
	}
}

// TestCheckNodeDrift: a kernel (the Fake, which reads back like the real
// one: rules by comment only) that holds exactly the compiled table agrees
// with the model; one element deleted from the ids map makes the flow's
// verdict differ, and CheckNode says so and counts the repair.
func TestCheckNodeDrift(t *testing.T) {
	c := loadCluster(t, "cluster.yaml")
	x := New(c)
	q := Question{From: "shop/front", To: "shop/cart", Proto: inet.TCP, Port: 80} // allowed by shop/web egress rule 0
	k := nft.NewFake()
	ctx := context.Background()
	want := compile.Node(c, "node-1")
	if err := k.Apply(ctx, diff.Replace(want)); err != nil {
		t.Fatal(err)
	}
	check := func() *NodeCheck {
		t.Helper()
		got, err := k.Dump(ctx)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := x.CheckNode(q, "node-1", got)
		if err != nil {
			t.Fatal(err)
		}
		return nc
	}
	nc := check()
	if nc.Drift || nc.TableDiffers || len(nc.Notes) > 0 || len(nc.Kernel) != 2 || nc.Kernel[0].Verdict != "accept" {
		t.Fatalf("an untouched table: %+v", nc)
	}
	// Tamper: cart's address out of the egress ids map, which gives it the
	// identity shop/web's egress rule 0 matches (without it the address
	// has no identity: no rule of shop/web's groups matches it).
	set := compile.IDsMap(model.Egress, nft.IPv4)
	cart := nft.Elem{Addr: netip.MustParseAddr("10.244.2.10")}
	found := false
	for el := range want.Sets[set].All() {
		found = found || el.Addr == cart.Addr
	}
	if !found {
		t.Fatalf("the egress ids map does not hold shop/cart's address")
	}
	tx := &nft.Transaction{}
	tx.Add(nft.Op{Kind: nft.OpDeleteElements, Name: set, SetType: want.Sets[set].Type, Elems: []nft.Elem{cart}})
	if err := k.Apply(ctx, tx); err != nil {
		t.Fatal(err)
	}
	nc = check()
	if !nc.Drift || !nc.TableDiffers || nc.ElementChanges != 1 || nc.OtherChanges != 0 {
		t.Fatalf("after deleting one element: %+v", nc)
	}
	if got := nc.Kernel[0]; got.Verdict != "drop" || got.Chain != compile.ChainForwardEgress {
		t.Errorf("the kernel's trace: %+v, want a drop in forward-egress", got)
	}
	var text bytes.Buffer
	(&Report{Node: nc}).WriteText(&text)
	if !strings.Contains(text.String(), "DRIFT") || !strings.Contains(text.String(), "1 element changes") {
		t.Errorf("text does not report the drift:\n%s", text.String())
	}
	// A flow that crosses no chain of the node is said to, not judged.
	nc, err := x.CheckNode(Question{From: "shop/cart", To: "tools/dig", Proto: inet.TCP, Port: 80}, "node-1", want)
	if err != nil || nc.Drift || len(nc.Notes) != 1 || !strings.Contains(nc.Notes[0], "crosses no chain of node node-1") {
		t.Errorf("a flow on node-2 checked on node-1: %+v, %v", nc, err)
	}
}

// A policy in audit mode changes no verdict; explain shows the verdict it
// would give, and the would-drop the kernel logs on the way.
func TestAuditShown(t *testing.T) {
	c := loadCluster(t, "cluster.yaml")
	lockdown := tu.Policy("tools", "lockdown", nil, tu.Types(networkingv1.PolicyTypeIngress))
	lockdown.Annotations = map[string]string{model.AnnotationEnforcement: model.EnforcementAudit}
	if err := c.Set(lockdown); err != nil {
		t.Fatal(err)
	}
	r, err := New(c).Explain(Question{From: "tools/dig", To: "tools/curl", Proto: inet.UDP, Port: 53})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r.WriteText(&out)
	if !r.Allowed || len(r.Problems) > 0 {
		t.Fatalf("audit policy changed the verdict:\n%s", out.String())
	}
	if r.Ingress.Audit == nil || r.Ingress.Audit.Allowed || !slices.Equal(r.Ingress.Audit.Isolating, []string{"NetworkPolicy tools/lockdown"}) {
		t.Errorf("ingress audit verdict %+v, want denied, isolated by tools/lockdown:\n%s", r.Ingress.Audit, out.String())
	}
	if r.Egress.Audit != nil || len(r.Ingress.Isolating) != 0 {
		t.Errorf("egress audit %+v, enforced isolation %v; want none", r.Egress.Audit, r.Ingress.Isolating)
	}
	last := r.Compiled[len(r.Compiled)-1]
	if !slices.Equal(last.Logged, []string{"would-drop networkpolicy tools/lockdown default-deny"}) || last.Verdict != "accept" {
		t.Errorf("last hop %+v, want accepted with one would-drop logged", last)
	}
	if !strings.Contains(out.String(), "audit mode: with the audit policies enforced, denied: tools/curl is isolated for ingress by NetworkPolicy tools/lockdown") {
		t.Errorf("text does not show the audit verdict:\n%s", out.String())
	}
	t.Log(out.String())
}
