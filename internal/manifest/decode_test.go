package manifest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
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
