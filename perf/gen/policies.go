package gen

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

type m = map[string]string

type peers = []networkingv1.NetworkPolicyPeer

// template makes the k-th allow policy of a namespace.
type template func(g *generator, ns *v1.Namespace, k int) *networkingv1.NetworkPolicy

// templates are the allow policies real namespaces carry. Each namespace
// walks the list from a random offset, so every namespace gets a spread.
var templates = []template{
	appToApp, fromProdGateways, monitoring, external, egressInternet,
	portRange, tierDB, sameTeam, partners,
}

// policies makes n policies for ns: a default-deny first (a quarter of the
// namespaces deny egress too, and then allow DNS), then allows.
func (g *generator) policies(ns *v1.Namespace, n int) {
	if n <= 0 {
		return
	}
	egress := g.rng.IntN(4) == 0
	g.add(defaultDeny(ns, egress))
	n--
	if egress && n > 0 {
		g.add(allowDNS(ns))
		n--
	}
	offset := g.rng.IntN(len(templates))
	for k := range n {
		g.add(templates[(offset+k)%len(templates)](g, ns, k))
	}
}

func (g *generator) add(np *networkingv1.NetworkPolicy) { g.c.Policies = append(g.c.Policies, np) }

func defaultDeny(ns *v1.Namespace, egress bool) *networkingv1.NetworkPolicy {
	types := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	if egress {
		types = append(types, networkingv1.PolicyTypeEgress)
	}
	return tu.Policy(ns.Name, "default-deny", nil, tu.Types(types...))
}

func allowDNS(ns *v1.Namespace) *networkingv1.NetworkPolicy {
	return tu.Policy(ns.Name, "allow-dns", nil, tu.Types(networkingv1.PolicyTypeEgress),
		tu.Egress(peers{tu.NSPeer(m{"kubernetes.io/metadata.name": "kube-system"}, m{"k8s-app": "kube-dns"})},
			tu.Port(v1.ProtocolUDP, 53, 0), tu.Port(v1.ProtocolTCP, 53, 0)))
}

// randomApp is one of the apps ns runs.
func (g *generator) randomApp(ns *v1.Namespace) app {
	apps := g.c.apps[ns.Name]
	return apps[g.rng.IntN(len(apps))]
}

func name(kind string, a app, k int) string { return fmt.Sprintf("%s-%s-%d", kind, a.name, k) }

func named(p namedPort) networkingv1.NetworkPolicyPort { return tu.NamedPort(p.proto, p.name) }

// appToApp: an app accepts another app of its namespace on its first
// named port.
func appToApp(g *generator, ns *v1.Namespace, k int) *networkingv1.NetworkPolicy {
	to, from := g.randomApp(ns), g.randomApp(ns)
	return tu.Policy(ns.Name, name("allow-"+from.name+"-to", to, k), m{"app": to.name},
		tu.Ingress(peers{tu.PodPeer(m{"app": from.name})}, named(to.ports[0])))
}

// fromProdGateways: gateways of every prod namespace reach an app's http
// port (namespace selector and pod selector in one peer).
func fromProdGateways(g *generator, ns *v1.Namespace, k int) *networkingv1.NetworkPolicy {
	to := g.randomApp(ns)
	return tu.Policy(ns.Name, name("from-prod-gateways", to, k), m{"app": to.name},
		tu.Ingress(peers{tu.NSPeer(m{"env": "prod"}, m{"app": "gateway"})}, named(portHTTP)))
}

// monitoring: the platform team's namespaces scrape every pod's metrics.
func monitoring(g *generator, ns *v1.Namespace, k int) *networkingv1.NetworkPolicy {
	return tu.Policy(ns.Name, fmt.Sprintf("allow-monitoring-%d", k), nil,
		tu.Ingress(peers{tu.NSPeer(m{"team": "platform"}, nil)}, named(portMetrics)))
}

// external: an app takes traffic from the internet but not from private
// ranges (an ipBlock with excepts).
func external(g *generator, ns *v1.Namespace, k int) *networkingv1.NetworkPolicy {
	to := g.randomApp(ns)
	return tu.Policy(ns.Name, name("allow-external", to, k), m{"app": to.name},
		tu.Ingress(peers{tu.Block("0.0.0.0/0", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")},
			tu.Port(v1.ProtocolTCP, 443, 0), tu.Port(v1.ProtocolTCP, 8443, 0)))
}

// egressInternet: a backend app may call out to the internet on 443, and
// to its namespace's APIs on grpc, and nowhere else.
func egressInternet(g *generator, ns *v1.Namespace, k int) *networkingv1.NetworkPolicy {
	from := g.randomApp(ns)
	return tu.Policy(ns.Name, name("egress", from, k), m{"app": from.name},
		tu.Types(networkingv1.PolicyTypeEgress),
		tu.Egress(peers{tu.Block("0.0.0.0/0", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15")},
			tu.Port(v1.ProtocolTCP, 443, 0)),
		tu.Egress(peers{tu.PodPeer(m{"tier": "backend"})}, named(portGRPC)))
}

// portRange: a tier of workers listens on ranges of ports.
func portRange(g *generator, ns *v1.Namespace, k int) *networkingv1.NetworkPolicy {
	to := g.randomApp(ns)
	return tu.Policy(ns.Name, name("ranges", to, k), m{"app": to.name},
		tu.Ingress(peers{tu.PodPeer(m{"tier": "backend"}), tu.PodPeer(m{"tier": "frontend"})},
			tu.Port(v1.ProtocolTCP, 8000, 8999), tu.Port(v1.ProtocolUDP, 5000, 5100), tu.Port(v1.ProtocolTCP, 30000, 32767)))
}

// tierDB: databases and caches take the backend tier on their named ports.
func tierDB(g *generator, ns *v1.Namespace, k int) *networkingv1.NetworkPolicy {
	tier := []string{"db", "cache", "queue"}[g.rng.IntN(3)]
	return tu.Policy(ns.Name, fmt.Sprintf("%s-from-backend-%d", tier, k), m{"tier": tier},
		tu.Ingress(peers{tu.PodPeer(m{"tier": "backend"})},
			tu.NamedPort(v1.ProtocolTCP, "postgres"), tu.NamedPort(v1.ProtocolTCP, "mongo"),
			tu.NamedPort(v1.ProtocolTCP, "redis"), tu.NamedPort(v1.ProtocolTCP, "kafka")))
}

// sameTeam: the team's other namespaces reach an app on a port range.
func sameTeam(g *generator, ns *v1.Namespace, k int) *networkingv1.NetworkPolicy {
	to := g.randomApp(ns)
	return tu.Policy(ns.Name, name("same-team", to, k), m{"app": to.name},
		tu.Ingress(peers{tu.NSPeer(m{"team": ns.Labels["team"]}, nil)}, tu.Port(v1.ProtocolTCP, 8080, 8089)))
}

// partners: fixed partner ranges, one with a hole, reach an app; the
// selector uses an expression, not only labels.
func partners(g *generator, ns *v1.Namespace, k int) *networkingv1.NetworkPolicy {
	to := g.randomApp(ns)
	np := tu.Policy(ns.Name, name("partners", to, k), m{"app": to.name},
		tu.Ingress(peers{tu.Block("203.0.113.0/24", "203.0.113.128/25"), tu.Block("198.51.100.0/24")},
			tu.Port(v1.ProtocolTCP, 443, 0), tu.Port(v1.ProtocolUDP, 8125, 0)))
	np.Spec.PodSelector.MatchExpressions = []metav1.LabelSelectorRequirement{
		{Key: "version", Operator: metav1.LabelSelectorOpIn, Values: []string{"v1", "v2"}},
	}
	return np
}
