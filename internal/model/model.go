// Package model is nftpolicy's view of a cluster: Kubernetes objects in, a
// normalised model out, and a reference evaluator that says whether a flow
// is allowed and which policy rule decided, without touching a kernel.
package model

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sort"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nftpolicy/nftpolicy/internal/inet"
)

// IP protocol numbers used by the model (defined once, in inet).
const (
	ProtoTCP  = inet.TCP
	ProtoUDP  = inet.UDP
	ProtoSCTP = inet.SCTP
)

// Namespace is the part of a Namespace that policies can select on.
type Namespace struct {
	Name   string
	Labels labels.Set
	// Cluster is the remote cluster the namespace is in (its Name is then
	// RemoteName(Cluster, name)); "" for a local one.
	Cluster string
}

// NamedPort is a container port a pod declares, for named-port rules.
type NamedPort struct {
	Name  string
	Proto uint8
	Port  uint16
}

// Pod is the part of a Pod that policy cares about.
type Pod struct {
	Namespace   string
	Name        string
	Node        string
	Labels      labels.Set
	IPs         []netip.Addr
	HostNetwork bool
	// Terminal pods (Succeeded or Failed) neither are selected nor count as
	// peers: their IPs may already belong to someone else.
	Terminal bool
	Ports    []NamedPort
	// Networks are its attachments to secondary networks (multinet.go).
	Networks []Attachment
	// Cluster is the remote cluster the pod is in ("" for a local pod):
	// Namespace and Node are then remote names (RemoteName). A remote pod
	// is a peer, never a subject.
	Cluster string

	// soleOwner is set by the cluster's address index while the pod is in
	// it and no other pod lists one of its addresses: OwnedIPs then needs
	// no lookup (filling a selector's set at L asks it for ~4,000 pods,
	// 5 ms of map probes before this). Any other state takes the full check.
	soleOwner bool
}

// Remote reports whether the pod is in another cluster.
func (p *Pod) Remote() bool { return p.Cluster != "" }

// sameKey reports whether a and b are the same pod (perhaps two versions).
func sameKey(a, b *Pod) bool {
	return a == b || a.Name == b.Name && a.Namespace == b.Namespace
}

// Key is "namespace/name".
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// Active reports whether the pod takes part in policy, as subject or peer:
// it has an address of its own, a node (whose agent enforces its policies:
// without one, none would, and the API server gives addresses only to
// scheduled pods) and is not finished.
func (p *Pod) Active() bool { return len(p.IPs) > 0 && p.Node != "" && !p.HostNetwork && !p.Terminal }

// PortNumber resolves a named port on this pod for a protocol.
func (p *Pod) PortNumber(name string, proto uint8) (uint16, bool) {
	for _, np := range p.Ports {
		if np.Name == name && np.Proto == proto {
			return np.Port, true
		}
	}
	return 0, false
}

// Node is the part of a Node that policy cares about.
type Node struct {
	Name      string
	Labels    labels.Set
	Addresses []netip.Addr
	// PodCIDRs are the ranges the node's pods take their addresses from
	// (spec.podCIDRs): an address there that no pod of the node has yet is
	// a pod the agent does not know, denied until it does.
	PodCIDRs []netip.Prefix
	// Cluster is the remote cluster of the node ("" for a local one):
	// its addresses are node peers' only, and only of selectors that
	// name ClusterLabel.
	Cluster string
}

// Direction is ingress or egress.
type Direction int

const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Policy is a normalised NetworkPolicy.
type Policy struct {
	Namespace string
	Name      string
	// Subject selects pods in Namespace. nil selects none (see Invalid).
	Subject labels.Selector
	// Isolates says which directions the policy isolates its subjects in
	// (its policyTypes).
	Isolates [2]bool // indexed by Direction
	Rules    [2][]Rule
	// Audit: annotated nftpolicy.io/enforcement: audit (AuditOf).
	Audit bool
	// LogAccepts: annotated nftpolicy.io/log-accepts: "true"; the kernel
	// logs what the policy accepts too (unless verdict logs are off).
	LogAccepts bool
	// Problems lists what was invalid in the object and how it was handled.
	Problems []string
}

// Key is "namespace/name".
func (p *Policy) Key() string { return p.Namespace + "/" + p.Name }

// Rule is one ingress or egress rule: traffic to or from any of Peers, on any
// of Ports, is allowed.
type Rule struct {
	Index int
	Match
}

// Match is what every rule shape shares: the traffic it applies to, to or
// from any of Peers on any of Ports.
type Match struct {
	// AllPeers: the rule matches every address (it lists no peers, or it
	// fails closed).
	AllPeers bool
	Peers    []Peer
	// AllPorts: the rule matches every port and protocol.
	AllPorts bool
	Ports    []Port // a tier rule's named ports may have Proto 0: any protocol
}

// Peer is one entry of a rule's from/to list: pods by selector, or an ipBlock.
type Peer struct {
	// Pods: PodSelector applies to pods in Namespace (when NamespaceSelector
	// is nil) or in the namespaces NamespaceSelector selects.
	Pods              bool
	Namespace         string
	NamespaceSelector labels.Selector
	PodSelector       labels.Selector // nil: every pod
	// Nodes: the addresses of the nodes NodeSelector selects (tier
	// policies only).
	Nodes        bool
	NodeSelector labels.Selector
	// IPBlock: the addresses in CIDR but not in any Except.
	CIDR   netip.Prefix
	Except []netip.Prefix
	// Domains: the addresses that DNS answers bound to a name one of
	// these patterns matches (domains.go); egress Allow rules only.
	Domains []string
	// Invalid peers match nothing: a selector or CIDR we could not parse
	// must never widen access.
	Invalid bool
}

// Port is one entry of a rule's ports list.
type Port struct {
	Proto uint8
	// Name, when set, is a named port, resolved on the destination pod.
	Name string
	// Port..EndPort (inclusive); Port 0 means every port of Proto.
	Port    uint16
	EndPort uint16
}

// Cluster is the whole model: what every node's agent needs to compile.
type Cluster struct {
	Namespaces map[string]*Namespace
	Pods       map[string]*Pod // by Key
	Nodes      map[string]*Node
	Policies   map[string]*Policy // by Key
	// TierPolicies are the admin and baseline tiers' policies, by Key.
	TierPolicies map[string]*TierPolicy
	// MultiPolicies (MultiNetworkPolicies) and Networks
	// (NetworkAttachmentDefinitions), by Key; nil until one is set
	// (multinet.go).
	MultiPolicies map[string]*MultiPolicy
	Networks      map[string]*Network
	// ClusterSet: how remote clusters' objects are matched. Set it before
	// the first Set.
	ClusterSet ClusterSet

	// Indexes kept by Set and Delete, so that an incremental compiler
	// never scans the whole cluster for one change.
	podsByNS     map[string]map[string]*Pod    // namespace -> pod key -> pod
	podsByNode   map[string]map[string]*Pod    // node -> pod key -> pod
	podsByPort   map[string]map[string]*Pod    // named port -> pod key -> pod
	podsByAddr   map[netip.Addr][]*Pod         // address -> the pods listing it (nearly always one)
	policiesByNS map[string]map[string]*Policy // namespace -> policy key -> policy

	dns dnsBindings // domains.go
}

// NewCluster makes an empty cluster.
func NewCluster() *Cluster {
	return &Cluster{
		Namespaces: map[string]*Namespace{},
		Pods:       map[string]*Pod{},
		Nodes:      map[string]*Node{},
		Policies:   map[string]*Policy{},

		TierPolicies: map[string]*TierPolicy{},

		podsByNS:     map[string]map[string]*Pod{},
		podsByNode:   map[string]map[string]*Pod{},
		podsByPort:   map[string]map[string]*Pod{},
		podsByAddr:   map[netip.Addr][]*Pod{},
		policiesByNS: map[string]map[string]*Policy{},
	}
}

// PodsIn returns the pods of one namespace, by key. The map is the
// cluster's own index: callers only read it.
func (c *Cluster) PodsIn(namespace string) map[string]*Pod { return c.podsByNS[namespace] }

// PodsOn returns the pods scheduled to one node, by key. The map is the
// cluster's own index: callers only read it.
func (c *Cluster) PodsOn(node string) map[string]*Pod { return c.podsByNode[node] }

// PodsWithPort returns the pods that declare a named port, by key. The map
// is the cluster's own index: callers only read it.
func (c *Cluster) PodsWithPort(name string) map[string]*Pod { return c.podsByPort[name] }

// indexPod adds (or with remove, removes) a pod in the node, port and
// address indexes.
func (c *Cluster) indexPod(p *Pod, remove bool) {
	index(c.podsByNode, p.Node, p.Key(), p, remove)
	for _, np := range p.Ports {
		index(c.podsByPort, np.Name, p.Key(), p, remove)
	}
	var sharers []*Pod // the other pods listing one of p's addresses
	for _, ip := range p.IPs {
		pods := slices.DeleteFunc(c.podsByAddr[ip], func(q *Pod) bool { return sameKey(p, q) })
		if !remove {
			pods = append(pods, p)
		}
		if len(pods) == 0 {
			delete(c.podsByAddr, ip)
		} else {
			c.podsByAddr[ip] = pods
		}
		for _, q := range pods {
			if q != p {
				sharers = append(sharers, q)
			}
		}
	}
	p.soleOwner = false
	if !remove {
		c.checkSoleOwner(p)
	}
	for _, q := range sharers {
		c.checkSoleOwner(q)
	}
}

// checkSoleOwner sets p.soleOwner from the address index.
func (c *Cluster) checkSoleOwner(p *Pod) {
	p.soleOwner = true
	for _, ip := range p.IPs {
		if pods := c.podsByAddr[ip]; len(pods) != 1 || pods[0] != p {
			p.soleOwner = false
			return
		}
	}
}

// Owns reports whether addr is pod's: pod is active, lists addr, and no
// active pod that comes before it lists addr too: a local pod before a
// remote one, then by key. Two pods list one
// address when it is reused before the informer has seen its previous
// pod go; exactly one of them owns it, the same on every node and in the
// evaluator, and only the owner is judged or matched by it (a kernel map
// holds one verdict per address).
func (c *Cluster) Owns(pod *Pod, addr netip.Addr) bool {
	if !pod.Active() {
		return false
	}
	// One pass, no key built: filling a set of thousands of pods asks this
	// for every one.
	listed := false
	for _, other := range c.podsByAddr[addr] {
		if sameKey(other, pod) {
			listed = true
		} else if other.Active() && ownerBefore(other, pod) {
			return false
		}
	}
	return listed
}

// OwnedIPs returns the addresses of pod that it owns (see Owns). When it
// owns all of them, which is nearly always, the slice is the pod's own:
// callers only read it.
func (c *Cluster) OwnedIPs(pod *Pod) []netip.Addr {
	if pod.soleOwner && pod.Active() {
		return slices.Clip(pod.IPs)
	}
	for i, ip := range pod.IPs {
		if c.Owns(pod, ip) {
			continue
		}
		out := slices.Clip(slices.Clone(pod.IPs[:i]))
		for _, ip := range pod.IPs[i+1:] {
			if c.Owns(pod, ip) {
				out = append(out, ip)
			}
		}
		return out
	}
	return slices.Clip(pod.IPs)
}

// PodsListing returns the pods other than the one of key that list any
// of addrs, by key: those whose ownership a change of that pod can move.
func (c *Cluster) PodsListing(addrs []netip.Addr, key string) []*Pod {
	var out []*Pod
	for _, ip := range addrs {
		for _, p := range c.podsByAddr[ip] {
			if p.Key() != key && !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// PoliciesIn returns the NetworkPolicies of one namespace, by key. The map
// is the cluster's own index: callers only read it.
func (c *Cluster) PoliciesIn(namespace string) map[string]*Policy {
	return c.policiesByNS[namespace]
}

// index adds or removes one entry of a two-level index.
func index[K comparable, V any](idx map[K]map[string]V, outer K, inner string, v V, remove bool) {
	m := idx[outer]
	if remove {
		delete(m, inner)
		if len(m) == 0 {
			delete(idx, outer)
		}
		return
	}
	if m == nil {
		m = map[string]V{}
		idx[outer] = m
	}
	m[inner] = v
}

// SortedPolicies returns the policies by key, the order rules are reported in.
func (c *Cluster) SortedPolicies() []*Policy {
	out := make([]*Policy, 0, len(c.Policies))
	for _, p := range c.Policies {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// SortedPods returns the pods by key.
func (c *Cluster) SortedPods() []*Pod {
	out := make([]*Pod, 0, len(c.Pods))
	for _, p := range c.Pods {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// Selects reports whether the policy applies to pod.
func (p *Policy) Selects(c *Cluster, pod *Pod) bool {
	return pod.Active() && !pod.Remote() && pod.Namespace == p.Namespace && p.Subject != nil && p.Subject.Matches(pod.Labels)
}

// MatchesPod reports whether a pod peer selects pod.
func (peer *Peer) MatchesPod(c *Cluster, pod *Pod) bool {
	return pod.Active() && peer.MatchesNamespace(c, pod.Namespace) && peer.MatchesPodLabels(pod)
}

// MatchesNamespace is the namespace half of MatchesPod: whether a pod peer
// can select pods of the namespace named ns. Filling a peer set asks it
// once per namespace instead of once per pod.
func (peer *Peer) MatchesNamespace(c *Cluster, ns string) bool {
	if !peer.Pods || peer.Invalid {
		return false
	}
	if peer.NamespaceSelector == nil {
		return ns == peer.Namespace
	}
	n, ok := c.Namespaces[ns]
	if !ok || !peer.NamespaceSelector.Matches(n.Labels) {
		return false
	}
	// docs/multicluster.md: remote only when asked for
	return n.Cluster == "" || c.ClusterSet.Sameness || NamesCluster(peer.NamespaceSelector)
}

// MatchesPodLabels is the pod half of MatchesPod: its pod selector.
func (peer *Peer) MatchesPodLabels(pod *Pod) bool {
	return peer.PodSelector == nil || peer.PodSelector.Matches(pod.Labels)
}

// MatchesNode reports whether a node peer selects node.
func (peer *Peer) MatchesNode(node *Node) bool {
	return peer.Nodes && !peer.Invalid && peer.NodeSelector != nil && peer.NodeSelector.Matches(node.Labels) &&
		(node.Cluster == "" || NamesCluster(peer.NodeSelector))
}

// MatchesAddr reports whether an ipBlock peer contains addr.
func (peer *Peer) MatchesAddr(addr netip.Addr) bool {
	if peer.Pods || peer.Nodes || peer.Invalid || len(peer.Domains) > 0 || !peer.CIDR.Contains(addr) {
		return false
	}
	for _, e := range peer.Except {
		if e.Contains(addr) {
			return false
		}
	}
	return true
}

// RefOf names an object of a kind the model knows: its kind (as Delete
// takes it), namespace and name. ok is false for other kinds. An object
// of a cluster-scoped kind has no namespace here, whatever its metadata
// says: the model keeps it by name alone, so a stray namespace must not
// give it a second name (the compile fuzzer found a Namespace carrying
// one, which its test then knew under a key the model does not use).
func RefOf(obj any) (kind, namespace, name string, ok bool) {
	k, ok := KindOf(obj)
	if !ok {
		return "", "", "", false
	}
	m := obj.(metav1.Object)
	if k.Namespaced {
		namespace = m.GetNamespace()
	}
	return k.Name, namespace, m.GetName(), true
}

// Set adds or replaces an object in the cluster. Unknown kinds are
// reported, not ignored silently.
func (c *Cluster) Set(obj any) error {
	k, ok := kindByType[reflect.TypeOf(obj)]
	if !ok {
		return fmt.Errorf("%T is not a kind the model knows", obj)
	}
	k.set(c, obj)
	return nil
}

// Delete removes an object by kind, namespace and name.
func (c *Cluster) Delete(kind, namespace, name string) error {
	k, ok := kindByName[kind]
	if !ok {
		return fmt.Errorf("kind %q is not a kind the model knows", kind)
	}
	k.del(c, namespace, name)
	return nil
}

func (c *Cluster) setNamespace(o *v1.Namespace) {
	ns := NamespaceFromAPI(o)
	if ns.Cluster == "" {
		ns.Labels = withCluster(ns.Labels, c.ClusterSet.LocalID, false)
	}
	c.Namespaces[o.Name] = ns
}

func (c *Cluster) setNode(o *v1.Node) {
	n := NodeFromAPI(o)
	if n.Cluster == "" {
		n.Labels = withCluster(n.Labels, c.ClusterSet.LocalID, false)
	}
	c.Nodes[o.Name] = n
}

func (c *Cluster) setPod(o *v1.Pod) {
	p := PodFromAPI(o)
	if old := c.Pods[p.Key()]; old != nil {
		c.indexPod(old, true)
	}
	c.Pods[p.Key()] = p
	index(c.podsByNS, p.Namespace, p.Key(), p, false)
	c.indexPod(p, false)
}

func (c *Cluster) deletePod(namespace, name string) {
	key := namespace + "/" + name
	if old := c.Pods[key]; old != nil {
		c.indexPod(old, true)
	}
	delete(c.Pods, key)
	index(c.podsByNS, namespace, key, (*Pod)(nil), true)
}

func (c *Cluster) setPolicy(p *Policy) {
	c.Policies[p.Key()] = p
	index(c.policiesByNS, p.Namespace, p.Key(), p, false)
}

func (c *Cluster) deletePolicy(namespace, name string) {
	key := namespace + "/" + name
	delete(c.Policies, key)
	index(c.policiesByNS, namespace, key, (*Policy)(nil), true)
}

func (c *Cluster) setTier(p *TierPolicy) { c.TierPolicies[p.Key()] = p }

// Isolating returns the NetworkPolicies that isolate pod in dir, by key:
// when none of their rules allows a flow, these are why it is dropped.
func (c *Cluster) Isolating(pod *Pod, dir Direction) []*Policy {
	var out []*Policy
	for _, p := range c.policiesByNS[pod.Namespace] {
		if p.Isolates[dir] && p.Selects(c, pod) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}
