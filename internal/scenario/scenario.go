// Package scenario reads connectivity scenario files (the format described in
// docs/scenarios.md) and does everything about their expectations that
// needs no network: reading probes, enumerating the pairs a probe tests with
// their expected outcome, and rendering results as matrices, a summary line
// or JSON. The file's cluster (nodes, objects, the steps that apply and
// delete them) is read by internal/manifest, which decodes and defaults the
// Kubernetes objects.
//
// The lab runner builds on it: it loads scenarios here, runs them on real
// network namespaces, fills in what it measured and renders it with this
// package, so that the file's meaning lives in one place.
package scenario

import (
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftpolicy/nftpolicy/internal/manifest"
)

// Scenario is one loaded, validated and defaulted scenario file: the
// cluster internal/manifest reads (its name, nodes, families, objects and
// externals), and the steps with their probes.
type Scenario struct {
	*manifest.Cluster
	Steps []Step // the cluster's steps, with their probes read
}

// The file's cluster is internal/manifest's; these names keep the
// scenario's vocabulary in one place for its readers.
type (
	Family    = manifest.Family
	External  = manifest.External
	ObjectRef = manifest.ObjectRef
	// Error is a problem in a scenario, located as precisely as the file
	// allows. Load returns these (several joined with errors.Join); so do
	// Pairs and Expected.
	Error = manifest.Error
)

// The IP families.
const (
	IPv4 = manifest.IPv4
	IPv6 = manifest.IPv6
)

// FamilyOf returns the family of an address.
func FamilyOf(a netip.Addr) Family { return manifest.FamilyOf(a) }

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
	// DNS, DNSChange and Wait are manifest.Step's: the name server's
	// record changes, and a pause before the probe.
	DNS       []manifest.DNSRecord
	DNSChange bool
	Wait      time.Duration
	Probe     *Probe
	// In a file with clusters (docs/multicluster.md) Apply and Delete are
	// empty here: each cluster's are in its member's steps. Disconnect and
	// Reconnect name the clusters whose API servers the step takes away
	// from the other clusters' agents, and brings back.
	Disconnect, Reconnect []string
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
	// NoResolve: dns/ targets are reached at the addresses the name server
	// holds now, without a query (nothing for an agent to learn from).
	NoResolve bool

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
