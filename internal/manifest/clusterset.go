package manifest

import (
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
)

// A scenario file with clusters (docs/multicluster.md) describes a
// ClusterSet on one flat network: each cluster has its nodes and objects
// (its own API server); steps apply and delete in one cluster (cluster:,
// default the first), take a cluster's API server away from the other
// clusters (disconnect:) and bring it back (reconnect:), and probe across
// clusters. The file's Cluster then has no nodes or objects of its own:
// its Members do, each a Cluster with every step of the file (same numbers
// and lines), holding the applies and deletes meant for it.

// members reads clusters: into s.Members, and the file's steps.
func (l *loader) members(s *Cluster, top map[string]*Value, clusters *Value) {
	for _, key := range []string{"nodes", "objects", "externals"} {
		if v, ok := top[key]; ok {
			l.Errorf(v.Line, "%s: with clusters, each cluster lists its own (externals are not supported)", key)
		}
	}
	var objects [][]*Value
	var listed [][]string
	for _, item := range l.List(clusters, "clusters", false) {
		f := l.Fields(item, "a cluster", "name", "nodes", "objects")
		if f == nil {
			continue
		}
		m := &Cluster{File: l.File, IPFamilies: s.IPFamilies}
		if v, ok := f["name"]; ok {
			m.Name, _ = l.Str(v, "name")
		}
		if errs := validation.IsDNS1123Label(m.Name); len(errs) > 0 {
			l.Errorf(item.Line, "cluster name %q: %s", m.Name, strings.Join(errs, "; "))
			continue
		}
		if s.Member(m.Name) != nil {
			l.Errorf(item.Line, "cluster %q declared twice", m.Name)
			continue
		}
		var names []string
		if v, ok := f["nodes"]; ok {
			names = l.nodeNames(v)
		}
		var objs []*Value
		if v, ok := f["objects"]; ok {
			objs = []*Value{v}
		}
		s.Members = append(s.Members, m)
		listed, objects = append(listed, names), append(objects, objs)
	}
	if len(s.Members) == 0 {
		l.Errorf(clusters.Line, "clusters is empty")
		return
	}
	l.clusterSet = s
	if v, ok := top["clusterSet"]; ok {
		if f := l.Fields(v, "clusterSet", "namespaceSameness"); f != nil {
			if sv, ok := f["namespaceSameness"]; ok {
				if b, ok := sv.Scalar.(bool); ok {
					s.NamespaceSameness = b
				} else {
					l.Errorf(sv.Line, "namespaceSameness must be true or false")
				}
			}
		}
	}
	var steps []Step
	if v, ok := top["steps"]; ok {
		for i, item := range l.List(v, "steps", false) {
			steps = append(steps, l.stepAt(i+1, item))
		}
	}
	base := 0
	for i, m := range s.Members {
		decoded := l.objectsOf(objects[i])
		for _, st := range steps {
			ms := Step{Number: st.Number, Line: st.Line, Note: st.Note}
			if st.Cluster == m.Name {
				ms.Apply, ms.Delete = st.Apply, st.Delete
			}
			m.Steps = append(m.Steps, ms)
		}
		m.Nodes, m.Objects = assemble(listed[i], decoded, m.Steps)
		m.NodeBase = base
		base += len(m.Nodes)
		m.lines, m.deleteLines = l.lines, l.deleteLines
	}
	for _, m := range s.Members {
		for _, o := range m.AllObjects() {
			if KindOf(o) == "Service" {
				l.Errorf(l.lines[o], "%s: Services are not supported in a file with clusters", RefOf(o))
			}
		}
	}
	for i := range steps {
		steps[i].Apply, steps[i].Delete = nil, nil
	}
	s.Steps = steps
	l.checkConnections(s)
}

func (l *loader) objectsOf(vs []*Value) []runtime.Object {
	var out []runtime.Object
	for _, v := range vs {
		out = append(out, l.objects(v, "objects")...)
	}
	return out
}

// checkConnections plays disconnect and reconnect through: only a cluster
// of the file, only one that is connected (disconnect) or not (reconnect).
func (l *loader) checkConnections(s *Cluster) {
	down := map[string]bool{}
	for _, st := range s.Steps {
		l.Step = st.Number
		for _, c := range st.Disconnect {
			switch {
			case s.Member(c) == nil:
				l.Errorf(st.Line, "disconnect: no cluster %q", c)
			case down[c]:
				l.Errorf(st.Line, "disconnect: cluster %q is already disconnected", c)
			}
			down[c] = true
		}
		for _, c := range st.Reconnect {
			switch {
			case s.Member(c) == nil:
				l.Errorf(st.Line, "reconnect: no cluster %q", c)
			case !down[c]:
				l.Errorf(st.Line, "reconnect: cluster %q is not disconnected", c)
			}
			delete(down, c)
		}
	}
	l.Step = 0
}

// stepCluster reads a step's cluster:, disconnect: and reconnect: in a
// file with clusters.
func (l *loader) stepCluster(st *Step, f map[string]*Value) {
	s := l.clusterSet
	st.Cluster = s.Members[0].Name
	if v, ok := f["cluster"]; ok {
		name, _ := l.Str(v, "cluster")
		if s.Member(name) == nil {
			l.Errorf(v.Line, "cluster: no cluster %q", name)
		}
		st.Cluster = name
	}
	for key, dst := range map[string]*[]string{"disconnect": &st.Disconnect, "reconnect": &st.Reconnect} {
		if v, ok := f[key]; ok {
			for _, item := range l.List(v, key, true) {
				if name, ok := l.Str(item, "a cluster name"); ok && !slices.Contains(*dst, name) {
					*dst = append(*dst, name)
				}
			}
		}
	}
}

// Member returns the cluster called name of a file with clusters, or nil.
func (c *Cluster) Member(name string) *Cluster {
	for _, m := range c.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}
