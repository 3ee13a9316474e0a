package lab

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/explain"
	"github.com/nftpolicy/nftpolicy/internal/manifest"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/scenario"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// previewScenario is a cluster with policies in every tier, probed on TCP
// 80 between every pair of pods before and after one NetworkPolicy is
// added. Its expectations are not the point (the test reads what the lab
// measured): they are only there because the format wants some.
const previewScenario = `
name: preview-against-the-lab
nodes: [node-1, node-2]
objects:
  - {apiVersion: v1, kind: Namespace, metadata: {name: shop, labels: {tier: app}}}
  - {apiVersion: v1, kind: Namespace, metadata: {name: tools, labels: {tier: ops}}}
  - {apiVersion: v1, kind: Pod, metadata: {name: front, namespace: shop, labels: {app: front}}, spec: {containers: [{name: c}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: cart, namespace: shop, labels: {app: cart}}, spec: {containers: [{name: c}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: curl, namespace: tools, labels: {app: curl}}, spec: {containers: [{name: c}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: dig, namespace: tools, labels: {app: dig}}, spec: {containers: [{name: c}]}}
  - apiVersion: policy.networking.k8s.io/v1alpha1
    kind: AdminNetworkPolicy
    metadata: {name: curl-is-up-to-the-apps}
    spec:
      priority: 10
      subject: {namespaces: {matchLabels: {tier: app}}}
      ingress:
        - name: pass-from-curl
          action: Pass
          from: [{pods: {namespaceSelector: {matchLabels: {tier: ops}}, podSelector: {matchLabels: {app: curl}}}}]
  - apiVersion: policy.networking.k8s.io/v1alpha1
    kind: BaselineAdminNetworkPolicy
    metadata: {name: default}
    spec:
      subject: {namespaces: {matchLabels: {tier: app}}}
      ingress:
        - name: deny-from-ops
          action: Deny
          from: [{namespaces: {matchLabels: {tier: ops}}}]
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: cart-from-front, namespace: shop}
    spec:
      podSelector: {matchLabels: {app: cart}}
      ingress: [{from: [{podSelector: {matchLabels: {app: front}}}], ports: [{port: 80}]}]
steps:
  - probe:
      port: 80
      expect: ["*/* -> */*: allowed"]
  - apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: front-from-curl, namespace: shop}
        spec:
          podSelector: {matchLabels: {app: front}}
          ingress: [{from: [{namespaceSelector: {matchLabels: {tier: ops}}, podSelector: {matchLabels: {app: curl}}}], ports: [{port: 80}]}]
    probe:
      port: 80
      expect: ["*/* -> */*: allowed"]
`

// TestPreviewListsWhatTheLabFlips: nftpolicy preview of a change lists
// exactly the pairs of pods whose probes change in the lab when the change
// is applied (TCP 80, the port the policies name).
func TestPreviewListsWhatTheLabFlips(t *testing.T) {
	testutil.NeedKernel(t)
	t.Parallel()
	file := filepath.Join(t.TempDir(), "preview.yaml")
	if err := os.WriteFile(file, []byte(previewScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := runFile(t, file)
	if len(rep.Errors) > 0 || len(rep.Probes) != 2 {
		t.Fatalf("the scenario ran with errors %v and %d probes", rep.Errors, len(rep.Probes))
	}
	verdicts := func(pr scenario.ProbeReport) map[string]scenario.Verdict {
		out := map[string]scenario.Verdict{}
		for _, r := range pr.Results {
			if r.Got.Verdict != scenario.Allowed && r.Got.Verdict != scenario.Denied {
				t.Fatalf("%s -> %s: %v", r.From, r.To, r.Got)
			}
			out[r.From.String()+" -> "+r.To.String()] = r.Got.Verdict
		}
		return out
	}
	before, after := verdicts(rep.Probes[0]), verdicts(rep.Probes[1])
	var inLab []string
	for pair, v := range after {
		if before[pair] != v {
			inLab = append(inLab, pair)
		}
	}

	cluster := func(step int) *model.Cluster {
		objs, err := manifest.ReadFile(file, step)
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
	res := explain.Preview(cluster(1), cluster(2), []explain.Ref{{Kind: "NetworkPolicy", Namespace: "shop", Name: "front-from-curl"}}, nil)
	var previewed []string
	for _, g := range res.Groups {
		for _, f := range g.Flips {
			if f.Protocol == "tcp" && f.Port == 80 && f.Family == "IPv4" {
				previewed = append(previewed, f.From+" -> "+f.To)
			}
		}
	}
	slices.Sort(inLab)
	slices.Sort(previewed)
	t.Logf("flipped in the lab: %v", inLab)
	if len(inLab) == 0 || len(inLab) == len(after) {
		t.Fatalf("the change flips %d of %d pairs in the lab: the test shows nothing", len(inLab), len(after))
	}
	if !slices.Equal(previewed, inLab) {
		t.Errorf("preview lists %v; the lab flipped %v", previewed, inLab)
	}
}
