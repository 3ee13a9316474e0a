package scenario

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/nftpolicy/nftpolicy/internal/manifest"
)

// Load reads, checks and defaults one scenario file. Its errors are
// *Error values (several joined with errors.Join) that name the file, the
// line and, inside steps, the step.
func Load(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Err: err}
	}
	return Parse(path, data)
}

// LoadAll loads files, and the *.yaml and *.yml files of directories (not
// recursively, sorted by name), in argument order. Scenario names must be
// unique within a directory. It returns the scenarios that loaded along
// with the errors of those that did not, so that a runner can run the
// former and count the latter as failed.
func LoadAll(paths ...string) ([]*Scenario, error) {
	var files []string
	var errs []error
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, &Error{File: p, Err: err})
			continue
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			errs = append(errs, &Error{File: p, Err: err})
			continue
		}
		for _, e := range entries { // ReadDir sorts by name
			ext := filepath.Ext(e.Name())
			if !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	var out []*Scenario
	names := map[[2]string]string{} // {dir, name} -> file
	seen := map[string]bool{}
	for _, f := range files {
		if seen[filepath.Clean(f)] {
			continue
		}
		seen[filepath.Clean(f)] = true
		s, err := Load(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		key := [2]string{filepath.Dir(filepath.Clean(f)), s.Name}
		if other, dup := names[key]; dup {
			errs = append(errs, &Error{File: f, Err: fmt.Errorf("name %q is taken by %s", s.Name, other)})
			continue
		}
		names[key] = f
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

// Parse is Load for data already read; file names it in errors.
// internal/manifest reads the cluster and the steps' objects; Parse reads
// the probes, then walks the steps to check that every probe has pairs and
// an expectation for each.
func Parse(file string, data []byte) (*Scenario, error) {
	c, errs := manifest.ReadCluster(file, data)
	if c == nil {
		return nil, errs[0]
	}
	s := &Scenario{Cluster: c}
	l := &probeReader{Reader: &manifest.Reader{File: file}, fams: c.IPFamilies}
	for _, cs := range c.Steps {
		st := Step{Number: cs.Number, Line: cs.Line, Note: cs.Note, Apply: cs.Apply, Delete: cs.Delete, DNS: cs.DNS, DNSChange: cs.DNSChange, Wait: cs.Wait, Disconnect: cs.Disconnect, Reconnect: cs.Reconnect}
		if cs.Probe != nil {
			l.Step = cs.Number
			st.Probe = l.probe(cs.Probe, cs.ProbeLine)
		}
		s.Steps = append(s.Steps, st)
	}
	errs = append(errs, l.Errs...)
	if len(errs) == 0 && c.Members != nil {
		errs = s.checkClusterSetProbes()
	} else if len(errs) == 0 {
		errs = c.Walk(func(r *manifest.Reader, cs *manifest.Step, st *manifest.State) {
			eps := append(Endpoints(st, s.Externals), DNSEndpoints(s.Cluster, cs.Number)...)
			checkProbe(r, s.Steps[cs.Number-1].Probe, eps)
		})
	}
	if len(errs) > 0 {
		return nil, errors.Join(sortedByLine(errs)...)
	}
	return s, nil
}

// checkClusterSetProbes walks every cluster of a file with clusters and
// checks each probe against the endpoints of all of them at its step.
func (s *Scenario) checkClusterSetProbes() []error {
	var errs []error
	eps := make([][]Endpoint, len(s.Steps)+1)
	for _, m := range s.Members {
		errs = append(errs, m.Walk(func(_ *manifest.Reader, cs *manifest.Step, st *manifest.State) {
			eps[cs.Number] = append(eps[cs.Number], InCluster(m.Name, Endpoints(st, nil))...)
		})...)
	}
	if len(errs) > 0 {
		return errs
	}
	r := &manifest.Reader{File: s.File}
	for _, st := range s.Steps {
		r.Step = st.Number
		checkProbe(r, st.Probe, eps[st.Number])
	}
	return r.Errs
}

// InCluster returns eps as endpoints of cluster.
func InCluster(cluster string, eps []Endpoint) []Endpoint {
	for i := range eps {
		eps[i].Cluster = cluster
	}
	return eps
}

// sortedByLine orders errors as the file does: the cluster's and the
// probes' are read apart.
func sortedByLine(errs []error) []error {
	line := func(err error) int {
		var e *manifest.Error
		if errors.As(err, &e) {
			return e.Line
		}
		return 0
	}
	return slices.SortedStableFunc(slices.Values(errs), func(a, b error) int { return cmp.Compare(line(a), line(b)) })
}

// checkProbe checks that a probe, at the State of its step, tests some
// pair and has an expectation for each.
func checkProbe(r *manifest.Reader, p *Probe, available []Endpoint) {
	if p == nil {
		return
	}
	results, err := p.Plan(available)
	switch {
	case err != nil:
		r.Errs = append(r.Errs, err)
	case len(results) == 0:
		r.Errorf(p.Line, "probe tests no pair: from and to match no two endpoints")
	}
}

// probeReader reads the probes of a file's steps.
type probeReader struct {
	*manifest.Reader
	fams []Family // the scenario's ipFamilies
}

// probe reads a probe; line is that of its key, which errors name.
func (l *probeReader) probe(v *manifest.Value, line int) *Probe {
	p := &Probe{Line: line, Protocol: corev1.ProtocolTCP, Denied: DeniedAny, file: l.File, step: l.Step}
	f := l.Fields(v, "a probe", "port", "protocol", "family", "from", "to", "expect", "denied", "resolve")
	if f == nil {
		return p
	}
	if pv, ok := f["port"]; ok {
		p.Port = l.port(pv)
	} else {
		l.Errorf(line, "probe has no port")
	}
	if pv, ok := f["protocol"]; ok {
		s, _ := l.Str(pv, "protocol")
		switch pr := corev1.Protocol(s); pr {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
			p.Protocol = pr
		default:
			l.Errorf(pv.Line, "protocol %q is not TCP, UDP or SCTP", s)
		}
	}
	if fv, ok := f["family"]; ok {
		s, _ := l.Str(fv, "family")
		if !slices.Contains(l.fams, Family(s)) {
			l.Errorf(fv.Line, "family %q is not one of ipFamilies %v", s, l.fams)
		} else {
			p.Family = Family(s)
		}
	}
	if dv, ok := f["denied"]; ok {
		s, _ := l.Str(dv, "denied")
		switch d := DeniedMode(s); d {
		case DeniedAny, DeniedDrop:
			p.Denied = d
		default:
			l.Errorf(dv.Line, "denied %q is not any or drop", s)
		}
	}
	if rv, ok := f["resolve"]; ok {
		switch s, _ := l.Str(rv, "resolve"); s {
		case "true":
		case "false":
			p.NoResolve = true
		default:
			l.Errorf(rv.Line, "resolve %q is not true or false", s)
		}
	}
	p.From, p.fromLine = l.patterns(f["from"], "from")
	p.To, p.toLine = l.patterns(f["to"], "to")
	if p.From == nil {
		p.From = []Pattern{AllPods()}
	}
	if p.To == nil {
		p.To = []Pattern{AllPods()}
	}
	var items []*manifest.Value
	if ev, ok := f["expect"]; ok {
		items = l.List(ev, "expect", true)
	}
	for _, item := range items {
		if e, ok := l.expectLine(item); ok {
			p.Expect = append(p.Expect, e)
		}
	}
	if len(items) == 0 {
		l.Errorf(line, "probe has no expect lines")
	}
	return p
}

func (l *probeReader) port(v *manifest.Value) intstr.IntOrString {
	switch n := v.Scalar.(type) {
	case int:
		if errs := validation.IsValidPortNum(n); len(errs) > 0 {
			l.Errorf(v.Line, "port %d: %s", n, strings.Join(errs, "; "))
		}
		return intstr.FromInt32(int32(n))
	case string:
		if errs := validation.IsValidPortName(n); len(errs) > 0 {
			l.Errorf(v.Line, "port %q: %s", n, strings.Join(errs, "; "))
		}
		return intstr.FromString(n)
	}
	l.Errorf(v.Line, "port must be a number or a port name, not %s", v.Text)
	return intstr.IntOrString{}
}

// patterns reads from or to, with the line of each pattern; nil when
// absent (every pod).
func (l *probeReader) patterns(v *manifest.Value, what string) ([]Pattern, []int) {
	if v == nil {
		return nil, nil
	}
	items := l.List(v, what, true)
	if len(items) == 0 {
		l.Errorf(v.Line, "%s is empty; omit it to mean every pod", what)
		return nil, nil
	}
	var out []Pattern
	var lines []int
	for _, item := range items {
		s, ok := l.Str(item, "an endpoint pattern")
		if !ok {
			continue
		}
		p, err := ParsePattern(s)
		if err != nil {
			l.Errorf(item.Line, "%s: %v", what, err)
			continue
		}
		if what == "from" && p.IsTarget() {
			l.Errorf(item.Line, "from: %s is a Service target: Services are probed (to), they never send", p)
			continue
		}
		out = append(out, p)
		lines = append(lines, item.Line)
	}
	return out, lines
}

// expectLine reads "<pattern> -> <pattern>: allowed|denied". It also takes
// the line written unquoted, which YAML reads as a one-entry mapping.
func (l *probeReader) expectLine(v *manifest.Value) (ExpectLine, bool) {
	var s string
	switch {
	case v.Kind == yaml.MappingNode && len(v.Fields) == 1 && v.Fields[0].Val.Kind == yaml.ScalarNode:
		s = v.Fields[0].Key + ": " + v.Fields[0].Val.Text
	default:
		var ok bool
		if s, ok = l.Str(v, "an expect line"); !ok {
			return ExpectLine{}, false
		}
	}
	e, err := ParseExpectLine(s)
	if err != nil {
		l.Errorf(v.Line, "%v", err)
		return ExpectLine{}, false
	}
	if e.From.IsTarget() {
		l.Errorf(v.Line, "expect %q: %s is a Service target: Services are probed (to), they never send", s, e.From)
		return ExpectLine{}, false
	}
	e.Line = v.Line
	return e, true
}

// Endpoints returns what in a State can send and answer probes: pods
// (hostNetwork pods excepted: they are their node's endpoint) sorted by
// namespace and name, then nodes in creation order, then externals, then
// the Service targets (answering only): every Service's cluster IP, and
// the node port of every NodePort Service on every node.
func Endpoints(s *manifest.State, externals []External) []Endpoint {
	return EndpointsOf(s.Objects(), externals)
}

// DNSRecordsAt are the name server's records after step n's changes (n
// 0: the file's own), by name.
func DNSRecordsAt(c *manifest.Cluster, n int) map[string]manifest.DNSRecord {
	if c.DNS == nil {
		return nil
	}
	out := map[string]manifest.DNSRecord{}
	for _, r := range c.DNS.Records {
		out[r.Name] = r
	}
	for _, st := range c.Steps[:min(n, len(c.Steps))] {
		for _, r := range st.DNS {
			if len(r.IPs) == 0 && r.CNAME == "" {
				delete(out, r.Name)
			} else {
				out[r.Name] = r
			}
		}
	}
	return out
}

// DNSEndpoints are the names the name server answers for after step n.
func DNSEndpoints(c *manifest.Cluster, n int) []Endpoint {
	var out []Endpoint
	for _, name := range slices.Sorted(maps.Keys(DNSRecordsAt(c, n))) {
		out = append(out, DNSEndpoint(name))
	}
	return out
}

// EndpointsOf is Endpoints over a list of objects (nodes in list order).
func EndpointsOf(objs []runtime.Object, externals []External) []Endpoint {
	var pods, nodes, svcs []Endpoint
	var nodePorts []*corev1.Service
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Pod:
			if !o.Spec.HostNetwork {
				pods = append(pods, PodEndpoint(o.Namespace, o.Name))
				// Its secondary networks (a bad annotation is the loader's error).
				reqs, _ := manifest.Requests(o)
				for _, r := range reqs {
					_, net, _ := strings.Cut(r.Network, "/")
					pods = append(pods, Endpoint{Kind: KindPod, Namespace: o.Namespace, Name: o.Name, Network: net})
				}
			}
		case *corev1.Node:
			nodes = append(nodes, NodeEndpoint(o.Name))
		case *corev1.Service:
			svcs = append(svcs, ServiceEndpoint(o.Namespace, o.Name))
			if o.Spec.Type == corev1.ServiceTypeNodePort {
				nodePorts = append(nodePorts, o)
			}
		}
	}
	byName := func(a, b Endpoint) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Network, b.Network))
	}
	slices.SortFunc(pods, byName)
	slices.SortFunc(svcs, byName)
	out := append(pods, nodes...)
	for _, e := range externals {
		out = append(out, ExternalEndpoint(e.Name))
	}
	out = append(out, svcs...)
	for _, n := range nodes {
		for _, svc := range nodePorts {
			out = append(out, NodePortEndpoint(n.Name, svc.Namespace, svc.Name))
		}
	}
	return out
}
