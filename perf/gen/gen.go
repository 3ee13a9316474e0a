// Package gen builds the synthetic clusters of the performance suite: the
// same seed gives the same cluster, object for object. A cluster has the
// shapes real ones have: namespaces owned by teams, apps in tiers with
// replicas and named ports, a default-deny per namespace, app-to-app allows
// by labels, namespace selectors, ipBlocks with excepts, port ranges.
package gen

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/nftpolicy/nftpolicy/internal/model"
)

// Size is a cluster's scale.
type Size struct {
	Name     string `json:"name"`
	Pods     int    `json:"pods"`
	Policies int    `json:"policies"`
}

// The suite's sizes.
var (
	S = Size{Name: "S", Pods: 1_000, Policies: 100}
	M = Size{Name: "M", Pods: 10_000, Policies: 1_000}
	L = Size{Name: "L", Pods: 50_000, Policies: 5_000}
	// XL shows whether a per-event cost is flat in the cluster's size.
	XL = Size{Name: "XL", Pods: 100_000, Policies: 10_000}
)

// Sizes lists them smallest first.
func Sizes() []Size { return []Size{S, M, L, XL} }

// SizeByName finds "S", "M", "L" or "XL".
func SizeByName(name string) (Size, error) {
	for _, s := range Sizes() {
		if s.Name == name {
			return s, nil
		}
	}
	return Size{}, fmt.Errorf("gen: no size %q (want S, M, L or XL)", name)
}

// The shape every size shares, so that only the scale changes between sizes.
const (
	PodsPerNamespace = 100
	PodsPerNode      = 100
	AppsPerNamespace = 10
)

// Namespaces is the number of namespaces of a size.
func (s Size) Namespaces() int { return max(1, s.Pods/PodsPerNamespace) }

// Nodes is the number of nodes of a size.
func (s Size) Nodes() int { return max(1, s.Pods/PodsPerNode) }

// NodeName names node i.
func NodeName(i int) string { return fmt.Sprintf("node-%03d", i) }

// NodeUnderTest is the node whose agent the suite measures: NodeName(0).
const NodeUnderTest = "node-000"

// Pod and node addresses come from 198.18.0.0/15, the range RFC 2544 sets
// aside for benchmarks: pods from 198.18.1.0 up, nodes from 198.19.240.0.
var (
	podBase  = netip.MustParseAddr("198.18.1.0")
	nodeBase = netip.MustParseAddr("198.19.240.0")
)

// PodIP is the address of the i-th pod ever created (events continue the
// numbering past the initial pods).
func PodIP(i int) netip.Addr { return addrPlus(podBase, i) }

func addrPlus(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Cluster is a generated cluster's objects.
type Cluster struct {
	Size       Size
	Seed       uint64
	Namespaces []*v1.Namespace
	Nodes      []*v1.Node
	Pods       []*v1.Pod
	Policies   []*networkingv1.NetworkPolicy
	// Admin holds the admin tiers' objects (AdminNetworkPolicy,
	// BaselineAdminNetworkPolicy, ClusterNetworkPolicy). It stays empty
	// until compile enforces them; see adminTier.
	Admin []runtime.Object

	apps map[string][]app // by namespace: the apps it runs
}

// Objects returns every object, namespaces and nodes before the pods and
// policies that refer to them.
func (c *Cluster) Objects() []runtime.Object {
	out := make([]runtime.Object, 0, len(c.Namespaces)+len(c.Nodes)+len(c.Pods)+len(c.Policies)+len(c.Admin))
	for _, o := range c.Namespaces {
		out = append(out, o)
	}
	for _, o := range c.Nodes {
		out = append(out, o)
	}
	for _, o := range c.Pods {
		out = append(out, o)
	}
	for _, o := range c.Policies {
		out = append(out, o)
	}
	return append(out, c.Admin...)
}

// Model returns the cluster as the agent's model sees it.
func (c *Cluster) Model() (*model.Cluster, error) {
	m := model.NewCluster()
	for _, o := range c.Objects() {
		if err := m.Set(o); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Generate builds the cluster of size s from seed.
func Generate(s Size, seed uint64) *Cluster {
	g := &generator{
		rng: rand.New(rand.NewPCG(seed, seed^0x6e667470657266)), // "nftperf"
		c:   &Cluster{Size: s, Seed: seed, apps: map[string][]app{}},
	}
	for i := range s.Nodes() {
		g.c.Nodes = append(g.c.Nodes, node(i))
	}
	nss := s.Namespaces()
	perNS := s.Policies / nss
	extra := s.Policies % nss // the first namespaces take one more
	for i := range nss {
		ns := g.namespace(i)
		g.addPods(ns, s.Pods/nss+boolInt(i < s.Pods%nss))
		g.policies(ns, perNS+boolInt(i < extra))
	}
	g.c.Admin = g.adminTier()
	return g.c
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

type generator struct {
	rng  *rand.Rand
	c    *Cluster
	pods int // pods created so far: the next pod's index
}

// adminTier is the hook for the admin tiers: AdminNetworkPolicy,
// BaselineAdminNetworkPolicy and ClusterNetworkPolicy. It returns nothing
// yet, so the sizes measure NetworkPolicy alone and stay comparable from
// run to run. To add them: generate here, in proportion to the size, a
// handful of cluster-wide ANPs (deny from dev namespaces to the db tier,
// pass for the platform team) and one BANP defaulting every namespace to
// deny; give the agent a fake policy clientset (agent.Config.PolicyClient,
// as internal/lab does) and teach agentRun.apply their kinds; add
// tier events (an ANP priority change) to EventKinds.
func (g *generator) adminTier() []runtime.Object { return nil }

func (g *generator) pick(list []string) string { return list[g.rng.IntN(len(list))] }
