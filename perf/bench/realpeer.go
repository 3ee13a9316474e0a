package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/nftpolicy/nftpolicy/internal/integration"
	"github.com/nftpolicy/nftpolicy/internal/lab"
	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// The real peer: kube-router v2.1.0's own firewall controller next to
// nftpolicy's agent binary, on the same lab and the same real
// kube-apiserver holding the same generated cluster, both measured by
// packets only. Three identical lab nodes: "nft" runs nftpolicy's agent,
// "kr" runs kube-router (--run-firewall only), "bare" runs nothing (the
// data path's reference). In the API there is one node under test,
// gen.NodeUnderTest, whose InternalIP is kr's address: every pod of it
// (the generated ones and each lab node's probe pods) has that hostIP and
// nodeName, so both agents program exactly the same local pods.
//
// Each agent is measured alone (the other stopped): on 2 cores a second
// agent rebuilding its rules at every event would slow the first. An
// event is one API write that flips what a prober in the node sees,
// allowed to denied or back; its latency is from the write's start to the
// first probe (a new connection every peerProbeEvery) with the new
// verdict: for "allowed" the end of its handshake (an upper bound), for
// "denied" its start (its SYN left later; the probe one interval before it
// still passed). Full programming is from the agent's process start to the
// first probe that sees the isolation of the probe namespace's server.

const (
	peerNS        = "perf-peer"         // the probe pods and their policies
	peerClientsNS = "perf-peer-clients" // the client of the namespace-relabel flip
	peerPort      = 8080
	// 5 ms between new connections: the resolution of every latency here.
	peerProbeEvery   = 5 * time.Millisecond
	peerProbeTimeout = 200 * time.Millisecond
	// peerGap separates writes: twice nftpolicy's default
	// --min-sync-period (1 s) and a margin, so that no timed write waits
	// for the coalescing of the one before. One write can make two watch
	// events (a pod's final delete: MODIFIED, then DELETED), whose second
	// sync comes a period after the first; a write within a period of that
	// would wait up to 1 s (seen: 325 and 525 ms with a 1.2 s gap).
	// kube-router has no such period; it is also waited for until idle
	// (waitIdle).
	peerGap = 2200 * time.Millisecond
)

// The flips' kinds, in the order the results list them.
const (
	flipPodAdd     = "pod add"
	flipPodDelete  = "pod delete"
	flipPodRelabel = "pod relabel"
	flipPolAdd     = "policy add"
	flipPolDelete  = "policy delete"
	flipNSRelabel  = "namespace relabel"
)

func flipKinds() []string {
	return []string{flipPodAdd, flipPodDelete, flipPodRelabel, flipPolAdd, flipPolDelete, flipNSRelabel}
}

// Agents of the comparison.
const (
	agentNft = "nftpolicy"
	agentKR  = "kube-router"
)

// RealPeerResult is the side-by-side run.
type RealPeerResult struct {
	KubeRouter   string          `json:"kube_router_version"`
	Iptables     string          `json:"iptables_version"`
	Ipset        string          `json:"ipset_version"`
	Skipped      string          `json:"skipped,omitempty"`
	ProbeEveryMs float64         `json:"probe_every_ms"`
	GapMs        float64         `json:"gap_ms"`
	Sizes        []*RealPeerSize `json:"sizes"`
}

// RealPeerSize is one cluster size.
type RealPeerSize struct {
	Size           gen.Size      `json:"size"`
	Objects        int           `json:"objects"` // written to the API server
	PodsOnNode     int           `json:"pods_on_node"`
	PoliciesOnNode int           `json:"policies_on_node"`
	SetupSeconds   float64       `json:"setup_seconds"`
	Agents         []*PeerAgent  `json:"agents"`
	DataPath       *PeerDataPath `json:"data_path,omitempty"`
	Error          string        `json:"error,omitempty"`
}

// PeerAgent is one agent at one size.
type PeerAgent struct {
	Name string `json:"name"`
	// Full: process start to the first probe that sees the probe server
	// isolated; FullCut says the cut-off ended a start before that.
	Full       Dist        `json:"full_programming"`
	FullCut    string      `json:"full_cut,omitempty"`
	Events     []PeerEvent `json:"events"`
	SyncErrors int         `json:"sync_errors"` // kube-router: aborted syncs
	Errors     []string    `json:"errors,omitempty"`
	// kube-router's own account: its syncs, their durations (log) and its
	// policy chains and ipsets (metrics) at the end.
	Syncs    int    `json:"syncs,omitempty"`
	SyncTook Dist   `json:"sync_took,omitempty"`
	Chains   int    `json:"chains,omitempty"`
	IPSets   int    `json:"ipsets,omitempty"`
	Error    string `json:"error,omitempty"`
}

// PeerEvent is one kind of flip.
type PeerEvent struct {
	Kind    string `json:"kind"`
	Latency Dist   `json:"latency"` // API write's start → first packet with the new verdict
	// Flaps are probes, after the first with the new verdict, that saw
	// the old one again (a rebuild in steps shows the old state for a
	// while); Missed are events whose verdict never flipped in time.
	Flaps  int `json:"flaps"`
	Missed int `json:"missed"`
	// FlapSeen describes the first flip with flaps: the outcome of its
	// first probe with the new verdict and of the first that saw the old
	// one after it (a "denied (timeout)" first under load may be a slow
	// handshake, not a rule; kube-router's own denials are resets).
	FlapSeen string `json:"flap_seen,omitempty"`
}

// PeerDataPath is new TCP connections/s through each node with its rules.
type PeerDataPath struct {
	Rounds    int       `json:"rounds"`
	PerRound  int       `json:"connections_per_round"`
	Policies  int       `json:"policies_selecting_server"`
	States    []DPState `json:"states"`
	Enforcing string    `json:"enforcing"`
}

// peerNode is one lab node's probe pods.
type peerNode struct {
	name   string // lab node
	octet  byte   // its pods are 198.19.<octet>.x
	api    bool   // its probe pods are API objects (not for bare)
	server netip.Addr
}

func (n peerNode) ip(host byte) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, n.octet, host}) }
func (n peerNode) id(pod string) string {
	ns := peerNS
	if pod == "nsclient" {
		ns = peerClientsNS
	}
	return ns + "/" + pod + "-" + n.name
}

// The probe pods of a node, by the last octet of their address.
var peerPods = []struct {
	name   string
	host   byte
	labels map[string]string
}{
	{"server", 1, map[string]string{"app": "server"}},
	{"server2", 2, map[string]string{"app": "server2"}},
	{"relabel", 3, map[string]string{"role": "client"}},
	{"newcomer", 4, map[string]string{"role": "client"}}, // its object comes and goes
	{"nsclient", 5, map[string]string{"app": "nsclient"}},
	{"caller", 6, map[string]string{"role": "caller"}},
	{"dpclient", 7, map[string]string{"role": "client"}},
}

// peerLab is one size's setup.
type peerLab struct {
	cfg      Config
	lab      *netlab.Lab
	env      *integration.Env
	kc       kubernetes.Interface
	krBin    string
	agentBin string
	nodes    map[string]peerNode
	hostIP   string // kr's address: the node under test's InternalIP
	// nodeAddrs are the generated nodes' InternalIPs, the hostIP of
	// their pods.
	nodeAddrs map[string]string
}

// peerSkip says why the real peer cannot run here ("" when it can).
func peerSkip() (string, string) {
	for _, b := range []string{"iptables", "iptables-save", "iptables-restore", "ipset"} {
		if _, err := exec.LookPath(b); err != nil {
			return "", fmt.Sprintf("%s is not installed (make perf installs iptables and ipset where apt-get can)", b)
		}
	}
	bin, err := integration.KubeRouterBinary()
	if err != nil {
		return "", err.Error()
	}
	return bin, ""
}

func commandVersion(args ...string) string {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return "unknown: " + err.Error()
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

// realPeer runs the comparison at every size of sizes.
func realPeer(ctx context.Context, j *Janitor, cfg Config, sizes []gen.Size) (*RealPeerResult, error) {
	res := &RealPeerResult{KubeRouter: integration.KubeRouterVersion, ProbeEveryMs: ms(peerProbeEvery), GapMs: ms(peerGap)}
	bin, skip := peerSkip()
	if skip != "" {
		res.Skipped = skip
		cfg.logf("real kube-router: skipped: %s", skip)
		return res, nil
	}
	res.Iptables, res.Ipset = commandVersion("iptables", "--version"), commandVersion("ipset", "--version")
	var errs []error
	for _, size := range sizes {
		if ctx.Err() != nil {
			break
		}
		sr, err := realPeerSize(ctx, j, cfg, bin, size)
		if err != nil {
			sr.Error = err.Error()
			errs = append(errs, fmt.Errorf("real kube-router %s: %w", size.Name, err))
			cfg.logf("real kube-router %s: error: %v", size.Name, err)
		}
		res.Sizes = append(res.Sizes, sr)
	}
	return res, errors.Join(errs...)
}

// peerPlan is how much is measured at a size.
type peerPlan struct {
	rounds   int           // rounds of flips, every kind once or twice per round
	fullReps int           // starts from empty per agent
	cutoff   time.Duration // the longest a start or a flip may take
	dpRounds int
	dpConns  int
}

func peerPlanFor(s gen.Size, quick bool) peerPlan {
	switch {
	case quick:
		return peerPlan{rounds: 2, fullReps: 1, cutoff: 2 * time.Minute, dpRounds: 2, dpConns: 300}
	case s.Pods >= gen.L.Pods:
		return peerPlan{rounds: 5, fullReps: 1, cutoff: 10 * time.Minute, dpRounds: 6, dpConns: 1000}
	case s.Pods >= gen.M.Pods:
		return peerPlan{rounds: 10, fullReps: 3, cutoff: 5 * time.Minute, dpRounds: 20, dpConns: 2000}
	}
	return peerPlan{rounds: 10, fullReps: 3, cutoff: 2 * time.Minute, dpRounds: 20, dpConns: 2000}
}

func realPeerSize(ctx context.Context, j *Janitor, cfg Config, krBin string, size gen.Size) (*RealPeerSize, error) {
	p := peerPlanFor(size, cfg.Quick)
	if cfg.Rounds > 0 {
		p.rounds = cfg.Rounds
	}
	sr := &RealPeerSize{Size: size}
	start := time.Now()
	c := gen.Generate(size, cfg.Seed)
	mc, err := c.Model()
	if err != nil {
		return sr, err
	}
	sr.PodsOnNode, sr.PoliciesOnNode = onNode(mc, gen.NodeUnderTest)
	pl, err := newPeerLab(ctx, j, cfg, krBin)
	if err != nil {
		return sr, err
	}
	defer pl.close()
	cfg.logf("real kube-router %s: API server up; writing %d pods, %d policies", size.Name, size.Pods, size.Policies)
	if sr.Objects, err = pl.load(ctx, c.Objects()); err != nil {
		return sr, err
	}
	sr.SetupSeconds = time.Since(start).Seconds()
	cfg.logf("real kube-router %s: %d objects written in %.0f s", size.Name, sr.Objects, sr.SetupSeconds)

	for _, name := range []string{agentNft, agentKR} {
		a, err := pl.measureAgent(ctx, name, p)
		sr.Agents = append(sr.Agents, a)
		if err != nil {
			a.Error = err.Error()
			cfg.logf("real kube-router %s: %s: %v", size.Name, name, err)
		}
	}
	dp, err := pl.dataPath(ctx, p)
	sr.DataPath = dp
	return sr, err
}

// newPeerLab starts the lab's three nodes, the control plane and the
// probe pods' network ends; no agent runs yet.
func newPeerLab(ctx context.Context, j *Janitor, cfg Config, krBin string) (_ *peerLab, err error) {
	pl := &peerLab{cfg: cfg, krBin: krBin, lab: netlab.New(""), nodeAddrs: map[string]string{}, nodes: map[string]peerNode{
		"nft":  {name: "nft", octet: 11, api: true},
		"kr":   {name: "kr", octet: 12, api: true},
		"bare": {name: "bare", octet: 13},
	}}
	j.Defer(pl.lab.Close)
	defer func() {
		if err != nil {
			pl.close()
		}
	}()
	for _, n := range pl.nodes {
		if err := pl.lab.AddNode(n.name, nil); err != nil {
			return nil, err
		}
		for _, pod := range peerPods {
			if !n.api && pod.name != "server" && pod.name != "dpclient" {
				continue
			}
			if err := pl.lab.AddPod(n.id(pod.name), n.name, []netip.Addr{n.ip(pod.host)}); err != nil {
				return nil, err
			}
		}
		n.server = n.ip(1)
		pl.nodes[n.name] = n
		if err := pl.lab.Listen(n.id("server"), "TCP", peerPort); err != nil {
			return nil, err
		}
		if n.api {
			if err := pl.lab.Listen(n.id("server2"), "TCP", peerPort); err != nil {
				return nil, err
			}
		}
	}
	for _, a := range pl.lab.Addrs("node/kr") {
		if a.Is4() {
			pl.hostIP = a.String()
		}
	}
	cpIP := netip.MustParseAddr("172.18.255.1")
	cpNS, err := pl.lab.AddControlPlane(cpIP)
	if err != nil {
		return nil, err
	}
	deploy := integration.FindDeployDir()
	if deploy == "" {
		return nil, errors.New("no deploy/ directory (the CRDs and RBAC the agent needs): run from the repository")
	}
	pl.env, err = integration.NewLabEnvIn(ctx, logWriter{cfg}, deploy, integration.Where{NetNS: cpNS, Addr: cpIP.String(), Dial: pl.lab.DialFrom("controlplane/cp")})
	if err != nil {
		return nil, err
	}
	if pl.agentBin, err = integration.BuildNftpolicy(ctx, pl.env.Dir); err != nil {
		return nil, err
	}
	rest := *pl.env.Cluster.AdminREST
	rest.QPS, rest.Burst = 2000, 2000
	if pl.kc, err = kubernetes.NewForConfig(&rest); err != nil {
		return nil, err
	}
	return pl, nil
}

// logWriter sends the integration package's progress lines to the log.
type logWriter struct{ cfg Config }

func (w logWriter) Write(b []byte) (int, error) {
	w.cfg.logf("%s", strings.TrimSpace(string(b)))
	return len(b), nil
}

func (pl *peerLab) close() error {
	if pl.env != nil {
		pl.env.Close()
	}
	return pl.lab.Close()
}

// load writes the generated cluster and the probe objects, many at once;
// it returns how many objects it wrote.
func (pl *peerLab) load(ctx context.Context, objs []runtime.Object) (int, error) {
	objs = append(objs, pl.probeObjects()...)
	// Namespaces and nodes first: pods and policies refer to them.
	var first, rest []runtime.Object
	for _, o := range objs {
		switch n := o.(type) {
		case *v1.Node:
			for _, a := range n.Status.Addresses {
				pl.nodeAddrs[n.Name] = a.Address
			}
			first = append(first, o)
		case *v1.Namespace:
			first = append(first, o)
		case *v1.Pod, *networkingv1.NetworkPolicy:
			rest = append(rest, o)
		default:
			return 0, fmt.Errorf("real kube-router: object %T not loaded (kube-router knows NetworkPolicy only)", o)
		}
	}
	for _, batch := range [][]runtime.Object{first, rest} {
		errs := make(chan error, len(batch))
		sem := make(chan struct{}, 32)
		for _, o := range batch {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				errs <- pl.create(ctx, o)
			}()
		}
		for range batch {
			if err := <-errs; err != nil {
				return 0, err
			}
		}
	}
	return len(objs), nil
}

// create writes one object as a kubelet and a scheduler would have it:
// the node under test's pods carry kr's address as hostIP.
func (pl *peerLab) create(ctx context.Context, o runtime.Object) error {
	var err error
	switch o := o.(type) {
	case *v1.Namespace:
		_, err = pl.kc.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
	case *v1.Node:
		var ips []string
		if o.Name == gen.NodeUnderTest {
			ips = []string{pl.hostIP}
		} else {
			for _, a := range o.Status.Addresses {
				ips = append(ips, a.Address)
			}
		}
		n := o.DeepCopy()
		n.Status = v1.NodeStatus{}
		err = integration.CreateNode(ctx, pl.kc, n, ips...)
	case *v1.Pod:
		_, err = integration.CreatePod(ctx, pl.kc, pl.placed(o))
	case *networkingv1.NetworkPolicy:
		_, err = pl.kc.NetworkingV1().NetworkPolicies(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	}
	return err
}

// placed gives a pod its hostIP: kr's address on the node under test
// (what kube-router matches), the generated node's elsewhere.
func (pl *peerLab) placed(p *v1.Pod) *v1.Pod {
	p = p.DeepCopy()
	host := pl.hostIP
	if p.Spec.NodeName != gen.NodeUnderTest {
		host = pl.nodeAddrs[p.Spec.NodeName]
	}
	p.Status.HostIP = host
	p.Status.HostIPs = []v1.HostIP{{IP: host}}
	return p
}

// probeObjects are the probe namespaces, the nft and kr nodes' probe
// pods (not the newcomers: their objects are the pod-add flip) and the
// policies the flips act on:
//
//	allow            the servers admit role=client pods of perf-peer and
//	                 every pod of a namespace labelled access=yes
//	decoy-NN         dpDecoys more policies selecting the servers, as on
//	                 the data path (datapath.go), none admitting the clients
func (pl *peerLab) probeObjects() []runtime.Object {
	type m = map[string]string
	type peers = []networkingv1.NetworkPolicyPeer
	objs := []runtime.Object{
		tu.Namespace(peerNS, m{"team": "probe"}),
		tu.Namespace(peerClientsNS, m{"access": "yes"}),
		tu.Policy(peerNS, "allow", m{"app": "server"},
			tu.Ingress(peers{tu.PodPeer(m{"role": "client"}), tu.NSPeer(m{"access": "yes"}, nil)})),
	}
	for i := range dpDecoys {
		objs = append(objs, tu.Policy(peerNS, fmt.Sprintf("decoy-%02d", i), m{"app": "server"},
			tu.Ingress(peers{tu.PodPeer(m{"app": fmt.Sprintf("caller-%02d", i)})}, tu.Port(v1.ProtocolTCP, int32(9000+i), 0)),
			tu.Ingress(peers{tu.NSPeer(m{"team": "platform"}, nil)}, tu.NamedPort(v1.ProtocolTCP, "metrics")),
			tu.Ingress(peers{tu.Block("203.0.113.0/24", "203.0.113.128/25")}, tu.Port(v1.ProtocolTCP, 443, 0))))
	}
	for _, name := range []string{"nft", "kr"} {
		for _, pod := range peerPods {
			if pod.name == "newcomer" {
				continue
			}
			objs = append(objs, pl.probePod(pl.nodes[name], pod.name))
		}
	}
	return objs
}

// probePod is the API object of a node's probe pod.
func (pl *peerLab) probePod(n peerNode, name string) *v1.Pod {
	for _, pod := range peerPods {
		if pod.name == name {
			ns, podName, _ := strings.Cut(n.id(name), "/")
			labels := map[string]string{}
			for k, v := range pod.labels {
				labels[k] = v
			}
			return tu.Pod(ns, podName, gen.NodeUnderTest, labels, []string{n.ip(pod.host).String()},
				tu.WithPort("http", v1.ProtocolTCP, peerPort), tu.WithPort("metrics", v1.ProtocolTCP, 9100))
		}
	}
	panic("no probe pod " + name)
}

// isolateServer2 is the policy of the policy add/delete flip.
func isolateServer2() *networkingv1.NetworkPolicy {
	return tu.Policy(peerNS, "isolate-server2", map[string]string{"app": "server2"}, tu.Types(networkingv1.PolicyTypeIngress))
}

// flip is one event: a write and what a prober then sees.
type flip struct {
	kind  string
	from  string     // the prober's lab endpoint
	to    netip.Addr // its destination (port peerPort)
	want  netlab.Verdict
	write func(ctx context.Context) error
	// prepare, when set, runs a gap before the write: the step before it
	// that a real cluster takes long before (see flips).
	prepare func(ctx context.Context) error
}

// flips are the events of one round on node n, each returning the probe
// state to where it started once the round is over. A pod comes and goes
// in two writes each, as in a real cluster, where seconds separate them:
// its object (Pending, no address), then the kubelet's status write that
// gives it its address and makes it matter (the timed write); a graceful
// delete (deletionTimestamp; the pod still runs), then the kubelet's final
// delete once its containers are gone (timed). Back to back, the second
// write of each pair would wait for nftpolicy's --min-sync-period after
// the first's sync.
func (pl *peerLab) flips(n peerNode) []flip {
	core, netv1 := pl.kc.CoreV1(), pl.kc.NetworkingV1()
	relabel := func(pod, key, value string) func(ctx context.Context) error {
		ns, name, _ := strings.Cut(n.id(pod), "/")
		return func(ctx context.Context) error {
			p, err := core.Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			p.Labels[key] = value
			_, err = core.Pods(ns).Update(ctx, p, metav1.UpdateOptions{})
			return err
		}
	}
	nsLabel := func(value string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			o, err := core.Namespaces().Get(ctx, peerClientsNS, metav1.GetOptions{})
			if err != nil {
				return err
			}
			o.Labels["access"] = value
			_, err = core.Namespaces().Update(ctx, o, metav1.UpdateOptions{})
			return err
		}
	}
	newcomer := pl.probePod(n, "newcomer")
	return []flip{
		{flipPodAdd, n.id("newcomer"), n.server, netlab.Allowed, func(ctx context.Context) error {
			p, err := core.Pods(newcomer.Namespace).Get(ctx, newcomer.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			p.Status = pl.placed(newcomer).Status
			_, err = core.Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
			return err
		}, func(ctx context.Context) error {
			p := newcomer.DeepCopy()
			p.Status = v1.PodStatus{}
			p.Spec.Containers[0].Image = "registry.invalid/none"
			_, err := core.Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
			return err
		}},
		{flipPodDelete, n.id("newcomer"), n.server, netlab.Denied, func(ctx context.Context) error {
			return integration.DeletePod(ctx, pl.kc, newcomer.Namespace, newcomer.Name)
		}, func(ctx context.Context) error {
			grace := int64(300)
			return core.Pods(newcomer.Namespace).Delete(ctx, newcomer.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
		}},
		{flipPodRelabel, n.id("relabel"), n.server, netlab.Denied, relabel("relabel", "role", "none"), nil},
		{flipPodRelabel, n.id("relabel"), n.server, netlab.Allowed, relabel("relabel", "role", "client"), nil},
		{flipPolAdd, n.id("caller"), n.ip(2), netlab.Denied, func(ctx context.Context) error {
			_, err := netv1.NetworkPolicies(peerNS).Create(ctx, isolateServer2(), metav1.CreateOptions{})
			return err
		}, nil},
		{flipPolDelete, n.id("caller"), n.ip(2), netlab.Allowed, func(ctx context.Context) error {
			return netv1.NetworkPolicies(peerNS).Delete(ctx, "isolate-server2", metav1.DeleteOptions{})
		}, nil},
		{flipNSRelabel, n.id("nsclient"), n.server, netlab.Denied, nsLabel("no"), nil},
		{flipNSRelabel, n.id("nsclient"), n.server, netlab.Allowed, nsLabel("yes"), nil},
	}
}

// runningAgent is nftpolicy's agent or kube-router, in its lab node.
type runningAgent interface {
	stop() error
	running() bool
	logTail() string
}

type nftAgent struct{ p *integration.AgentProcess }

func (a nftAgent) stop() error     { return a.p.Stop(10 * time.Second) }
func (a nftAgent) running() bool   { return a.p.Running() }
func (a nftAgent) logTail() string { return a.p.LogTail() }

type krAgent struct{ p *integration.KubeRouter }

func (a krAgent) stop() error     { return a.p.Stop() }
func (a krAgent) running() bool   { return a.p.Running() }
func (a krAgent) logTail() string { return a.p.LogTail() }

// start starts agent name in its node.
func (pl *peerLab) start(name string) (runningAgent, time.Time, error) {
	switch name {
	case agentNft:
		t := time.Now()
		p, err := integration.StartAgent(integration.AgentSpec{Binary: pl.agentBin, Kubeconfig: pl.env.AgentKubeconfig,
			Node: gen.NodeUnderTest, Enter: filepath.Base(pl.lab.NodeNetNSPath("nft")), LogDir: pl.env.Dir})
		if err != nil {
			return nil, t, err
		}
		return nftAgent{p}, t, nil
	case agentKR:
		p, err := pl.env.Cluster.StartKubeRouter(integration.KubeRouterSpec{Binary: pl.krBin, Node: gen.NodeUnderTest,
			NetNS: filepath.Base(pl.lab.NodeNetNSPath("kr")), MetricsPort: krMetricsPort})
		if err != nil {
			return nil, time.Now(), err
		}
		return krAgent{p}, p.Started, nil
	}
	return nil, time.Time{}, fmt.Errorf("no agent %q", name)
}

const krMetricsPort = 20241

// nodeOf is the lab node an agent runs in.
func (pl *peerLab) nodeOf(name string) peerNode {
	if name == agentNft {
		return pl.nodes["nft"]
	}
	return pl.nodes["kr"]
}

// flush empties a node's firewall: nftables (which holds iptables-nft's
// tables as well), iptables-legacy where there is one, and the ipsets.
func (pl *peerLab) flush(n peerNode) error {
	ns := filepath.Base(pl.lab.NodeNetNSPath(n.name))
	cmds := [][]string{{"nft", "flush", "ruleset"}, {"ipset", "destroy"}}
	if _, err := exec.LookPath("iptables-legacy-restore"); err == nil {
		cmds = append([][]string{{"iptables-legacy", "-F"}, {"iptables-legacy", "-X"}}, cmds...)
	}
	for _, c := range cmds {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, c...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s in %s: %v: %s", strings.Join(c, " "), n.name, err, out)
		}
	}
	return nil
}

// markerFlip is the verdict that shows an agent has programmed its node:
// the newcomer (no object yet) may not reach the isolated server.
func (pl *peerLab) markerFlip(n peerNode) flip {
	return flip{kind: "full programming", from: n.id("newcomer"), to: n.server, want: netlab.Denied}
}

// measureAgent measures one agent alone: fullReps starts from an empty
// node, then rounds of flips; it stops the agent and empties its node.
func (pl *peerLab) measureAgent(ctx context.Context, name string, p peerPlan) (*PeerAgent, error) {
	res := &PeerAgent{Name: name}
	n := pl.nodeOf(name)
	var fulls []time.Duration
	var agent runningAgent
	defer func() {
		if agent != nil {
			agent.stop()
		}
		pl.flush(n)
	}()
	for rep := range p.fullReps {
		if err := pl.flush(n); err != nil {
			return res, err
		}
		if v := pl.lab.ProbeAddr(ctx, n.id("newcomer"), n.server, "TCP", peerPort, time.Second); v.Verdict != netlab.Allowed {
			return res, fmt.Errorf("%s: before the agent starts, the probe is %v, not allowed", n.name, v)
		}
		a, started, err := pl.start(name)
		if err != nil {
			return res, err
		}
		agent = a
		d, _, err := pl.measureFlip(ctx, pl.markerFlip(n), started, p.cutoff, agent)
		if err != nil {
			res.FullCut = fmt.Sprintf("no correct verdict %.0f s after the start: %v", time.Since(started).Seconds(), err)
			return res, fmt.Errorf("%s full programming: %w", name, err)
		}
		fulls = append(fulls, d)
		pl.cfg.logf("real kube-router: %s programs %s from empty in %v", name, n.name, d.Round(time.Millisecond))
		if rep < p.fullReps-1 {
			agent.stop()
			agent = nil
		}
	}
	res.Full = DistOf(fulls)
	lat := map[string][]time.Duration{}
	flaps, missed, flapSeen := map[string]int{}, map[string]int{}, map[string]string{}
	for round := range p.rounds {
		for _, f := range pl.flips(n) {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			for _, step := range []func(context.Context) error{f.prepare, nil} {
				if err := pl.waitIdle(ctx, agent, p.cutoff); err != nil {
					return res, err
				}
				time.Sleep(peerGap)
				if step == nil {
					break
				}
				if err := step(ctx); err != nil {
					return res, fmt.Errorf("%s: %w", f.kind, err)
				}
			}
			d, fl, err := pl.measureFlip(ctx, f, time.Time{}, p.cutoff, agent)
			flaps[f.kind] += fl.n
			if fl.n > 0 && flapSeen[f.kind] == "" {
				flapSeen[f.kind] = fl.seen
			}
			if err != nil {
				missed[f.kind]++
				res.Errors = append(res.Errors, fmt.Sprintf("round %d %s: %v", round, f.kind, err))
				if len(res.Errors) > 5 {
					return res, fmt.Errorf("%s: too many missed flips: %s", name, strings.Join(res.Errors, "; "))
				}
				continue
			}
			lat[f.kind] = append(lat[f.kind], d)
		}
		var parts []string
		for _, k := range flipKinds() {
			if l := lat[k]; len(l) > 0 {
				parts = append(parts, fmt.Sprintf("%s %.0f ms", k, ms(l[len(l)-1])))
			}
		}
		pl.cfg.logf("real kube-router: %s round %d/%d: %s", name, round+1, p.rounds, strings.Join(parts, ", "))
	}
	for _, k := range flipKinds() {
		res.Events = append(res.Events, PeerEvent{Kind: k, Latency: DistOf(lat[k]), Flaps: flaps[k], Missed: missed[k], FlapSeen: flapSeen[k]})
	}
	if kr, ok := agent.(krAgent); ok {
		s := parseKubeRouterLog(kr.p.Log())
		res.Syncs, res.SyncErrors, res.SyncTook = s.Ended, s.Aborted, DistOf(s.Took)
		res.Errors = append(res.Errors, s.Errors...)
		if m, ok := pl.krMetrics(ctx); ok {
			res.Chains, res.IPSets = m.Chains, m.IPSets
			if m.SyncCount != s.Ended {
				res.Errors = append(res.Errors, fmt.Sprintf("metrics count %d syncs, the log %d", m.SyncCount, s.Ended))
			}
		}
	}
	return res, nil
}

// krMetrics reads kube-router's /metrics from inside its node.
func (pl *peerLab) krMetrics(ctx context.Context) (krMetrics, bool) {
	dial := pl.lab.DialFrom("node/kr")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) { return dial(ctx, network, addr) }}}
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/metrics", krMetricsPort), nil)
	if err != nil {
		return krMetrics{}, false
	}
	resp, err := client.Do(req)
	if err != nil {
		return krMetrics{}, false
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return parseKubeRouterMetrics(b.String())
}

// waitIdle waits until kube-router has no sync running (its log has
// ended every sync it started): a flip measured while a rebuild runs
// would time the queue, not the event. nftpolicy's syncs take
// milliseconds; peerGap covers them.
func (pl *peerLab) waitIdle(ctx context.Context, a runningAgent, cutoff time.Duration) error {
	kr, ok := a.(krAgent)
	if !ok {
		return nil
	}
	deadline := time.Now().Add(cutoff)
	for !parseKubeRouterLog(kr.p.Log()).idle() {
		if !kr.p.Running() {
			return fmt.Errorf("kube-router exited:\n%s", kr.p.LogTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-router still syncing after %v", cutoff)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// flapCount is how many probes saw the old verdict again after the
// first with the new one, and how the first of them showed.
type flapCount struct {
	n    int
	seen string
}

// measureFlip probes f.from → f.to every peerProbeEvery, makes f's write
// (none when f.write is nil: since is then the agent's start) and returns
// the time to the first probe with the new verdict and how many probes
// after it saw the old one (watched for peerProbeTimeout more).
func (pl *peerLab) measureFlip(ctx context.Context, f flip, since time.Time, cutoff time.Duration, a runningAgent) (time.Duration, flapCount, error) {
	old := netlab.Allowed
	if f.want == netlab.Allowed {
		old = netlab.Denied
	}
	if f.write != nil {
		// The old verdict must hold before the write.
		if v := pl.lab.ProbeAddr(ctx, f.from, f.to, "TCP", peerPort, peerProbeTimeout); v.Verdict != old {
			return 0, flapCount{}, fmt.Errorf("%s: before the write %s → %v is %v, not %v", f.kind, f.from, f.to, v, old)
		}
	}
	pr := lab.StartProber(ctx, pl.lab, f.from, f.to, "TCP", peerPort, peerProbeEvery, peerProbeTimeout)
	if f.write != nil {
		time.Sleep(3 * peerProbeEvery)
		since = time.Now()
		if err := f.write(ctx); err != nil {
			pr.Stop()
			return 0, flapCount{}, fmt.Errorf("%s: write: %w", f.kind, err)
		}
	}
	deadline := since.Add(cutoff)
	var seen time.Time
	for seen.IsZero() {
		for _, r := range pr.Records() {
			if !r.Start.Before(since) && r.Outcome.Verdict == f.want {
				seen = r.Start
				break
			}
		}
		if !seen.IsZero() {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil || !a.running() {
			pr.Stop()
			return 0, flapCount{}, fmt.Errorf("%s: %s → %v not %v %v after the event", f.kind, f.from, f.to, f.want, time.Since(since).Round(time.Millisecond))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Watch a little longer for flaps back to the old verdict.
	time.Sleep(peerProbeTimeout + 10*peerProbeEvery)
	recs := pr.Stop()
	var first *lab.ProbeRecord
	var flaps flapCount
	for i := range recs {
		r := &recs[i]
		if r.Start.Before(since) {
			continue
		}
		if first == nil {
			if r.Outcome.Verdict == f.want {
				first = r
			}
			continue
		}
		if r.Outcome.Verdict == old {
			if flaps.n == 0 {
				flaps.seen = fmt.Sprintf("first %v at +%v, then %v at +%v", first.Outcome, first.Start.Sub(since).Round(time.Millisecond),
					r.Outcome, r.Start.Sub(since).Round(time.Millisecond))
			}
			flaps.n++
		}
	}
	if first == nil {
		return 0, flaps, fmt.Errorf("%s: lost the probe record", f.kind)
	}
	at := first.Start // denied: its SYN left after this
	if f.want == netlab.Allowed {
		at = first.End // allowed: its handshake had ended by this
	}
	return at.Sub(since), flaps, nil
}

// dataPath measures new connections/s on the three nodes, each with its
// own rules: bare (none), nft (nftpolicy's), kr (kube-router's), rounds
// rotating the order so that drift from other load cancels out.
func (pl *peerLab) dataPath(ctx context.Context, p peerPlan) (*PeerDataPath, error) {
	res := &PeerDataPath{Rounds: p.dpRounds, PerRound: p.dpConns, Policies: 1 + dpDecoys}
	var agents []runningAgent
	defer func() {
		for _, a := range agents {
			a.stop()
		}
	}()
	for _, name := range []string{agentNft, agentKR} {
		a, started, err := pl.start(name)
		if err != nil {
			return res, err
		}
		agents = append(agents, a)
		if _, _, err := pl.measureFlip(ctx, pl.markerFlip(pl.nodeOf(name)), started, p.cutoff, a); err != nil {
			return res, fmt.Errorf("data path: %s: %w", name, err)
		}
	}
	states := []struct{ name, node string }{{stateNone, "bare"}, {agentNft, "nft"}, {agentKR, "kr"}}
	fds := make([]int, len(states))
	for i, st := range states {
		fd, err := openNS(pl.lab.NetNSPath(pl.nodes[st.node].id("dpclient")))
		if err != nil {
			return res, err
		}
		defer unix.Close(fd)
		fds[i] = fd
	}
	rates := make([][]float64, len(states))
	lats := make([][]time.Duration, len(states))
	for round := range p.dpRounds {
		for k := range states {
			si := (k + round) % len(states) // rotate the order
			dst := netip.AddrPortFrom(pl.nodes[states[si].node].server, peerPort)
			if _, err := connectLoopAddr(fds[si], dst, p.dpConns/10); err != nil {
				return res, fmt.Errorf("data path %s: %w", states[si].name, err)
			}
			l, err := connectLoopAddr(fds[si], dst, p.dpConns)
			if err != nil {
				return res, fmt.Errorf("data path %s: %w", states[si].name, err)
			}
			rates[si] = append(rates[si], l.rate)
			lats[si] = append(lats[si], l.lats...)
		}
	}
	none := DistOfFloats(rates[0]).P50
	for i, st := range states {
		r := DistOfFloats(rates[i])
		res.States = append(res.States, DPState{Name: st.name, Rate: r, Connect: DistOf(lats[i]), Ratio: ratio(r.P50, none)})
	}
	// The rules were live: the newcomer (no object) is still refused on
	// both nodes.
	var parts []string
	for _, name := range []string{agentNft, agentKR} {
		n := pl.nodeOf(name)
		v := pl.lab.ProbeAddr(ctx, n.id("newcomer"), n.server, "TCP", peerPort, peerProbeTimeout)
		parts = append(parts, fmt.Sprintf("%s: newcomer → server %v", name, v))
		if v.Verdict != netlab.Denied {
			res.Enforcing = "broken: " + strings.Join(parts, "; ")
			return res, nil
		}
	}
	res.Enforcing = "yes: " + strings.Join(parts, "; ") + " after the measurement, the clients' connections allowed"
	pl.cfg.logf("real kube-router: data path connections/s p50: none %.0f, nftpolicy %.0f, kube-router %.0f",
		res.States[0].Rate.P50, res.States[1].Rate.P50, res.States[2].Rate.P50)
	return res, nil
}

// realPeerMarkdown is the real peer's section of results.md.
func realPeerMarkdown(r *RealPeerResult) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("\n## The real peer: kube-router %s side by side, measured by packets\n\n", r.KubeRouter)
	if r.Skipped != "" {
		w("skipped: %s\n", r.Skipped)
		return b.String()
	}
	w("kube-router %s (its firewall controller only; %s, %s) and nftpolicy's agent binary, each alone in an identical lab node, against the same real kube-apiserver holding the same generated cluster; both program the same local pods, the node under test's. "+
		"An event is one API write that flips what a prober in the node sees (a new connection every %s); latency: the write's start → the first probe with the new verdict. "+
		"Writes are %s apart (both agents idle before each). Both agents run with their defaults (nftpolicy's --min-sync-period 1 s). How to read this: docs/performance.md.\n",
		r.KubeRouter, r.Iptables, r.Ipset, fmtMs(r.ProbeEveryMs), fmtMs(r.GapMs))
	for _, s := range r.Sizes {
		w("\n### %s: %d pods, %d policies (%d objects written; the node under test has %d pods and %d policies selecting them; setup %.0f s)\n\n",
			s.Size.Name, s.Size.Pods, s.Size.Policies, s.Objects, s.PodsOnNode, s.PoliciesOnNode, s.SetupSeconds)
		if s.Error != "" {
			w("error: %s\n\n", s.Error)
		}
		if len(s.Agents) == 0 {
			continue
		}
		w("| | n |")
		for _, a := range s.Agents {
			w(" %s p50 | p99 |", a.Name)
		}
		w("\n|---|---|")
		for range s.Agents {
			w("---|---|")
		}
		w("\n| full programming: process start → first correct verdict | %d |", s.Agents[0].Full.N)
		for _, a := range s.Agents {
			if a.FullCut != "" {
				w(" cut off: %s | |", a.FullCut)
				continue
			}
			w(" %s | %s |", fmtMs(a.Full.P50), fmtMs(a.Full.P99))
		}
		w("\n")
		for i, k := range flipKinds() {
			n := 0
			if i < len(s.Agents[0].Events) {
				n = s.Agents[0].Events[i].Latency.N
			}
			w("| %s | %d |", k, n)
			for _, a := range s.Agents {
				if i >= len(a.Events) {
					w(" – | – |")
					continue
				}
				e := a.Events[i]
				w(" %s | %s |", fmtMs(e.Latency.P50), fmtMs(e.Latency.P99))
			}
			w("\n")
		}
		w("\n")
		for _, a := range s.Agents {
			flaps, missed := 0, 0
			for _, e := range a.Events {
				flaps += e.Flaps
				missed += e.Missed
			}
			w("- %s: %d flips missed, %d probes saw the old verdict again after the new one", a.Name, missed, flaps)
			if a.Syncs > 0 {
				w("; its own account of its last process: %d full syncs, p50 %s, p99 %s (log), %d aborted; %d policy chains, %d ipsets (metrics)",
					a.Syncs, fmtMs(a.SyncTook.P50), fmtMs(a.SyncTook.P99), a.SyncErrors, a.Chains, a.IPSets)
			}
			if a.Error != "" {
				w("; error: %s", a.Error)
			}
			w(".\n")
			for _, e := range a.Errors {
				w("  - %s\n", e)
			}
			for _, e := range a.Events {
				if e.FlapSeen != "" {
					w("  - %s: %d flaps; the first: %s\n", e.Kind, e.Flaps, e.FlapSeen)
				}
			}
		}
		if dp := s.DataPath; dp != nil && len(dp.States) > 0 {
			w("\nData path: new TCP connections/s from a client pod to a server pod on the same node (the server selected by %d policies), %d rounds × %d connections per node, the order rotating. Rules live: %s.\n\n",
				dp.Policies, dp.Rounds, dp.PerRound, dp.Enforcing)
			w("| node's rules | connections/s p50 | min–max over rounds | ÷ none | connect p50 | p99 |\n|---|---|---|---|---|---|\n")
			for _, st := range dp.States {
				w("| %s | %.0f | %.0f–%.0f | %.2f× | %s | %s |\n", st.Name, st.Rate.P50, st.Rate.Min, st.Rate.Max, st.Ratio, fmtMs(st.Connect.P50), fmtMs(st.Connect.P99))
			}
		}
	}
	return b.String()
}
