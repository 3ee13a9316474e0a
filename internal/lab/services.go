package lab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/nftpolicy/nftpolicy/internal/integration"
	"github.com/nftpolicy/nftpolicy/internal/scenario"
)

// The control plane of a scenario with Services: its namespace's address
// on the lab's fabric, the Service ranges the API server allocates from,
// and the pod ranges kube-proxy treats as the cluster's (traffic from
// elsewhere to a Service is masqueraded). The pod ranges cover every
// address manifest.Addresses hands out.
var (
	controlPlaneIP = netip.MustParseAddr("172.18.255.1")
	serviceCIDRs   = "10.96.0.0/16,fd00:10:96::/112"
	clusterCIDRs   = "10.244.0.0/16,fd00:10:244::/48"
)

// HasServices reports whether a scenario holds a Service in any step: the
// lab then runs it against a real control plane with kube-proxy.
func HasServices(sc *scenario.Scenario) bool {
	return slices.ContainsFunc(allObjects(sc), func(o runtime.Object) bool {
		_, ok := o.(*corev1.Service)
		return ok
	})
}

// controlPlane is a run's own kube-apiserver and etcd (in the lab's
// control-plane namespace) and one kube-proxy per node.
type controlPlane struct {
	env     *integration.Env
	kube    kubernetes.Interface // the admin's client
	proxies map[string]*integration.KubeProxy
	// slices are the EndpointSlices the lab wrote, by namespace/name.
	slices map[string]*discoveryv1.EndpointSlice
}

// startControlPlane builds (first use only) and starts the control plane
// in a namespace of the lab, and points the run's writes and agents at it.
func (r *run) startControlPlane(ctx context.Context) error {
	log := r.opts.Log
	if log == nil {
		log = io.Discard
	}
	ns, err := r.net.AddControlPlane(controlPlaneIP)
	if err != nil {
		return fmt.Errorf("control-plane namespace: %w", err)
	}
	fmt.Fprintf(log, "lab %s: the scenario has Services: it runs against a real kube-apiserver and etcd (namespace %s, %s) with the real kube-proxy in nftables mode in every node\n", r.sc.Name, ns, controlPlaneIP)
	proxyBin, err := integration.BuildKubeProxy(ctx, log)
	if err != nil {
		return err
	}
	deploy := r.opts.DeployDir
	if deploy == "" {
		if deploy = integration.FindDeployDir(); deploy == "" {
			return errors.New("a scenario with Services needs deploy/'s manifests (the policy CRDs): run inside the source tree or set the deploy directory")
		}
	}
	env, err := integration.NewLabEnvIn(ctx, log, deploy, integration.Where{
		NetNS: ns, Addr: controlPlaneIP.String(), Dial: r.net.DialFrom("controlplane/cp"), ServiceCIDRs: serviceCIDRs,
	})
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	// Stopped when the lab closes, whichever way (a signal included),
	// after the kube-proxies registered later.
	r.net.AtClose(env.Close)
	srv, err := ServerFor(env)
	if err != nil {
		return err
	}
	// The run's own server: nothing to clean up in it, it goes with the run.
	r.be = &serverBackend{c: srv.Writer, agent: srv.agentClients()}
	r.cp = &controlPlane{env: env, kube: srv.Writer.Kube, proxies: map[string]*integration.KubeProxy{}, slices: map[string]*discoveryv1.EndpointSlice{}}
	r.proxyBin = proxyBin
	return nil
}

// startProxies starts kube-proxy in every node's namespace; the first
// barrier waits for their first sync.
func (r *run) startProxies() error {
	for _, n := range r.sc.Nodes {
		kp, err := r.cp.env.Cluster.StartKubeProxy(integration.KubeProxySpec{
			Binary: r.proxyBin, Node: n, NetNS: filepath.Base(r.net.NodeNetNSPath(n)), ClusterCIDRs: clusterCIDRs,
		})
		if err != nil {
			return fmt.Errorf("kube-proxy on %s: %w", n, err)
		}
		r.cp.proxies[n] = kp
		r.net.AtClose(func() { kp.Stop() })
	}
	return nil
}

// prepareService gives a Service the IP families of the scenario unless
// the file chose, so that a dual-stack scenario gets dual-stack Services
// (the API server's default is single-stack), and keeps what the API
// server allocated (cluster IPs, node ports) when it is replaced.
func (r *run) prepareService(svc *corev1.Service) {
	if svc.Spec.IPFamilyPolicy == nil && len(svc.Spec.IPFamilies) == 0 {
		for _, f := range r.sc.IPFamilies {
			svc.Spec.IPFamilies = append(svc.Spec.IPFamilies, corev1.IPFamily(f))
		}
		policy := corev1.IPFamilyPolicySingleStack
		if len(svc.Spec.IPFamilies) > 1 {
			policy = corev1.IPFamilyPolicyPreferDualStack
		}
		svc.Spec.IPFamilyPolicy = &policy
	}
	old, ok := r.state[scenario.ObjectRef{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name}].(*corev1.Service)
	if !ok {
		return
	}
	if svc.Spec.ClusterIP == "" {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = old.Spec.ClusterIP, old.Spec.ClusterIPs
	}
	for i := range svc.Spec.Ports {
		for _, op := range old.Spec.Ports {
			if svc.Spec.Ports[i].NodePort == 0 && op.Name == svc.Spec.Ports[i].Name && op.Protocol == svc.Spec.Ports[i].Protocol {
				svc.Spec.Ports[i].NodePort = op.NodePort
			}
		}
	}
}

// services returns the run's Services, sorted.
func (r *run) services() []*corev1.Service {
	var out []*corev1.Service
	for _, obj := range r.state {
		if svc, ok := obj.(*corev1.Service); ok {
			out = append(out, svc)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// selected returns the pods a Service selects that the endpoint-slice
// controller would list: Running, in its namespace, labels matching,
// sorted by name.
func (r *run) selected(svc *corev1.Service) []*corev1.Pod {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var out []*corev1.Pod
	for _, obj := range r.state {
		pod, ok := obj.(*corev1.Pod)
		if ok && pod.Namespace == svc.Namespace && pod.Status.Phase == corev1.PodRunning && sel.Matches(labels.Set(pod.Labels)) {
			out = append(out, pod)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// targetPort resolves a Service port's targetPort on a pod, as the
// endpoint-slice controller does (podutil.FindPort): a number as is, a
// name through the pod's container ports of that protocol.
func targetPort(pod *corev1.Pod, sp corev1.ServicePort) (int32, bool) {
	if sp.TargetPort.Type == intstr.Int {
		return sp.TargetPort.IntVal, true
	}
	return scenario.ResolvePort(pod, sp.TargetPort, sp.Protocol)
}

// endpoint is one (address, port) a Service port leads to, and the node
// of its pod.
type endpoint struct {
	addr netip.AddrPort
	node string
}

// serviceEndpoints returns, for one port of a Service and one family, its
// ready endpoints: what the lab's EndpointSlices say and kube-proxy must
// program.
func (r *run) serviceEndpoints(svc *corev1.Service, sp corev1.ServicePort, fam corev1.IPFamily) []endpoint {
	var out []endpoint
	for _, pod := range r.selected(svc) {
		port, ok := targetPort(pod, sp)
		if !ok {
			continue
		}
		for _, ip := range podIPs(pod) {
			if familyOf(ip) == fam {
				out = append(out, endpoint{netip.AddrPortFrom(ip, uint16(port)), pod.Spec.NodeName})
			}
		}
	}
	return out
}

func podIPs(pod *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	for _, p := range pod.Status.PodIPs {
		if ip, err := netip.ParseAddr(p.IP); err == nil {
			out = append(out, ip)
		}
	}
	return out
}

func familyOf(ip netip.Addr) corev1.IPFamily {
	if ip.Is4() {
		return corev1.IPv4Protocol
	}
	return corev1.IPv6Protocol
}

// desiredSlices are the EndpointSlices the endpoint-slice controller would
// keep for the run's Services: per Service and address family, the
// endpoints grouped by their resolved ports (a named targetPort may
// resolve differently per pod), each ready, serving and on its pod's node.
func (r *run) desiredSlices() map[string]*discoveryv1.EndpointSlice {
	out := map[string]*discoveryv1.EndpointSlice{}
	for _, svc := range r.services() {
		for _, fam := range svc.Spec.IPFamilies {
			type group struct {
				ports []discoveryv1.EndpointPort
				eps   []discoveryv1.Endpoint
			}
			var groups []*group
			for _, pod := range r.selected(svc) {
				var ports []discoveryv1.EndpointPort
				for _, sp := range svc.Spec.Ports {
					if num, ok := targetPort(pod, sp); ok {
						ports = append(ports, discoveryv1.EndpointPort{Name: ptr(sp.Name), Protocol: ptr(sp.Protocol), Port: ptr(num)})
					}
				}
				for _, ip := range podIPs(pod) {
					if familyOf(ip) != fam {
						continue
					}
					ep := discoveryv1.Endpoint{
						Addresses:  []string{ip.String()},
						Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
						NodeName:   ptr(pod.Spec.NodeName),
						TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name},
					}
					i := slices.IndexFunc(groups, func(g *group) bool { return apiequality.Semantic.DeepEqual(g.ports, ports) })
					if i < 0 {
						groups = append(groups, &group{ports: ports})
						i = len(groups) - 1
					}
					groups[i].eps = append(groups[i].eps, ep)
				}
			}
			for i, g := range groups {
				name := fmt.Sprintf("%s-%s-%d", svc.Name, strings.ToLower(string(fam)), i)
				out[svc.Namespace+"/"+name] = &discoveryv1.EndpointSlice{
					ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: svc.Namespace, Labels: map[string]string{
						discoveryv1.LabelServiceName: svc.Name,
						discoveryv1.LabelManagedBy:   "nftlab",
					}},
					AddressType: discoveryv1.AddressType(fam),
					Endpoints:   g.eps,
					Ports:       g.ports,
				}
			}
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// syncServices does, after a step's applies and deletes, what the
// endpoint-slice controller and the kubelets would: EndpointSlices
// created, updated and deleted to match the Services and pods, and every
// endpoint pod listening on the target ports of the Services selecting it.
func (r *run) syncServices(ctx context.Context) error {
	var errs []error
	for _, svc := range r.services() {
		for _, pod := range r.selected(svc) {
			id := pod.Namespace + "/" + pod.Name
			if pod.Spec.HostNetwork {
				id = "node/" + pod.Spec.NodeName // a hostNetwork pod is its node
			}
			for _, sp := range svc.Spec.Ports {
				if port, ok := targetPort(pod, sp); ok {
					errs = append(errs, r.net.Listen(id, string(sp.Protocol), uint16(port)))
				}
			}
		}
	}
	want := r.desiredSlices()
	kube := r.cp.kube
	for _, key := range sortedKeys(want) {
		es := want[key]
		c := kube.DiscoveryV1().EndpointSlices(es.Namespace)
		old, ok := r.cp.slices[key]
		switch {
		case !ok:
			stored, err := c.Create(ctx, es, metav1.CreateOptions{})
			if err != nil {
				errs = append(errs, fmt.Errorf("EndpointSlice %s: %w", key, err))
				continue
			}
			r.cp.slices[key] = stored
		case !apiequality.Semantic.DeepEqual(old.Endpoints, es.Endpoints) || !apiequality.Semantic.DeepEqual(old.Ports, es.Ports):
			es.ResourceVersion = old.ResourceVersion
			stored, err := c.Update(ctx, es, metav1.UpdateOptions{})
			if err != nil {
				errs = append(errs, fmt.Errorf("EndpointSlice %s: %w", key, err))
				continue
			}
			r.cp.slices[key] = stored
		}
	}
	for _, key := range sortedKeys(r.cp.slices) {
		if _, ok := want[key]; ok {
			continue
		}
		es := r.cp.slices[key]
		err := kube.DiscoveryV1().EndpointSlices(es.Namespace).Delete(ctx, es.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("EndpointSlice %s: %w", key, err))
			continue
		}
		delete(r.cp.slices, key)
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// serviceTarget is what a probe of a Service target sends to: the cluster
// IP of the family, or the node's address, the Service port (or node
// port), and how many endpoints may answer.
type serviceTarget struct {
	dst   netip.AddrPort
	ready int
}

// resolveTarget finds a Service target's address and port for a probe.
// ok false: the Service has no such port (nothing is sent, as for a pod
// without the named port).
func (r *run) resolveTarget(to scenario.Endpoint, p *scenario.Probe, fam scenario.Family) (t serviceTarget, ok bool, err error) {
	svc, found := r.state[scenario.ObjectRef{Kind: "Service", Namespace: to.Namespace, Name: to.Name}].(*corev1.Service)
	if !found {
		return t, false, fmt.Errorf("no Service %s/%s", to.Namespace, to.Name)
	}
	i := slices.IndexFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
		if sp.Protocol != p.Protocol {
			return false
		}
		if p.Port.Type == intstr.Int {
			return sp.Port == p.Port.IntVal
		}
		return sp.Name == p.Port.StrVal
	})
	if i < 0 {
		return t, false, nil
	}
	sp := svc.Spec.Ports[i]
	ipfam := corev1.IPFamily(fam)
	eps := r.serviceEndpoints(svc, sp, ipfam)
	t.ready = len(eps)
	switch to.Kind {
	case scenario.KindService:
		for _, s := range svc.Spec.ClusterIPs {
			if ip, err := netip.ParseAddr(s); err == nil && familyOf(ip) == ipfam {
				t.dst = netip.AddrPortFrom(ip, uint16(sp.Port))
				return t, true, nil
			}
		}
		return t, false, fmt.Errorf("the Service %s/%s has no %s cluster IP", svc.Namespace, svc.Name, fam)
	case scenario.KindNodePort:
		if svc.Spec.Type != corev1.ServiceTypeNodePort {
			return t, false, fmt.Errorf("the Service %s/%s is not a NodePort Service", svc.Namespace, svc.Name)
		}
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			t.ready = 0
			for _, ep := range eps {
				if ep.node == to.Node {
					t.ready++
				}
			}
		}
		for _, ip := range r.net.Addrs("node/" + to.Node) {
			if familyOf(ip) == ipfam {
				t.dst = netip.AddrPortFrom(ip, uint16(sp.NodePort))
				return t, true, nil
			}
		}
		return t, false, fmt.Errorf("node %s has no %s address", to.Node, fam)
	}
	return t, false, fmt.Errorf("%s is not a Service target", to)
}

// attemptsPerEndpoint is how many connections a Service probe makes per
// ready endpoint (at least one endpoint's worth): kube-proxy picks an
// endpoint at random per connection, so with n endpoints of which one is
// denied, 4n attempts all miss it with probability ((n-1)/n)^(4n), under
// 2% for any n.
const attemptsPerEndpoint = 4

// probeService probes a Service target with repeated connections, in
// parallel: allowed when every attempt connected, denied when none did,
// mixed otherwise.
func (r *run) probeService(ctx context.Context, from string, t serviceTarget, proto string) scenario.Outcome {
	n := attemptsPerEndpoint * max(1, t.ready)
	outs := make([]scenario.Outcome, n)
	done := make(chan struct{})
	for i := range outs {
		go func() {
			defer func() { done <- struct{}{} }()
			outs[i] = outcome(r.net.ProbeAddr(ctx, from, t.dst.Addr(), proto, t.dst.Port(), r.opts.ProbeTimeout))
		}()
	}
	for range outs {
		<-done
	}
	allowed := 0
	for _, o := range outs {
		switch o.Verdict {
		case scenario.Allowed:
			allowed++
		case scenario.Denied:
		default:
			return o // the lab could not probe, or skipped
		}
	}
	switch allowed {
	case n:
		return scenario.Outcome{Verdict: scenario.Allowed}
	case 0:
		return outs[0]
	}
	return scenario.Outcome{Verdict: scenario.Mixed, Detail: strconv.Itoa(allowed) + " of " + strconv.Itoa(n) + " attempts connected"}
}
