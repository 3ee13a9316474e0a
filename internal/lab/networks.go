package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/manifest"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/internal/scenario"
)

// Secondary networks (docs/multinetwork.md): the lab plays Multus and the
// bridge CNI. It creates each network's NetworkAttachmentDefinition and
// bridges, attaches the pods that ask for a network (the
// k8s.v1.cni.cncf.io/networks annotation) with an address from its range,
// and writes their network-status annotation as Multus does.

// netState is what the lab gave the pods on secondary networks.
type netState struct {
	addrs map[string]map[string][]netip.Addr // pod id -> network key -> addresses
	next  map[string]netip.Addr              // network key -> next address to try
	used  map[string]map[netip.Addr]bool     // network key -> addresses given
}

func (r *run) setupNetworks(ctx context.Context) error {
	if _, fake := r.be.(*fakeBackend); !fake && (len(r.sc.Networks) > 0 || hasMNP(r.sc)) {
		// A real API server here has no NetworkAttachmentDefinition CRD,
		// and the run writes typed objects only.
		return fmt.Errorf("secondary networks run against the fake API server only (no --apiserver, no Services)")
	}
	r.nets = netState{addrs: map[string]map[string][]netip.Addr{}, next: map[string]netip.Addr{}, used: map[string]map[netip.Addr]bool{}}
	for _, n := range r.sc.Networks {
		if err := r.net.AddNetwork(netlab.Network{Name: n.Name, Bridge: n.Bridge(), VLAN: n.VLAN}); err != nil {
			return err
		}
		r.nets.next[n.Key()] = n.CIDR.Addr()
		r.nets.used[n.Key()] = map[netip.Addr]bool{}
		for range 10 { // the range's first addresses are left to gateways
			r.nets.next[n.Key()] = r.nets.next[n.Key()].Next()
		}
		if err := r.apply(ctx, n.NAD()); err != nil {
			return err
		}
	}
	for _, e := range r.sc.Externals {
		if e.Network == "" {
			continue
		}
		n, _ := r.sc.NetworkNamed(e.Network)
		var pfx []netip.Prefix
		for _, a := range e.IPs {
			pfx = append(pfx, netip.PrefixFrom(a, n.CIDR.Bits()))
			r.nets.used[n.Key()][a] = true
		}
		if err := r.net.AddNetworkExternal(e.Name, n.Name, pfx); err != nil {
			return fmt.Errorf("external %s: %w", e.Name, err)
		}
	}
	return nil
}

// hasMNP reports whether any object of the scenario is a
// MultiNetworkPolicy.
func hasMNP(sc *scenario.Scenario) bool {
	for _, obj := range allObjects(sc) {
		if _, ok := obj.(*model.MultiNetworkPolicy); ok {
			return true
		}
	}
	return false
}

// attachNetworks gives a pod (on first sight) its secondary interfaces and
// writes its network-status annotation, as Multus would, on every apply.
func (r *run) attachNetworks(pod *corev1.Pod, first bool) error {
	id := pod.Namespace + "/" + pod.Name
	reqs, err := manifest.Requests(pod)
	if err != nil || len(reqs) == 0 {
		return err
	}
	if first {
		r.nets.addrs[id] = map[string][]netip.Addr{}
		for i, req := range reqs {
			n, ok := r.sc.NetworkNamed(req.Network)
			if !ok {
				return fmt.Errorf("no network %s in the scenario's networks", req.Network)
			}
			ips := req.IPs
			if len(ips) == 0 {
				ips = []netip.Addr{r.nextAddr(n)}
			}
			var pfx []netip.Prefix
			for _, a := range ips {
				if !n.CIDR.Contains(a) {
					return fmt.Errorf("network %s: %s is not in %s", n.Name, a, n.CIDR)
				}
				r.nets.used[n.Key()][a] = true
				pfx = append(pfx, netip.PrefixFrom(a, n.CIDR.Bits()))
			}
			if err := r.net.AttachPod(id, n.Name, fmt.Sprintf("net%d", i+1), pfx); err != nil {
				return err
			}
			r.nets.addrs[id][n.Key()] = ips
		}
	}
	type status struct {
		Name      string   `json:"name"`
		Interface string   `json:"interface,omitempty"`
		IPs       []string `json:"ips,omitempty"`
		Default   bool     `json:"default,omitempty"`
	}
	st := []status{{Name: "nplab-primary", Interface: "eth0", Default: true}}
	for _, ip := range pod.Status.PodIPs {
		st[0].IPs = append(st[0].IPs, ip.IP)
	}
	for i, req := range reqs {
		n, _ := r.sc.NetworkNamed(req.Network)
		s := status{Name: n.Key(), Interface: fmt.Sprintf("net%d", i+1)}
		for _, a := range r.nets.addrs[id][n.Key()] {
			s.IPs = append(s.IPs, a.String())
		}
		st = append(st, s)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[model.AnnotationNetworkStatus] = string(b)
	return nil
}

func (r *run) nextAddr(n manifest.Network) netip.Addr {
	a := r.nets.next[n.Key()]
	for r.nets.used[n.Key()][a] {
		a = a.Next()
	}
	r.nets.next[n.Key()] = a.Next()
	return a
}

// netAddr is a pod endpoint's address on a secondary network, of family.
func (r *run) netAddr(id, network string, family int) (netip.Addr, bool) {
	n, ok := r.sc.NetworkNamed(network)
	if !ok {
		return netip.Addr{}, false
	}
	for _, a := range r.nets.addrs[id][n.Key()] {
		if (family == 4) == a.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// networkKernel makes the agent's kernel for a secondary network's table
// in the node's namespace (open as f).
func networkKernel(f *os.File) func(table string) nft.Kernel {
	return func(table string) nft.Kernel { return nft.NewNetlinkTable(int(f.Fd()), table) }
}

// listNetworkTables lists the secondary networks' tables in the node's
// namespace (open as f).
func listNetworkTables(f *os.File) func(ctx context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		return nft.ListTables(ctx, int(f.Fd()), nft.NetworkTablePrefix)
	}
}

// newDynamicFake is the fake dynamic client of the CRD kinds.
func newDynamicFake() *dynamicfake.FakeDynamicClient {
	lists := map[schema.GroupVersionResource]string{}
	for _, k := range model.Kinds() {
		if k.Dynamic {
			lists[k.Resource] = k.Name + "List"
		}
	}
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), lists)
}

// unstructuredOf converts a typed object of a dynamic kind for the fake
// dynamic client's store.
func unstructuredOf(k model.Kind, obj runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(k.Resource.GroupVersion().String())
	u.SetKind(k.Name)
	return u, nil
}

// probeOnce probes one pair once; a pod endpoint on a secondary network
// sends from its own namespace (its route to the network's range is its
// interface there) and is reached at its address on that network.
func (r *run) probeOnce(ctx context.Context, res *scenario.Result, family int, proto string, port uint16) scenario.Outcome {
	if res.From.Network == "" && res.To.Network == "" {
		return outcome(r.net.Probe(ctx, res.From.String(), res.To.String(), family, proto, port, r.opts.ProbeTimeout))
	}
	from := res.From.String()
	var src netip.Addr // the endpoint's first address of the family
	if res.From.Network != "" {
		from = res.From.Namespace + "/" + res.From.Name
		var ok bool
		if src, ok = r.netAddr(from, res.From.Network, family); !ok {
			return scenario.Outcome{Verdict: scenario.Errored, Detail: fmt.Sprintf("%s has no IPv%d address", res.From, family)}
		}
	}
	var dst netip.Addr
	if res.To.Network != "" {
		var ok bool
		if dst, ok = r.netAddr(res.To.Namespace+"/"+res.To.Name, res.To.Network, family); !ok {
			return scenario.Outcome{Verdict: scenario.Errored, Detail: fmt.Sprintf("%s has no IPv%d address", res.To, family)}
		}
	} else {
		addrs := r.net.Addrs(res.To.String())
		for _, a := range addrs {
			if a.Is4() == (family == 4) {
				dst = a
				break
			}
		}
		if !dst.IsValid() {
			return scenario.Outcome{Verdict: scenario.Errored, Detail: fmt.Sprintf("%s has no IPv%d address", res.To, family)}
		}
	}
	return outcome(r.net.ProbeFrom(ctx, from, src, dst, proto, port, r.opts.ProbeTimeout))
}
