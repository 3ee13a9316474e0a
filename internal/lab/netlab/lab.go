package netlab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"

	"github.com/nftpolicy/nftpolicy/internal/netns"
)

// Endpoint ids: a pod is "NAMESPACE/NAME"; nodes and externals are
// "node/NAME" and "external/NAME", as in scenario files.
const (
	nodeKind     = "node"
	externalKind = "external"
	// controlPlaneKind is the namespace of a real API server and etcd
	// (the lab's Service scenarios): a member of the fabric like an
	// external, so every node reaches it, but never a probe endpoint.
	controlPlaneKind = "controlplane"
)

// ErrClosed is returned by a Lab that has been closed.
var ErrClosed = errors.New("netlab: lab is closed")

// prefixRE is the shape of a run's prefix; Down relies on it to group
// leftovers by run.
var prefixRE = regexp.MustCompile(`^nplab-[0-9a-f]{6}-$`)

// NewPrefix returns a fresh run prefix "nplab-<6 random hex>-".
func NewPrefix() string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return "nplab-" + hex.EncodeToString(b[:]) + "-"
}

// Lab is one run's set of namespaces. Its methods are safe for concurrent
// use; Probe calls run in parallel, topology changes are serialised.
//
// After an error from AddNode, AddExternal, AddPod or RemovePod the lab may be
// half-changed: Close it.
type Lab struct {
	prefix string

	mu        sync.Mutex
	up        bool // lock held and fabric created
	closed    bool
	lock      *netns.RunLock
	members   map[string]*member // by endpoint id
	order     []*member          // creation order, for stable batches
	pods      map[string]*pod    // by endpoint id
	addrs     map[netip.Addr]string
	netns     map[string]bool // namespace names in use
	nMembers  int             // counters for MACs and link names; never reused
	nPods     int
	listeners map[listenKey]*listener
	// Secondary networks (bridges.go): by name, and what was built of them.
	networks map[string]Network
	built    map[string]bool
	sctp     map[string]*sctpResponder // by endpoint id, on kernels without SCTP sockets
	atClose  []func()
}

// member is a node or an external host: a namespace with a leg on the fabric.
type member struct {
	id, kind, name string
	netns          string
	link           string // its veth in the fabric namespace
	mac            net.HardwareAddr
	ips            []netip.Addr
}

// pod is a namespace routed through its node.
type pod struct {
	id, node string // node is the member id "node/NAME"
	netns    string
	link     string // its veth in the node's namespace
	mac      net.HardwareAddr
	ips      []netip.Addr
}

// New returns a lab whose namespaces all start with prefix (NewPrefix() when
// prefix is ""). It touches nothing: the first Add call sets up the fabric.
func New(prefix string) *Lab {
	if prefix == "" {
		prefix = NewPrefix()
	}
	return &Lab{
		prefix:    prefix,
		members:   map[string]*member{},
		pods:      map[string]*pod{},
		addrs:     map[netip.Addr]string{},
		netns:     map[string]bool{},
		listeners: map[listenKey]*listener{},
		sctp:      map[string]*sctpResponder{},
	}
}

// Prefix returns the run's namespace name prefix.
func (l *Lab) Prefix() string { return l.prefix }

// NodeNetNSPath returns the path of node's namespace
// (/var/run/netns/<name>), e.g. for nftables.WithNetNSFd, or "" if there is
// no such node.
func (l *Lab) NodeNetNSPath(node string) string {
	return l.NetNSPath(nodeKind + "/" + node)
}

// NetNSPath returns the namespace path of any endpoint ("x/a", "node/n1",
// "external/e"), or "" if there is no such endpoint.
func (l *Lab) NetNSPath(endpoint string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ns, _, err := l.lookup(endpoint)
	if err != nil {
		return ""
	}
	return netns.Path(ns)
}

// Addrs returns an endpoint's addresses (those it was given, or those the lab
// chose), or nil if there is no such endpoint.
func (l *Lab) Addrs(endpoint string) []netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ips, err := l.lookup(endpoint)
	if err != nil {
		return nil
	}
	return append([]netip.Addr(nil), ips...)
}

// lookup finds an endpoint's namespace and addresses. Callers hold l.mu.
func (l *Lab) lookup(endpoint string) (netns string, ips []netip.Addr, err error) {
	if m, ok := l.members[endpoint]; ok {
		return m.netns, m.ips, nil
	}
	if p, ok := l.pods[endpoint]; ok {
		return p.netns, p.ips, nil
	}
	return "", nil, fmt.Errorf("netlab: no endpoint %q", endpoint)
}

// Close deletes every namespace of this run, including any left over from a
// failed step, and closes every listener. It is safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	// Processes running in the lab's namespaces stop first, newest first.
	for i := len(l.atClose) - 1; i >= 0; i-- {
		l.atClose[i]()
	}
	l.atClose = nil
	for k, ln := range l.listeners {
		ln.close()
		delete(l.listeners, k)
	}
	for ep, r := range l.sctp {
		if r != nil {
			r.close()
		}
		delete(l.sctp, ep)
	}
	if !l.up {
		return nil
	}
	// Sweep by prefix rather than by what l recorded: a namespace added by
	// a command that failed half-way is caught too.
	names, err := netns.List(l.prefix)
	if err == nil {
		err = netns.Delete(names)
	}
	return errors.Join(err, l.lock.Release())
}

// AtClose registers fn to run when the lab closes (Close, or a signal
// caught by CleanupOnSignal), before its namespaces go: it stops what
// runs in them.
func (l *Lab) AtClose(fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.atClose = append(l.atClose, fn)
}

// ensureUp takes the run's lock and creates the fabric on first use.
// Callers hold l.mu.
func (l *Lab) ensureUp() error {
	if l.closed {
		return ErrClosed
	}
	if l.up {
		return nil
	}
	if !prefixRE.MatchString(l.prefix) {
		return fmt.Errorf("netlab: prefix %q does not look like %q", l.prefix, "nplab-<6 hex>-")
	}
	lock, err := netns.TakeLock(lockDir, l.prefix)
	if err != nil {
		return err
	}
	l.lock = lock
	l.up = true // from here on Close has something to clean up
	fabric := l.fabricNetns()
	if err := ip("netns", "add", fabric); err != nil {
		return err
	}
	l.netns[fabric] = true
	return ipBatch(fabric, []string{
		"link add br0 type bridge",
		"link set br0 up",
	})
}

func (l *Lab) fabricNetns() string { return l.prefix + "fabric" }

// newNetnsName derives a readable, unique namespace name for an endpoint.
// Callers hold l.mu.
func (l *Lab) newNetnsName(kind, name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_') // "x/a" → "x_a"
		}
	}
	base := b.String()
	if len(base) > 64 {
		base = base[:64]
	}
	base = l.prefix + kind + "-" + base
	ns := base
	for i := 2; l.netns[ns]; i++ {
		ns = fmt.Sprintf("%s-%d", base, i)
	}
	return ns
}
