// Package scenario reads connectivity scenario files (the format described in
// docs/scenarios.md) and does everything about them that needs no network:
// decoding and defaulting the Kubernetes objects, checking the file against
// the format, enumerating the pairs a probe tests with their expected
// outcome, and rendering results as matrices, a summary line or JSON.
//
// The lab runner builds on it: it loads scenarios here, runs them on real
// network namespaces, fills in what it measured and renders it with this
// package, so that the file's meaning lives in one place.
package scenario

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Scenario is one loaded, validated and defaulted scenario file.
type Scenario struct {
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
	Steps     []Step
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
}

// Step is one entry of steps. A step may combine actions; they run in the
// order apply, delete, probe.
type Step struct {
	Number int // 1-based position in steps, as in messages and ProbeReport.Step
	Line   int
	Note   string
	// Apply holds objects decoded and defaulted like Scenario.Objects. A Pod
	// that already exists has its node and file-given addresses carried
	// over, and a new Pod without spec.nodeName has been placed round-robin.
	Apply  []runtime.Object
	Delete []ObjectRef
	Probe  *Probe
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

// DeniedMode says which denials satisfy an expected "denied".
type DeniedMode string

// The denied modes of a probe.
const (
	DeniedAny  DeniedMode = "any"  // timeout, reset or ICMP error alike
	DeniedDrop DeniedMode = "drop" // only a timeout: the packet was dropped
)

// Probe is the probe of a step.
type Probe struct {
	Line     int // the line of the probe key
	Port     intstr.IntOrString
	Protocol corev1.Protocol // TCP, UDP or SCTP; TCP by default
	Family   Family          // empty: each of the scenario's ipFamilies in turn
	// From and To default to every pod ("*/*"); nil means the same.
	From, To []Pattern
	Expect   []ExpectLine
	Denied   DeniedMode // DeniedAny by default

	// Where the probe is, so that errors from Pairs and Expected point
	// into the file on their own. Empty for probes built by hand.
	file             string
	step             int
	fromLine, toLine []int // lines of the From and To patterns
}

// ExpectLine is one line of a probe's expect list.
type ExpectLine struct {
	From, To Pattern
	Allowed  bool
	Line     int
}

func (e ExpectLine) String() string {
	v := "denied"
	if e.Allowed {
		v = "allowed"
	}
	return e.From.String() + " -> " + e.To.String() + ": " + v
}

// Error is a problem in a scenario, located as precisely as the file allows.
// Load returns these (several joined with errors.Join); so do Pairs and
// Expected.
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
