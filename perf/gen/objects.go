package gen

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

var (
	teams = []string{"payments", "search", "identity", "platform", "checkout", "catalog",
		"ads", "media", "growth", "data", "risk", "support"}
	envs = []string{"prod", "prod", "prod", "staging", "staging", "dev"} // weighted
)

// namedPort is a container port a pod declares by name.
type namedPort struct {
	name  string
	proto v1.Protocol
	port  int32
}

// app is a kind of workload: its tier and the ports its pods declare.
type app struct {
	name  string
	tier  string
	ports []namedPort
}

var (
	portHTTP    = namedPort{"http", v1.ProtocolTCP, 8080}
	portGRPC    = namedPort{"grpc", v1.ProtocolTCP, 9090}
	portMetrics = namedPort{"metrics", v1.ProtocolTCP, 9100}
)

// catalog holds more apps than a namespace runs; each namespace draws
// AppsPerNamespace of them.
var catalog = []app{
	{"web", "frontend", []namedPort{portHTTP, portMetrics}},
	{"gateway", "frontend", []namedPort{portHTTP, portMetrics}},
	{"api", "backend", []namedPort{portHTTP, portGRPC, portMetrics}},
	{"auth", "backend", []namedPort{portGRPC, portMetrics}},
	{"orders", "backend", []namedPort{portHTTP, portGRPC, portMetrics}},
	{"billing", "backend", []namedPort{portGRPC, portMetrics}},
	{"search", "backend", []namedPort{{"http", v1.ProtocolTCP, 9200}, portMetrics}},
	{"worker", "backend", []namedPort{portMetrics}},
	{"postgres", "db", []namedPort{{"postgres", v1.ProtocolTCP, 5432}, portMetrics}},
	{"mongo", "db", []namedPort{{"mongo", v1.ProtocolTCP, 27017}, portMetrics}},
	{"redis", "cache", []namedPort{{"redis", v1.ProtocolTCP, 6379}, portMetrics}},
	{"kafka", "queue", []namedPort{{"kafka", v1.ProtocolTCP, 9092}, portMetrics}},
	{"statsd", "telemetry", []namedPort{{"statsd", v1.ProtocolUDP, 8125}}},
}

func node(i int) *v1.Node {
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: NodeName(i), Labels: map[string]string{
			"kubernetes.io/hostname":      NodeName(i),
			"topology.kubernetes.io/zone": fmt.Sprintf("zone-%c", 'a'+i%3),
		}},
		Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: addrPlus(nodeBase, i).String()}}},
	}
}

// namespace makes namespace i, owned by a team, in an environment, and
// draws the apps it runs.
func (g *generator) namespace(i int) *v1.Namespace {
	team := g.pick(teams)
	ns := tu.Namespace(fmt.Sprintf("%s-%03d", team, i), map[string]string{
		"team": team,
		"env":  g.pick(envs),
	})
	g.c.Namespaces = append(g.c.Namespaces, ns)
	perm := g.rng.Perm(len(catalog))
	apps := make([]app, 0, AppsPerNamespace)
	for _, j := range perm[:min(AppsPerNamespace, len(catalog))] {
		apps = append(apps, catalog[j])
	}
	g.c.apps[ns.Name] = apps
	return ns
}

// addPods makes n pods in ns: the replicas of its apps, spread over the nodes
// at random as a scheduler would.
func (g *generator) addPods(ns *v1.Namespace, n int) {
	apps := g.c.apps[ns.Name]
	for j := range n {
		a := apps[j%len(apps)]
		node := NodeName(g.rng.IntN(g.c.Size.Nodes()))
		g.c.Pods = append(g.c.Pods, g.newPod(ns, a, node))
	}
}

// newPod makes the next pod of app a in ns on node, with the next address.
func (g *generator) newPod(ns *v1.Namespace, a app, node string) *v1.Pod {
	i := g.pods
	g.pods++
	version := "v1"
	if g.rng.IntN(10) == 0 {
		version = "v2" // a canary
	}
	var tweaks []func(*v1.Pod)
	for _, p := range a.ports {
		tweaks = append(tweaks, tu.WithPort(p.name, p.proto, p.port))
	}
	return tu.Pod(ns.Name, fmt.Sprintf("%s-%05d", a.name, i), node, podLabels(ns, a, version),
		[]string{PodIP(i).String()}, tweaks...)
}

func podLabels(ns *v1.Namespace, a app, version string) map[string]string {
	return map[string]string{
		"app":     a.name,
		"tier":    a.tier,
		"team":    ns.Labels["team"],
		"version": version,
	}
}
