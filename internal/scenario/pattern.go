package scenario

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/nftpolicy/nftpolicy/internal/manifest"
)

// EndpointKind says what an endpoint is.
type EndpointKind string

// The endpoint kinds. A hostNetwork pod is not a pod endpoint: it is its
// node's endpoint (docs/scenarios.md).
const (
	KindPod      EndpointKind = "pod"
	KindExternal EndpointKind = "external"
	KindNode     EndpointKind = "node"
	// Service targets: a Service's cluster IP, and its node port on one
	// node. They answer probes (through the service proxy) but never send.
	KindService  EndpointKind = "svc"
	KindNodePort EndpointKind = "nodeport"
	// KindDNS is a name of the scenario's name server: the prober asks the
	// server for it, then connects to the answer (a target only).
	KindDNS EndpointKind = "dns"
)

// Endpoint is something that sends or answers probes.
type Endpoint struct {
	// Cluster names the endpoint's cluster in a file with clusters
	// (docs/multicluster.md); "" in a file without.
	Cluster   string
	Kind      EndpointKind
	Node      string // node ports only: the node whose address is probed
	Namespace string // pods and Services
	Name      string
	// Network, for a pod, names the secondary network whose address is
	// probed ("ns/pod@NETWORK"); empty: its primary one.
	Network string
}

// PodEndpoint, ExternalEndpoint and NodeEndpoint build endpoints.
func PodEndpoint(namespace, name string) Endpoint {
	return Endpoint{Kind: KindPod, Namespace: namespace, Name: name}
}

// ExternalEndpoint is the endpoint of an external host.
func ExternalEndpoint(name string) Endpoint { return Endpoint{Kind: KindExternal, Name: name} }

// NodeEndpoint is the endpoint of a node's host network.
func NodeEndpoint(name string) Endpoint { return Endpoint{Kind: KindNode, Name: name} }

// ServiceEndpoint is the cluster IP of a Service.
func ServiceEndpoint(namespace, name string) Endpoint {
	return Endpoint{Kind: KindService, Namespace: namespace, Name: name}
}

// NodePortEndpoint is a Service's node port on a node.
func NodePortEndpoint(node, namespace, name string) Endpoint {
	return Endpoint{Kind: KindNodePort, Node: node, Namespace: namespace, Name: name}
}

// DNSEndpoint is a name the scenario's name server answers for.
func DNSEndpoint(name string) Endpoint { return Endpoint{Kind: KindDNS, Name: name} }

// IsTarget reports whether the endpoint only answers probes (a Service
// target or a name) and never sends them.
func (e Endpoint) IsTarget() bool {
	return e.Kind == KindService || e.Kind == KindNodePort || e.Kind == KindDNS
}

// String gives "ns/name", "external/name", "node/name", "svc/ns/name" or
// "nodeport/node/ns/name", as patterns spell it.
func (e Endpoint) String() string { return Pattern(e).String() }

// MarshalText writes the endpoint as String does; JSON uses it.
func (e Endpoint) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (e *Endpoint) UnmarshalText(b []byte) error {
	p, err := ParsePattern(string(b))
	if err != nil {
		return err
	}
	ep, ok := p.Endpoint()
	if !ok {
		return fmt.Errorf("endpoint %q has a wildcard", b)
	}
	*e = ep
	return nil
}

// Wildcard stands for any name in a pattern part.
const Wildcard = "*"

// Pattern is an endpoint pattern: NAMESPACE/POD (either part may be *),
// external/NAME or node/NAME (NAME may be *), svc/NAMESPACE/NAME or
// nodeport/NODE/NAMESPACE/NAME (any part may be *).
type Pattern struct {
	// Cluster is "CLUSTER:" before the rest: a cluster's name or Wildcard;
	// "" (no prefix) matches every cluster's endpoints, but a literal
	// pattern without it names an endpoint of a file without clusters.
	Cluster   string
	Kind      EndpointKind
	Node      string // node ports only; a name or Wildcard
	Namespace string // pods and Services; a name or Wildcard
	Name      string // a name or Wildcard
	Network   string // pods only: a secondary network's name, never Wildcard; empty: the primary network
}

// ErrPattern is wrapped by every pattern syntax error.
var ErrPattern = errors.New("bad endpoint pattern")

// ParsePattern parses an endpoint pattern. A * stands for a whole part:
// "x/*" is a pattern, "x/a*" is not.
func ParsePattern(s string) (Pattern, error) {
	if cluster, rest, ok := strings.Cut(s, ":"); ok && !strings.Contains(cluster, "/") {
		c, err := patternPart(s, cluster, "cluster name", validation.IsDNS1123Label)
		if err != nil {
			return Pattern{}, err
		}
		p, err := ParsePattern(rest)
		if err != nil || p.Cluster != "" {
			return Pattern{}, fmt.Errorf("%w %q: want CLUSTER:PATTERN", ErrPattern, s)
		}
		p.Cluster = c
		return p, nil
	}
	if base, net, ok := strings.Cut(s, "@"); ok {
		p, err := ParsePattern(base)
		if err != nil {
			return Pattern{}, err
		}
		if p.Kind != KindPod {
			return Pattern{}, fmt.Errorf("%w %q: only pods have @NETWORK", ErrPattern, s)
		}
		if errs := validation.IsDNS1123Label(net); len(errs) > 0 {
			return Pattern{}, fmt.Errorf("%w %q: network %q: %s", ErrPattern, s, net, strings.Join(errs, "; "))
		}
		p.Network = net
		return p, nil
	}
	parts := strings.Split(s, "/")
	bad := func() (Pattern, error) {
		return Pattern{}, fmt.Errorf("%w %q: want NAMESPACE/POD, external/NAME, node/NAME, svc/NAMESPACE/NAME, nodeport/NODE/NAMESPACE/NAME or dns/NAME", ErrPattern, s)
	}
	var p Pattern
	var err error
	part := func(dst *string, v, what string, valid func(string) []string) {
		if err == nil {
			*dst, err = patternPart(s, v, what, valid)
		}
	}
	switch {
	case parts[0] == string(KindService):
		if len(parts) != 3 {
			return bad()
		}
		p = Pattern{Kind: KindService}
		part(&p.Namespace, parts[1], "namespace", validation.IsDNS1123Label)
		part(&p.Name, parts[2], "service name", validation.IsDNS1035Label)
	case parts[0] == string(KindNodePort):
		if len(parts) != 4 {
			return bad()
		}
		p = Pattern{Kind: KindNodePort}
		part(&p.Node, parts[1], "node name", validation.IsDNS1123Subdomain)
		part(&p.Namespace, parts[2], "namespace", validation.IsDNS1123Label)
		part(&p.Name, parts[3], "service name", validation.IsDNS1035Label)
	case len(parts) != 2:
		return bad()
	case parts[0] == "external":
		p = Pattern{Kind: KindExternal}
		part(&p.Name, parts[1], "external name", manifest.ValidExternalName)
	case parts[0] == "node":
		p = Pattern{Kind: KindNode}
		part(&p.Name, parts[1], "node name", validation.IsDNS1123Subdomain)
	case parts[0] == string(KindDNS):
		p = Pattern{Kind: KindDNS}
		part(&p.Name, parts[1], "DNS name", validation.IsDNS1123Subdomain)
	default:
		p = Pattern{Kind: KindPod}
		part(&p.Namespace, parts[0], "namespace", validation.IsDNS1123Label)
		part(&p.Name, parts[1], "pod name", validation.IsDNS1123Subdomain)
	}
	if err != nil {
		return Pattern{}, err
	}
	return p, nil
}

func patternPart(s, part, what string, valid func(string) []string) (string, error) {
	if part == Wildcard {
		return part, nil
	}
	if strings.Contains(part, Wildcard) {
		return "", fmt.Errorf("%w %q: * must stand for a whole %s", ErrPattern, s, what)
	}
	if errs := valid(part); len(errs) > 0 {
		return "", fmt.Errorf("%w %q: %s %q: %s", ErrPattern, s, what, part, strings.Join(errs, "; "))
	}
	return part, nil
}

func (p Pattern) String() string {
	if p.Cluster != "" {
		c := p
		c.Cluster = ""
		return p.Cluster + ":" + c.String()
	}
	switch p.Kind {
	case KindPod:
		if p.Network != "" {
			return p.Namespace + "/" + p.Name + "@" + p.Network
		}
		return p.Namespace + "/" + p.Name
	case KindService:
		return string(p.Kind) + "/" + p.Namespace + "/" + p.Name
	case KindNodePort:
		return string(p.Kind) + "/" + p.Node + "/" + p.Namespace + "/" + p.Name
	}
	return string(p.Kind) + "/" + p.Name
}

// Literal reports whether the pattern names one endpoint (has no *).
func (p Pattern) Literal() bool {
	return p.Name != Wildcard && p.Namespace != Wildcard && p.Node != Wildcard && p.Cluster != Wildcard
}

// IsTarget reports whether the pattern matches Service targets only.
func (p Pattern) IsTarget() bool { return Endpoint(p).IsTarget() }

// Endpoint returns the endpoint a literal pattern names.
func (p Pattern) Endpoint() (Endpoint, bool) {
	if !p.Literal() {
		return Endpoint{}, false
	}
	return Endpoint(p), true
}

// Matches reports whether the pattern matches e. Pod patterns (*/* and
// ns/* included) match pods only; externals and nodes are matched only by
// external/... and node/... patterns.
func (p Pattern) Matches(e Endpoint) bool {
	if p.Kind != e.Kind {
		return false
	}
	match := func(pat, v string) bool { return pat == Wildcard || pat == v }
	return p.Network == e.Network && (p.Cluster == "" || match(p.Cluster, e.Cluster)) && match(p.Node, e.Node) && match(p.Namespace, e.Namespace) && match(p.Name, e.Name)
}

// AllPods returns */*: every pod, the default of from and to.
func AllPods() Pattern { return Pattern{Kind: KindPod, Namespace: Wildcard, Name: Wildcard} }
