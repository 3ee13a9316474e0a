// Package manifest turns the files people write into the Kubernetes objects
// the agent sees: plain manifests (one or more documents, or a List such as
// `kubectl get -o yaml` prints) and scenario files, read for their cluster
// (nodes, IP families, objects and the steps that apply and delete them).
// It decodes strictly, applies the API server's defaults, places pods on
// nodes and gives them the addresses the lab gives them, so that
// `nftpolicy compile` of a file and a lab run of it see the same cluster.
//
// What a scenario expects (probes, matrices, reports) is internal/scenario's;
// this package hands each step's probe back as written. The agent's binary
// links this package and not internal/scenario or the lab.
package manifest

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
)

// Cluster is a scenario file read for its cluster: loaded, validated and
// defaulted, probes left as written.
type Cluster struct {
	Name        string
	Description string
	File        string // the path it was loaded from, as given
	// Nodes are the cluster's nodes at the start, in order: the file's
	// nodes list, then Node objects it did not list; [node-1] when neither
	// names any. Objects holds a Node object for each.
	Nodes      []string
	IPFamilies []Family // never empty; [IPv4] by default
	// Objects is the starting state, decoded, defaulted and ready to hand to
	// the agent: default Node objects and the "default" Namespace (when the
	// file uses it) come first, then the file's objects in file order.
	Objects   []runtime.Object
	Externals []External
	DNS       *DNS // the name server, if the file has one (dns.go)
	// Networks are the secondary networks (networks.go).
	Networks []Network
	Steps    []Step
	// Members are the clusters of a file with clusters (clusterset.go):
	// each has its own nodes, objects and steps' applies and deletes; the
	// file's Cluster then has none of those, and its Steps keep the probes,
	// the disconnects and the reconnects. NamespaceSameness is the file's
	// clusterSet.namespaceSameness, for the agents.
	Members           []*Cluster
	NamespaceSameness bool
	// NodeBase is the number of nodes of the members before this one: its
	// nodes' pod CIDRs and addresses come after theirs (Addresses), so
	// that the clusters' networks are disjoint on one flat network.
	NodeBase int

	// Where objects and delete entries are, for the checks of Walk.
	lines       map[runtime.Object]int
	deleteLines map[[2]int]int // {step, index} -> line
}

// Step is one entry of steps. A step may combine actions; they run in the
// order apply, delete, probe.
type Step struct {
	Number int // 1-based position in steps, as in messages
	Line   int
	Note   string
	// Apply holds objects decoded and defaulted like Cluster.Objects. A Pod
	// that already exists has its node and file-given addresses carried
	// over, and a new Pod without spec.nodeName has been placed round-robin.
	Apply  []runtime.Object
	Delete []ObjectRef
	// DNS replaces the server's records of the names it lists (a record
	// with neither ips nor cname removes the name); DNSChange says the step
	// has a dns key. Wait is a pause after the changes, before the probe.
	DNS       []DNSRecord
	DNSChange bool
	Wait      time.Duration
	// Probe is the step's probe as written (nil: none), ProbeLine the line
	// of its key; internal/scenario reads them.
	Probe     *Value
	ProbeLine int
	// In a file with clusters: the cluster Apply and Delete are for (the
	// first by default), and the clusters whose API servers the step
	// takes away from the other clusters' agents and brings back.
	Cluster               string
	Disconnect, Reconnect []string
}

// Family is an IP family as the file spells it.
type Family string

// The IP families.
const (
	IPv4 Family = "IPv4"
	IPv6 Family = "IPv6"
)

// FamilyOf returns the family of an address.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// External is a host outside the cluster network.
type External struct {
	Name string
	IPs  []netip.Addr
	// Network, when set, puts it on that secondary network only (its VLAN),
	// not on the fabric.
	Network string
}

// ObjectRef names an object as a delete step does. Namespace is empty for
// cluster-scoped kinds.
type ObjectRef struct {
	Kind      string
	Namespace string
	Name      string
}

func (r ObjectRef) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// Error is a problem in a file, located as precisely as the file allows.
// Several are joined with errors.Join.
type Error struct {
	File string // path as given; may be empty
	Line int    // 1-based; 0 when unknown
	Step int    // 1-based step number; 0 outside steps
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Step > 0 {
		fmt.Fprintf(&b, "step %d: ", e.Step)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }
