package manifest

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/nftpolicy/nftpolicy/internal/model"
)

// Secondary networks of a scenario (docs/scenarios.md, "Secondary
// networks"): each is a NetworkAttachmentDefinition of the bridge plugin on
// its own VLAN, which the lab creates as Multus's admin would. A pod asks
// for networks as it does under Multus, with the
// k8s.v1.cni.cncf.io/networks annotation; the lab gives it an address
// from the network's range and writes its network-status annotation.

// AnnotationNetworks is Multus's request annotation: "a, ns/b" or a JSON
// list of {"name", "namespace", "ips"}.
const AnnotationNetworks = "k8s.v1.cni.cncf.io/networks"

// Network is an entry of a scenario's networks.
type Network struct {
	Name      string
	Namespace string // of its NetworkAttachmentDefinition; default "default"
	CIDR      netip.Prefix
	VLAN      int
}

// Key is "namespace/name", as policy-for and network-status name it.
func (n Network) Key() string { return n.Namespace + "/" + n.Name }

// Bridge is the name of the network's bridge on every node.
func (n Network) Bridge() string { return "br-vlan" + strconv.Itoa(n.VLAN) }

// NAD is the NetworkAttachmentDefinition the lab creates for the network.
func (n Network) NAD() *model.NetworkAttachmentDefinition {
	cfg := fmt.Sprintf(`{"cniVersion":"0.3.1","name":%q,"type":"bridge","bridge":%q,"vlan":%d,"ipam":{"type":"static"}}`, n.Name, n.Bridge(), n.VLAN)
	return &model.NetworkAttachmentDefinition{
		TypeMeta:   metav1.TypeMeta{APIVersion: model.NADVersion.String(), Kind: model.KindNAD},
		ObjectMeta: metav1.ObjectMeta{Namespace: n.Namespace, Name: n.Name},
		Spec:       model.NetworkAttachmentDefinitionSpec{Config: cfg},
	}
}

// Request is one network a pod asks for.
type Request struct {
	Network string       // "namespace/name"
	IPs     []netip.Addr // given in the annotation; else the lab picks
}

// Requests reads a pod's networks annotation, resolving names as Multus
// does (a name alone is in the pod's namespace).
func Requests(pod *corev1.Pod) ([]Request, error) {
	s := strings.TrimSpace(pod.Annotations[AnnotationNetworks])
	if s == "" {
		return nil, nil
	}
	var out []Request
	add := func(name string, ips []string) error {
		ref, ok := model.NetworkRef(pod.Namespace, name)
		if !ok {
			return fmt.Errorf("%s: %q is not a network name", AnnotationNetworks, name)
		}
		r := Request{Network: ref}
		for _, s := range ips {
			s, _, _ = strings.Cut(s, "/")
			a, err := netip.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("%s: %w", AnnotationNetworks, err)
			}
			r.IPs = append(r.IPs, a)
		}
		if slices.ContainsFunc(out, func(o Request) bool { return o.Network == ref }) {
			return fmt.Errorf("%s: network %s twice", AnnotationNetworks, ref)
		}
		out = append(out, r)
		return nil
	}
	if strings.HasPrefix(s, "[") {
		var sel []struct {
			Name      string   `json:"name"`
			Namespace string   `json:"namespace"`
			IPs       []string `json:"ips"`
		}
		if err := json.Unmarshal([]byte(s), &sel); err != nil {
			return nil, fmt.Errorf("%s: %w", AnnotationNetworks, err)
		}
		for _, e := range sel {
			name := e.Name
			if e.Namespace != "" {
				name = e.Namespace + "/" + e.Name
			}
			if err := add(name, e.IPs); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	for _, name := range strings.Split(s, ",") {
		if err := add(name, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (l *loader) networks(v *Value) []Network {
	var out []Network
	for _, item := range l.List(v, "networks", false) {
		f := l.Fields(item, "a network", "name", "namespace", "cidr", "vlan")
		if f == nil {
			continue
		}
		n := Network{Namespace: "default"}
		if nv, ok := f["name"]; ok {
			n.Name, _ = l.Str(nv, "name")
		}
		if nv, ok := f["namespace"]; ok {
			n.Namespace, _ = l.Str(nv, "namespace")
		}
		if errs := validation.IsDNS1123Label(n.Name); len(errs) > 0 {
			l.Errorf(item.Line, "network name %q: %s", n.Name, strings.Join(errs, "; "))
			continue
		}
		if errs := validation.IsDNS1123Label(n.Namespace); len(errs) > 0 {
			l.Errorf(item.Line, "network %s: namespace %q: %s", n.Name, n.Namespace, strings.Join(errs, "; "))
			continue
		}
		if cv, ok := f["cidr"]; !ok {
			l.Errorf(item.Line, "network %s has no cidr", n.Name)
			continue
		} else if s, ok := l.Str(cv, "cidr"); ok {
			p, err := netip.ParsePrefix(s)
			switch {
			case err != nil:
				l.Errorf(cv.Line, "network %s: %v", n.Name, err)
				continue
			case p != p.Masked():
				l.Errorf(cv.Line, "network %s: cidr %s has host bits; write %s", n.Name, s, p.Masked())
				continue
			case !slices.Contains(l.fams, FamilyOf(p.Addr())):
				l.Errorf(cv.Line, "network %s: %s is not in ipFamilies %v", n.Name, s, l.fams)
				continue
			}
			n.CIDR = p
		}
		if vv, ok := f["vlan"]; !ok {
			l.Errorf(item.Line, "network %s has no vlan", n.Name)
			continue
		} else if s, ok := l.Str(vv, "vlan"); ok {
			vlan, err := strconv.Atoi(s)
			if err != nil || vlan < 1 || vlan > 4094 {
				l.Errorf(vv.Line, "network %s: vlan %q is not 1 to 4094", n.Name, s)
				continue
			}
			n.VLAN = vlan
		}
		for _, o := range out {
			switch {
			case o.Name == n.Name:
				l.Errorf(item.Line, "network %s declared twice (names are unique, whatever the namespace: probes name them)", n.Name)
			case o.VLAN == n.VLAN:
				l.Errorf(item.Line, "networks %s and %s share VLAN %d", o.Name, n.Name, n.VLAN)
			default:
				continue
			}
			n.Name = ""
			break
		}
		if n.Name != "" {
			out = append(out, n)
		}
	}
	return out
}

// NetworkNamed returns the network whose Key or Name is s.
func (c *Cluster) NetworkNamed(s string) (Network, bool) {
	for _, n := range c.Networks {
		if n.Key() == s || n.Name == s {
			return n, true
		}
	}
	return Network{}, false
}

// checkNetworks checks a pod's network requests: the annotation reads, each
// network is one of the file's, and addresses it gives are in the
// network's range and of the scenario's families.
func (l *loader) checkNetworks(obj runtime.Object, v *Value) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	line := orLine(v.Lookup([]any{"metadata", "annotations", AnnotationNetworks}), v.Line)
	reqs, err := Requests(pod)
	if err != nil {
		l.Errorf(line, "%s: %v", RefOf(obj), err)
		return
	}
	if len(reqs) > 0 && pod.Spec.HostNetwork {
		l.Errorf(line, "%s: a hostNetwork pod is on no secondary network", RefOf(obj))
	}
	for _, r := range reqs {
		n, ok := l.network(r.Network)
		if !ok {
			l.Errorf(line, "%s: network %s is not in the file's networks", RefOf(obj), r.Network)
			continue
		}
		for _, a := range r.IPs {
			if !n.CIDR.Contains(a) {
				l.Errorf(line, "%s: %s is not in network %s's range %s", RefOf(obj), a, n.Name, n.CIDR)
			}
		}
	}
}

// checkExternals checks that an external on a network has its addresses
// in the network's range.
func (l *loader) checkExternals(exts []External, v *Value) {
	for _, e := range exts {
		n, ok := l.network(e.Network)
		if e.Network == "" || !ok {
			continue
		}
		for _, a := range e.IPs {
			if !n.CIDR.Contains(a) {
				l.Errorf(v.Line, "external %s: %s is not in network %s's range %s", e.Name, a, n.Name, n.CIDR)
			}
		}
	}
}

func (l *loader) network(key string) (Network, bool) {
	for _, n := range l.nets {
		if n.Key() == key || n.Name == key {
			return n, true
		}
	}
	return Network{}, false
}
