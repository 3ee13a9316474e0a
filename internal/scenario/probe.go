package scenario

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Pair is one (from, to) a probe tests.
type Pair struct{ From, To Endpoint }

func (p Pair) String() string { return p.From.String() + " -> " + p.To.String() }

// Errors Pairs and Expected wrap, for errors.Is.
var (
	ErrNoEndpoint    = errors.New("no such endpoint")
	ErrNoExpectation = errors.New("no expect line matches")
)

func (p *Probe) err(err error) *Error {
	return &Error{File: p.file, Line: p.Line, Step: p.step, Err: err}
}

func (p *Probe) from() []Pattern { return orAllPods(p.From) }
func (p *Probe) to() []Pattern   { return orAllPods(p.To) }

func orAllPods(ps []Pattern) []Pattern {
	if len(ps) == 0 {
		return []Pattern{AllPods()}
	}
	return ps
}

// Pairs enumerates the pairs the probe tests among the endpoints that exist
// at its step, in the order of available (from, then to). An endpoint does
// not probe itself unless both from and to name it literally. A literal
// pattern in from or to that names no available endpoint is an error: the
// scenario probes something that does not exist.
func (p *Probe) Pairs(available []Endpoint) ([]Pair, error) {
	var errs []error
	for _, side := range []struct {
		name  string
		pats  []Pattern
		lines []int
	}{{"from", p.from(), p.fromLine}, {"to", p.to(), p.toLine}} {
		for i, pat := range side.pats {
			if ep, ok := pat.Endpoint(); ok && !slices.Contains(available, ep) {
				e := p.err(fmt.Errorf("%s %s: %w at this step", side.name, pat, ErrNoEndpoint))
				if i < len(side.lines) {
					e.Line = side.lines[i]
				}
				errs = append(errs, e)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	froms, tos := matching(available, p.from()), matching(available, p.to())
	litFrom, litTo := literals(p.from()), literals(p.to())
	var pairs []Pair
	for _, f := range froms {
		for _, t := range tos {
			if f == t && !(litFrom[f] && litTo[t]) {
				continue
			}
			pairs = append(pairs, Pair{From: f, To: t})
		}
	}
	return pairs, nil
}

// matching returns the endpoints any pattern matches, once each, in order.
func matching(available []Endpoint, pats []Pattern) []Endpoint {
	var out []Endpoint
	seen := map[Endpoint]bool{}
	for _, e := range available {
		if seen[e] {
			continue
		}
		for _, pat := range pats {
			if pat.Matches(e) {
				out = append(out, e)
				seen[e] = true
				break
			}
		}
	}
	return out
}

func literals(pats []Pattern) map[Endpoint]bool {
	m := map[Endpoint]bool{}
	for _, pat := range pats {
		if e, ok := pat.Endpoint(); ok {
			m[e] = true
		}
	}
	return m
}

// Expected returns the expectation for a pair: the last expect line that
// matches it wins. A pair no line matches is an error in the scenario,
// never a pass.
func (p *Probe) Expected(pair Pair) (allowed bool, line int, err error) {
	found := false
	for _, e := range p.Expect {
		if e.From.Matches(pair.From) && e.To.Matches(pair.To) {
			allowed, line, found = e.Allowed, e.Line, true
		}
	}
	if !found {
		return false, 0, p.err(fmt.Errorf("%w %s", ErrNoExpectation, pair))
	}
	return allowed, line, nil
}

// Want is the outcome an expectation asks for under the probe's denied mode.
func (p *Probe) Want(allowed bool) Outcome {
	switch {
	case allowed:
		return Outcome{Verdict: Allowed}
	case p.Denied == DeniedDrop:
		return Outcome{Verdict: Denied, Detail: DetailTimeout}
	}
	return Outcome{Verdict: Denied}
}

// Plan returns the probe's pairs among available, each as a Result with
// Want and Line filled in; the lab fills in Got (and Port).
func (p *Probe) Plan(available []Endpoint) ([]Result, error) {
	pairs, err := p.Pairs(available)
	if err != nil {
		return nil, err
	}
	var errs []error
	results := make([]Result, 0, len(pairs))
	for _, pair := range pairs {
		allowed, line, err := p.Expected(pair)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		results = append(results, Result{From: pair.From, To: pair.To, Want: p.Want(allowed), Line: line})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return results, nil
}

// ParseExpectLine parses "<pattern> -> <pattern>: allowed|denied".
func ParseExpectLine(s string) (ExpectLine, error) {
	const syntax = `want "<pattern> -> <pattern>: allowed|denied"`
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return ExpectLine{}, fmt.Errorf("expect %q: %s", s, syntax)
	}
	var e ExpectLine
	switch v := strings.TrimSpace(s[i+1:]); v {
	case "allowed":
		e.Allowed = true
	case "denied":
	default:
		return ExpectLine{}, fmt.Errorf("expect %q: %q is neither allowed nor denied", s, v)
	}
	from, to, ok := strings.Cut(s[:i], "->")
	if !ok || strings.Contains(to, "->") {
		return ExpectLine{}, fmt.Errorf("expect %q: %s", s, syntax)
	}
	var err error
	if e.From, err = ParsePattern(strings.TrimSpace(from)); err != nil {
		return ExpectLine{}, fmt.Errorf("expect %q: %w", s, err)
	}
	if e.To, err = ParsePattern(strings.TrimSpace(to)); err != nil {
		return ExpectLine{}, fmt.Errorf("expect %q: %w", s, err)
	}
	return e, nil
}

// ResolvePort returns the port number a probe targets on a destination
// pod: a number as is, a name through the pod's container ports with that
// name and protocol. ok is false when the pod declares no such port; the
// format reports that pair as denied. A nil pod (a node or an external)
// resolves numbers only.
func ResolvePort(pod *corev1.Pod, port intstr.IntOrString, protocol corev1.Protocol) (int32, bool) {
	if port.Type == intstr.Int {
		return port.IntVal, true
	}
	if pod == nil {
		return 0, false
	}
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			proto := cmp.Or(cp.Protocol, corev1.ProtocolTCP)
			if cp.Name == port.StrVal && proto == protocol {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

// ProbeFamilies returns the families a probe runs in: its own, or each of
// the scenario's ipFamilies in turn.
func (s *Scenario) ProbeFamilies(p *Probe) []Family {
	if p.Family != "" {
		return []Family{p.Family}
	}
	return slices.Clone(s.IPFamilies)
}

// PortProtocol is a port number with its protocol.
type PortProtocol struct {
	Port     int32
	Protocol corev1.Protocol
}

// ProbedPorts returns the numeric (port, protocol) pairs the scenario's
// probes name, sorted. Every pod, external and node listens on each of them,
// besides its declared containerPorts (which cover named ports).
func (s *Scenario) ProbedPorts() []PortProtocol {
	var out []PortProtocol
	for _, st := range s.Steps {
		if st.Probe == nil || st.Probe.Port.Type != intstr.Int {
			continue
		}
		pp := PortProtocol{Port: st.Probe.Port.IntVal, Protocol: st.Probe.Protocol}
		if !slices.Contains(out, pp) {
			out = append(out, pp)
		}
	}
	slices.SortFunc(out, func(a, b PortProtocol) int {
		return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
	})
	return out
}
