// Package lab runs scenario files on real network namespaces: one namespace
// per node, pod and external, one real agent per node programming real
// nftables through netlink, fed by a fake API server (client-go's fake
// clientset, so the agent's code path is the one a cluster uses), and real
// TCP/UDP probes compared with what the scenario expects. With
// Options.Server the agents are fed by a real API server instead.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	policyclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/conntrack"
	"github.com/nftpolicy/nftpolicy/internal/integration"
	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/manifest"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/internal/scenario"
)

// Options tune a run.
type Options struct {
	// ProbeTimeout is how long a probe waits before it counts as dropped.
	ProbeTimeout time.Duration
	// BarrierTimeout bounds the wait for the agents after each step.
	BarrierTimeout time.Duration
	// Keep leaves the lab up after the run (KeptPrefix in the result).
	Keep bool
	// RulesetOf, when set, names a node whose table is captured (as `nft
	// list table` prints it) at the end of the run.
	RulesetOf string
	// Server, when set, runs the scenario against a real API server
	// instead of the fake clientset (nftlab run --apiserver).
	Server *Server
	// Servers, for a file with clusters, run each cluster named there
	// against its real API server (the others on fake ones).
	Servers map[string]*Server
	// Log, when set, gets a line naming the run's namespace prefix as the
	// run starts, so a person (or `lab down` after a kill) can find it.
	Log io.Writer
	// DeployDir holds deploy/'s manifests (the policy CRDs, RBAC), which
	// a scenario with Services creates in its own API server; default:
	// deploy/ in the working directory or a parent.
	DeployDir string
	// NoDNSLearning runs the agents with --fqdn-log-group 0: they learn no
	// DNS answer, so domainNames peers match nothing (a test's broken
	// variant).
	NoDNSLearning bool
}

// Result is a run's report plus what the options asked for.
type Result struct {
	Report     scenario.Report
	Ruleset    string
	Prefix     string // every namespace of the run starts with it
	KeptPrefix string // set when the lab was kept
	// FlowsCut is, per node, the conntrack entries its agent deleted
	// because a change denied their flows.
	FlowsCut map[string]int
}

// Run executes one scenario. Scenario errors and mismatches are in the
// report; the lab is cleaned up whatever happens unless opts.Keep.
func Run(ctx context.Context, sc *scenario.Scenario, opts Options) (res Result) {
	if sc.Members != nil {
		return runClusterSet(ctx, sc, opts)
	}
	// res is named: the deferred cleanup adds its errors and KeptPrefix.
	r := newRun(sc, opts)
	res = Result{Report: scenario.Report{Scenario: sc.Name, File: sc.File}, Prefix: r.net.Prefix()}
	if opts.Log != nil {
		fmt.Fprintf(opts.Log, "lab %s: network namespaces %s*\n", sc.Name, r.net.Prefix())
	}
	stopSignals := netlab.CleanupOnSignal(r.net)
	defer stopSignals()
	ctx, cancel := context.WithCancel(ctx)
	var agents sync.WaitGroup
	defer func() {
		cancel()
		agents.Wait()
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		if err := r.be.cleanup(cctx, r.state); err != nil {
			res.Report.Errors = append(res.Report.Errors, "cleanup: "+err.Error())
		}
		ccancel()
		if opts.Keep {
			res.KeptPrefix = r.net.Prefix()
			return
		}
		if err := r.net.Close(); err != nil {
			res.Report.Errors = append(res.Report.Errors, "cleanup: "+err.Error())
		}
	}()
	if err := r.start(ctx, &agents); err != nil {
		res.Report.Errors = append(res.Report.Errors, err.Error())
		return res
	}
	for i := range sc.Steps {
		r.step(ctx, &sc.Steps[i], &res.Report)
	}
	res.FlowsCut = map[string]int{}
	for n, a := range r.agents {
		res.FlowsCut[n] = a.Stats().FlowsCut
	}
	if opts.RulesetOf != "" {
		out, err := exec.Command("ip", "netns", "exec", filepath.Base(r.net.NodeNetNSPath(opts.RulesetOf)), "nft", "list", "table", "inet", nft.TableName).CombinedOutput()
		res.Ruleset = string(out)
		if err != nil {
			res.Report.Errors = append(res.Report.Errors, fmt.Sprintf("listing the ruleset of %s: %v", opts.RulesetOf, err))
		}
	}
	return res
}

// start builds the lab, starts the agents (and for a scenario with
// Services its own control plane and kube-proxies) and waits for them to
// program the starting state: the first probe may come before any step
// changes anything.
func (r *run) start(ctx context.Context, agents *sync.WaitGroup) error {
	if HasServices(r.sc) {
		// A scenario with Services always gets its own control plane, in
		// the lab's namespaces: kube-proxy in the nodes must reach it.
		if err := r.startControlPlane(ctx); err != nil {
			return err
		}
	}
	if err := r.setup(ctx, agents); err != nil {
		return err
	}
	if r.cp != nil {
		if err := r.startProxies(); err != nil {
			return err
		}
	}
	if err := r.barrier(ctx); err != nil {
		return fmt.Errorf("waiting for the agents' first sync: %w", err)
	}
	return nil
}

func newRun(sc *scenario.Scenario, opts Options) *run {
	if opts.ProbeTimeout == 0 {
		opts.ProbeTimeout = time.Second
	}
	if opts.BarrierTimeout == 0 {
		opts.BarrierTimeout = 30 * time.Second
	}
	r := &run{
		sc:     sc,
		opts:   opts,
		net:    netlab.New(""),
		be:     newFakeBackend(),
		state:  map[scenario.ObjectRef]runtime.Object{},
		addrs:  manifest.NewAddresses(sc.Nodes, sc.IPFamilies, allObjects(sc)).WithNodeBase(sc.NodeBase),
		ports:  sc.ProbedPorts(),
		pods:   map[string]bool{},
		agents: map[string]*agent.Agent{},
	}
	if opts.Server != nil {
		// A server shared by runs: each removes what it wrote.
		r.be = &serverBackend{c: opts.Server.Writer, agent: opts.Server.agentClients(), shared: true}
	}
	return r
}

// allObjects returns every object of a scenario, in any step.
func allObjects(sc *scenario.Scenario) []runtime.Object {
	out := slices.Clone(sc.Objects)
	for _, st := range sc.Steps {
		out = append(out, st.Apply...)
	}
	return out
}

type run struct {
	sc     *scenario.Scenario
	opts   Options
	net    *netlab.Lab
	be     backend // where the objects are written and the agents watch
	state  map[scenario.ObjectRef]runtime.Object
	addrs  *manifest.Addresses // the addresses of nodes and pods, as nftpolicy compile gives them
	pods   map[string]bool     // ids of the pods whose namespaces exist
	agents map[string]*agent.Agent
	ports  []scenario.PortProtocol // what every endpoint listens on
	// In a file with clusters (clusterset.go), each cluster is a run on
	// the one lab: cluster names it (and qualifies its names in the lab),
	// remoteWant adds the other clusters' objects to its barrier, and
	// agentConfig adds what its agents need to watch them.
	cluster     string
	remoteWant  func(context.Context) (map[string]string, error)
	agentConfig func(*agent.Config)
	// cp is the run's own control plane and kube-proxies (a scenario
	// with Services), proxyBin kube-proxy's binary.
	cp       *controlPlane
	proxyBin string
	names    *NameServer // the scenario's name server (dns.go), if any
	nets     netState    // networks.go
}

func (r *run) setup(ctx context.Context, agents *sync.WaitGroup) error {
	// Nodes first: pods need their node's namespace.
	for _, obj := range r.sc.Objects {
		node, ok := obj.(*corev1.Node)
		if !ok {
			continue
		}
		// The node object gets its addresses when it is applied, below.
		if err := r.net.AddNode(r.qualify(node.Name), r.addrs.Node(node.Name, manifest.NodeInternalIPs(node))); err != nil {
			return fmt.Errorf("node %s: %w", node.Name, err)
		}
	}
	if err := r.setupNetworks(ctx); err != nil {
		return err
	}
	for _, e := range r.sc.Externals {
		if e.Network != "" {
			continue // on its VLAN (setupNetworks)
		}
		if err := r.net.AddExternal(e.Name, e.IPs); err != nil {
			return fmt.Errorf("external %s: %w", e.Name, err)
		}
	}
	if err := r.startNameServer(); err != nil {
		return fmt.Errorf("name server: %w", err)
	}
	for _, obj := range r.sc.Objects {
		if err := r.apply(ctx, obj); err != nil {
			return err
		}
	}
	if r.cp != nil {
		if err := r.syncServices(ctx); err != nil {
			return err
		}
	}
	for _, n := range r.sc.Nodes {
		if err := r.listen("node/"+r.qualify(n), nil); err != nil {
			return err
		}
	}
	for _, e := range r.sc.Externals {
		if err := r.listen("external/"+e.Name, nil); err != nil {
			return err
		}
	}
	for _, n := range r.sc.Nodes {
		f, err := os.Open(r.net.NodeNetNSPath(r.qualify(n)))
		if err != nil {
			return fmt.Errorf("node %s: %w", n, err)
		}
		c := r.be.agentClients()
		fd := int(f.Fd())
		// Conntrack: established flows a change denies are cut, as the
		// agent does by default (--cut-denied-flows). Without it a probe
		// whose random source port repeats an earlier allowed probe's
		// (about 1 in 28,000 per earlier flow still tracked) rides that
		// flow's conntrack entry past a new Deny: the likely cause of a
		// pair CI once saw allowed after an admin policy's Deny.
		cfg := agent.Config{NodeName: n, Kernel: nft.NewNetlink(fd), Conntrack: conntrack.NewNetlink(fd), ResyncInterval: time.Hour, PolicyClient: c.Policy,
			Model:      model.Options{DNSGroup: r.dnsGroup()},
			DNSAnswers: DNSAnswersIn(fd), DNSMinTTL: dnsMinTTL, DNSMaxTTL: time.Hour, DNSMaxBindings: 65536,
			IPVSDetect: func() bool { return agent.DetectIPVS(fd) }} // as the agent's default, --ipvs=auto
		if c.Dynamic != nil {
			cfg.Dynamic, cfg.NetworkKernel, cfg.ListNetworkTables = c.Dynamic, networkKernel(f), listNetworkTables(f)
		}
		if r.agentConfig != nil {
			r.agentConfig(&cfg)
		}
		a := agent.New(cfg, c.Kube)
		r.agents[n] = a
		agents.Add(1)
		go func() {
			defer agents.Done()
			defer f.Close()
			if err := a.Run(ctx); err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "agent on %s: %v\n", n, err)
			}
		}()
	}
	return nil
}

// apply creates or updates obj in the fake API server, and for pods the
// namespace, addresses and listeners behind them.
func (r *run) apply(ctx context.Context, obj runtime.Object) error {
	obj = obj.DeepCopyObject()
	ref := manifest.RefOf(obj)
	r.addrs.Assign(obj)
	if pod, ok := obj.(*corev1.Pod); ok {
		if err := r.placePod(pod); err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
	}
	_, exists := r.state[ref]
	if svc, ok := obj.(*corev1.Service); ok {
		r.prepareService(svc)
	}
	stored, err := r.be.write(ctx, exists, obj)
	if err != nil {
		return fmt.Errorf("%s: %w", ref, err)
	}
	if _, ok := obj.(*corev1.Service); ok {
		// What the API server allocated: cluster IPs, node ports.
		obj = stored
	}
	obj.(metav1.Object).SetResourceVersion(stored.(metav1.Object).GetResourceVersion())
	r.state[ref] = obj
	return nil
}

// placePod builds the namespace of a pod on first sight, at the addresses
// Addresses.Assign gave it, and makes it listen. A hostNetwork pod is its
// node.
func (r *run) placePod(pod *corev1.Pod) error {
	id := pod.Namespace + "/" + pod.Name
	if pod.Spec.HostNetwork {
		return nil
	}
	first := !r.pods[id]
	if !r.pods[id] {
		if err := r.net.AddPod(r.qualify(id), r.qualify(pod.Spec.NodeName), manifest.PodIPs(pod)); err != nil {
			return err
		}
		r.pods[id] = true
	}
	if err := r.attachNetworks(pod, first); err != nil {
		return err
	}
	return r.listen(r.qualify(id), pod)
}

// listen makes an endpoint listen on every probed port, and a pod also on
// its declared container ports (which named-port probes resolve to).
func (r *run) listen(endpoint string, pod *corev1.Pod) error {
	for _, pp := range r.ports {
		if err := r.net.Listen(endpoint, string(pp.Protocol), uint16(pp.Port)); err != nil {
			return err
		}
	}
	if pod == nil {
		return nil
	}
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			proto := cp.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			if err := r.net.Listen(endpoint, string(proto), uint16(cp.ContainerPort)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *run) delete(ctx context.Context, ref scenario.ObjectRef) error {
	obj, ok := r.state[ref]
	if !ok {
		return fmt.Errorf("delete %s: no such object", ref)
	}
	err := r.be.remove(ctx, ref)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s: %w", ref, err)
	}
	if pod, ok := obj.(*corev1.Pod); ok && !pod.Spec.HostNetwork {
		id := ref.Namespace + "/" + ref.Name
		delete(r.pods, id)
		r.addrs.Release(id)
		if err := r.net.RemovePod(r.qualify(id)); err != nil {
			return fmt.Errorf("delete %s: %w", ref, err)
		}
	}
	delete(r.state, ref)
	return nil
}

// qualify is a node's name or a pod's "namespace/name" in the lab: as it
// is, or in a file with clusters "CLUSTER.name" (a node) and
// "CLUSTER.namespace/name" (a pod), so that clusters' names never collide.
func (r *run) qualify(name string) string {
	if r.cluster == "" {
		return name
	}
	return r.cluster + "." + name
}

// barrier waits until every agent has applied exactly the objects that
// exist now, at their current versions.
func (r *run) barrier(ctx context.Context) error {
	if err := r.be.barrier(ctx, r); err != nil {
		return err
	}
	if r.cp != nil {
		// Then the service proxies.
		return r.proxyBarrier(ctx)
	}
	return nil
}

// Clients reach a real API server: the core kinds and the
// network-policy-api kinds (whose CRDs must be installed).
type Clients struct {
	Kube   kubernetes.Interface
	Policy policyclient.Interface
	// Dynamic watches the CRD kinds of secondary networks; nil: none.
	Dynamic dynamic.Interface
}

// Server runs a scenario against a real API server instead of the fake
// clientset. The run writes the scenario's objects as Writer (it plays the
// user, the scheduler and the kubelet: pods are created bound to their
// node and get their addresses through the status subresource) and runs
// its agents with Agent's credentials (Writer's when Agent.Kube is nil).
// The run removes what it created when it ends, so one server can serve
// many runs, one after the other.
type Server struct {
	Writer Clients
	Agent  Clients
	// Remote is how the agents of other clusters read this one (a file
	// with clusters): deploy/30-clusterset-reader.yaml's account.
	Remote *rest.Config
}

// agentClients are the clients the agents watch with: Agent's, or
// Writer's when Agent.Kube is nil.
func (s *Server) agentClients() Clients {
	if s.Agent.Kube == nil {
		return s.Writer
	}
	return s.Agent
}

// serverBackend writes objects to a real API server as c, and its agents
// watch it as agent. A shared server serves many runs, one after the
// other: each run removes what it wrote.
type serverBackend struct {
	c, agent Clients
	shared   bool
}

func (s *serverBackend) agentClients() Clients { return s.agent }

func meta(obj runtime.Object) metav1.Object { return obj.(metav1.Object) }

// write creates or updates obj and returns it as the server stored it.
// An update takes the stored object's resourceVersion (the agents' status
// writes move it), retrying on conflicts; nodes and pods then get their
// status through the status subresource, as a kubelet would write it.
func (s *serverBackend) write(ctx context.Context, exists bool, obj runtime.Object) (runtime.Object, error) {
	k, p := s.c.Kube, s.c.Policy
	switch o := obj.(type) {
	case *corev1.Namespace:
		c := k.CoreV1().Namespaces()
		return serverUpsert(ctx, exists, o, c.Get, c.Create, c.Update, nil)
	case *corev1.Node:
		c := k.CoreV1().Nodes()
		return serverUpsert(ctx, exists, o, c.Get, c.Create, c.Update, func(stored *corev1.Node) (*corev1.Node, error) {
			stored.Status = o.Status
			return c.UpdateStatus(ctx, stored, metav1.UpdateOptions{})
		})
	case *corev1.Pod:
		o = o.DeepCopy()
		for i := range o.Spec.Containers {
			if o.Spec.Containers[i].Image == "" {
				o.Spec.Containers[i].Image = "registry.invalid/none" // required; nothing pulls it
			}
		}
		c := k.CoreV1().Pods(o.Namespace)
		return serverUpsert(ctx, exists, o, c.Get, c.Create, c.Update, func(stored *corev1.Pod) (*corev1.Pod, error) {
			stored.Status = o.Status
			return c.UpdateStatus(ctx, stored, metav1.UpdateOptions{})
		})
	case *networkingv1.NetworkPolicy:
		c := k.NetworkingV1().NetworkPolicies(o.Namespace)
		return serverUpsert(ctx, exists, o, c.Get, c.Create, c.Update, nil)
	case *corev1.Service:
		c := k.CoreV1().Services(o.Namespace)
		return serverUpsert(ctx, exists, o, c.Get, c.Create, c.Update, nil)
	case *v1alpha1.AdminNetworkPolicy:
		c := p.PolicyV1alpha1().AdminNetworkPolicies()
		return serverUpsert(ctx, exists, o, c.Get, c.Create, c.Update, nil)
	case *v1alpha1.BaselineAdminNetworkPolicy:
		c := p.PolicyV1alpha1().BaselineAdminNetworkPolicies()
		return serverUpsert(ctx, exists, o, c.Get, c.Create, c.Update, nil)
	case *v1alpha2.ClusterNetworkPolicy:
		c := p.PolicyV1alpha2().ClusterNetworkPolicies()
		return serverUpsert(ctx, exists, o, c.Get, c.Create, c.Update, nil)
	}
	return nil, fmt.Errorf("kind %s is not enforced by this version of nftpolicy", obj.GetObjectKind().GroupVersionKind().Kind)
}

func serverUpsert[T runtime.Object](ctx context.Context, exists bool, obj T,
	get func(context.Context, string, metav1.GetOptions) (T, error),
	create func(context.Context, T, metav1.CreateOptions) (T, error),
	update func(context.Context, T, metav1.UpdateOptions) (T, error),
	status func(T) (T, error)) (runtime.Object, error) {
	obj = obj.DeepCopyObject().(T)
	meta(obj).SetResourceVersion("")
	var stored T
	var err error
	if !exists {
		stored, err = create(ctx, obj, metav1.CreateOptions{})
	} else {
		for try := 0; ; try++ {
			var cur T
			if cur, err = get(ctx, meta(obj).GetName(), metav1.GetOptions{}); err != nil {
				break
			}
			meta(obj).SetResourceVersion(meta(cur).GetResourceVersion())
			stored, err = update(ctx, obj, metav1.UpdateOptions{})
			if !apierrors.IsConflict(err) || try == 9 {
				break
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if status == nil {
		return stored, nil
	}
	for try := 0; ; try++ {
		var out T
		out, err = status(stored.DeepCopyObject().(T))
		if err == nil {
			return out, nil
		}
		if !apierrors.IsConflict(err) || try == 9 {
			return nil, err
		}
		if stored, err = get(ctx, meta(obj).GetName(), metav1.GetOptions{}); err != nil {
			return nil, err
		}
	}
}

// remove deletes an object at once (grace period 0: no kubelet confirms).
// A Namespace is an error: its delete cannot finish without a namespace
// controller, and none runs.
func (s *serverBackend) remove(ctx context.Context, ref scenario.ObjectRef) error {
	k, p := s.c.Kube, s.c.Policy
	zero := int64(0)
	opts := metav1.DeleteOptions{GracePeriodSeconds: &zero}
	switch ref.Kind {
	case "Namespace":
		return errors.New("deleting a Namespace is not supported against a real API server (--apiserver): no namespace controller runs to remove its objects and finish the delete; delete the namespace's objects instead")
	case "Node":
		return k.CoreV1().Nodes().Delete(ctx, ref.Name, opts)
	case "Pod":
		return k.CoreV1().Pods(ref.Namespace).Delete(ctx, ref.Name, opts)
	case "NetworkPolicy":
		return k.NetworkingV1().NetworkPolicies(ref.Namespace).Delete(ctx, ref.Name, opts)
	case "Service":
		return k.CoreV1().Services(ref.Namespace).Delete(ctx, ref.Name, opts)
	case "AdminNetworkPolicy":
		return p.PolicyV1alpha1().AdminNetworkPolicies().Delete(ctx, ref.Name, opts)
	case "BaselineAdminNetworkPolicy":
		return p.PolicyV1alpha1().BaselineAdminNetworkPolicies().Delete(ctx, ref.Name, opts)
	case "ClusterNetworkPolicy":
		return p.PolicyV1alpha2().ClusterNetworkPolicies().Delete(ctx, ref.Name, opts)
	}
	return fmt.Errorf("kind %s is not enforced by this version of nftpolicy", ref.Kind)
}

// removeNamespace does what the namespace controller would once the
// namespace is empty: delete, clear the finalizer, delete again.
func (s *serverBackend) removeNamespace(ctx context.Context, name string) error {
	c := s.c.Kube.CoreV1().Namespaces()
	if err := c.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return err
	}
	ns, err := c.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	ns.Spec.Finalizers = nil
	if _, err := c.Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
		return err
	}
	if err := c.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// cleanup removes every object the run still has, namespaced ones first,
// so that the next run on the same server starts empty.
func (s *serverBackend) cleanup(ctx context.Context, state map[scenario.ObjectRef]runtime.Object) error {
	if !s.shared {
		return nil // the run's own server goes with it
	}
	refs := make([]scenario.ObjectRef, 0, len(state))
	for ref := range state {
		refs = append(refs, ref)
	}
	rank := func(ref scenario.ObjectRef) int {
		switch {
		case ref.Kind == "Namespace":
			return 2
		case ref.Namespace != "":
			return 0
		}
		return 1
	}
	sort.Slice(refs, func(i, j int) bool { return rank(refs[i]) < rank(refs[j]) })
	var errs []error
	for _, ref := range refs {
		var err error
		if ref.Kind == "Namespace" {
			err = s.removeNamespace(ctx, ref.Name)
		} else {
			err = s.remove(ctx, ref)
		}
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("removing %s from the API server: %w", ref, err))
		}
	}
	return errors.Join(errs...)
}

// versions lists what the server holds now of every kind the agents
// watch, as WaitApplied's map. It is taken from the server rather than
// from the run's writes: the server has objects the scenario does not
// (its own namespaces), and the agents' status writes on the admin-tier
// policies give those new resourceVersions after the step.
func (s *serverBackend) versions(ctx context.Context) (map[string]string, error) {
	k, p := s.c.Kube, s.c.Policy
	want := map[string]string{}
	add := func(obj runtime.Object) { want[agent.ObjectKey(obj)] = meta(obj).GetResourceVersion() }
	lo := metav1.ListOptions{}
	nss, err := k.CoreV1().Namespaces().List(ctx, lo)
	if err != nil {
		return nil, err
	}
	for i := range nss.Items {
		add(&nss.Items[i])
	}
	nodes, err := k.CoreV1().Nodes().List(ctx, lo)
	if err != nil {
		return nil, err
	}
	for i := range nodes.Items {
		add(&nodes.Items[i])
	}
	pods, err := k.CoreV1().Pods("").List(ctx, lo)
	if err != nil {
		return nil, err
	}
	for i := range pods.Items {
		add(&pods.Items[i])
	}
	nps, err := k.NetworkingV1().NetworkPolicies("").List(ctx, lo)
	if err != nil {
		return nil, err
	}
	for i := range nps.Items {
		add(&nps.Items[i])
	}
	anps, err := p.PolicyV1alpha1().AdminNetworkPolicies().List(ctx, lo)
	if err != nil {
		return nil, err
	}
	for i := range anps.Items {
		add(&anps.Items[i])
	}
	banps, err := p.PolicyV1alpha1().BaselineAdminNetworkPolicies().List(ctx, lo)
	if err != nil {
		return nil, err
	}
	for i := range banps.Items {
		add(&banps.Items[i])
	}
	cnps, err := p.PolicyV1alpha2().ClusterNetworkPolicies().List(ctx, lo)
	if err != nil {
		return nil, err
	}
	for i := range cnps.Items {
		add(&cnps.Items[i])
	}
	return want, nil
}

// peers lists the server's namespaces, nodes and pods: what other
// clusters' agents watch of it.
func (s *serverBackend) peers(ctx context.Context) ([]runtime.Object, error) {
	k := s.c.Kube
	var out []runtime.Object
	nss, err := k.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range nss.Items {
		out = append(out, &nss.Items[i])
	}
	nodes, err := k.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range nodes.Items {
		out = append(out, &nodes.Items[i])
	}
	pods, err := k.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range pods.Items {
		out = append(out, &pods.Items[i])
	}
	return out, nil
}

// barrier waits until every agent has applied what the server holds.
// The server's state may still move after a step (an agent writing a
// policy's status, then every agent syncing that): so it lists, waits a
// little for that state, and lists again until the agents have caught up
// with a state that held still, or the timeout.
func (s *serverBackend) barrier(ctx context.Context, r *run) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.BarrierTimeout)
	defer cancel()
	var last error
	for {
		want, err := s.versions(ctx)
		if err != nil {
			if ctx.Err() != nil && last != nil {
				return last
			}
			return fmt.Errorf("listing the API server's objects: %w", err)
		}
		slice, cancelSlice := context.WithTimeout(ctx, time.Second)
		if r.remoteWant != nil {
			remote, err := r.remoteWant(ctx)
			if err != nil {
				cancelSlice()
				return fmt.Errorf("listing the other clusters' objects: %w", err)
			}
			maps.Copy(want, remote)
		}
		var errs []error
		for _, n := range r.sc.Nodes {
			if a, ok := r.agents[n]; ok {
				errs = append(errs, a.WaitApplied(slice, want))
			}
		}
		cancelSlice()
		if last = errors.Join(errs...); last == nil {
			return nil
		}
		if ctx.Err() != nil {
			return last
		}
	}
}

// ServerFor is the Server of an integration environment: the admin's
// clients write the scenario, the DaemonSet's service account (deploy/'s
// RBAC) runs the agents.
func ServerFor(e *integration.Env) (*Server, error) {
	writer, err := policyclient.NewForConfig(e.Cluster.AdminREST)
	if err != nil {
		return nil, err
	}
	agentREST := *e.AgentREST
	agentREST.QPS, agentREST.Burst = 100, 200
	kube, err := kubernetes.NewForConfig(&agentREST)
	if err != nil {
		return nil, err
	}
	pol, err := policyclient.NewForConfig(&agentREST)
	if err != nil {
		return nil, err
	}
	remote, err := e.Cluster.ServiceAccountKubeconfig(context.Background(), "kube-system", "nftpolicy-clusterset-reader", filepath.Join(e.Dir, "clusterset-reader.kubeconfig"))
	if err != nil {
		return nil, err
	}
	return &Server{
		Writer: Clients{Kube: e.Cluster.Admin, Policy: writer},
		Agent:  Clients{Kube: kube, Policy: pol},
		Remote: remote,
	}, nil
}
