package manifest

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
)

// SetDefaults applies in place the defaulting an object gets between a
// manifest and the agent's informer: the API server's defaulting functions
// (k8s.io/kubernetes pkg/apis/{core,networking}/v1/defaults.go), the CRDs'
// +kubebuilder:default markers, and what the API server and kubelet always
// set (the namespace name label, pod status). It never chooses nodes or
// addresses: the loader places pods and Addresses gives addresses.
// Kinds it does not know are left alone.
func SetDefaults(obj runtime.Object) {
	switch o := obj.(type) {
	case *corev1.Namespace:
		defaultNamespace(o)
	case *corev1.Pod:
		defaultPod(o)
	case *corev1.Node:
		defaultNodeLabels(o)
	case *corev1.Service:
		defaultService(o)
	case *networkingv1.NetworkPolicy:
		defaultNetworkPolicy(o)
	case *v1alpha1.AdminNetworkPolicy:
		for i := range o.Spec.Ingress {
			defaultANPPorts(o.Spec.Ingress[i].Ports)
		}
		for i := range o.Spec.Egress {
			defaultANPPorts(o.Spec.Egress[i].Ports)
		}
	case *v1alpha1.BaselineAdminNetworkPolicy:
		for i := range o.Spec.Ingress {
			defaultANPPorts(o.Spec.Ingress[i].Ports)
		}
		for i := range o.Spec.Egress {
			defaultANPPorts(o.Spec.Egress[i].Ports)
		}
		// v1alpha2.ClusterNetworkPolicy: v0.3.0 declares no defaults (its
		// protocol is the tcp/udp/sctp key itself).
	}
}

func defaultNamespace(ns *corev1.Namespace) {
	// The API server sets this label on every namespace and overwrites
	// whatever the manifest says (KEP-2161).
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels[corev1.LabelMetadataName] = ns.Name
	if ns.Status.Phase == "" {
		ns.Status.Phase = corev1.NamespaceActive
	}
	if len(ns.Spec.Finalizers) == 0 {
		ns.Spec.Finalizers = []corev1.FinalizerName{corev1.FinalizerKubernetes}
	}
}

func defaultPod(p *corev1.Pod) {
	if p.Namespace == "" {
		p.Namespace = corev1.NamespaceDefault
	}
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			for j := range cs[i].Ports {
				port := &cs[i].Ports[j]
				if port.Protocol == "" {
					port.Protocol = corev1.ProtocolTCP
				}
				// SetDefaults_Pod: a hostNetwork pod's hostPort is its
				// containerPort.
				if p.Spec.HostNetwork && port.HostPort == 0 {
					port.HostPort = port.ContainerPort
				}
			}
		}
	}
	// The lab runs every pod. podIP and podIPs mirror each other, as the
	// core/v1 conversion keeps them.
	if p.Status.Phase == "" {
		p.Status.Phase = corev1.PodRunning
	}
	if len(p.Status.PodIPs) == 0 && p.Status.PodIP != "" {
		p.Status.PodIPs = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	if p.Status.PodIP == "" && len(p.Status.PodIPs) > 0 {
		p.Status.PodIP = p.Status.PodIPs[0].IP
	}
}

// defaultService applies SetDefaults_Service and SetDefaults_ServicePort:
// ClusterIP, TCP, targetPort = port, externalTrafficPolicy Cluster for a
// NodePort Service. Cluster IPs and node ports are the API server's to
// allocate.
func defaultService(s *corev1.Service) {
	if s.Spec.Type == "" {
		s.Spec.Type = corev1.ServiceTypeClusterIP
	}
	if s.Spec.SessionAffinity == "" {
		s.Spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if s.Spec.Type == corev1.ServiceTypeNodePort && s.Spec.ExternalTrafficPolicy == "" {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	for i := range s.Spec.Ports {
		p := &s.Spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort.IntVal == 0 && p.TargetPort.StrVal == "" {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
}

// defaultNodeLabels adds the labels the kubelet sets on every node; labels
// the file gives win.
func defaultNodeLabels(n *corev1.Node) {
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	for k, v := range map[string]string{
		corev1.LabelHostname:   n.Name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: "amd64",
	} {
		if _, ok := n.Labels[k]; !ok {
			n.Labels[k] = v
		}
	}
}

// defaultNode is the Node a name in nodes gets when the file has no Node
// object for it. Its status.addresses stay empty: Addresses gives them.
func defaultNode(name string) *corev1.Node {
	n := &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}
	SetDefaults(n)
	return n
}

// defaultNamespaceObject is the "default" Namespace every cluster has.
func defaultNamespaceObject() *corev1.Namespace {
	ns := &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: corev1.NamespaceDefault},
	}
	SetDefaults(ns)
	return ns
}

func defaultNetworkPolicy(np *networkingv1.NetworkPolicy) {
	tcp := corev1.ProtocolTCP
	for i := range np.Spec.Ingress {
		for j := range np.Spec.Ingress[i].Ports {
			if np.Spec.Ingress[i].Ports[j].Protocol == nil {
				np.Spec.Ingress[i].Ports[j].Protocol = &tcp
			}
		}
	}
	for i := range np.Spec.Egress {
		for j := range np.Spec.Egress[i].Ports {
			if np.Spec.Egress[i].Ports[j].Protocol == nil {
				np.Spec.Egress[i].Ports[j].Protocol = &tcp
			}
		}
	}
	// SetDefaults_NetworkPolicy: no policyTypes means Ingress, plus Egress
	// when there are egress rules.
	if len(np.Spec.PolicyTypes) == 0 {
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
}

// defaultANPPorts applies the +kubebuilder:default=TCP markers of
// v1alpha1.Port and v1alpha1.PortRange.
func defaultANPPorts(ports *[]v1alpha1.AdminNetworkPolicyPort) {
	if ports == nil {
		return
	}
	for i := range *ports {
		p := &(*ports)[i]
		if p.PortNumber != nil && p.PortNumber.Protocol == "" {
			p.PortNumber.Protocol = corev1.ProtocolTCP
		}
		if p.PortRange != nil && p.PortRange.Protocol == "" {
			p.PortRange.Protocol = corev1.ProtocolTCP
		}
	}
}
