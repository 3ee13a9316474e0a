package manifest

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
)

func ptr[T any](v T) *T { return &v }

func TestSetDefaults(t *testing.T) {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	port80 := intstr.FromInt32(80)
	tests := []struct {
		name    string
		in, out runtime.Object
	}{{
		name: "namespace label overwritten, as the API server does",
		in:   &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"kubernetes.io/metadata.name": "lie", "ns": "x"}}},
		out: &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"kubernetes.io/metadata.name": "x", "ns": "x"}},
			Spec:       corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{"kubernetes"}},
			Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
		},
	}, {
		name: "pod namespace, port protocol, podIP",
		in: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "a"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: 80}, {Name: "dns", ContainerPort: 53, Protocol: udp},
			}}}},
			Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}, {IP: "fd00::1"}}},
		},
		out: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "default"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: 80, Protocol: tcp}, {Name: "dns", ContainerPort: 53, Protocol: udp},
			}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}, {IP: "fd00::1"}}},
		},
	}, {
		name: "hostNetwork pod gets hostPorts; podIP alone fills podIPs",
		in: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "h", Namespace: "x"},
			Spec:       corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{ContainerPort: 9000}}}}},
			Status:     corev1.PodStatus{PodIP: "10.0.0.2"},
		},
		out: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "h", Namespace: "x"},
			Spec:       corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{ContainerPort: 9000, HostPort: 9000, Protocol: tcp}}}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.2", PodIPs: []corev1.PodIP{{IP: "10.0.0.2"}}},
		},
	}, {
		name: "node labels added, given ones kept",
		in:   &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"kubernetes.io/arch": "arm64"}}},
		out: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{
			"kubernetes.io/arch": "arm64", "kubernetes.io/hostname": "n1", "kubernetes.io/os": "linux",
		}}},
	}, {
		name: "policyTypes Ingress when there are no egress rules; port protocol TCP",
		in: &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port80}, {Protocol: &udp}}}},
		}},
		out: &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port80, Protocol: &tcp}, {Protocol: &udp}}}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		}},
	}, {
		name: "policyTypes Ingress and Egress when there are egress rules",
		in: &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			Egress: []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port80}}}},
		}},
		out: &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			Egress:      []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port80, Protocol: &tcp}}}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		}},
	}, {
		name: "policyTypes given are kept",
		in: &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		}},
		out: &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		}},
	}, {
		name: "AdminNetworkPolicy port protocols (kubebuilder:default=TCP)",
		in: &v1alpha1.AdminNetworkPolicy{Spec: v1alpha1.AdminNetworkPolicySpec{
			Ingress: []v1alpha1.AdminNetworkPolicyIngressRule{{Ports: &[]v1alpha1.AdminNetworkPolicyPort{
				{PortNumber: &v1alpha1.Port{Port: 80}},
				{PortRange: &v1alpha1.PortRange{Start: 1, End: 2, Protocol: udp}},
				{NamedPort: ptr("http")},
			}}},
			Egress: []v1alpha1.AdminNetworkPolicyEgressRule{{Ports: &[]v1alpha1.AdminNetworkPolicyPort{
				{PortRange: &v1alpha1.PortRange{Start: 1, End: 2}},
			}}},
		}},
		out: &v1alpha1.AdminNetworkPolicy{Spec: v1alpha1.AdminNetworkPolicySpec{
			Ingress: []v1alpha1.AdminNetworkPolicyIngressRule{{Ports: &[]v1alpha1.AdminNetworkPolicyPort{
				{PortNumber: &v1alpha1.Port{Port: 80, Protocol: tcp}},
				{PortRange: &v1alpha1.PortRange{Start: 1, End: 2, Protocol: udp}},
				{NamedPort: ptr("http")},
			}}},
			Egress: []v1alpha1.AdminNetworkPolicyEgressRule{{Ports: &[]v1alpha1.AdminNetworkPolicyPort{
				{PortRange: &v1alpha1.PortRange{Start: 1, End: 2, Protocol: tcp}},
			}}},
		}},
	}, {
		name: "BaselineAdminNetworkPolicy port protocols",
		in: &v1alpha1.BaselineAdminNetworkPolicy{Spec: v1alpha1.BaselineAdminNetworkPolicySpec{
			Egress: []v1alpha1.BaselineAdminNetworkPolicyEgressRule{{Ports: &[]v1alpha1.AdminNetworkPolicyPort{
				{PortNumber: &v1alpha1.Port{Port: 53}},
			}}},
		}},
		out: &v1alpha1.BaselineAdminNetworkPolicy{Spec: v1alpha1.BaselineAdminNetworkPolicySpec{
			Egress: []v1alpha1.BaselineAdminNetworkPolicyEgressRule{{Ports: &[]v1alpha1.AdminNetworkPolicyPort{
				{PortNumber: &v1alpha1.Port{Port: 53, Protocol: tcp}},
			}}},
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.DeepCopyObject()
			SetDefaults(got)
			if diff := cmp.Diff(tt.out, got); diff != "" {
				t.Errorf("SetDefaults (-want +got):\n%s", diff)
			}
		})
	}
}
