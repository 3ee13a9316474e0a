package lab

import (
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftpolicy/nftpolicy/internal/manifest"
	"github.com/nftpolicy/nftpolicy/internal/scenario"
)

// TestDesiredSlices: the EndpointSlices the lab keeps are the endpoint-
// slice controller's: Running pods the selector matches, in the Service's
// namespace, per family, grouped by the port numbers a named targetPort
// resolves to on each pod; a pod without the name has no such port.
func TestDesiredSlices(t *testing.T) {
	pod := func(ns, name string, labels map[string]string, phase corev1.PodPhase, port int32, ips ...string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c"}}},
			Status:     corev1.PodStatus{Phase: phase},
		}
		if port != 0 {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}}
		}
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
		return p
	}
	web := map[string]string{"app": "web"}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "web"},
		Spec: corev1.ServiceSpec{Selector: web, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			Ports: []corev1.ServicePort{{Name: "h", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}}},
	}
	objs := []runtime.Object{svc,
		pod("x", "a", web, corev1.PodRunning, 8080, "10.244.1.1", "fd00::1"),
		pod("x", "b", web, corev1.PodRunning, 9090, "10.244.1.2"),
		pod("x", "c", web, corev1.PodRunning, 0, "10.244.1.3"), // no port named http
		pod("x", "d", map[string]string{"app": "db"}, corev1.PodRunning, 8080, "10.244.1.4"),
		pod("x", "e", web, corev1.PodPending, 8080, "10.244.1.5"),
		pod("y", "f", web, corev1.PodRunning, 8080, "10.244.1.6"), // another namespace
	}
	r := &run{sc: &scenario.Scenario{Cluster: &manifest.Cluster{}}, state: map[scenario.ObjectRef]runtime.Object{}}
	for _, o := range objs {
		r.state[manifest.RefOf(o)] = o
	}
	got := map[string][]string{}
	for key, es := range r.desiredSlices() {
		if es.Labels["kubernetes.io/service-name"] != "web" {
			t.Errorf("%s: labels %v", key, es.Labels)
		}
		for _, ep := range es.Endpoints {
			port := "-"
			if len(es.Ports) > 0 {
				port = strconv.Itoa(int(*es.Ports[0].Port))
			}
			if !*ep.Conditions.Ready || *ep.NodeName != "node-1" {
				t.Errorf("%s: endpoint %v not ready on its node", key, ep)
			}
			got[key] = append(got[key], ep.TargetRef.Name+"@"+ep.Addresses[0]+":"+port)
		}
	}
	want := map[string][]string{
		"x/web-ipv4-0": {"a@10.244.1.1:8080"},
		"x/web-ipv4-1": {"b@10.244.1.2:9090"},
		"x/web-ipv4-2": {"c@10.244.1.3:-"},
		"x/web-ipv6-0": {"a@fd00::1:8080"},
	}
	if len(got) != len(want) {
		t.Errorf("slices %v, want %v", got, want)
	}
	for k, v := range want {
		if len(got[k]) != len(v) || got[k][0] != v[0] {
			t.Errorf("%s: %v, want %v", k, got[k], v)
		}
	}
	// What kube-proxy must program for the port: a and b, not c.
	eps := r.serviceEndpoints(svc, svc.Spec.Ports[0], corev1.IPv4Protocol)
	if len(eps) != 2 || eps[0].addr.String() != "10.244.1.1:8080" || eps[1].addr.String() != "10.244.1.2:9090" {
		t.Errorf("IPv4 endpoints of port h: %v, want a:8080 and b:9090", eps)
	}
}
