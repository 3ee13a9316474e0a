package model

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Secondary networks (docs/multinetwork.md). A pod (a KubeVirt VM is its
// virt-launcher pod) has addresses per network, as Multus writes them in
// its network-status annotation. A MultiNetworkPolicy is a NetworkPolicy
// that applies on the networks its policy-for annotation names, never on
// the primary one; NetworkPolicies apply on the primary network only.
// Each secondary network is compiled from its own projection of the
// cluster (Project).

// Annotations and kinds of the Network Plumbing Working Group's APIs.
const (
	AnnotationNetworkStatus = "k8s.v1.cni.cncf.io/network-status"
	AnnotationPolicyFor     = "k8s.v1.cni.cncf.io/policy-for"
	KindMNP                 = "MultiNetworkPolicy"
	KindNAD                 = "NetworkAttachmentDefinition"
)

// The API groups of the two kinds: MultiNetworkPolicy as
// github.com/k8snetworkplumbingwg/multi-networkpolicy v1.0.1 defines it,
// NetworkAttachmentDefinition as network-attachment-definition-client
// v1.7.5 does. The agent reads both through the dynamic client, so neither
// module (nor its generated clients) is linked: they add nothing but the
// types, which are below.
var (
	MNPVersion = schema.GroupVersion{Group: "k8s.cni.cncf.io", Version: "v1beta1"}
	NADVersion = schema.GroupVersion{Group: "k8s.cni.cncf.io", Version: "v1"}
)

// Attachment is a pod's interface on one secondary network.
type Attachment struct {
	Network   string // "namespace/name" of the NetworkAttachmentDefinition
	Interface string
	IPs       []netip.Addr
	MAC       string
}

// networkStatus is one entry of the network-status annotation.
type networkStatus struct {
	Name      string   `json:"name"`
	Interface string   `json:"interface"`
	IPs       []string `json:"ips"`
	MAC       string   `json:"mac"`
	Default   bool     `json:"default"`
}

// ParseNetworkStatus reads a pod's network-status annotation: its
// secondary attachments, by network ("namespace/name"; a name without a
// namespace is in the pod's). The default network's entry is left out:
// the pod's status has its primary addresses. An annotation that is not
// a JSON list of entries gives no attachment and an error; an entry
// without a name, or an address that does not parse, is left out. Never
// reading more than is there is what keeps bad input from opening
// anything: an address missing from a network's projection is an
// address no rule of that network allows.
func ParseNetworkStatus(podNamespace, s string) ([]Attachment, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var entries []networkStatus
	if err := json.Unmarshal([]byte(s), &entries); err != nil {
		return nil, fmt.Errorf("%s: %w", AnnotationNetworkStatus, err)
	}
	var out []Attachment
	byNet := map[string]int{}
	seen := map[netip.Addr]bool{}
	for _, e := range entries {
		if e.Default || e.Name == "" {
			continue
		}
		net, ok := NetworkRef(podNamespace, e.Name)
		if !ok {
			continue
		}
		i, ok := byNet[net]
		if !ok {
			i = len(out)
			byNet[net] = i
			out = append(out, Attachment{Network: net, Interface: e.Interface, MAC: e.MAC})
		}
		for _, s := range e.IPs {
			// Multus writes plain addresses; a prefix is read as its address.
			s, _, _ = strings.Cut(s, "/")
			a, ok := parseAddr(s)
			if !ok || seen[a] {
				continue
			}
			seen[a] = true
			out[i].IPs = append(out[i].IPs, a)
		}
	}
	return out, nil
}

// NetworkRef normalises a network's name as policy-for and network-status
// write it ("name" or "namespace/name") to "namespace/name".
func NetworkRef(namespace, s string) (string, bool) {
	s = strings.TrimSpace(s)
	ns, name, found := strings.Cut(s, "/")
	if !found {
		ns, name = namespace, s
	}
	if ns == "" || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	return ns + "/" + name, true
}

// Network is a NetworkAttachmentDefinition, as far as enforcement goes:
// the Linux bridge its pods' interfaces are ports of.
type Network struct {
	Namespace, Name string
	// Bridge is the bridge plugin's "bridge" (its default "cni0"); empty
	// when the network is not a bridge network, which is not enforced.
	Bridge string
	// VLAN is the bridge plugin's "vlan", for reports only.
	VLAN    int
	Problem string
}

// Key is "namespace/name".
func (n *Network) Key() string { return n.Namespace + "/" + n.Name }

// cniConfig is the part of a CNI configuration (or of one plugin of a
// configuration list) that says which bridge.
type cniConfig struct {
	Type    string      `json:"type"`
	Bridge  string      `json:"bridge"`
	VLAN    int         `json:"vlan"`
	Plugins []cniConfig `json:"plugins"`
}

// NetworkFromAPI reads a NetworkAttachmentDefinition's CNI configuration.
func NetworkFromAPI(o *NetworkAttachmentDefinition) *Network {
	n := &Network{Namespace: o.Namespace, Name: o.Name}
	var c cniConfig
	if err := json.Unmarshal([]byte(o.Spec.Config), &c); err != nil {
		n.Problem = "config: " + err.Error()
		return n
	}
	for _, p := range append([]cniConfig{c}, c.Plugins...) {
		if p.Type == "bridge" {
			n.Bridge, n.VLAN = p.Bridge, p.VLAN
			if n.Bridge == "" {
				n.Bridge = "cni0" // the bridge plugin's default
			}
			if len(n.Bridge) > 15 {
				n.Problem, n.Bridge = fmt.Sprintf("bridge name %q is longer than an interface name can be", n.Bridge), ""
			}
			return n
		}
	}
	n.Problem = "not a bridge network: not enforced"
	return n
}

// MultiPolicy is a normalised MultiNetworkPolicy: the NetworkPolicy it
// reads as, and the networks it applies on.
type MultiPolicy struct {
	*Policy
	Networks []string // "namespace/name", sorted
	// Ignored lists the entries of policy-for that name no network: they
	// apply nowhere, and change nothing else.
	Ignored []string
}

// MultiPolicyFromAPI converts a MultiNetworkPolicy. Its spec has
// NetworkPolicy's shape and is read by PolicyFromAPI, problems and all.
// Without a policy-for annotation (or with one naming nothing valid) it
// applies on no network, as in multi-networkpolicy's own enforcers.
func MultiPolicyFromAPI(o *MultiNetworkPolicy) *MultiPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: o.ObjectMeta, Spec: o.Spec}
	mp := &MultiPolicy{Policy: PolicyFromAPI(np)}
	for _, s := range strings.Split(o.Annotations[AnnotationPolicyFor], ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		if ref, ok := NetworkRef(o.Namespace, s); ok && !slices.Contains(mp.Networks, ref) {
			mp.Networks = append(mp.Networks, ref)
		} else if !ok {
			mp.Ignored = append(mp.Ignored, s)
		}
	}
	sort.Strings(mp.Networks)
	return mp
}

func (c *Cluster) setMulti(p *MultiPolicy) {
	if c.MultiPolicies == nil {
		c.MultiPolicies = map[string]*MultiPolicy{}
	}
	c.MultiPolicies[p.Key()] = p
}

func (c *Cluster) setNetwork(n *Network) {
	if c.Networks == nil {
		c.Networks = map[string]*Network{}
	}
	c.Networks[n.Key()] = n
}

// SecondaryNetworks returns the networks that a pod of node is attached
// to, sorted: the ones whose tables that node's agent programs.
func (c *Cluster) SecondaryNetworks(node string) []string {
	var out []string
	for _, p := range c.PodsOn(node) {
		if p.Terminal || p.HostNetwork {
			continue
		}
		for _, a := range p.Networks {
			if !slices.Contains(out, a.Network) {
				out = append(out, a.Network)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Project returns the cluster as one secondary network sees it: the pods
// attached to it, with their addresses on it only (a pod without one is
// not there: neither subject nor peer); the MultiNetworkPolicies for it,
// as NetworkPolicies; namespaces, and nodes without their pod CIDRs (the
// network's addresses are not taken from them). ipBlocks stay as they
// are. No NetworkPolicy and no admin tier applies on a secondary network.
// The projection shares the objects of c; it is for compiling and
// evaluating, never to be changed.
func Project(c *Cluster, network string) *Cluster {
	out := NewCluster()
	for name, ns := range c.Namespaces {
		out.Namespaces[name] = ns
	}
	for name, n := range c.Nodes {
		out.Nodes[name] = &Node{Name: n.Name, Labels: n.Labels, Addresses: n.Addresses}
	}
	for key, p := range c.Pods {
		for _, a := range p.Networks {
			if a.Network != network || len(a.IPs) == 0 {
				continue
			}
			q := *p
			q.IPs, q.Networks = a.IPs, nil
			out.Pods[key] = &q
			index(out.podsByNS, q.Namespace, key, &q, false)
			out.indexPod(&q, false)
		}
	}
	for _, mp := range c.MultiPolicies {
		if slices.Contains(mp.Networks, network) {
			out.setPolicy(mp.Policy)
		}
	}
	return out
}

// MultiNetworkPolicy is k8s.cni.cncf.io/v1beta1 MultiNetworkPolicy, whose
// spec is NetworkPolicy's (multi-networkpolicy v1.0.1's
// MultiNetworkPolicySpec has the same fields and JSON names).
type MultiNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              networkingv1.NetworkPolicySpec `json:"spec,omitempty"`
}

// DeepCopyObject implements runtime.Object.
func (o *MultiNetworkPolicy) DeepCopyObject() runtime.Object {
	out := &MultiNetworkPolicy{TypeMeta: o.TypeMeta}
	o.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	o.Spec.DeepCopyInto(&out.Spec)
	return out
}

// NetworkAttachmentDefinition is k8s.cni.cncf.io/v1
// NetworkAttachmentDefinition.
type NetworkAttachmentDefinition struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              NetworkAttachmentDefinitionSpec `json:"spec,omitempty"`
}

// NetworkAttachmentDefinitionSpec holds the CNI configuration, as JSON.
type NetworkAttachmentDefinitionSpec struct {
	Config string `json:"config"`
}

// DeepCopyObject implements runtime.Object.
func (o *NetworkAttachmentDefinition) DeepCopyObject() runtime.Object {
	out := &NetworkAttachmentDefinition{TypeMeta: o.TypeMeta, Spec: o.Spec}
	o.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return out
}

// AddToScheme registers MultiNetworkPolicy and NetworkAttachmentDefinition
// (manifests name them; the lab's fake API server stores them).
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(MNPVersion, &MultiNetworkPolicy{})
	s.AddKnownTypes(NADVersion, &NetworkAttachmentDefinition{})
	metav1.AddToGroupVersion(s, MNPVersion)
	metav1.AddToGroupVersion(s, NADVersion)
	return nil
}

func (c *Cluster) deleteMulti(ns, name string) {
	delete(c.MultiPolicies, ns+"/"+name)
	if len(c.MultiPolicies) == 0 {
		c.MultiPolicies = nil
	}
}

func (c *Cluster) deleteNetwork(ns, name string) {
	delete(c.Networks, ns+"/"+name)
	if len(c.Networks) == 0 {
		c.Networks = nil
	}
}
