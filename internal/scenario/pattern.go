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
)

// Endpoint is something that sends or answers probes.
type Endpoint struct {
	Kind      EndpointKind
	Namespace string // pods only
	Name      string
}

// PodEndpoint, ExternalEndpoint and NodeEndpoint build endpoints.
func PodEndpoint(namespace, name string) Endpoint {
	return Endpoint{Kind: KindPod, Namespace: namespace, Name: name}
}

// ExternalEndpoint is the endpoint of an external host.
func ExternalEndpoint(name string) Endpoint { return Endpoint{Kind: KindExternal, Name: name} }

// NodeEndpoint is the endpoint of a node's host network.
func NodeEndpoint(name string) Endpoint { return Endpoint{Kind: KindNode, Name: name} }

// String gives "ns/name", "external/name" or "node/name", as patterns
// spell it.
func (e Endpoint) String() string {
	if e.Kind == KindPod {
		return e.Namespace + "/" + e.Name
	}
	return string(e.Kind) + "/" + e.Name
}

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
// external/NAME or node/NAME (NAME may be *).
type Pattern struct {
	Kind      EndpointKind
	Namespace string // pods only; a name or Wildcard
	Name      string // a name or Wildcard
}

// ErrPattern is wrapped by every pattern syntax error.
var ErrPattern = errors.New("bad endpoint pattern")

// ParsePattern parses an endpoint pattern. A * stands for a whole part:
// "x/*" is a pattern, "x/a*" is not.
func ParsePattern(s string) (Pattern, error) {
	first, second, ok := strings.Cut(s, "/")
	if !ok || strings.Contains(second, "/") {
		return Pattern{}, fmt.Errorf("%w %q: want NAMESPACE/POD, external/NAME or node/NAME", ErrPattern, s)
	}
	var p Pattern
	var err error
	switch first {
	case "external":
		p = Pattern{Kind: KindExternal}
		p.Name, err = patternPart(s, second, "external name", manifest.ValidExternalName)
	case "node":
		p = Pattern{Kind: KindNode}
		p.Name, err = patternPart(s, second, "node name", validation.IsDNS1123Subdomain)
	default:
		p = Pattern{Kind: KindPod}
		p.Namespace, err = patternPart(s, first, "namespace", validation.IsDNS1123Label)
		if err == nil {
			p.Name, err = patternPart(s, second, "pod name", validation.IsDNS1123Subdomain)
		}
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
	if p.Kind == KindPod {
		return p.Namespace + "/" + p.Name
	}
	return string(p.Kind) + "/" + p.Name
}

// Literal reports whether the pattern names one endpoint (has no *).
func (p Pattern) Literal() bool {
	return p.Name != Wildcard && (p.Kind != KindPod || p.Namespace != Wildcard)
}

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
	if p.Kind == KindPod && p.Namespace != Wildcard && p.Namespace != e.Namespace {
		return false
	}
	return p.Name == Wildcard || p.Name == e.Name
}

// AllPods returns */*: every pod, the default of from and to.
func AllPods() Pattern { return Pattern{Kind: KindPod, Namespace: Wildcard, Name: Wildcard} }
