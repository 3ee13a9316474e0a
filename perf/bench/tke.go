package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/integration"
	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// The TKE data path: the setup in which TKE measured kube-router costing
// 10–20% of the requests per second through a Service: 1,000 Services,
// 8,000 pods, one NetworkPolicy selecting every pod. Here the real
// kube-proxy (nftables mode, against a real kube-apiserver in the lab's
// control-plane namespace) programs the 1,000 Services and their 8,000
// endpoints in the node; a client opens connections one after another to
// one Service's cluster IP, whose endpoint is the server on the same node.
// Rounds alternate between the node with kube-proxy's tables only and with
// nftpolicy's ruleset for that cluster as well.

const (
	tkeServices  = 1000
	tkePods      = 8000
	tkeNamespace = "tke"
	tkeNode      = "perf"
)

// Data-path states of the TKE case.
const (
	tkeProxyOnly = "kube-proxy only"
	tkeWithUs    = "kube-proxy + nftpolicy"
)

// TKEResult is the TKE case's measurement.
type TKEResult struct {
	Services  int       `json:"services"`
	Pods      int       `json:"pods"`
	Endpoints int       `json:"endpoints"`
	Rounds    int       `json:"rounds"`
	PerRound  int       `json:"connections_per_round"`
	States    []DPState `json:"states"`
	// Loss is 1 - the median over rounds of (rate with our ruleset / rate
	// without); LossP25 and LossP75 bound the middle half of the rounds.
	Loss    float64 `json:"loss"`
	LossP25 float64 `json:"loss_p25"`
	LossP75 float64 `json:"loss_p75"`
	// LatLoss is the same from each round's median connect time (rate =
	// 1 / connect time for connections made one after another): a
	// median within the round ignores the stalls other load on the
	// machine causes, which move a round's mean rate.
	LatLoss    float64 `json:"latency_loss"`
	LatLossP25 float64 `json:"latency_loss_p25"`
	LatLossP75 float64 `json:"latency_loss_p75"`
	// LatLossCI is a 95% interval for LatLoss (medianCI): how well the
	// rounds know the median, which the target is judged on.
	LatLossCI [2]float64 `json:"latency_loss_ci95"`
	// ProxyLines is the size of kube-proxy's ip table (nft list lines).
	ProxyLines int          `json:"kube_proxy_table_lines"`
	Ruleset    RulesetStats `json:"ruleset"`
	Setup      string       `json:"setup_seconds"`
	// Enforcing says how the run checked that the connections through
	// the Service met our policy (after kube-proxy's DNAT).
	Enforcing string `json:"enforcing"`
}

// tkePodIP is pod i's address: 10.1.0.0/16 and up, never the lab's.
func tkePodIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(1 + i/65536), byte(i / 256 % 256), byte(i % 256)})
}

func tkeDataPath(ctx context.Context, j *Janitor, cfg Config) (*TKEResult, error) {
	// Many short rounds (about 0.25 s per state at ~16,000 connections/s),
	// each comparing the two states back to back: on a shared machine the
	// load moves from second to second, so the loss is the median of the
	// per-round ratios, not a ratio of medians taken at different times.
	p := dpPlan{rounds: 320, conns: 4000, warmup: 200}
	if cfg.Quick {
		p = dpPlan{rounds: 2, conns: 500, warmup: 50}
	}
	start := time.Now()
	bins, err := integration.Build(ctx, cfg.Log)
	if err != nil {
		return nil, err
	}
	proxyBin, err := integration.BuildKubeProxy(ctx, cfg.Log)
	if err != nil {
		return nil, err
	}
	lab := netlab.New("")
	j.Defer(lab.Close)
	if err := lab.AddNode(tkeNode, nil); err != nil {
		return nil, err
	}
	client, server := tkeNamespace+"/client", tkeNamespace+"/server"
	for id, ip := range map[string]netip.Addr{client: dpClientIP, server: dpServerIP} {
		if err := lab.AddPod(id, tkeNode, []netip.Addr{ip}); err != nil {
			return nil, err
		}
	}
	if err := lab.Listen(server, "TCP", dpPort); err != nil {
		return nil, err
	}
	cpIP := netip.MustParseAddr("172.18.255.1")
	cpNS, err := lab.AddControlPlane(cpIP)
	if err != nil {
		return nil, err
	}
	cluster, err := integration.StartIn(ctx, bins, integration.Where{NetNS: cpNS, Addr: cpIP.String(), Dial: lab.DialFrom("controlplane/cp"), ServiceCIDRs: "10.96.0.0/16"})
	if err != nil {
		return nil, err
	}
	lab.AtClose(cluster.Stop)
	rest := *cluster.AdminREST
	rest.QPS, rest.Burst = 2000, 2000
	kc, err := kubernetes.NewForConfig(&rest)
	if err != nil {
		return nil, err
	}
	cfg.logf("tke: API server up; creating %d Services and their EndpointSlices (%d endpoints)", tkeServices, tkePods)
	svcIP, err := tkeObjects(ctx, kc, lab)
	if err != nil {
		return nil, err
	}
	kp, err := cluster.StartKubeProxy(integration.KubeProxySpec{Binary: proxyBin, Node: tkeNode,
		NetNS: filepath.Base(lab.NodeNetNSPath(tkeNode)), ClusterCIDRs: "198.19.0.0/16"})
	if err != nil {
		return nil, err
	}
	lab.AtClose(func() { kp.Stop() })
	lines, err := waitProxy(ctx, lab, kp, svcIP)
	if err != nil {
		return nil, err
	}
	res := &TKEResult{Services: tkeServices, Pods: tkePods, Endpoints: tkePods, Rounds: p.rounds, PerRound: p.conns, ProxyLines: lines}

	mc, err := tkeCluster()
	if err != nil {
		return nil, err
	}
	rs := compile.Node(mc, tkeNode)
	res.Ruleset = rulesetStats(rs, rs.Text())
	res.Setup = fmt.Sprintf("%.0f", time.Since(start).Seconds())
	nodeNS, err := openNS(lab.NodeNetNSPath(tkeNode))
	if err != nil {
		return nil, err
	}
	defer unix.Close(nodeNS)
	clientNS, err := openNS(lab.NetNSPath(client))
	if err != nil {
		return nil, err
	}
	defer unix.Close(clientNS)
	kernel := nft.NewNetlink(nodeNS)
	states := []struct {
		name string
		tx   *nft.Transaction
	}{{tkeProxyOnly, nil}, {tkeWithUs, diff.Diff(nil, rs)}}
	dst := netip.AddrPortFrom(svcIP, 80)
	rates := make([][]float64, len(states))
	lats := make([][]time.Duration, len(states))
	for round := range p.rounds {
		for k := range states {
			si := k
			if round%2 == 1 {
				si = len(states) - 1 - k
			}
			if err := measureState(ctx, kernel, states[si].tx); err != nil {
				return nil, err
			}
			if _, err := connectLoopAddr(clientNS, dst, p.warmup); err != nil {
				return nil, fmt.Errorf("tke %s: %w", states[si].name, err)
			}
			l, err := connectLoopAddr(clientNS, dst, p.conns)
			if err != nil {
				return nil, fmt.Errorf("tke %s: %w", states[si].name, err)
			}
			rates[si] = append(rates[si], l.rate)
			lats[si] = append(lats[si], l.lats...)
		}
		cfg.logf("tke: round %d/%d, connections/s through the Service: %s %.0f, %s %.0f", round+1, p.rounds,
			states[0].name, rates[0][round], states[1].name, rates[1][round])
	}
	base := DistOfFloats(rates[0]).P50
	for i, st := range states {
		r := DistOfFloats(rates[i])
		res.States = append(res.States, DPState{Name: st.name, Rate: r, Connect: DistOf(lats[i]), Ratio: ratio(r.P50, base)})
	}
	var ratios, latRatios []float64
	for i, r := range roundRatios(rates[1], rates[0]) {
		ratios = append(ratios, 1-r)
		without := DistOf(lats[0][i*p.conns : (i+1)*p.conns]).P50
		with := DistOf(lats[1][i*p.conns : (i+1)*p.conns]).P50
		latRatios = append(latRatios, 1-ratio(without, with))
	}
	res.Loss, res.LossP25, res.LossP75 = middleHalf(ratios)
	res.LatLoss, res.LatLossP25, res.LatLossP75 = middleHalf(latRatios)
	res.LatLossCI[0], res.LatLossCI[1] = medianCI(latRatios)
	res.Enforcing = tkeEnforcing(ctx, lab, kernel, states[1].tx, clientNS, dst)
	return res, setState(ctx, kernel, nil)
}

var tkeCounterRE = regexp.MustCompile(`counter packets (\d+) .*` + regexp.QuoteMeta(tkeNamespace+"/all-pods ingress rule 0"))

// tkeEnforcing shows that connections through the Service meet our
// policy: with the ruleset freshly loaded, 100 connections to the cluster
// IP make the policy's rule count 100 (kube-proxy DNATed them to the
// server, which the policy selects).
func tkeEnforcing(ctx context.Context, lab *netlab.Lab, k nft.Kernel, tx *nft.Transaction, clientNS int, dst netip.AddrPort) string {
	if err := setState(ctx, k, tx); err != nil {
		return "not checked: " + err.Error()
	}
	const n = 100
	if _, err := connectLoopAddr(clientNS, dst, n); err != nil {
		return "broken: " + err.Error()
	}
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", filepath.Base(lab.NodeNetNSPath(tkeNode)), "nft", "list", "table", "inet", nft.TableName).Output()
	if err != nil {
		return "not checked: " + err.Error()
	}
	m := tkeCounterRE.FindSubmatch(out)
	if m == nil {
		return "not checked: no counter on the policy's rule"
	}
	if got, _ := strconv.Atoi(string(m[1])); got < n {
		return fmt.Sprintf("no: the policy's rule counted %d of %d connections", got, n)
	}
	return fmt.Sprintf("yes: %d connections to the cluster IP, %s counted them all", n, tkeNamespace+"/all-pods ingress rule 0")
}

// tkeObjects creates the Node, the namespace, the Services and their
// EndpointSlices: Service 0 leads to the server, the others to 8 of the
// 8,000 pods each. It returns Service 0's cluster IP.
func tkeObjects(ctx context.Context, kc kubernetes.Interface, lab *netlab.Lab) (netip.Addr, error) {
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: tkeNode}}
	created, err := kc.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ip := range lab.Addrs("node/" + tkeNode) {
		created.Status.Addresses = append(created.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip.String()})
	}
	if _, err := kc.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return netip.Addr{}, err
	}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, tu.Namespace(tkeNamespace, nil), metav1.CreateOptions{}); err != nil {
		return netip.Addr{}, err
	}
	perSvc := tkePods / tkeServices
	var first netip.Addr
	errs := make(chan error, tkeServices)
	sem := make(chan struct{}, 32)
	for i := range tkeServices {
		name := fmt.Sprintf("svc-%04d", i)
		svc := &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: tkeNamespace},
			Spec: v1.ServiceSpec{Selector: map[string]string{"svc": name},
				Ports: []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(dpPort), Protocol: v1.ProtocolTCP}}},
		}
		var eps []discoveryv1.Endpoint
		if i == 0 {
			eps = append(eps, tkeEndpoint(dpServerIP, tkeNode))
		} else {
			for k := range perSvc {
				eps = append(eps, tkeEndpoint(tkePodIP(i*perSvc+k), "elsewhere"))
			}
		}
		es := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: tkeNamespace, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   eps,
			Ports:       []discoveryv1.EndpointPort{{Name: ptrTo("http"), Protocol: ptrTo(v1.ProtocolTCP), Port: ptrTo(int32(dpPort))}},
		}
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			stored, err := kc.CoreV1().Services(tkeNamespace).Create(ctx, svc, metav1.CreateOptions{})
			if err == nil {
				_, err = kc.DiscoveryV1().EndpointSlices(tkeNamespace).Create(ctx, es, metav1.CreateOptions{})
			}
			if err == nil && i == 0 {
				first, _ = netip.ParseAddr(stored.Spec.ClusterIP)
			}
			errs <- err
		}()
	}
	for range tkeServices {
		if err := <-errs; err != nil {
			return netip.Addr{}, err
		}
	}
	return first, nil
}

func tkeEndpoint(ip netip.Addr, node string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip.String()}, NodeName: ptrTo(node),
		Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(true), Serving: ptrTo(true), Terminating: ptrTo(false)}}
}

func ptrTo[T any](v T) *T { return &v }

// waitProxy waits until kube-proxy has programmed every Service (its
// service-ips map holds all 1,000) and returns its table's line count.
func waitProxy(ctx context.Context, lab *netlab.Lab, kp *integration.KubeProxy, svcIP netip.Addr) (int, error) {
	ns := filepath.Base(lab.NodeNetNSPath(tkeNode))
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "list", "table", "ip", "kube-proxy").Output()
		if err == nil && strings.Count(string(out), " : goto service-") == tkeServices && strings.Contains(string(out), svcIP.String()+" . tcp . 80") {
			return strings.Count(string(out), "\n"), nil
		}
		if !kp.Running() {
			return 0, fmt.Errorf("kube-proxy exited:\n%s", kp.LogTail())
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("kube-proxy has not programmed %d Services in 3 minutes", tkeServices)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tkeCluster is the model the agent on the node would compile: 8,000 pods
// elsewhere plus the client and the server here, all in one namespace,
// and one NetworkPolicy selecting every pod that admits every pod.
func tkeCluster() (*model.Cluster, error) {
	mc := model.NewCluster()
	objs := []any{
		tu.Namespace(tkeNamespace, nil),
		tu.Pod(tkeNamespace, "client", tkeNode, map[string]string{"app": "client"}, []string{dpClientIP.String()}),
		tu.Pod(tkeNamespace, "server", tkeNode, map[string]string{"svc": "svc-0000"}, []string{dpServerIP.String()}),
		tu.Policy(tkeNamespace, "all-pods", nil, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(nil)})),
	}
	perSvc := tkePods / tkeServices
	for i := range tkePods {
		objs = append(objs, tu.Pod(tkeNamespace, fmt.Sprintf("pod-%05d", i), fmt.Sprintf("node-%03d", i%100),
			map[string]string{"svc": fmt.Sprintf("svc-%04d", i/perSvc)}, []string{tkePodIP(i).String()}))
	}
	for _, o := range objs {
		if err := mc.Set(o); err != nil {
			return nil, err
		}
	}
	return mc, nil
}
