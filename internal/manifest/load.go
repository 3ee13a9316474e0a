package manifest

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
)

// LoadCluster reads a scenario file for its cluster; see ParseCluster.
func LoadCluster(path string) (*Cluster, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Err: err}
	}
	return ParseCluster(path, data)
}

// ParseCluster reads, checks and defaults a scenario file's cluster and
// steps, and walks the steps to check each against the cluster it meets
// (references exist, deletes name existing objects). Probes are not read.
// Its errors are *Error values (several joined with errors.Join) that name
// the file, the line and, inside steps, the step.
func ParseCluster(file string, data []byte) (*Cluster, error) {
	c, errs := ReadCluster(file, data)
	if len(errs) == 0 {
		errs = c.Walk(nil)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// ReadCluster is ParseCluster without the walk, for a reader of the
// probes (internal/scenario) that walks with checks of its own. A nil
// Cluster means the file is not YAML the format can read.
func ReadCluster(file string, data []byte) (*Cluster, []error) {
	root, err := parseYAML(data)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.File = file
			return nil, []error{e}
		}
		return nil, []error{&Error{File: file, Err: err}}
	}
	l := &loader{Reader: Reader{File: file}, lines: map[runtime.Object]int{}, deleteLines: map[[2]int]int{}}
	c := l.cluster(root)
	c.lines, c.deleteLines = l.lines, l.deleteLines
	return c, l.Errs
}

// loader reads one file: its Reader collects the errors, and it keeps the
// line of each object and delete entry for the checks of Walk.
type loader struct {
	Reader
	fams        []Family  // the file's ipFamilies, once read
	nets        []Network // the file's networks, once read
	clusterSet  *Cluster  // the file's Cluster, when it has clusters
	lines       map[runtime.Object]int
	deleteLines map[[2]int]int // {step, index} -> line
}

func (l *loader) cluster(root *Value) *Cluster {
	s := &Cluster{File: l.File}
	if root == nil {
		l.Errorf(1, "empty file: a scenario needs at least a name")
		return s
	}
	top := l.Fields(root, "a scenario", "name", "description", "nodes", "ipFamilies", "networks", "objects", "externals", "dns", "steps", "clusters", "clusterSet")
	if top == nil {
		return s
	}
	if v, ok := top["name"]; ok {
		s.Name, _ = l.Str(v, "name")
	}
	if s.Name == "" {
		l.Errorf(root.Line, "name is required")
	}
	if v, ok := top["description"]; ok {
		s.Description, _ = l.Str(v, "description")
	}
	s.IPFamilies = l.families(top["ipFamilies"])
	l.fams = s.IPFamilies
	if v, ok := top["clusters"]; ok {
		l.members(s, top, v)
		return s
	}
	if v, ok := top["clusterSet"]; ok {
		l.Errorf(v.Line, "clusterSet needs clusters")
	}
	var listed []string
	if v, ok := top["nodes"]; ok {
		listed = l.nodeNames(v)
	}
	if v, ok := top["networks"]; ok {
		s.Networks = l.networks(v)
		l.nets = s.Networks
	}
	var objects []runtime.Object
	if v, ok := top["objects"]; ok {
		objects = l.objects(v, "objects")
	}
	if v, ok := top["externals"]; ok {
		s.Externals = l.externals(v)
		l.checkExternals(s.Externals, v)
	}
	if v, ok := top["dns"]; ok {
		s.DNS = l.dns(v, s.Externals)
	}
	if v, ok := top["steps"]; ok {
		for i, item := range l.List(v, "steps", false) {
			s.Steps = append(s.Steps, l.stepAt(i+1, item))
		}
	}
	s.Nodes, s.Objects = assemble(listed, objects, s.Steps)
	return s
}

func (l *loader) families(v *Value) []Family {
	if v == nil {
		return []Family{IPv4}
	}
	var out []Family
	for _, item := range l.List(v, "ipFamilies", true) {
		s, ok := l.Str(item, "an IP family")
		if !ok {
			continue
		}
		switch f := Family(s); {
		case f != IPv4 && f != IPv6:
			l.Errorf(item.Line, "ipFamilies: %q is not IPv4 or IPv6", s)
		case slices.Contains(out, f):
			l.Errorf(item.Line, "ipFamilies: %s twice", s)
		default:
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		l.Errorf(v.Line, "ipFamilies is empty; omit it for [IPv4]")
		return []Family{IPv4}
	}
	return out
}

func (l *loader) nodeNames(v *Value) []string {
	var out []string
	for _, item := range l.List(v, "nodes", true) {
		name, ok := l.Str(item, "a node name")
		if !ok {
			continue
		}
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			l.Errorf(item.Line, "node name %q: %s", name, strings.Join(errs, "; "))
		} else if slices.Contains(out, name) {
			l.Errorf(item.Line, "node %q listed twice", name)
		} else {
			out = append(out, name)
		}
	}
	return out
}

// objects decodes a list of objects; a second object with the same kind,
// namespace and name in one list is an error, as a second create would be.
func (l *loader) objects(v *Value, what string) []runtime.Object {
	var out []runtime.Object
	seen := map[ObjectRef]int{}
	for _, item := range l.List(v, what, false) {
		obj := l.decodeObject(item)
		if obj == nil {
			continue
		}
		ref := RefOf(obj)
		if first, dup := seen[ref]; dup {
			l.Errorf(item.Line, "%s is already in this list (line %d)", ref, first)
			continue
		}
		seen[ref] = item.Line
		l.lines[obj] = item.Line
		l.checkAddresses(obj, item)
		l.checkNetworks(obj, item)
		out = append(out, obj)
	}
	return out
}

// checkAddresses checks the addresses the file gives pods and nodes: they
// must parse, be of the scenario's families, and a pod has at most one per
// family (as the API server requires).
func (l *loader) checkAddresses(obj runtime.Object, v *Value) {
	check := func(s string, path []any) (netip.Addr, bool) {
		line := orLine(v.Lookup(path), v.Line)
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			l.Errorf(line, "%s: %v", RefOf(obj), err)
		case a.Zone() != "" || a.Is4In6():
			l.Errorf(line, "%s: %s: write a plain IPv4 or IPv6 address", RefOf(obj), s)
		case !slices.Contains(l.fams, FamilyOf(a)):
			l.Errorf(line, "%s: %s is %s, not in ipFamilies %v", RefOf(obj), s, FamilyOf(a), l.fams)
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
				l.Errorf(orLine(v.Lookup([]any{"status", "podIPs", i}), v.Line), "%s: podIPs has two %s addresses", RefOf(obj), FamilyOf(a))
			}
			fams = append(fams, FamilyOf(a))
		}
		if len(o.Status.PodIPs) > 0 && o.Status.PodIP != o.Status.PodIPs[0].IP {
			l.Errorf(orLine(v.Lookup([]any{"status", "podIP"}), v.Line), "%s: podIP %s is not podIPs[0] %s", RefOf(obj), o.Status.PodIP, o.Status.PodIPs[0].IP)
		}
	case *corev1.Node:
		for i, a := range o.Status.Addresses {
			if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
				check(a.Address, []any{"status", "addresses", i, "address"})
			}
		}
	}
}

func (l *loader) externals(v *Value) []External {
	var out []External
	for _, item := range l.List(v, "externals", false) {
		f := l.Fields(item, "an external", "name", "ips", "network")
		if f == nil {
			continue
		}
		var e External
		if nv, ok := f["name"]; ok {
			e.Name, _ = l.Str(nv, "name")
		}
		if errs := ValidExternalName(e.Name); len(errs) > 0 {
			l.Errorf(item.Line, "external name %q: %s", e.Name, strings.Join(errs, "; "))
			continue
		}
		if slices.ContainsFunc(out, func(o External) bool { return o.Name == e.Name }) {
			l.Errorf(item.Line, "external %q declared twice", e.Name)
			continue
		}
		if nv, ok := f["network"]; ok {
			e.Network, _ = l.Str(nv, "network")
			if !slices.ContainsFunc(l.nets, func(n Network) bool { return n.Name == e.Network }) {
				l.Errorf(nv.Line, "external %s: no network %q", e.Name, e.Network)
			}
		}
		ips, ok := f["ips"]
		if !ok {
			l.Errorf(item.Line, "external %s has no ips", e.Name)
			continue
		}
		for _, iv := range l.List(ips, "ips", true) {
			s, ok := l.Str(iv, "an address")
			if !ok {
				continue
			}
			a, err := netip.ParseAddr(s)
			switch {
			case err != nil:
				l.Errorf(iv.Line, "external %s: %v", e.Name, err)
			case a.Zone() != "" || a.Is4In6():
				l.Errorf(iv.Line, "external %s: %s: write a plain IPv4 or IPv6 address", e.Name, s)
			case !slices.Contains(l.fams, FamilyOf(a)):
				l.Errorf(iv.Line, "external %s: %s is %s, not in ipFamilies %v", e.Name, s, FamilyOf(a), l.fams)
			default:
				e.IPs = append(e.IPs, a)
			}
		}
		if len(l.List(ips, "ips", true)) == 0 {
			l.Errorf(ips.Line, "external %s has no ips", e.Name)
		}
		out = append(out, e)
	}
	return out
}

func (l *loader) stepAt(num int, v *Value) Step {
	l.Step = num
	defer func() { l.Step = 0 }()
	st := Step{Number: num, Line: v.Line}
	known := []string{"note", "apply", "delete", "dns", "wait", "probe"}
	if l.clusterSet != nil {
		known = append(known, "cluster", "disconnect", "reconnect")
	}
	f := l.Fields(v, "a step", known...)
	if f == nil {
		return st
	}
	if l.clusterSet != nil {
		l.stepCluster(&st, f)
	}
	if nv, ok := f["note"]; ok {
		st.Note, _ = l.Str(nv, "note")
	}
	if av, ok := f["apply"]; ok {
		st.Apply = l.objects(av, "apply")
	}
	if dv, ok := f["delete"]; ok {
		for _, item := range l.List(dv, "delete", false) {
			if ref, ok := l.ref(item); ok {
				l.deleteLines[[2]int{num, len(st.Delete)}] = item.Line
				st.Delete = append(st.Delete, ref)
			}
		}
	}
	if dv, ok := f["dns"]; ok {
		if df := l.Fields(dv, "a step's dns", "records"); df != nil && df["records"] != nil {
			st.DNS = l.dnsRecords(df["records"])
		}
		st.DNSChange = true
	}
	if wv, ok := f["wait"]; ok {
		st.Wait = l.duration(wv, "wait")
	}
	if pv, ok := f["probe"]; ok {
		_, st.ProbeLine, _ = v.Get("probe")
		st.Probe = pv
	}
	if f["apply"] == nil && f["delete"] == nil && f["probe"] == nil && f["dns"] == nil && f["wait"] == nil && f["disconnect"] == nil && f["reconnect"] == nil {
		l.Errorf(v.Line, "a step needs apply, delete, dns, wait or probe")
	}
	return st
}

func (l *loader) ref(v *Value) (ObjectRef, bool) {
	f := l.Fields(v, "a delete entry", "kind", "namespace", "name")
	if f == nil {
		return ObjectRef{}, false
	}
	var r ObjectRef
	for _, kv := range []struct {
		key string
		dst *string
	}{{"kind", &r.Kind}, {"namespace", &r.Namespace}, {"name", &r.Name}} {
		if fv, ok := f[kv.key]; ok {
			*kv.dst, _ = l.Str(fv, kv.key)
		}
	}
	if Namespaced(r.Kind) && r.Namespace == "" {
		r.Namespace = corev1.NamespaceDefault // as kubectl delete does
	}
	if err := r.validate(); err != nil {
		l.Errorf(v.Line, "%v", err)
		return ObjectRef{}, false
	}
	return r, true
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

// Walk applies the starting objects, then each step's applies and deletes,
// to a State, and checks each against the cluster it meets: namespaces and
// nodes exist, deletes name existing objects. Applying places new pods
// (State.Apply), in the objects themselves. visit, when set, sees each step
// with the State the step leaves, and records its own findings on r.
func (c *Cluster) Walk(visit func(r *Reader, step *Step, st *State)) []error {
	if c.Members != nil {
		// Each cluster on its own; visit sees each cluster's steps.
		var errs []error
		for _, m := range c.Members {
			errs = append(errs, m.Walk(visit)...)
		}
		return errs
	}
	r := &Reader{File: c.File}
	st := NewState()
	c.applyAll(r, st, c.Objects)
	for i := range c.Steps {
		step := &c.Steps[i]
		r.Step = step.Number
		c.applyAll(r, st, step.Apply)
		for j, ref := range step.Delete {
			if _, err := st.Delete(ref); err != nil {
				r.Errorf(c.deleteLines[[2]int{step.Number, j}], "delete: %v", err)
			}
		}
		if visit != nil {
			visit(r, step, st)
		}
	}
	return r.Errs
}

// applyAll applies objs, then checks their references: objects of one list
// may refer to each other whatever their order, as with kubectl apply -f.
func (c *Cluster) applyAll(r *Reader, st *State, objs []runtime.Object) {
	for _, o := range objs {
		if err := st.Apply(o); err != nil {
			r.Errorf(c.lines[o], "%v", err)
		}
	}
	for _, o := range objs {
		if err := st.checkRefs(o); err != nil {
			r.Errorf(c.lines[o], "%v", err)
		}
	}
}

// ObjectsAt returns the objects that exist after step (0: after the last),
// with the addresses the lab gives nodes and pods (Addresses), in creation
// order. A pod deleted by a step frees its addresses, as in the lab.
func (c *Cluster) ObjectsAt(step int) ([]runtime.Object, error) {
	if c.Members != nil {
		return nil, fmt.Errorf("%s holds several clusters (clusters:); this reads one cluster's objects: run it with nftlab", c.File)
	}
	st := NewState()
	addrs := NewAddresses(c.Nodes, c.IPFamilies, c.AllObjects()).WithNodeBase(c.NodeBase)
	apply := func(objs []runtime.Object, where string) error {
		for _, o := range objs {
			o = o.DeepCopyObject()
			addrs.Assign(o)
			if err := st.Apply(o); err != nil {
				return fmt.Errorf("%s%s: %w", c.File, where, err)
			}
		}
		return nil
	}
	if err := apply(c.Objects, ""); err != nil {
		return nil, err
	}
	for _, s := range c.Steps {
		if step > 0 && s.Number > step {
			break
		}
		where := fmt.Sprintf(": step %d", s.Number)
		if err := apply(s.Apply, where); err != nil {
			return nil, err
		}
		for _, ref := range s.Delete {
			if _, err := st.Delete(ref); err != nil {
				return nil, fmt.Errorf("%s%s: %w", c.File, where, err)
			}
			if ref.Kind == "Pod" {
				addrs.Release(ref.Namespace + "/" + ref.Name)
			}
		}
	}
	return st.Objects(), nil
}

// AllObjects returns every object the file holds: the starting ones, then
// those of each step's apply.
func (c *Cluster) AllObjects() []runtime.Object {
	out := slices.Clone(c.Objects)
	for _, s := range c.Steps {
		out = append(out, s.Apply...)
	}
	return out
}
