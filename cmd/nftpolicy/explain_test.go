package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
	policyfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/explain"
	"github.com/nftpolicy/nftpolicy/internal/manifest"
	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// testCluster is explain's test cluster: every tier decides some flow.
const testCluster = "../../internal/explain/testdata/cluster.yaml"

func runCmd(cmd func([]string, *bytes.Buffer, *bytes.Buffer) int, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cmd(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func explainRun(args []string, out, errOut *bytes.Buffer) int { return explainCmd(args, out, errOut) }
func previewRun(args []string, out, errOut *bytes.Buffer) int { return previewCmd(args, out, errOut) }

func TestExplainCommand(t *testing.T) {
	code, out, errOut := runCmd(explainRun, "-f", testCluster, "--from", "tools/dig", "--to", "shop/front", "--port", "8080")
	if code != 0 || !strings.HasPrefix(out, "tools/dig (10.244.2.20 on node-2) -> shop/front (10.244.1.10 on node-1) tcp/8080: denied\n") ||
		!strings.Contains(out, `denied by AdminNetworkPolicy ops-out-of-apps, ingress rule 0 "deny-from-ops" (Deny), admin tier`) {
		t.Errorf("exit %d:\n%s%s", code, out, errOut)
	}
	// Exit 0 for an allowed flow too, and JSON that parses.
	code, out, _ = runCmd(explainRun, "-f", testCluster, "--from", "shop/front", "--to", "shop/cart", "--port", "80/tcp", "--output", "json")
	var r explain.Report
	if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || !r.Allowed || r.Egress.Rule == nil || r.Egress.Rule.Name != "web" {
		t.Errorf("exit %d, %v: %+v\n%s", code, err, r, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-f", testCluster, "--from", "shop/gone", "--to", "shop/front", "--port", "80"}, 2, "pod shop/gone: no such endpoint"},
		{[]string{"-f", testCluster, "--from", "shop/front", "--to", "shop/cart", "--port", "80/icmp"}, 2, "unknown protocol"},
		{[]string{"-f", testCluster, "--from", "shop/front", "--port", "80"}, 2, "usage"},
		{[]string{"--from", "shop/front", "--to", "shop/cart", "--port", "80"}, 2, "usage"},
		{[]string{"-f", "/nonexistent", "--from", "shop/front", "--to", "shop/cart", "--port", "80"}, 1, "nonexistent"},
	} {
		code, out, errOut := runCmd(explainRun, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) || out != "" {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q), stdout %q", tc.args, code, tc.code, errOut, tc.msg, out)
		}
	}
}

// TestExplainNodeRulesetDrift: a throwaway namespace holds node-1's
// compiled table, loaded as `nft -f` would; explain --node-ruleset reads it
// over netlink and agrees with the model. One element deleted with nft (a
// peer identity of shop/web's egress rule) and it reports the drift: the kernel
// drops what the model allows.
func TestExplainNodeRulesetDrift(t *testing.T) {
	ns := tu.NetNS(t)
	table, _ := compileOK(t, "-f", testCluster, "--node", "node-1")
	if msg, err := tu.NftIn(t, ns, table, "-f", "-"); err != nil {
		t.Fatalf("nft -f: %v: %s", err, msg)
	}
	args := []string{"-f", testCluster, "--from", "shop/front", "--to", "shop/cart", "--port", "80",
		"--node-ruleset", "--node", "node-1", "--netns", filepath.Join("/run/netns", ns), "--output", "json"}
	check := func() explain.NodeCheck {
		t.Helper()
		code, out, errOut := runCmd(explainRun, args...)
		var r explain.Report
		if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || r.Node == nil {
			t.Fatalf("exit %d, %v: %s%s", code, err, out, errOut)
		}
		return *r.Node
	}
	if nc := check(); nc.Drift || nc.TableDiffers || len(nc.Kernel) != 2 || nc.Kernel[0].Verdict != "accept" {
		t.Fatalf("the table as compiled: %+v", nc)
	}
	// shop/front's egress to cart is decided by cart's peer identity: the
	// element of cart's address in the egress ids map leads there.
	if !strings.Contains(table, "map egress-ids-v4 ") || !strings.Contains(table, "10.244.2.10 : goto egress-id-") {
		t.Fatalf("no identity element for cart in the compiled table:\n%s", table)
	}
	if msg, err := tu.NftIn(t, ns, "", "delete", "element", "inet", "nftpolicy", "egress-ids-v4", "{", "10.244.2.10", "}"); err != nil {
		t.Fatalf("nft delete element: %v: %s", err, msg)
	}
	nc := check()
	if !nc.Drift || !nc.TableDiffers || nc.ElementChanges != 1 || len(nc.Kernel) != 1 || nc.Kernel[0].Verdict != "drop" {
		t.Fatalf("after one element was deleted: %+v", nc)
	}
	args[len(args)-1] = "text"
	if _, out, _ := runCmd(explainRun, args...); !strings.Contains(out, "DRIFT: the kernel decides this flow differently") {
		t.Errorf("the text does not say DRIFT:\n%s", out)
	}
}

func TestPreviewCommand(t *testing.T) {
	dir := t.TempDir()
	change := filepath.Join(dir, "change.yaml")
	writeFile(t, change, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: lockdown, namespace: tools}
spec:
  podSelector: {matchLabels: {app: dig}}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {tier: app}}}], ports: [{port: 8080}]}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: ops-out-of-apps, annotations: {nftpolicy.io/preview: delete}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {tier: app}}
`)
	code, out, errOut := runCmd(previewRun, "-f", change, "-f", testCluster)
	for _, want := range []string{
		"change: NetworkPolicy tools/lockdown: added\nchange: AdminNetworkPolicy ops-out-of-apps: deleted\nchange: Namespace shop: unchanged\n",
		"6 flows change verdict: 2 now allowed, 4 now denied",
		"tools app=dig -> shop app=cart: 1 flow, 1 now allowed, 0 now denied\n  tools/dig -> shop/cart tcp/8080: denied -> allowed",
		"tools/dig -> tools/curl tcp/1 (any port nothing names): allowed -> denied (egress denied: isolated by NetworkPolicy tools/lockdown, no rule matches)",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d, output lacks %q:\n%s%s", code, want, out, errOut)
		}
	}
	// Deterministic, and the JSON has the same flows.
	if _, again, _ := runCmd(previewRun, "-f", change, "-f", testCluster); again != out {
		t.Errorf("a second run differs:\n%s", again)
	}
	_, js, _ := runCmd(previewRun, "-f", change, "-f", testCluster, "--output", "json")
	var res explain.PreviewResult
	if err := json.Unmarshal([]byte(js), &res); err != nil || res.Flows != 6 || len(res.Groups) != 3 {
		t.Errorf("%v: %+v", err, res)
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, annotations: {nftpolicy.io/preview: remove}}\n")
	if code, _, errOut := runCmd(previewRun, "-f", bad, "-f", testCluster); code != 1 || !strings.Contains(errOut, `want "delete"`) {
		t.Errorf("a bad annotation: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCmd(previewRun, "-f", change); code != 2 || !strings.Contains(errOut, "usage") {
		t.Errorf("no cluster: exit %d: %s", code, errOut)
	}
}

// TestListObjects: against a live cluster explain and preview list the
// kinds the agent watches: the core ones always, the admin kinds the API
// server serves.
func TestListObjects(t *testing.T) {
	objs, err := manifest.ReadFile(testCluster, 0)
	if err != nil {
		t.Fatal(err)
	}
	client := kubefake.NewClientset()
	pc := policyfake.NewSimpleClientset()
	ctx := context.Background()
	var create metav1.CreateOptions
	core := 0
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *v1.Namespace:
			_, err = client.CoreV1().Namespaces().Create(ctx, o, create)
		case *v1.Node:
			_, err = client.CoreV1().Nodes().Create(ctx, o, create)
		case *v1.Pod:
			_, err = client.CoreV1().Pods(o.Namespace).Create(ctx, o, create)
		case *networkingv1.NetworkPolicy:
			_, err = client.NetworkingV1().NetworkPolicies(o.Namespace).Create(ctx, o, create)
		case *v1alpha1.AdminNetworkPolicy:
			_, err = pc.PolicyV1alpha1().AdminNetworkPolicies().Create(ctx, o, create)
			core--
		case *v1alpha1.BaselineAdminNetworkPolicy:
			_, err = pc.PolicyV1alpha1().BaselineAdminNetworkPolicies().Create(ctx, o, create)
			core--
		default:
			t.Fatalf("%T in the test cluster", o)
		}
		core++
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := listObjects(ctx, client, pc, agent.AdminKindsAt("AdminNetworkPolicy", "BaselineAdminNetworkPolicy"))
	if err != nil || len(got) != len(objs) {
		t.Fatalf("listed %d objects of %d: %v", len(got), len(objs), err)
	}
	// The same cluster, read from the API, explains as from the file.
	x := explain.New(newCluster(got, io.Discard))
	r, err := x.Explain(explain.Question{From: "tools/dig", To: "shop/front", Proto: 6, Port: 8080})
	if err != nil || r.Allowed || r.Ingress.Rule == nil || r.Ingress.Rule.Name != "ops-out-of-apps" {
		t.Errorf("%v: %+v", err, r)
	}
	// A ClusterNetworkPolicy served as v1beta1 is listed as the model's
	// v1alpha2, as the agent reads it.
	cnp := &v1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "guard"}}
	cnp.Spec.Tier, cnp.Spec.Priority = v1beta1.AdminTier, 3
	if _, err := pc.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, cnp, create); err != nil {
		t.Fatal(err)
	}
	kinds := agent.AdminKindsAt("AdminNetworkPolicy", "BaselineAdminNetworkPolicy")
	kinds[model.KindCNP] = schema.GroupVersion(v1beta1.GroupVersion).WithResource("clusternetworkpolicies")
	if got, err = listObjects(ctx, client, pc, kinds); err != nil || len(got) != len(objs)+1 ||
		!slices.ContainsFunc(got, func(s sourced) bool { c, ok := s.obj.(*v1alpha2.ClusterNetworkPolicy); return ok && c.Name == "guard" }) {
		t.Errorf("with a v1beta1 ClusterNetworkPolicy: listed %d objects of %d, the policy as v1alpha2 not among them: %v", len(got), len(objs)+1, err)
	}
	got, err = listObjects(ctx, client, nil, nil)
	if err != nil || len(got) != core {
		t.Fatalf("without the admin kinds: listed %d objects, want %d: %v", len(got), core, err)
	}
}
