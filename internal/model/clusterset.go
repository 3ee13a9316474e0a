package model

import (
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// ClusterLabel is the label NPEP-311 has cluster administrators put on
// every namespace of a ClusterSet: its value names the namespace's
// cluster, and a peer selector that names the key reaches other clusters.
const ClusterLabel = "cluster.clusterset.k8s.io"

// ClusterSet says how the model sees the other clusters of a ClusterSet
// whose pod networks are routed flat (docs/multicluster.md). Remote
// objects (pods, namespaces, nodes) reach the model under names that
// RemoteName qualifies with their cluster; they are peers only, never
// subjects.
type ClusterSet struct {
	// LocalID is this cluster's id: local namespaces and nodes without
	// ClusterLabel are treated as labelled with it (--cluster-id). Empty:
	// they are left as they are.
	LocalID string
	// Sameness makes every peer namespace selector match remote
	// namespaces too (--remote-namespace-sameness). Off (the default), a
	// selector matches a remote namespace only when it names ClusterLabel,
	// so "all namespaces" keeps meaning the local ones.
	Sameness bool
}

// RemoteName is the model's name of a remote cluster's namespace or node
// (or, for a pod, its namespace): "cluster/name". Kubernetes names never
// hold a slash, so a remote object's key cannot collide with a local one.
func RemoteName(cluster, name string) string { return cluster + "/" + name }

// SplitRemote splits a model name into its cluster ("" for a local
// object) and its name in that cluster.
func SplitRemote(name string) (cluster, local string) {
	if i := strings.IndexByte(name, '/'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return "", name
}

// NamesCluster reports whether a selector has a requirement on
// ClusterLabel: only such a selector reaches remote namespaces (and remote
// nodes) by default, as Cilium's ClusterMesh does with its own label.
func NamesCluster(s labels.Selector) bool {
	if s == nil {
		return false
	}
	reqs, _ := s.Requirements()
	for _, r := range reqs {
		if r.Key() == ClusterLabel {
			return true
		}
	}
	return false
}

// withCluster returns l with ClusterLabel set to id: always (force) for a
// remote object, whose own label must not claim another cluster (a remote
// object never passes for a local one); only where missing for a local
// one. l is copied when changed.
func withCluster(l labels.Set, id string, force bool) labels.Set {
	if id == "" {
		return l
	}
	if v, ok := l[ClusterLabel]; ok && (v == id || !force) {
		return l
	}
	out := make(labels.Set, len(l)+1)
	for k, v := range l {
		out[k] = v
	}
	out[ClusterLabel] = id
	return out
}

// ownerBefore orders the pods that list one address: a local pod before a
// remote one (a remote cluster never takes an address from a local pod),
// then by key.
func ownerBefore(a, b *Pod) bool {
	if a.Remote() != b.Remote() {
		return !a.Remote()
	}
	return a.Key() < b.Key()
}
