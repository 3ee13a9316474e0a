package scenario

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
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
func Parse(file string, data []byte) (*Scenario, error) {
	root, err := parseYAML(data)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.File = file
			return nil, e
		}
		return nil, &Error{File: file, Err: err}
	}
	l := &loader{file: file, lines: map[runtime.Object]int{}, deleteLines: map[[2]int]int{}}
	s := l.scenario(root)
	if len(l.errs) == 0 {
		l.simulate(s)
	}
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	return s, nil
}

// loader holds what reading one file needs: where errors go, and the line
// of each object and delete entry for checks made after parsing.
type loader struct {
	file        string
	step        int      // the step being read, for errors; 0 outside steps
	fams        []Family // the scenario's ipFamilies, once read
	errs        []error
	lines       map[runtime.Object]int
	deleteLines map[[2]int]int // {step, index} -> line
}

func (l *loader) errorf(line int, format string, a ...any) {
	l.errs = append(l.errs, &Error{File: l.file, Line: line, Step: l.step, Err: fmt.Errorf(format, a...)})
}

// str reads a scalar as a string; a number keeps its source text.
func (l *loader) str(v *value, what string) (string, bool) {
	if v.kind != yaml.ScalarNode {
		l.errorf(v.line, "%s must be a string", what)
		return "", false
	}
	switch s := v.scalar.(type) {
	case nil:
		return "", true
	case string:
		return s, true
	}
	return v.text, true
}

// optString reads key of mapping m as a string, if present.
func (l *loader) optString(m *value, key string) (string, int, bool) {
	v, line, ok := m.get(key)
	if !ok {
		return "", 0, false
	}
	s, ok := l.str(v, key)
	return s, line, ok
}

// list reads a sequence. With single, a lone scalar or mapping stands for a
// list of one, as in `from: x/a`.
func (l *loader) list(v *value, what string, single bool) []*value {
	switch {
	case v.kind == yaml.SequenceNode:
		return v.items
	case v.kind == yaml.ScalarNode && v.scalar == nil:
		return nil
	case single:
		return []*value{v}
	}
	l.errorf(v.line, "%s must be a list", what)
	return nil
}

// fields checks that v is a mapping with only known keys, and returns
// its entries by key.
func (l *loader) fields(v *value, what string, known ...string) map[string]*value {
	if v.kind != yaml.MappingNode {
		l.errorf(v.line, "%s must be a mapping", what)
		return nil
	}
	out := map[string]*value{}
	for _, f := range v.fields {
		if !slices.Contains(known, f.key) {
			l.errorf(f.line, "unknown key %q in %s (known: %s)", f.key, what, strings.Join(known, ", "))
			continue
		}
		out[f.key] = f.val
	}
	return out
}

func (l *loader) scenario(root *value) *Scenario {
	s := &Scenario{File: l.file}
	if root == nil {
		l.errorf(1, "empty file: a scenario needs at least a name")
		return s
	}
	top := l.fields(root, "a scenario", "name", "description", "nodes", "ipFamilies", "objects", "externals", "steps")
	if top == nil {
		return s
	}
	if v, ok := top["name"]; ok {
		s.Name, _ = l.str(v, "name")
	}
	if s.Name == "" {
		l.errorf(root.line, "name is required")
	}
	if v, ok := top["description"]; ok {
		s.Description, _ = l.str(v, "description")
	}
	s.IPFamilies = l.families(top["ipFamilies"])
	l.fams = s.IPFamilies
	var listed []string
	if v, ok := top["nodes"]; ok {
		listed = l.nodeNames(v)
	}
	var objects []runtime.Object
	if v, ok := top["objects"]; ok {
		objects = l.objects(v, "objects")
	}
	if v, ok := top["externals"]; ok {
		s.Externals = l.externals(v)
	}
	if v, ok := top["steps"]; ok {
		for i, item := range l.list(v, "steps", false) {
			s.Steps = append(s.Steps, l.stepAt(i+1, item))
		}
	}
	s.Nodes, s.Objects = assemble(listed, objects, s.Steps)
	return s
}

func (l *loader) families(v *value) []Family {
	if v == nil {
		return []Family{IPv4}
	}
	var out []Family
	for _, item := range l.list(v, "ipFamilies", true) {
		s, ok := l.str(item, "an IP family")
		if !ok {
			continue
		}
		switch f := Family(s); {
		case f != IPv4 && f != IPv6:
			l.errorf(item.line, "ipFamilies: %q is not IPv4 or IPv6", s)
		case slices.Contains(out, f):
			l.errorf(item.line, "ipFamilies: %s twice", s)
		default:
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		l.errorf(v.line, "ipFamilies is empty; omit it for [IPv4]")
		return []Family{IPv4}
	}
	return out
}

func (l *loader) nodeNames(v *value) []string {
	var out []string
	for _, item := range l.list(v, "nodes", true) {
		name, ok := l.str(item, "a node name")
		if !ok {
			continue
		}
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			l.errorf(item.line, "node name %q: %s", name, strings.Join(errs, "; "))
		} else if slices.Contains(out, name) {
			l.errorf(item.line, "node %q listed twice", name)
		} else {
			out = append(out, name)
		}
	}
	return out
}

// objects decodes a list of objects; a second object with the same kind,
// namespace and name in one list is an error, as a second create would be.
func (l *loader) objects(v *value, what string) []runtime.Object {
	var out []runtime.Object
	seen := map[ObjectRef]int{}
	for _, item := range l.list(v, what, false) {
		obj := l.decodeObject(item)
		if obj == nil {
			continue
		}
		ref := RefOf(obj)
		if first, dup := seen[ref]; dup {
			l.errorf(item.line, "%s is already in this list (line %d)", ref, first)
			continue
		}
		seen[ref] = item.line
		l.lines[obj] = item.line
		l.checkAddresses(obj, item)
		out = append(out, obj)
	}
	return out
}

// checkAddresses checks the addresses the file gives pods and nodes: they
// must parse, be of the scenario's families, and a pod has at most one per
// family (as the API server requires).
func (l *loader) checkAddresses(obj runtime.Object, v *value) {
	check := func(s string, path []any) (netip.Addr, bool) {
		line := orLine(v.lookup(path), v.line)
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			l.errorf(line, "%s: %v", RefOf(obj), err)
		case a.Zone() != "" || a.Is4In6():
			l.errorf(line, "%s: %s: write a plain IPv4 or IPv6 address", RefOf(obj), s)
		case !slices.Contains(l.fams, FamilyOf(a)):
			l.errorf(line, "%s: %s is %s, not in ipFamilies %v", RefOf(obj), s, FamilyOf(a), l.fams)
		default:
			return a, true
		}
		return netip.Addr{}, false
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		var fams []Family
		for i, ip := range o.Status.PodIPs {
			a, ok := check(ip.IP, []any{"status", "podIPs", i, "ip"})
			if !ok {
				continue
			}
			if slices.Contains(fams, FamilyOf(a)) {
				l.errorf(orLine(v.lookup([]any{"status", "podIPs", i}), v.line), "%s: podIPs has two %s addresses", RefOf(obj), FamilyOf(a))
			}
			fams = append(fams, FamilyOf(a))
		}
		if len(o.Status.PodIPs) > 0 && o.Status.PodIP != o.Status.PodIPs[0].IP {
			l.errorf(orLine(v.lookup([]any{"status", "podIP"}), v.line), "%s: podIP %s is not podIPs[0] %s", RefOf(obj), o.Status.PodIP, o.Status.PodIPs[0].IP)
		}
	case *corev1.Node:
		for i, a := range o.Status.Addresses {
			if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
				check(a.Address, []any{"status", "addresses", i, "address"})
			}
		}
	}
}

func (l *loader) externals(v *value) []External {
	var out []External
	for _, item := range l.list(v, "externals", false) {
		f := l.fields(item, "an external", "name", "ips")
		if f == nil {
			continue
		}
		var e External
		if nv, ok := f["name"]; ok {
			e.Name, _ = l.str(nv, "name")
		}
		if errs := validExternalName(e.Name); len(errs) > 0 {
			l.errorf(item.line, "external name %q: %s", e.Name, strings.Join(errs, "; "))
			continue
		}
		if slices.ContainsFunc(out, func(o External) bool { return o.Name == e.Name }) {
			l.errorf(item.line, "external %q declared twice", e.Name)
			continue
		}
		ips, ok := f["ips"]
		if !ok {
			l.errorf(item.line, "external %s has no ips", e.Name)
			continue
		}
		for _, iv := range l.list(ips, "ips", true) {
			s, ok := l.str(iv, "an address")
			if !ok {
				continue
			}
			a, err := netip.ParseAddr(s)
			switch {
			case err != nil:
				l.errorf(iv.line, "external %s: %v", e.Name, err)
			case a.Zone() != "" || a.Is4In6():
				l.errorf(iv.line, "external %s: %s: write a plain IPv4 or IPv6 address", e.Name, s)
			case !slices.Contains(l.fams, FamilyOf(a)):
				l.errorf(iv.line, "external %s: %s is %s, not in ipFamilies %v", e.Name, s, FamilyOf(a), l.fams)
			default:
				e.IPs = append(e.IPs, a)
			}
		}
		if len(l.list(ips, "ips", true)) == 0 {
			l.errorf(ips.line, "external %s has no ips", e.Name)
		}
		out = append(out, e)
	}
	return out
}

func (l *loader) stepAt(num int, v *value) Step {
	l.step = num
	defer func() { l.step = 0 }()
	st := Step{Number: num, Line: v.line}
	f := l.fields(v, "a step", "note", "apply", "delete", "probe")
	if f == nil {
		return st
	}
	if nv, ok := f["note"]; ok {
		st.Note, _ = l.str(nv, "note")
	}
	if av, ok := f["apply"]; ok {
		st.Apply = l.objects(av, "apply")
	}
	if dv, ok := f["delete"]; ok {
		for _, item := range l.list(dv, "delete", false) {
			if ref, ok := l.ref(item); ok {
				l.deleteLines[[2]int{num, len(st.Delete)}] = item.line
				st.Delete = append(st.Delete, ref)
			}
		}
	}
	if pv, ok := f["probe"]; ok {
		_, keyLine, _ := v.get("probe")
		st.Probe = l.probe(pv, keyLine)
	}
	if f["apply"] == nil && f["delete"] == nil && f["probe"] == nil {
		l.errorf(v.line, "a step needs apply, delete or probe")
	}
	return st
}

func (l *loader) ref(v *value) (ObjectRef, bool) {
	f := l.fields(v, "a delete entry", "kind", "namespace", "name")
	if f == nil {
		return ObjectRef{}, false
	}
	var r ObjectRef
	for _, kv := range []struct {
		key string
		dst *string
	}{{"kind", &r.Kind}, {"namespace", &r.Namespace}, {"name", &r.Name}} {
		if fv, ok := f[kv.key]; ok {
			*kv.dst, _ = l.str(fv, kv.key)
		}
	}
	if Namespaced(r.Kind) && r.Namespace == "" {
		r.Namespace = corev1.NamespaceDefault // as kubectl delete does
	}
	if err := r.validate(); err != nil {
		l.errorf(v.line, "%v", err)
		return ObjectRef{}, false
	}
	return r, true
}

// probe reads a probe; line is that of its key, which errors name.
func (l *loader) probe(v *value, line int) *Probe {
	p := &Probe{Line: line, Protocol: corev1.ProtocolTCP, Denied: DeniedAny, file: l.file, step: l.step}
	f := l.fields(v, "a probe", "port", "protocol", "family", "from", "to", "expect", "denied")
	if f == nil {
		return p
	}
	if pv, ok := f["port"]; ok {
		p.Port = l.port(pv)
	} else {
		l.errorf(line, "probe has no port")
	}
	if pv, ok := f["protocol"]; ok {
		s, _ := l.str(pv, "protocol")
		switch pr := corev1.Protocol(s); pr {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
			p.Protocol = pr
		default:
			l.errorf(pv.line, "protocol %q is not TCP, UDP or SCTP", s)
		}
	}
	if fv, ok := f["family"]; ok {
		s, _ := l.str(fv, "family")
		if !slices.Contains(l.fams, Family(s)) {
			l.errorf(fv.line, "family %q is not one of ipFamilies %v", s, l.fams)
		} else {
			p.Family = Family(s)
		}
	}
	if dv, ok := f["denied"]; ok {
		s, _ := l.str(dv, "denied")
		switch d := DeniedMode(s); d {
		case DeniedAny, DeniedDrop:
			p.Denied = d
		default:
			l.errorf(dv.line, "denied %q is not any or drop", s)
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
	var items []*value
	if ev, ok := f["expect"]; ok {
		items = l.list(ev, "expect", true)
	}
	for _, item := range items {
		if e, ok := l.expectLine(item); ok {
			p.Expect = append(p.Expect, e)
		}
	}
	if len(items) == 0 {
		l.errorf(line, "probe has no expect lines")
	}
	return p
}

func (l *loader) port(v *value) intstr.IntOrString {
	switch n := v.scalar.(type) {
	case int:
		if errs := validation.IsValidPortNum(n); len(errs) > 0 {
			l.errorf(v.line, "port %d: %s", n, strings.Join(errs, "; "))
		}
		return intstr.FromInt32(int32(n))
	case string:
		if errs := validation.IsValidPortName(n); len(errs) > 0 {
			l.errorf(v.line, "port %q: %s", n, strings.Join(errs, "; "))
		}
		return intstr.FromString(n)
	}
	l.errorf(v.line, "port must be a number or a port name, not %s", v.text)
	return intstr.IntOrString{}
}

// patterns reads from or to, with the line of each pattern; nil when
// absent (every pod).
func (l *loader) patterns(v *value, what string) ([]Pattern, []int) {
	if v == nil {
		return nil, nil
	}
	items := l.list(v, what, true)
	if len(items) == 0 {
		l.errorf(v.line, "%s is empty; omit it to mean every pod", what)
		return nil, nil
	}
	var out []Pattern
	var lines []int
	for _, item := range items {
		s, ok := l.str(item, "an endpoint pattern")
		if !ok {
			continue
		}
		p, err := ParsePattern(s)
		if err != nil {
			l.errorf(item.line, "%s: %v", what, err)
			continue
		}
		out = append(out, p)
		lines = append(lines, item.line)
	}
	return out, lines
}

// expectLine reads "<pattern> -> <pattern>: allowed|denied". It also takes
// the line written unquoted, which YAML reads as a one-entry mapping.
func (l *loader) expectLine(v *value) (ExpectLine, bool) {
	var s string
	switch {
	case v.kind == yaml.MappingNode && len(v.fields) == 1 && v.fields[0].val.kind == yaml.ScalarNode:
		s = v.fields[0].key + ": " + v.fields[0].val.text
	default:
		var ok bool
		if s, ok = l.str(v, "an expect line"); !ok {
			return ExpectLine{}, false
		}
	}
	e, err := ParseExpectLine(s)
	if err != nil {
		l.errorf(v.line, "%v", err)
		return ExpectLine{}, false
	}
	e.Line = v.line
	return e, true
}

// assemble orders the starting objects: Nodes first, in nodes order (the
// file's list, then Node objects it did not list, else [node-1]), with a
// default Node for each name without an object; then the "default"
// Namespace if the file uses it without declaring it, as every cluster has
// it; then the file's other objects.
func assemble(listed []string, objects []runtime.Object, steps []Step) ([]string, []runtime.Object) {
	names := slices.Clone(listed)
	given := map[string]*corev1.Node{}
	for _, o := range objects {
		if n, ok := o.(*corev1.Node); ok {
			given[n.Name] = n
			if !slices.Contains(names, n.Name) {
				names = append(names, n.Name)
			}
		}
	}
	if len(names) == 0 {
		names = []string{"node-1"}
	}
	var out []runtime.Object
	for _, name := range names {
		if n, ok := given[name]; ok {
			out = append(out, n)
		} else {
			out = append(out, defaultNode(name))
		}
	}
	usesDefault, hasDefault := false, false
	check := func(o runtime.Object) {
		ref := RefOf(o)
		usesDefault = usesDefault || ref.Namespace == corev1.NamespaceDefault
		hasDefault = hasDefault || ref == ObjectRef{Kind: "Namespace", Name: corev1.NamespaceDefault}
	}
	for _, o := range objects {
		check(o)
	}
	hasDefaultAtStart := hasDefault
	for _, st := range steps {
		for _, o := range st.Apply {
			check(o)
		}
	}
	if usesDefault && !hasDefaultAtStart {
		out = append(out, defaultNamespaceObject())
	}
	for _, o := range objects {
		if _, ok := o.(*corev1.Node); !ok {
			out = append(out, o)
		}
	}
	return names, out
}

// simulate walks the steps over a State, checking each against the cluster
// it meets: references exist, deletes name existing objects, and every
// probe has pairs and an expectation for each.
func (l *loader) simulate(s *Scenario) {
	st := NewState()
	for _, o := range s.Objects {
		if err := st.Apply(o); err != nil {
			l.errorf(l.lines[o], "%v", err)
		}
	}
	for _, o := range s.Objects {
		if err := st.checkRefs(o); err != nil {
			l.errorf(l.lines[o], "%v", err)
		}
	}
	for i := range s.Steps {
		step := &s.Steps[i]
		l.step = step.Number
		for _, o := range step.Apply {
			if err := st.Apply(o); err != nil {
				l.errorf(l.lines[o], "%v", err)
			}
		}
		for _, o := range step.Apply {
			if err := st.checkRefs(o); err != nil {
				l.errorf(l.lines[o], "%v", err)
			}
		}
		for j, ref := range step.Delete {
			if _, err := st.Delete(ref); err != nil {
				l.errorf(l.deleteLines[[2]int{step.Number, j}], "delete: %v", err)
			}
		}
		if p := step.Probe; p != nil {
			results, err := p.Plan(st.Endpoints(s.Externals))
			switch {
			case err != nil:
				l.errs = append(l.errs, err)
			case len(results) == 0:
				l.errorf(p.Line, "probe tests no pair: from and to match no two endpoints")
			}
		}
	}
	l.step = 0
}
