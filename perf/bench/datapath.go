package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/netns"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// The data path: two lab pods on one lab node, a client opening and closing
// TCP connections to a server one after another, with the node's ruleset in
// three states, rounds alternating so drift from other load cancels out:
//
//	none       no table: no nftables, no conntrack in the node's namespace
//	conntrack  a table with only "ct state established accept" in forward:
//	           conntrack's share, which any real node pays anyway (kube-proxy)
//	           (with -datapath-base-chains also in 2 and 4 such base chains:
//	           what each base chain costs every packet)
//	nftpolicy  the node's whole compiled ruleset for a generated cluster,
//	           plus the lab pods, with the server selected by 2, 50 or 500
//	           policies whose rules it must try before the one that allows
//	           the client, or by 2 policies and 50 admin policies

const (
	dpNamespace = "perf-dp"
	dpPort      = 8080
	dpDecoys    = 48  // policies selecting the server that do not allow the client
	dpDecoysBig = 498 // the same, for the target in 500 policies
	dpAdmin     = 50  // admin policies selecting the server, for the target in 50 of those
)

var (
	dpClientIP = netip.MustParseAddr("198.19.1.1")
	dpServerIP = netip.MustParseAddr("198.19.1.2")
)

type dpPlan struct{ rounds, conns, warmup int }

// stateSettle is the pause between loading a state and measuring it.
// The kernel frees a replaced table's objects after the commit returns;
// measured at once, the 500-policy state (the largest to free) read
// 0.92–0.94× of conntrack alone in run after run while the 50-policy
// state, whose SYN meets the same 19 rules, read 0.97×; with the pause
// they read 0.99× and 0.92×, then 1.00× and 0.95× (settle-*.md in
// perf/results/datapath): no longer the largest state always last.
const stateSettle = 250 * time.Millisecond

// Data-path states, in the order they are measured within a round.
const (
	stateNone      = "none"
	stateConntrack = "conntrack"
	stateFew       = "nftpolicy, 2 policies"
	stateMany      = "nftpolicy, 50 policies"
	stateHuge      = "nftpolicy, 500 policies"
	stateAdmin     = "nftpolicy, 2 policies and 50 admin policies"
)

func dataPath(ctx context.Context, j *Janitor, cfg Config) (*DataPathResult, error) {
	p := dpPlan{rounds: 24, conns: 4000, warmup: 200}
	if cfg.Quick {
		p = dpPlan{rounds: 2, conns: 500, warmup: 50}
	}
	size := cfg.DataPathSize
	mc, err := dataPathCluster(size, cfg.Seed, dpDecoys)
	if err != nil {
		return nil, err
	}
	few, err := dataPathCluster(size, cfg.Seed, 0)
	if err != nil {
		return nil, err
	}
	huge, err := dataPathCluster(size, cfg.Seed, dpDecoysBig)
	if err != nil {
		return nil, err
	}
	admin, err := dataPathAdminCluster(size, cfg.Seed, dpAdmin)
	if err != nil {
		return nil, err
	}
	rs := compile.Node(mc, gen.NodeUnderTest)
	hugeRS := compile.Node(huge, gen.NodeUnderTest)
	res := &DataPathResult{Size: size, Ruleset: rulesetStats(rs, rs.Text()), Rounds: p.rounds, PerRound: p.conns,
		ClassPolicies: classPolicies(mc), ClassPoliciesBig: classPolicies(huge)}

	// netlab names its namespaces nplab-<hex>-…; its Close (and `nftlab down`)
	// removes them.
	lab := netlab.New("")
	j.Defer(lab.Close)
	if err := lab.AddNode("perf", nil); err != nil {
		return nil, err
	}
	client, server := dpNamespace+"/client", dpNamespace+"/server"
	for id, ip := range map[string]netip.Addr{client: dpClientIP, server: dpServerIP} {
		if err := lab.AddPod(id, "perf", []netip.Addr{ip}); err != nil {
			return nil, err
		}
	}
	if err := lab.Listen(server, "TCP", dpPort); err != nil {
		return nil, err
	}
	nodeNS, err := openNS(lab.NodeNetNSPath("perf"))
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
	full := diff.Diff(nil, rs)
	type state struct {
		name string
		tx   *nft.Transaction
		rs   *nft.Ruleset // ours, compiled
	}
	states := []state{{name: stateNone}, {name: stateConntrack, tx: conntrackChains(1)}}
	if cfg.DataPathBaseChains {
		states = append(states, state{name: "conntrack, 2 base chains", tx: conntrackChains(2)}, state{name: "conntrack, 4 base chains", tx: conntrackChains(4)})
	}
	if cfg.DataPathRules {
		states = append(states,
			state{name: "conntrack + 10 ct rules", tx: conntrackPlus(10, false)},
			state{name: "conntrack + 10 set lookups", tx: conntrackPlus(10, true)},
			state{name: "conntrack + 20 set lookups", tx: conntrackPlus(20, true)},
			state{name: "conntrack + 1 fib lookup", tx: conntrackFib()})
	}
	fewRS := compile.Node(few, gen.NodeUnderTest)
	states = append(states,
		state{stateFew, diff.Diff(nil, fewRS), fewRS},
		state{stateMany, full, rs},
		state{stateHuge, diff.Diff(nil, hugeRS), hugeRS},
	)
	adminRS := compile.Node(admin, gen.NodeUnderTest)
	states = append(states, state{stateAdmin, diff.Diff(nil, adminRS), adminRS})
	rates := make([][]float64, len(states))
	medianRates := make([][]float64, len(states))
	lats := make([][]time.Duration, len(states))
	roundP99 := make([][]float64, len(states))
	for round := range p.rounds {
		for k := range states {
			si := k
			if round%2 == 1 {
				si = len(states) - 1 - k // alternate the order: drift cancels
			}
			if err := measureState(ctx, kernel, states[si].tx); err != nil {
				return nil, err
			}
			if _, err := connectLoop(clientNS, p.warmup); err != nil {
				return nil, fmt.Errorf("%s: %w", states[si].name, err)
			}
			l, err := connectLoop(clientNS, p.conns)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", states[si].name, err)
			}
			rates[si] = append(rates[si], l.rate)
			medianRates[si] = append(medianRates[si], l.medianRate())
			lats[si] = append(lats[si], l.lats...)
			roundP99[si] = append(roundP99[si], DistOf(l.lats).P99)
		}
		var parts []string
		for si := range states {
			parts = append(parts, fmt.Sprintf("%s %.0f", states[si].name, rates[si][round]))
		}
		cfg.logf("data path: round %d/%d, connections/s: %s", round+1, p.rounds, strings.Join(parts, ", "))
	}
	// Ratios are paired: each round measures every state back to back, and
	// a ratio is the median of the rounds' own (the rounds' rates spread
	// by ±20% with other load; one state's median against another's
	// moved the 50-policy ratio from 1.07 to 0.93 between runs). A
	// round's rate is its median connection's: in a quiet run the rounds'
	// ratios to conntrack alone then have a middle half 0.01–0.02 wide
	// (median-1.md in perf/results/datapath; 0.07–0.08 in a busier one),
	// where the mean rates' had 0.08–0.23 (settle-before.md, settle-1.md).
	for i, st := range states {
		vsCT := roundRatios(medianRates[i], medianRates[1])
		ct, ct25, ct75 := middleHalf(vsCT)
		ctLo, ctHi := medianCI(vsCT)
		res.States = append(res.States, DPState{Name: st.name, Rate: DistOfFloats(rates[i]), Connect: DistOf(lats[i]),
			Ratio: pairedRatio(medianRates[i], medianRates[0]), RatioCT: ct, RatioCTP25: ct25, RatioCTP75: ct75,
			RatioCTCI: [2]float64{ctLo, ctHi}, RatioCTMean: pairedRatio(rates[i], rates[1])})
		if st.rs != nil {
			n, err := synRules(st.rs)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", st.name, err)
			}
			res.States[i].SynRules = n
		}
	}
	iFew := slices.IndexFunc(states, func(s state) bool { return s.name == stateFew })
	iHuge := slices.IndexFunc(states, func(s state) bool { return s.name == stateHuge })
	res.P99Ratios = DistOfFloats(roundRatios(roundP99[iHuge], roundP99[iFew]))
	res.Enforcing = checkEnforcing(ctx, lab, kernel, full, clientNS, client, server)
	return res, setState(ctx, kernel, nil)
}

// roundRatios are a[r] / b[r] for each round r.
func roundRatios(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for r := range a {
		out[r] = ratio(a[r], b[r])
	}
	return out
}

// synRules is the number of rules of rs's forward chains that the
// client's first SYN to the server meets: the work its verdict costs,
// which the target's number of policies must not change.
func synRules(rs *nft.Ruleset) (int, error) {
	p := nft.Packet{Src: dpClientIP, Dst: dpServerIP, Proto: nft.ProtoTCP, Port: dpPort, CtState: "new"}
	n := 0
	for _, base := range []string{compile.ChainForwardEgress, compile.ChainForwardIngress} {
		res, err := rs.Trace(base, p)
		if err != nil {
			return 0, err
		}
		if !res.Accepted {
			return 0, fmt.Errorf("the client's SYN is not accepted by %s", base)
		}
		n += res.Evaluated
	}
	return n, nil
}

// pairedRatio is the median of the rounds' ratios a[r] / b[r].
func pairedRatio(a, b []float64) float64 { return DistOfFloats(roundRatios(a, b)).P50 }

// classPolicies counts the policies that isolate the server's ingress.
func classPolicies(mc *model.Cluster) int {
	n := 0
	for _, pol := range mc.Policies {
		if pol.Namespace == dpNamespace && pol.Isolates[model.Ingress] && pol.Selects(mc, mc.Pods[dpNamespace+"/server"]) {
			n++
		}
	}
	return n
}

// state finds a data-path state by name.
func (r *DataPathResult) state(name string) *DPState {
	for i := range r.States {
		if r.States[i].Name == name {
			return &r.States[i]
		}
	}
	return nil
}

// dataPathAdminCluster is dataPathCluster with no decoys, and n admin
// policies selecting the server, none of whose rules matches the client:
// each denies a pod selector of its own on a port of its own and allows
// the namespaces of a team on 443. The client's SYN meets all of them before the
// NetworkPolicy that allows it.
func dataPathAdminCluster(size gen.Size, seed uint64, n int) (*model.Cluster, error) {
	mc, err := dataPathCluster(size, seed, 0)
	if err != nil {
		return nil, err
	}
	for i := range n {
		if err := mc.Set(dataPathANP(i)); err != nil {
			return nil, err
		}
	}
	return mc, nil
}

// dataPathANP is the data path's i-th admin policy, at priority i.
func dataPathANP(i int) *v1alpha1.AdminNetworkPolicy {
	type m = map[string]string
	anp := &v1alpha1.AdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("perf-dp-admin-%03d", i)}}
	anp.Spec.Priority = int32(i)
	anp.Spec.Subject.Pods = &v1alpha1.NamespacedPod{
		NamespaceSelector: metav1.LabelSelector{MatchLabels: m{"team": "perf"}},
		PodSelector:       metav1.LabelSelector{MatchLabels: m{"app": "server"}},
	}
	port := func(p int32) *[]v1alpha1.AdminNetworkPolicyPort {
		return &[]v1alpha1.AdminNetworkPolicyPort{{PortNumber: &v1alpha1.Port{Protocol: v1.ProtocolTCP, Port: p}}}
	}
	anp.Spec.Ingress = []v1alpha1.AdminNetworkPolicyIngressRule{
		{Name: "deny-caller", Action: "Deny", Ports: port(int32(9000 + i)), From: []v1alpha1.AdminNetworkPolicyIngressPeer{{
			Pods: &v1alpha1.NamespacedPod{PodSelector: metav1.LabelSelector{MatchLabels: m{"app": fmt.Sprintf("caller-%03d", i)}}}}}},
		{Name: "allow-platform", Action: "Allow", Ports: port(443), From: []v1alpha1.AdminNetworkPolicyIngressPeer{{
			Namespaces: &metav1.LabelSelector{MatchLabels: m{"team": "platform"}}}}},
	}
	return anp
}

// dataPathCluster is a generated cluster plus the lab's two pods on the
// node under test, their namespace isolated both ways, the server selected
// by decoys policies that do not match the client and, last in order, the
// one that does.
func dataPathCluster(size gen.Size, seed uint64, decoys int) (*model.Cluster, error) {
	mc, err := gen.Generate(size, seed).Model()
	if err != nil {
		return nil, err
	}
	type m = map[string]string
	type peers = []networkingv1.NetworkPolicyPeer
	objs := []any{
		tu.Namespace(dpNamespace, m{"team": "perf", "env": "prod"}),
		tu.Pod(dpNamespace, "client", gen.NodeUnderTest, m{"app": "client", "tier": "frontend"}, []string{dpClientIP.String()}),
		tu.Pod(dpNamespace, "server", gen.NodeUnderTest, m{"app": "server", "tier": "backend"}, []string{dpServerIP.String()},
			tu.WithPort("http", v1.ProtocolTCP, dpPort), tu.WithPort("metrics", v1.ProtocolTCP, 9100)),
		tu.Policy(dpNamespace, "default-deny", nil, tu.Types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)),
		tu.Policy(dpNamespace, "client-egress", m{"app": "client"}, tu.Types(networkingv1.PolicyTypeEgress),
			tu.Egress(peers{tu.PodPeer(m{"app": "server"})}, tu.Port(v1.ProtocolTCP, dpPort, 0))),
		tu.Policy(dpNamespace, "zz-allow-client", m{"app": "server"},
			tu.Ingress(peers{tu.PodPeer(m{"app": "client"})}, tu.NamedPort(v1.ProtocolTCP, "http"))),
	}
	for i := range decoys {
		objs = append(objs, tu.Policy(dpNamespace, fmt.Sprintf("decoy-%03d", i), m{"app": "server"},
			tu.Ingress(peers{tu.PodPeer(m{"app": fmt.Sprintf("caller-%03d", i)})}, tu.Port(v1.ProtocolTCP, int32(9000+i), 0)),
			tu.Ingress(peers{tu.NSPeer(m{"team": "platform"}, nil)}, tu.NamedPort(v1.ProtocolTCP, "metrics")),
			tu.Ingress(peers{tu.Block("203.0.113.0/24", "203.0.113.128/25")}, tu.Port(v1.ProtocolTCP, 443, 0))))
	}
	for _, o := range objs {
		if err := mc.Set(o); err != nil {
			return nil, err
		}
	}
	return mc, nil
}

// conntrackChains is a table of n forward base chains that only accept
// established flows: conntrack runs, and each packet meets n chains. One
// is the "conntrack" state; nftpolicy's table has two forward chains.
func conntrackChains(n int) *nft.Transaction {
	rs := nft.NewRuleset()
	for i := range n {
		rs.AddChain(&nft.Chain{Name: fmt.Sprintf("forward-%d", i), Hook: &nft.Hook{Hook: "forward", Priority: 10 * i}, Rules: []*nft.Rule{conntrackOnly()}})
	}
	return diff.Diff(nil, rs)
}

// conntrackOnly is the rule of the conntrack state: established flows pass.
func conntrackOnly() *nft.Rule {
	return &nft.Rule{
		Matches: []nft.Match{nft.MatchCtState{States: []string{"established", "related"}}},
		Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "conntrack only",
	}
}

// conntrackPlus is the conntrack state's chain with n more rules that a
// new connection's first packet meets and none matches: a conntrack state
// test each (ct state invalid), or with lookups, a source-address lookup
// each in a hash set of its own that holds other addresses. Our ruleset's
// first-packet path is about twenty rules and nine lookups across its two
// forward chains; these states say what such rules cost.
func conntrackPlus(n int, lookups bool) *nft.Transaction {
	rs := nft.NewRuleset()
	rules := []*nft.Rule{conntrackOnly()}
	for i := range n {
		m := nft.Match(nft.MatchCtState{States: []string{"invalid"}})
		if lookups {
			name := fmt.Sprintf("other-%d", i)
			set := rs.AddSet(nft.NewSet(name, nft.SetIPv4, ""))
			set.Add(nft.Elem{Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})})
			m = nft.MatchAddrInSet{Family: nft.IPv4, Src: true, Set: name}
		}
		rules = append(rules, &nft.Rule{Matches: []nft.Match{m}, Verdict: nft.Verdict{Kind: nft.Drop}, Comment: "matches nothing here"})
	}
	rs.AddChain(&nft.Chain{Name: "forward-0", Hook: &nft.Hook{Hook: "forward", Priority: 0}, Rules: rules})
	return diff.Diff(nil, rs)
}

// conntrackFib is the conntrack state's chain and a rule that asks the
// routing table whether the destination is an address of the node (never,
// for a forwarded packet), as each egress class chain of ours does.
func conntrackFib() *nft.Transaction {
	rs := nft.NewRuleset()
	rs.AddChain(&nft.Chain{Name: "forward-0", Hook: &nft.Hook{Hook: "forward", Priority: 0}, Rules: []*nft.Rule{
		conntrackOnly(),
		{Matches: []nft.Match{nft.MatchFibDaddrLocal{}}, Verdict: nft.Verdict{Kind: nft.Accept}, Comment: "matches nothing here"},
	}})
	return diff.Diff(nil, rs)
}

// measureState is setState before a measurement: it waits stateSettle for
// the kernel to free the table it replaced.
func measureState(ctx context.Context, k nft.Kernel, tx *nft.Transaction) error {
	if err := setState(ctx, k, tx); err != nil {
		return err
	}
	time.Sleep(stateSettle)
	return nil
}

// setState empties the node's table and loads tx (nil: leave it empty).
func setState(ctx context.Context, k nft.Kernel, tx *nft.Transaction) error {
	cur, err := k.Dump(ctx)
	if err != nil {
		return err
	}
	if cur != nil {
		if err := k.Apply(ctx, deleteTableTx); err != nil {
			return err
		}
	}
	if tx == nil {
		return nil
	}
	return k.Apply(ctx, tx)
}

// connectLoop opens and closes n TCP connections to the server one after
// another from the client's namespace. A connection closes with RST
// (SO_LINGER 0) so the client's ports never pile up in TIME_WAIT.
func connectLoop(clientNS, n int) (loopResult, error) {
	return connectLoopAddr(clientNS, netip.AddrPortFrom(dpServerIP, dpPort), n)
}

// loopResult is what a connect loop measured.
type loopResult struct {
	rate float64         // connections per second over the whole loop
	lats []time.Duration // each connect, from socket() to the handshake's end
	// cycleMs is the median connection's whole time, socket() to close():
	// one over it is the loop's rate without the stalls other processes
	// cause (a stalled connection moves the mean, not the median).
	cycleMs float64
}

// medianRate is connections per second from the median connection.
func (l loopResult) medianRate() float64 { return 1000 / l.cycleMs }

// connectLoopAddr is connectLoop to an IPv4 address and port.
func connectLoopAddr(clientNS int, to netip.AddrPort, n int) (loopResult, error) {
	var res loopResult
	// Every socket is made on the thread in the client's namespace: a
	// connect loop pays no thread switch per connection.
	err := netns.Do(clientNS, func() error {
		dst := &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()}
		res.lats = make([]time.Duration, 0, n)
		cycles := make([]time.Duration, 0, n)
		start := time.Now()
		for range n {
			t := time.Now()
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
			if err != nil {
				return err
			}
			unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			err = connectWait(fd, dst)
			res.lats = append(res.lats, time.Since(t))
			unix.Close(fd)
			cycles = append(cycles, time.Since(t))
			if err != nil {
				return fmt.Errorf("connect %v: %w", to, err)
			}
		}
		res.rate = float64(n) / time.Since(start).Seconds()
		res.cycleMs = DistOf(cycles).P50
		return nil
	})
	return res, err
}

// connectWait connects a non-blocking socket and waits for the handshake.
// A blocking connect would return EINTR whenever the Go runtime signals the
// thread. A connect that waits for a retransmitted SYN is a data point, not
// an error; one that waits past 3 s is a broken setup.
func connectWait(fd int, dst unix.Sockaddr) error {
	err := unix.Connect(fd, dst)
	if err == nil {
		return nil
	}
	if err != unix.EINPROGRESS {
		return err
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			return unix.ETIMEDOUT
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(fds, int(wait.Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 1 {
			break
		}
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if soerr != 0 {
		return unix.Errno(soerr)
	}
	return nil
}

var counterRE = regexp.MustCompile(`counter packets (\d+) .*` + regexp.QuoteMeta(dpNamespace+"/zz-allow-client ingress rule 0 ["))

// checkEnforcing shows the ruleset was live during the measurements: with
// it loaded, the allowing rule counts the client's connections and a port
// no policy allows is dropped (a timeout, not the refusal the closed port
// gives without it).
func checkEnforcing(ctx context.Context, lab *netlab.Lab, k nft.Kernel, full *nft.Transaction, clientNS int, client, server string) string {
	if err := setState(ctx, k, full); err != nil {
		return "not checked: " + err.Error()
	}
	const n = 100
	if _, err := connectLoop(clientNS, n); err != nil {
		return "broken: the allowed connection failed: " + err.Error()
	}
	denied := lab.Probe(ctx, client, server, 4, "TCP", dpPort+1, 500*time.Millisecond)
	node := &NetNS{Name: filepath.Base(lab.NodeNetNSPath("perf"))}
	out, err := node.Exec(nil, "nft", "list", "table", "inet", nft.TableName)
	if err != nil {
		return "not checked: " + err.Error()
	}
	counted := 0
	for _, m := range counterRE.FindAllSubmatch(out, -1) {
		c, _ := strconv.Atoi(string(m[1]))
		counted += c
	}
	if counted < n || denied.Verdict != netlab.Denied || denied.Reason != netlab.Timeout {
		return fmt.Sprintf("broken: the allowing rule counted %d packets for %d connections; port %d: %v", counted, n, dpPort+1, denied)
	}
	return fmt.Sprintf("yes: the allowing rule counted %d SYNs for %d connections; port %d (no policy allows it) timed out", counted, n, dpPort+1)
}

func openNS(path string) (int, error) {
	if path == "" {
		return -1, errors.New("no such lab namespace")
	}
	return unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
}
