package integration

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	policyv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	policyclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// The package shares one API server between its tests; each test has its
// own namespace, lab nodes and agents.
var shared struct {
	once  sync.Once
	err   error
	env   *Env
	tests int
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.env != nil {
		shared.env.Close()
	}
	os.Exit(code)
}

// setup starts the shared API server (building it on first use), with
// deploy/'s CRDs, RBAC and DaemonSet created through the API.
func setup(t *testing.T) *Env {
	testutil.NeedKernel(t)
	shared.once.Do(func() {
		shared.env, shared.err = NewEnv(context.Background(), os.Stderr, "../../deploy")
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.env
}

// world is one test's slice of the cluster: a namespace, lab nodes, pods,
// and agents running as the DaemonSet's service account.
type world struct {
	t          *testing.T
	c          *Cluster
	lab        *netlab.Lab
	ns         string
	net        int // second octet of this test's pod addresses
	kubeconfig string
	agentREST  kubernetesClients // the agent's service account
	policy     policyclient.Interface
	nodes      []string
	nextIP     map[string]int
	agents     map[string]*AgentProcess
	resync     time.Duration
	agentFlags []string // more flags for every agent startAgent starts
}

type kubernetesClients struct {
	core kubernetes.Interface
}

func newWorld(t *testing.T, nodes int, resync time.Duration) *world {
	env := setup(t)
	c := env.Cluster
	shared.tests++
	w := &world{t: t, c: c, lab: netlab.New(""), ns: fmt.Sprintf("it%d", shared.tests), net: 100 + shared.tests,
		nextIP: map[string]int{}, agents: map[string]*AgentProcess{}, resync: resync}
	t.Cleanup(func() {
		for _, a := range w.agents {
			a.Kill()
		}
		if err := w.lab.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	ctx := context.Background()
	if _, err := c.Admin.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.ns, Labels: map[string]string{"test": w.ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.kubeconfig = env.AgentKubeconfig
	w.agentREST.core = kubernetes.NewForConfigOrDie(env.AgentREST)
	w.policy = policyclient.NewForConfigOrDie(c.AdminREST)
	for i := 1; i <= nodes; i++ {
		name := fmt.Sprintf("%s-n%d", w.ns, i)
		if err := w.lab.AddNode(name, nil); err != nil {
			t.Fatal(err)
		}
		node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
		// The range w.pod takes this node's addresses from, as IPAM would.
		cidr := fmt.Sprintf("10.%d.%d.0/24", w.net, i)
		node.Spec.PodCIDR, node.Spec.PodCIDRs = cidr, []string{cidr}
		var ips []string
		for _, ip := range w.lab.Addrs("node/" + name) {
			ips = append(ips, ip.String())
		}
		if err := CreateNode(ctx, c.Admin, node, ips...); err != nil {
			t.Fatal(err)
		}
		w.nodes = append(w.nodes, name)
	}
	return w
}

// startAgent runs the agent binary for a node, as the DaemonSet would
// (its service account, its flags), and waits until it is ready.
func (w *world) startAgent(node string) *AgentProcess {
	w.t.Helper()
	a, err := StartAgent(AgentSpec{Binary: shared.env.AgentBinary, Kubeconfig: w.kubeconfig, Node: node, NetNS: w.lab.NodeNetNSPath(node),
		ResyncPeriod: w.resync, MinSyncPeriod: 100 * time.Millisecond, LogDir: shared.env.Dir, Extra: w.agentFlags})
	if err != nil {
		w.t.Fatal(err)
	}
	w.agents[node] = a
	start := time.Now()
	if err := a.WaitReady(context.Background(), time.Minute); err != nil {
		w.t.Fatal(err)
	}
	w.t.Logf("agent on %s ready after %v", node, time.Since(start).Round(time.Millisecond))
	return a
}

// pod creates a pod on node through the API (addresses through the status
// subresource, as a kubelet would) and in the lab, listening on TCP 80.
func (w *world) pod(name, node string, labels map[string]string) {
	w.t.Helper()
	w.podInAPI(name, node, labels, w.podInLab(name, node))
}

// podInLab gives a pod its namespace, its next address on node and a
// listener on TCP 80, as the CNI plugin and the container would, before
// the API server has heard of it.
func (w *world) podInLab(name, node string) netip.Addr {
	w.t.Helper()
	idx := 0
	for i, n := range w.nodes {
		if n == node {
			idx = i + 1
		}
	}
	w.nextIP[node]++
	ip := netip.MustParseAddr(fmt.Sprintf("10.%d.%d.%d", w.net, idx, 10+w.nextIP[node]))
	id := w.ns + "/" + name
	if err := w.lab.AddPod(id, node, []netip.Addr{ip}); err != nil {
		w.t.Fatal(err)
	}
	if err := w.lab.Listen(id, "TCP", 80); err != nil {
		w.t.Fatal(err)
	}
	return ip
}

// podInAPI creates the Pod object of a pod podInLab made.
func (w *world) podInAPI(name, node string, labels map[string]string, ip netip.Addr) {
	w.t.Helper()
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name, Labels: labels},
		Spec: v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c",
			Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: v1.ProtocolTCP}}}}},
		Status: v1.PodStatus{PodIP: ip.String(), PodIPs: []v1.PodIP{{IP: ip.String()}}},
	}
	if _, err := CreatePod(context.Background(), w.c.Admin, p); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) relabel(name string, labels map[string]string) {
	w.t.Helper()
	ctx := context.Background()
	p, err := w.c.Admin.CoreV1().Pods(w.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	p.Labels = labels
	if _, err := w.c.Admin.CoreV1().Pods(w.ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

// rolePods starts a pod on node n for each role, named after it, labelled
// role=<role>.
func (w *world) rolePods(n string, roles ...string) {
	for _, r := range roles {
		w.pod(r, n, map[string]string{"role": r})
	}
}

// enforce applies allowOnlyFrom and waits until the probes see want.
func (w *world) enforce(want map[flow]netlab.Verdict) {
	w.t.Helper()
	if err := w.allowOnlyFrom(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	w.expect(10*time.Second, want)
}

// allowOnlyFrom isolates the pods with role=server for ingress and allows
// TCP 80 (by its name, http) from pods with role=client.
func (w *world) allowOnlyFrom(ctx context.Context) error {
	tcp := v1.ProtocolTCP
	_, err := w.c.Admin.NetworkingV1().NetworkPolicies(w.ns).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "servers"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: intstrName("http")}},
			}},
		},
	}, metav1.CreateOptions{})
	return err
}

type flow struct{ from, to string }

func (f flow) String() string { return f.from + " -> " + f.to }

// probe runs one TCP probe to port 80.
func (w *world) probe(ctx context.Context, f flow) netlab.Verdict {
	return w.lab.Probe(ctx, w.ns+"/"+f.from, w.ns+"/"+f.to, 4, "TCP", 80, 300*time.Millisecond).Verdict
}

// expect waits until every flow has its verdict, or fails after timeout.
func (w *world) expect(timeout time.Duration, want map[flow]netlab.Verdict) time.Duration {
	w.t.Helper()
	ctx := context.Background()
	start := time.Now()
	var wrong []string
	for time.Since(start) < timeout {
		wrong = nil
		for f, v := range want {
			if got := w.probe(ctx, f); got != v {
				wrong = append(wrong, fmt.Sprintf("%s: %s, want %s", f, got, v))
			}
		}
		if len(wrong) == 0 {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sort.Strings(wrong)
	w.t.Fatalf("after %v: %s%s", timeout, strings.Join(wrong, "; "), w.agentLogs())
	return 0
}

// probeAcross probes every flow of want continuously (a probe every 10 ms
// per flow, each waiting at most 300 ms) while during runs, and fails the
// test if any probe result differs from want or a flow was hardly probed.
func (w *world) probeAcross(want map[flow]netlab.Verdict, during func()) {
	w.t.Helper()
	ctx := context.Background()
	stop := make(chan struct{})
	var mu sync.Mutex
	counts := map[string]int{}
	var changed []string
	var probes sync.WaitGroup
	for f, v := range want {
		probes.Add(1)
		go func() {
			defer probes.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got := w.probe(ctx, f)
				mu.Lock()
				counts[f.String()]++
				if got != v {
					changed = append(changed, fmt.Sprintf("%s at %s: %s, want %s", f, time.Now().Format("15:04:05.000"), got, v))
				}
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	during()
	close(stop)
	probes.Wait()
	w.t.Logf("probes: %v", counts)
	for f, n := range counts {
		if n < 5 { // a denied probe waits 300 ms
			w.t.Errorf("only %d probes of %s ran", n, f)
		}
	}
	if len(changed) > 0 {
		w.t.Errorf("%d probe results changed: %v%s", len(changed), changed, w.agentLogs())
	}
}

func (w *world) agentLogs() string {
	var b strings.Builder
	for _, a := range w.agents {
		b.WriteString(a.LogTail())
	}
	return b.String()
}

// nft runs nft in a node's namespace.
func (w *world) nft(node string, args ...string) (string, error) {
	name := filepath.Base(w.lab.NodeNetNSPath(node))
	out, err := exec.Command("ip", append([]string{"netns", "exec", name, "nft"}, args...)...).CombinedOutput()
	return string(out), err
}

var (
	allowed = netlab.Allowed
	denied  = netlab.Denied
)

// TestEnforcement: policies created through a real API server reach the
// kernel of the agent's node, whose credentials are the DaemonSet's
// service account; an API-server outage leaves the rules in place and
// the agent catches up afterwards.
func TestEnforcement(t *testing.T) {
	w := newWorld(t, 1, time.Minute)
	n := w.nodes[0]
	w.rolePods(n, "server", "client", "other")
	w.startAgent(n)
	toServer := flow{"client", "server"}
	fromOther := flow{"other", "server"}
	w.expect(10*time.Second, map[flow]netlab.Verdict{toServer: allowed, fromOther: allowed})

	ctx := context.Background()
	if err := w.allowOnlyFrom(ctx); err != nil {
		t.Fatal(err)
	}
	took := w.expect(10*time.Second, map[flow]netlab.Verdict{toServer: allowed, fromOther: denied})
	t.Logf("policy enforced %v after its creation", took.Round(time.Millisecond))

	w.relabel("other", map[string]string{"role": "client"})
	w.expect(10*time.Second, map[flow]netlab.Verdict{toServer: allowed, fromOther: allowed})
	w.relabel("other", map[string]string{"role": "other"})
	w.expect(10*time.Second, map[flow]netlab.Verdict{toServer: allowed, fromOther: denied})

	// An outage: the rules stay as they are while the API server is down.
	var outage error
	w.probeAcross(map[flow]netlab.Verdict{toServer: allowed, fromOther: denied}, func() {
		outage = w.c.RestartAPIServer(ctx, 3*time.Second)
	})
	if outage != nil {
		t.Fatal(outage)
	}
	// ... and the agent catches up with what changed meanwhile.
	if err := w.c.Admin.NetworkingV1().NetworkPolicies(w.ns).Delete(ctx, "servers", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	took = w.expect(30*time.Second, map[flow]netlab.Verdict{toServer: allowed, fromOther: allowed})
	t.Logf("after the outage, a policy deletion enforced %v after it", took.Round(time.Millisecond))

	// The agent's credentials are least privilege: it reads what it
	// watches and nothing else.
	if _, err := w.agentREST.core.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Errorf("the agent's service account cannot list pods: %v", err)
	}
	for what, err := range map[string]error{
		"list secrets":    listErr(w.agentREST.core.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})),
		"list configmaps": listErr(w.agentREST.core.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})),
		"delete a pod":    w.agentREST.core.CoreV1().Pods(w.ns).Delete(ctx, "client", metav1.DeleteOptions{}),
		"create a policy": createErr(w.agentREST.core.NetworkingV1().NetworkPolicies(w.ns).Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})),
	} {
		if !apierrors.IsForbidden(err) {
			t.Errorf("the agent's service account may %s (err %v); want forbidden", what, err)
		}
	}
}

// TestNewPodClosedUntilKnown: with the agent binary as the DaemonSet runs
// it, a new pod that a policy isolates is closed from the instant its
// address exists (the CNI plugin's work) until the agent has programmed it,
// however long its Pod object takes to reach the agent; then what the
// policy allows opens. With --protect-new-pods=false the same pod is open
// to everyone until then: the window the protection closes.
func TestNewPodClosedUntilKnown(t *testing.T) {
	for _, protect := range []bool{true, false} {
		t.Run(fmt.Sprintf("protect-new-pods=%v", protect), func(t *testing.T) {
			w := newWorld(t, 1, time.Minute)
			w.agentFlags = []string{fmt.Sprintf("--protect-new-pods=%v", protect)}
			n := w.nodes[0]
			w.pod("client", n, map[string]string{"role": "client"})
			w.pod("other", n, map[string]string{"role": "other"})
			w.pod("old", n, map[string]string{"role": "server"})
			w.startAgent(n)
			ctx := context.Background()
			if err := w.allowOnlyFrom(ctx); err != nil {
				t.Fatal(err)
			}
			w.expect(10*time.Second, map[flow]netlab.Verdict{{"client", "old"}: allowed, {"other", "old"}: denied})

			// The new server's address exists and listens; its Pod object
			// reaches the API server a second later.
			ip := w.podInLab("server", n)
			var through, probes atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						probes.Add(1)
						if w.probe(ctx, flow{"other", "server"}) == allowed {
							through.Add(1)
						}
						time.Sleep(5 * time.Millisecond)
					}
				}()
			}
			time.Sleep(time.Second)
			w.podInAPI("server", n, map[string]string{"role": "server"}, ip)
			took := w.expect(10*time.Second, map[flow]netlab.Verdict{{"client", "server"}: allowed})
			close(stop)
			wg.Wait()
			t.Logf("the Pod object reached the API server 1 s after the address; allowed %v after that; %d probes from a pod the policy denies, %d through",
				took.Round(time.Millisecond), probes.Load(), through.Load())
			switch {
			case probes.Load() < 6:
				t.Fatalf("only %d probes ran", probes.Load())
			case protect && through.Load() != 0:
				t.Errorf("%d of %d probes the policy denies reached the new pod before the agent knew it", through.Load(), probes.Load())
			case !protect && through.Load() == 0:
				t.Errorf("with the protection off no probe got through in the second before the Pod object existed: the test cannot see the window")
			}
			w.expect(10*time.Second, map[flow]netlab.Verdict{{"other", "server"}: denied})
		})
	}
}

func intstrName(s string) *intstr.IntOrString {
	v := intstr.FromString(s)
	return &v
}

func listErr[T any](_ T, err error) error   { return err }
func createErr[T any](_ T, err error) error { return err }

// TestRestartKeepsRules: probes run continuously while the agent is killed
// with SIGKILL and started again; no probe result changes, and the new
// agent adopts the table without sending a transaction.
func TestRestartKeepsRules(t *testing.T) {
	w := newWorld(t, 1, time.Minute)
	n := w.nodes[0]
	w.rolePods(n, "server", "client", "other")
	a := w.startAgent(n)
	want := map[flow]netlab.Verdict{{"client", "server"}: allowed, {"other", "server"}: denied, {"server", "client"}: allowed}
	w.enforce(want)

	var a2 *AgentProcess
	w.probeAcross(want, func() {
		time.Sleep(500 * time.Millisecond)
		a.Kill()
		time.Sleep(time.Second)
		a2 = w.startAgent(n)
		time.Sleep(2 * time.Second)
	})
	m := scrape(t, a2)
	if got := m["nftpolicy_transactions_total"]; got != 0 {
		t.Errorf("the restarted agent sent %v transactions; want 0 (the table was already right)", got)
	}
	if got := m[`nftpolicy_syncs_total{type="full"}`]; got < 1 {
		t.Errorf("the restarted agent made %v full syncs; want at least 1 (it reads the table back)", got)
	}
}

// previousReleases are the agents an upgrade replaces in
// TestUpgradeAdoptsPreviousTable: the last commit whose admin and baseline
// tiers jumped to one chain per tier policy, the last whose identity chains
// and maps had readable names (every one is renamed), the last before the
// peer-identity layout (class chains jumping to one chain per policy), and
// the last before the incremental engine (no class of pods not yet known
// either).
var previousReleases = []string{
	"b8d7d23ee11e02a18ff571fcdc0bd43287e36ddf",
	"3c091c09ae7a395845b93c5668f44d9041afdea3",
	"9dcefb10bad22fe86136f7fc70bbb3d173bde7ac",
	"5c35878aef3efa8b3f1963e978991c3c0151ad13",
}

// TestUpgradeAdoptsPreviousTable: a previous release's agent programs a
// node; it is killed and this one starts on the table it left. No probe
// result changes across the upgrade (probed continuously), and the new
// agent converges in exactly one transaction: the new layout's chains and
// maps, and (from the older release) the sets and rules of the class of
// pods not yet known, are added atomically with the elements of every
// known pod, so that no known pod is ever judged unknown and no flow
// changes verdict in between.
func TestUpgradeAdoptsPreviousTable(t *testing.T) {
	for _, commit := range previousReleases {
		t.Run(commit[:7], func(t *testing.T) { testUpgradeFrom(t, commit) })
	}
}

func testUpgradeFrom(t *testing.T, previousRelease string) {
	w := newWorld(t, 1, time.Minute)
	old := buildRelease(t, previousRelease)
	n := w.nodes[0]
	w.rolePods(n, "server", "client", "other")
	w.adminGuard()
	a, err := StartAgent(AgentSpec{Binary: old, Kubeconfig: w.kubeconfig, Node: n, NetNS: w.lab.NodeNetNSPath(n),
		ResyncPeriod: w.resync, MinSyncPeriod: 100 * time.Millisecond, LogDir: shared.env.Dir, Extra: w.agentFlags})
	if err != nil {
		t.Fatal(err)
	}
	w.agents[n] = a
	if err := a.WaitReady(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	want := map[flow]netlab.Verdict{{"client", "server"}: allowed, {"other", "server"}: denied, {"server", "client"}: allowed}
	w.enforce(want)
	var a2 *AgentProcess
	w.probeAcross(want, func() {
		time.Sleep(500 * time.Millisecond)
		a.Kill()
		a2 = w.startAgent(n)
		time.Sleep(time.Second)
	})
	m := scrape(t, a2)
	if got := m["nftpolicy_transactions_total"]; got != 1 {
		t.Errorf("the upgraded agent sent %v transactions; want 1 (the whole adoption)", got)
	}
	if out, err := w.nft(n, "list", "set", "inet", "nftpolicy", "local-pods-v4"); err != nil || strings.Count(out, "10.") < 3 {
		t.Errorf("after the upgrade, the known local pods: %v\n%s; want the three pods", err, out)
	}
}

// adminGuard puts the servers under an admin-tier policy whose rules
// decide none of the probes differently from the NetworkPolicy alone:
// clients are passed to it, others denied, and the servers' egress to
// clients allowed; so the flows cross the admin tier's layout too. It is
// written as v1beta1, the version the agent watches with deploy/'s CRD
// (network-policy-api v0.3.0); TestMetricsDocumented writes v1alpha2.
func (w *world) adminGuard() {
	w.t.Helper()
	pods := func(role string) *policyv1beta1.NamespacedPod {
		return &policyv1beta1.NamespacedPod{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": w.ns}},
			PodSelector:       metav1.LabelSelector{MatchLabels: map[string]string{"role": role}},
		}
	}
	cnp := &policyv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: w.ns + "-guard"},
		Spec: policyv1beta1.ClusterNetworkPolicySpec{
			Tier: policyv1beta1.AdminTier, Priority: 10,
			Subject: policyv1beta1.ClusterNetworkPolicySubject{Pods: pods("server")},
			Ingress: []policyv1beta1.ClusterNetworkPolicyIngressRule{
				{Action: "Pass", From: []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Pods: pods("client")}}},
				{Action: "Deny", From: []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Pods: pods("other")}}},
			},
			Egress: []policyv1beta1.ClusterNetworkPolicyEgressRule{
				{Action: "Accept", To: []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Pods: pods("client")}}},
			},
		},
	}
	ctx := context.Background()
	if _, err := w.policy.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, cnp, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() {
		_ = w.policy.PolicyV1beta1().ClusterNetworkPolicies().Delete(context.Background(), cnp.Name, metav1.DeleteOptions{})
	})
}

// buildRelease builds the agent of an earlier commit of this repository
// (git archive of it, then go build), or skips when the clone lacks it.
func buildRelease(t *testing.T, commit string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("git", "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: commit %s is not in this clone (a shallow clone?): %v %s", commit, err, out)
	}
	// From the top of the work tree: git archive in a subdirectory
	// archives only that subdirectory.
	archive := exec.Command("sh", "-c", `cd "$(git rev-parse --show-toplevel)" && git archive `+commit+" | tar -x -C "+dir)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", commit, err, out)
	}
	bin := filepath.Join(dir, "nftpolicy-previous")
	build := exec.Command("go", "build", "-o", bin, "./cmd/nftpolicy")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent of %s: %v\n%s", commit, err, out)
	}
	return bin
}

// TestDriftRepaired: deleting the table, or one of its chains, is repaired
// by the periodic resync within one period.
func TestDriftRepaired(t *testing.T) {
	const period = 3 * time.Second
	w := newWorld(t, 1, period)
	n := w.nodes[0]
	w.rolePods(n, "server", "client", "other")
	a := w.startAgent(n)
	want := map[flow]netlab.Verdict{{"client", "server"}: allowed, {"other", "server"}: denied}
	w.enforce(want)
	ctx := context.Background()

	for _, c := range []struct {
		what       string
		args, list []string
	}{
		{"table", []string{"delete", "table", "inet", nft.TableName}, []string{"list", "table", "inet", nft.TableName}},
		{"chain forward-ingress", []string{"delete", "chain", "inet", nft.TableName, "forward-ingress"}, []string{"list", "chain", "inet", nft.TableName, "forward-ingress"}},
	} {
		if out, err := w.nft(n, c.args...); err != nil {
			t.Fatalf("nft %s: %v: %s", strings.Join(c.args, " "), err, out)
		}
		deleted := time.Now()
		// The deletion opened the server: prove the drift is real (unless
		// the periodic resync came in between, which it rarely does).
		if got := w.probe(ctx, flow{"other", "server"}); got != allowed {
			if _, err := w.nft(n, c.list...); err != nil {
				t.Errorf("after deleting the %s, other -> server is %s; want allowed until the repair", c.what, got)
			}
		}
		w.expect(period+2*time.Second, want)
		t.Logf("%s deleted: repaired after %v (resync period %v)", c.what, time.Since(deleted).Round(time.Millisecond), period)
	}
	m := scrape(t, a)
	if got := m["nftpolicy_drift_repairs_total"]; got != 2 {
		t.Errorf("nftpolicy_drift_repairs_total = %v, want 2", got)
	}
}

// TestMetricsDocumented scrapes /metrics after a sync and finds every
// series docs/metrics.md documents, and documents every nftpolicy series
// it finds.
func TestMetricsDocumented(t *testing.T) {
	w := newWorld(t, 1, time.Minute)
	n := w.nodes[0]
	w.rolePods(n, "server", "client")
	ctx := context.Background()
	// An admin-tier object through the API (its CRD is from deploy/),
	// selecting nothing: the agent watches it and counts it.
	cnp := &policyv1alpha2.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: w.ns + "-nothing"},
		Spec: policyv1alpha2.ClusterNetworkPolicySpec{
			Tier: policyv1alpha2.AdminTier, Priority: 10,
			Subject: policyv1alpha2.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"no-such": "namespace"}}},
		},
	}
	if _, err := w.policy.PolicyV1alpha2().ClusterNetworkPolicies().Create(ctx, cnp, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.policy.PolicyV1alpha2().ClusterNetworkPolicies().Delete(context.Background(), cnp.Name, metav1.DeleteOptions{})
	})
	// Counters read often, so that the policy's series are there to scrape.
	a := w.startAgentWith(n, "--policy-counters-interval=200ms")
	if err := w.allowOnlyFrom(ctx); err != nil {
		t.Fatal(err)
	}
	w.expect(10*time.Second, map[flow]netlab.Verdict{{"client", "server"}: allowed})
	if code, body, err := a.Get(ctx, "/healthz"); err != nil || code != 200 {
		t.Errorf("/healthz: %d %q %v", code, body, err)
	}

	// The API server is shared with the other tests: count what it holds.
	nps, err := w.c.Admin.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cnps, err := w.policy.PolicyV1alpha2().ClusterNetworkPolicies().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wants := map[string]float64{
		"nftpolicy_ready":                                            1,
		`nftpolicy_policies{kind="NetworkPolicy"}`:                   float64(len(nps.Items)),
		`nftpolicy_policies{kind="ClusterNetworkPolicy"}`:            float64(len(cnps.Items)),
		`nftpolicy_policies{kind="AdminNetworkPolicy"}`:              0,
		"nftpolicy_selected_pods":                                    1,
		`nftpolicy_sync_failures_total{reason="apply"}`:              0,
		`nftpolicy_sync_duration_seconds_count{type="full"}`:         1,
		`nftpolicy_sync_compute_duration_seconds_count{type="full"}`: 1,
		"nftpolicy_network_programming_latency_seconds_count":        -1, // at least one
		"nftpolicy_transaction_operations_count":                     -1,
		"nftpolicy_transaction_netlink_bytes_count":                  -1,
		`nftpolicy_sync_duration_seconds_count{type="partial"}`:      -1,
	}
	// A sync sets its metrics one after another: scrape until the sync
	// that applied the policy has set them all (a scrape between two of
	// them once saw its transaction counted and the policy not yet).
	var m map[string]float64
	var problems []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		m, problems = scrape(t, a), nil
		for series, want := range wants {
			got, ok := m[series]
			switch {
			case !ok:
				problems = append(problems, "no series "+series)
			case want < 0 && got < 1:
				problems = append(problems, fmt.Sprintf("%s = %v, want at least 1", series, got))
			case want >= 0 && got != want:
				problems = append(problems, fmt.Sprintf("%s = %v, want %v", series, got, want))
			}
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("transactions %v, syncs %v/%v", m["nftpolicy_transactions_total"], m[`nftpolicy_syncs_total{type="full"}`], m[`nftpolicy_syncs_total{type="partial"}`])
	families := map[string]bool{}
	for series := range m {
		name := series
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		name = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		families[name] = true
	}
	documented := documentedMetrics(t)
	for _, d := range documented {
		if d == "nftpolicy_remote_cluster_up" {
			continue // only with remote clusters: TestRemoteCluster reads it
		}
		if !families[d] {
			t.Errorf("docs/metrics.md documents %s, but /metrics has no such series", d)
		}
	}
	for f := range families {
		if strings.HasPrefix(f, "nftpolicy_") && !contains(documented, f) {
			t.Errorf("/metrics has %s, but docs/metrics.md does not document it", f)
		}
	}
	if m["nftpolicy_pods"] < 2 || m["nftpolicy_set_elements"] < 2 || m["nftpolicy_rules"] < 1 {
		t.Errorf("model and table sizes too small: pods %v, set elements %v, rules %v", m["nftpolicy_pods"], m["nftpolicy_set_elements"], m["nftpolicy_rules"])
	}
}

// TestShutdownAndCleanup: SIGTERM leaves the rules in place; `nftpolicy
// cleanup` removes the table, and with it every rule.
func TestShutdownAndCleanup(t *testing.T) {
	w := newWorld(t, 1, time.Minute)
	n := w.nodes[0]
	w.rolePods(n, "server", "other")
	a := w.startAgent(n)
	ctx := context.Background()
	if err := w.allowOnlyFrom(ctx); err != nil {
		t.Fatal(err)
	}
	w.expect(10*time.Second, map[flow]netlab.Verdict{{"other", "server"}: denied})
	if err := a.Stop(10 * time.Second); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v%s", err, a.LogTail())
	}
	delete(w.agents, n)
	if got := w.probe(ctx, flow{"other", "server"}); got != denied {
		t.Errorf("after the agent stopped, other -> server is %s; want denied (rules stay)", got)
	}
	out, err := exec.Command(shared.env.AgentBinary, "cleanup", "--netns", w.lab.NodeNetNSPath(n)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "removed table") {
		t.Fatalf("nftpolicy cleanup: %v: %s", err, out)
	}
	if out, err := w.nft(n, "list", "table", "inet", nft.TableName); err == nil {
		t.Errorf("the table is still there after cleanup:\n%s", out)
	}
	w.expect(5*time.Second, map[flow]netlab.Verdict{{"other", "server"}: allowed})
	out, err = exec.Command(shared.env.AgentBinary, "cleanup", "--netns", w.lab.NodeNetNSPath(n)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nothing to remove") {
		t.Errorf("second cleanup: %v: %s", err, out)
	}
}

// scrape reads the agent's /metrics as series name (with labels, sorted
// as Prometheus prints them) -> value.
func scrape(t *testing.T, a *AgentProcess) map[string]float64 {
	t.Helper()
	code, body, err := a.Get(context.Background(), "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

var metricNameRE = regexp.MustCompile("^\\| `(nftpolicy_[a-z_]+)`")

// documentedMetrics lists the metric names in docs/metrics.md's tables.
func documentedMetrics(t *testing.T) []string {
	data, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(data), "\n") {
		if m := metricNameRE.FindStringSubmatch(line); m != nil {
			names = append(names, m[1])
		}
	}
	if len(names) < 10 {
		t.Fatalf("docs/metrics.md documents %d metrics; the table format may have changed", len(names))
	}
	return names
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
