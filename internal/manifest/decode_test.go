package manifest

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/nftpolicy/nftpolicy/internal/model"
)

func refs(objs []runtime.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, RefOf(o).String())
	}
	return out
}

func TestDecodeLists(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []string
	}{{
		name: "kind List of mixed kinds, nested",
		data: `apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: x, uid: 0b0b7f2e-1111-4c1e-9d7e-000000000001}}
- {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: x}, spec: {containers: [{name: c}]}, status: {podIP: 10.0.0.1}}
- {apiVersion: v1, kind: Service, metadata: {name: s, namespace: x}, spec: {ports: [{port: 80}]}}
- {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p, namespace: x}, spec: {podSelector: {}}}
- {apiVersion: policy.networking.k8s.io/v1alpha1, kind: AdminNetworkPolicy, metadata: {name: anp}, spec: {priority: 1, subject: {namespaces: {}}}}
- apiVersion: v1
  kind: List
  items:
  - {apiVersion: v1, kind: Node, metadata: {name: n1}}
`,
		want: []string{"Namespace x", "Pod x/a", "Service x/s", "NetworkPolicy x/p", "AdminNetworkPolicy anp", "Node n1"},
	}, {
		name: "typed list, then a plain document",
		data: `apiVersion: v1
kind: PodList
items:
- {metadata: {name: a, namespace: x}, spec: {containers: [{name: c}]}}
- {metadata: {name: b, namespace: z}, spec: {containers: [{name: c}]}}
---
{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
`,
		want: []string{"Pod x/a", "Pod z/b", "Namespace x"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Decode("m.yaml", []byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, refs(objs)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeDefaultsListItems: items get the API server's defaults like
// plain documents do.
func TestDecodeDefaultsListItems(t *testing.T) {
	objs, err := Decode("m.yaml", []byte(`apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: x}, spec: {containers: [{name: c}]}, status: {podIP: 10.0.0.1}}
- {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p, namespace: x}, spec: {podSelector: {}, egress: [{ports: [{port: 53}]}]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	pod := objs[0].(*corev1.Pod)
	if diff := cmp.Diff([]corev1.PodIP{{IP: "10.0.0.1"}}, pod.Status.PodIPs); diff != "" {
		t.Errorf("podIPs (-want +got):\n%s", diff)
	}
	np := objs[1].(*networkingv1.NetworkPolicy)
	if diff := cmp.Diff([]networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}, np.Spec.PolicyTypes); diff != "" {
		t.Errorf("policyTypes (-want +got):\n%s", diff)
	}
	if p := np.Spec.Egress[0].Ports[0].Protocol; p == nil || *p != corev1.ProtocolTCP {
		t.Errorf("port protocol %v, want TCP", p)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct{ name, data, want string }{
		{"unknown field in an item", "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {bogus: 1}}\n",
			`m.yaml: document 1: item 0: strict decoding error: unknown field "spec.bogus"`},
		{"unknown kind in an item", "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Nope, metadata: {name: a}}\n",
			`m.yaml: document 1: item 0: no kind "Nope" is registered for version "v1"`},
		{"second document", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Status\n",
			"m.yaml: document 2: /v1, Kind=Status is not an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("m.yaml", []byte(tt.data))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error %v, want %s...", err, tt.want)
			}
		})
	}
}

// TestClusterNetworkPolicyVersions reads a ClusterNetworkPolicy given as
// v1beta1 (network-policy-api v0.3.0's storage version) and as v1alpha2,
// in a manifest, a typed list and a scenario file: each is the same
// v1alpha2 object, the version the model takes.
func TestClusterNetworkPolicyVersions(t *testing.T) {
	const spec = `spec:
  tier: Admin
  priority: 5
  subject: {namespaces: {matchLabels: {team: x}}}
  ingress:
  - name: from-green
    action: Accept
    from: [{namespaces: {matchLabels: {team: green}}}]
    protocols: [{tcp: {destinationPort: {number: 80}}}]
`
	doc := func(version, name string) string {
		return "apiVersion: policy.networking.k8s.io/" + version + "\nkind: ClusterNetworkPolicy\nmetadata: {name: " + name + "}\n" + spec
	}
	list := "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicyList\nitems:\n- metadata: {name: listed}\n" +
		strings.ReplaceAll(strings.ReplaceAll(spec, "\n", "\n  "), "spec:", "  spec:")
	objs, err := Decode("m.yaml", []byte(doc("v1beta1", "beta")+"---\n"+doc("v1alpha2", "alpha")+"---\n"+list))
	if err != nil {
		t.Fatal(err)
	}
	scenario := "name: versions\nnodes: [n1]\nobjects:\n- " + strings.ReplaceAll(strings.TrimSuffix(doc("v1beta1", "in-scenario"), "\n"), "\n", "\n  ") + "\n"
	c, err := ParseCluster("s.yaml", []byte(scenario))
	if err != nil {
		t.Fatal(err)
	}
	fromScenario, err := c.ObjectsAt(0)
	if err != nil {
		t.Fatal(err)
	}
	objs = append(objs, fromScenario...)
	var names []string
	for _, o := range objs {
		cnp, ok := o.(*v1alpha2.ClusterNetworkPolicy)
		if !ok {
			continue
		}
		names = append(names, cnp.Name)
		if got := cnp.Spec.Ingress; len(got) != 1 || got[0].Name != "from-green" || got[0].Action != v1alpha2.ClusterNetworkPolicyRuleActionAccept ||
			got[0].From[0].Namespaces.MatchLabels["team"] != "green" || got[0].Protocols[0].TCP.DestinationPort.Number != 80 {
			t.Errorf("%s: ingress %+v", cnp.Name, got)
		}
		if cnp.Spec.Tier != v1alpha2.AdminTier || cnp.Spec.Priority != 5 || cnp.Spec.Subject.Namespaces.MatchLabels["team"] != "x" {
			t.Errorf("%s: spec %+v", cnp.Name, cnp.Spec)
		}
		if k, ok := model.KindOf(o); !ok || k.Name != model.KindCNP {
			t.Errorf("%s: the model does not take it (%v)", cnp.Name, k.Name)
		}
	}
	if want := []string{"beta", "alpha", "listed", "in-scenario"}; !slices.Equal(names, want) {
		t.Errorf("ClusterNetworkPolicies %v, want %v (all as v1alpha2)", names, want)
	}
	if _, err := ParseCluster("s.yaml", []byte(strings.ReplaceAll(scenario, "v1beta1", "v1"))); err == nil ||
		!strings.Contains(err.Error(), `unknown apiVersion "policy.networking.k8s.io/v1" for ClusterNetworkPolicy (want policy.networking.k8s.io/v1alpha2 or policy.networking.k8s.io/v1beta1)`) {
		t.Errorf("an unknown version: %v", err)
	}
}
