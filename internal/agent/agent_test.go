package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	policyv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	policyv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	policyfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

type m = map[string]string

const node = "node-1"

// countingKernel counts the Fake's Dump calls: a full resync reads the
// kernel back, a partial one does not.
type countingKernel struct {
	*nft.Fake
	dumps atomic.Int32
}

func (k *countingKernel) Dump(ctx context.Context) (*nft.Ruleset, error) {
	k.dumps.Add(1)
	return k.Fake.Dump(ctx)
}

// harness is one agent on a Fake kernel, fed by client-go's fake clientset.
type harness struct {
	fakeAPI
	kernel *countingKernel
	reg    *prometheus.Registry
	ctx    context.Context
}

func start(t *testing.T, tweak func(*Config), objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{fakeAPI: newFakeAPI(t, nil), kernel: &countingKernel{Fake: nft.NewFake()}, reg: prometheus.NewRegistry()}
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx = ctx
	for _, o := range objs {
		h.apply(o)
	}
	cfg := Config{NodeName: node, Kernel: h.kernel, ResyncInterval: time.Hour, Metrics: NewMetrics(h.reg)}
	if tweak != nil {
		tweak(&cfg)
	}
	h.agent = New(cfg, h.client)
	runAgent(t, ctx, cancel, h.agent, nil)
	return h
}

// runAgent runs a until the test ends (then runs before, if not nil, and
// cancels ctx), and fails the test if Run returns an error.
func runAgent(t *testing.T, ctx context.Context, cancel context.CancelFunc, a *Agent, before func()) {
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		if before != nil {
			before()
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// desired is what the kernel should hold for the current objects.
func (h *harness) desired() *nft.Ruleset { return compile.Node(h.model(), node) }

// checkKernel fails unless the Fake holds exactly the desired ruleset.
func (h *harness) checkKernel() {
	h.t.Helper()
	h.holds(model.Options{})
}

// holds fails unless the Fake holds exactly the objects' ruleset compiled
// with opts.
func (h *harness) holds(opts model.Options) {
	h.t.Helper()
	got, err := h.kernel.Fake.Dump(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	if got == nil {
		h.t.Fatal("the kernel has no table")
	}
	if tx := diff.Diff(got, compile.NodeWith(h.model(), node, opts)); !tx.Empty() {
		h.t.Errorf("the kernel differs from the ruleset with %+v by %d ops:\n%s", opts, tx.Len(), tx)
	}
}

func basic() []runtime.Object {
	return []runtime.Object{
		tu.Namespace("x", m{"ns": "x"}),
		tu.Pod("x", "server", node, m{"role": "server"}, []string{"10.244.1.10"}, tu.WithPort("http", v1.ProtocolTCP, 8080)),
		tu.Pod("x", "client", "node-2", m{"role": "client"}, []string{"10.244.2.10"}),
		tu.Policy("x", "servers", m{"role": "server"},
			tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(m{"role": "client"})}, tu.NamedPort(v1.ProtocolTCP, "http"))),
	}
}

func TestFirstSyncProgramsTable(t *testing.T) {
	h := start(t, nil, basic()...)
	h.wait()
	h.checkKernel()
	if !h.agent.Ready() {
		t.Error("not ready after a successful sync")
	}
	if got := h.kernel.Transactions; got != 1 {
		t.Errorf("kernel transactions = %d, want 1", got)
	}
	if got := h.kernel.dumps.Load(); got != 1 {
		t.Errorf("Dump calls = %d, want 1 (the first sync reads the kernel)", got)
	}
}

// TestAdoptsExistingTable: an agent that finds its predecessor's table
// changes only what differs and never deletes the table.
func TestAdoptsExistingTable(t *testing.T) {
	objs := basic()
	k := nft.NewFake()
	c := model.NewCluster()
	for _, o := range objs {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Apply(context.Background(), diff.Diff(nil, compile.Node(c, node))); err != nil {
		t.Fatal(err)
	}
	h := &countingKernel{Fake: k}
	hs := start(t, func(cfg *Config) { cfg.Kernel = h }, objs...)
	hs.kernel = h
	hs.wait()
	hs.checkKernel()
	if k.Transactions != 1 {
		t.Errorf("restart with an up-to-date table sent %d transactions, want none", k.Transactions-1)
	}
}

func TestNoOpEventSendsNoTransaction(t *testing.T) {
	h := start(t, nil, basic()...)
	h.wait()
	before := h.agent.Stats()
	// A change the policy does not read (an annotation, a condition).
	pod := h.objects["Pod/x/server"].DeepCopyObject().(*v1.Pod)
	pod.Annotations = m{"touched": "yes"}
	pod.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}
	h.apply(pod)
	h.wait()
	after := h.agent.Stats()
	if after.Syncs <= before.Syncs {
		t.Fatalf("no sync after the event: %+v", after)
	}
	if h.kernel.Transactions != 1 || after.Transactions != 1 {
		t.Errorf("kernel transactions = %d, agent transactions = %d; want 1 each (no-op event)", h.kernel.Transactions, after.Transactions)
	}
	if after.LastOps.Ops != 0 {
		t.Errorf("last sync counted %d ops, want 0", after.LastOps.Ops)
	}
}

func TestFailureLeadsToFullResync(t *testing.T) {
	h := start(t, nil, basic()...)
	h.wait()
	dumps := h.kernel.dumps.Load()
	// The agent is idle after the barrier; the next Apply is caused by the
	// update below.
	h.kernel.FailNext = errors.New("injected: operation not permitted")
	h.apply(tu.Pod("x", "client2", "node-2", m{"role": "client"}, []string{"10.244.2.11"}))
	h.wait()
	h.checkKernel()
	st := h.agent.Stats()
	if st.Failures != 1 {
		t.Errorf("failures = %d, want 1", st.Failures)
	}
	if got := h.kernel.dumps.Load() - dumps; got != 1 {
		t.Errorf("Dump calls after the failure = %d, want 1 (a full resync)", got)
	}
	if h.kernel.Failed != 1 || h.kernel.Transactions != 2 {
		t.Errorf("kernel: %d failed, %d committed; want 1 and 2", h.kernel.Failed, h.kernel.Transactions)
	}
	if got := counterValue(t, h.reg, "nftpolicy_sync_failures_total", "reason", "apply"); got != 1 {
		t.Errorf("nftpolicy_sync_failures_total{reason=apply} = %v, want 1", got)
	}
	// One refusal is a stale shadow's, repaired by the resync: no
	// replacement.
	if got := counterValue(t, h.reg, "nftpolicy_table_replacements_total", "", ""); got != 0 {
		t.Errorf("nftpolicy_table_replacements_total = %v, want 0", got)
	}
}

// TestRefusedTwiceReplacesTable: a kernel that refuses every minimal
// transaction (as the kernel refused the differ's EBUSY order) gets the
// first one refused, the full resync's refused, and then the whole table
// replaced in one transaction; after that the agent is back to minimal
// transactions.
func TestRefusedTwiceReplacesTable(t *testing.T) {
	h := start(t, nil, basic()...)
	h.wait()
	var refusing atomic.Bool
	var seen []string // "minimal" or "replacement", in the order applied
	h.kernel.Refuse = func(tx *nft.Transaction) error {
		kind := "minimal"
		for _, op := range tx.Ops {
			if op.Kind == nft.OpDeleteTable {
				kind = "replacement"
			}
		}
		seen = append(seen, kind)
		if refusing.Load() && kind == "minimal" {
			return fmt.Errorf("injected: %w", syscall.EBUSY)
		}
		return nil
	}
	refusing.Store(true)
	dumps := h.kernel.dumps.Load()
	h.apply(tu.Pod("x", "client2", "node-2", m{"role": "client"}, []string{"10.244.2.11"}))
	h.wait()
	h.checkKernel()
	if diff := cmp.Diff([]string{"minimal", "minimal", "replacement"}, seen); diff != "" {
		t.Errorf("transactions sent (-want +got):\n%s", diff)
	}
	if h.kernel.Failed != 2 || h.kernel.Transactions != 2 {
		t.Errorf("kernel: %d failed, %d committed; want 2 (refused) and 2 (first sync, replacement)", h.kernel.Failed, h.kernel.Transactions)
	}
	if got := h.kernel.dumps.Load() - dumps; got != 1 {
		t.Errorf("Dump calls = %d, want 1 (the full resync after the first refusal)", got)
	}
	if got := counterValue(t, h.reg, "nftpolicy_table_replacements_total", "", ""); got != 1 {
		t.Errorf("nftpolicy_table_replacements_total = %v, want 1", got)
	}
	if got := counterValue(t, h.reg, "nftpolicy_sync_failures_total", "reason", "apply"); got != 1 {
		t.Errorf("nftpolicy_sync_failures_total{reason=apply} = %v, want 1 (the first refusal; the second led to the replacement)", got)
	}

	// The kernel accepts minimal transactions again: the next change is
	// one, the client's address added to the ingress ids map (only an
	// ingress rule names clients; their peer set, which identities are
	// made of, is not in the kernel).
	refusing.Store(false)
	seen = nil
	h.apply(tu.Pod("x", "client3", "node-2", m{"role": "client"}, []string{"10.244.2.12"}))
	h.wait()
	h.checkKernel()
	if diff := cmp.Diff([]string{"minimal"}, seen); diff != "" {
		t.Errorf("transactions sent after the replacement (-want +got):\n%s", diff)
	}
	if got := h.agent.Stats().LastOps; got != (diff.Counts{Ops: 1, Elements: 1}) {
		t.Errorf("the change after the replacement cost %+v, want 1 op and 1 element", got)
	}
	if got := counterValue(t, h.reg, "nftpolicy_table_replacements_total", "", ""); got != 1 {
		t.Errorf("nftpolicy_table_replacements_total = %v, want still 1", got)
	}
}

// TestOutcomeUnknown: the kernel committed but the agent could not tell.
// The next sync reads the table back, finds it right and sends nothing.
func TestOutcomeUnknown(t *testing.T) {
	h := start(t, nil, basic()...)
	h.wait()
	dumps := h.kernel.dumps.Load()
	h.kernel.FailNext = fmt.Errorf("no buffer space available: %w", nft.ErrOutcomeUnknown)
	h.apply(tu.Pod("x", "client2", "node-2", m{"role": "client"}, []string{"10.244.2.11"}))
	h.wait()
	h.checkKernel()
	if got := h.kernel.dumps.Load() - dumps; got != 1 {
		t.Errorf("Dump calls after the unknown outcome = %d, want 1", got)
	}
	// The injected failure committed the transaction; the resync must
	// find nothing left to do.
	if h.kernel.Transactions != 2 {
		t.Errorf("kernel committed %d transactions, want 2 (first sync, the one with the unknown outcome)", h.kernel.Transactions)
	}
	if got := counterValue(t, h.reg, "nftpolicy_sync_failures_total", "reason", "outcome_unknown"); got != 1 {
		t.Errorf("nftpolicy_sync_failures_total{reason=outcome_unknown} = %v, want 1", got)
	}
}

// TestPeriodicResyncRepairsDrift: someone deletes the table, then a base
// chain; the periodic resync puts them back without any event.
func TestPeriodicResyncRepairsDrift(t *testing.T) {
	const period = 300 * time.Millisecond
	h := start(t, func(c *Config) { c.ResyncInterval = period }, basic()...)
	h.wait()

	waitRepaired := func(what string) {
		t.Helper()
		deadline := time.Now().Add(3 * period)
		for time.Now().Before(deadline) {
			rs, _ := h.kernel.Fake.Dump(context.Background())
			if rs != nil && diff.Diff(rs, h.desired()).Empty() {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("%s: not repaired within %v (stats %+v)", what, 3*period, h.agent.Stats())
	}

	drift := h.agent.Stats().Drift
	h.kernel.Seed(nil) // nft delete table inet nftpolicy
	waitRepaired("table deleted")

	rs, _ := h.kernel.Fake.Dump(context.Background())
	delete(rs.Chains, "forward-ingress")
	h.kernel.Seed(rs) // nft delete chain inet nftpolicy forward-ingress
	waitRepaired("base chain deleted")

	if got := h.agent.Stats().Drift - drift; got != 2 {
		t.Errorf("drift repairs = %d, want 2", got)
	}
	if got := counterValue(t, h.reg, "nftpolicy_drift_repairs_total", "", ""); got < 2 {
		t.Errorf("nftpolicy_drift_repairs_total = %v, want 2", got)
	}
}

// TestAdminKindsWatched: with a policy-api client the agent watches the
// admin kinds and its barrier covers them, whether or not the model
// enforces them yet.
func TestAdminKindsWatched(t *testing.T) {
	cnp := &policyv1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "tier", ResourceVersion: "100"}}
	pc := policyfake.NewClientset(cnp)
	h := start(t, func(c *Config) { c.PolicyClient = pc }, basic()...)
	h.objects["ClusterNetworkPolicy/tier"] = cnp
	h.wait()
	if got := gaugeValue(t, h.reg, "nftpolicy_policies", "kind", model.KindCNP); got != 1 {
		t.Errorf("nftpolicy_policies{kind=ClusterNetworkPolicy} = %v, want 1", got)
	}
	// Deleting it is seen too.
	if err := pc.PolicyV1alpha2().ClusterNetworkPolicies().Delete(context.Background(), "tier", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	delete(h.objects, "ClusterNetworkPolicy/tier")
	h.wait()
}

func TestAdminKindsFiltered(t *testing.T) {
	pc := policyfake.NewClientset()
	h := start(t, func(c *Config) { c.PolicyClient = pc; c.AdminKinds = AdminKindsAt(model.KindCNP) }, basic()...)
	h.wait()
	var kinds []string
	for _, w := range h.agent.watched {
		kinds = append(kinds, w.kind.Name)
	}
	want := "[Namespace Pod Node NetworkPolicy ClusterNetworkPolicy]"
	if fmt.Sprint(kinds) != want {
		t.Errorf("watched %v, want %s", kinds, want)
	}
}

func TestMetricsAfterSync(t *testing.T) {
	h := start(t, nil, basic()...)
	h.wait()
	h.apply(tu.Pod("x", "client2", "node-2", m{"role": "client"}, []string{"10.244.2.11"}))
	h.wait()
	checks := []struct {
		name, label, value string
		want               float64
	}{
		{"nftpolicy_pods", "", "", 3},
		{"nftpolicy_selected_pods", "", "", 1},
		{"nftpolicy_policies", "kind", "NetworkPolicy", 1},
		{"nftpolicy_transactions_total", "", "", 2},
		{"nftpolicy_ready", "", "", 1},
	}
	for _, c := range checks {
		var got float64
		if c.name == "nftpolicy_transactions_total" {
			got = counterValue(t, h.reg, c.name, c.label, c.value)
		} else {
			got = gaugeValue(t, h.reg, c.name, c.label, c.value)
		}
		if got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
	if got := gaugeValue(t, h.reg, "nftpolicy_set_elements", "", ""); got < 3 {
		t.Errorf("nftpolicy_set_elements = %v, want at least 3 (server in the dispatch map, two clients as peers)", got)
	}
	if n := histogramCount(t, h.reg, "nftpolicy_network_programming_latency_seconds"); n < 1 {
		t.Errorf("no programming latency observed after an update")
	}
	if n := histogramCount(t, h.reg, "nftpolicy_transaction_netlink_bytes"); n != 2 {
		t.Errorf("netlink bytes observed for %d transactions, want 2", n)
	}
	// Every sync's compute is observed, and is a part of its duration.
	for _, typ := range []string{"full", "partial"} {
		whole := metric(t, h.reg, "nftpolicy_sync_duration_seconds", "type", typ).GetHistogram()
		part := metric(t, h.reg, "nftpolicy_sync_compute_duration_seconds", "type", typ).GetHistogram()
		if part.GetSampleCount() != whole.GetSampleCount() || part.GetSampleSum() > whole.GetSampleSum() {
			t.Errorf("%s syncs: compute %d observations summing %v s, syncs %d summing %v s", typ,
				part.GetSampleCount(), part.GetSampleSum(), whole.GetSampleCount(), whole.GetSampleSum())
		}
	}
	if n := metric(t, h.reg, "nftpolicy_sync_compute_duration_seconds", "type", "partial").GetHistogram().GetSampleCount(); n < 1 {
		t.Errorf("no partial sync's compute observed after an update")
	}
	// A policy of another namespace whose peers are the pods of the
	// namespaces ns=x: its set is kept filled (one per family), with x's
	// three IPv4 addresses, though no pod of this node is its subject.
	h.apply(tu.Namespace("y", nil))
	h.apply(tu.Policy("y", "from-x", m{"role": "db"}, tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.NSPeer(m{"ns": "x"}, nil)})))
	h.wait()
	if got := gaugeValue(t, h.reg, "nftpolicy_kept_peer_sets", "", ""); got != 2 {
		t.Errorf("nftpolicy_kept_peer_sets = %v, want 2", got)
	}
	if got := gaugeValue(t, h.reg, "nftpolicy_kept_peer_set_members", "", ""); got != 3 {
		t.Errorf("nftpolicy_kept_peer_set_members = %v, want 3", got)
	}
}

func TestTransform(t *testing.T) {
	pod := tu.Pod("x", "p", node, m{"a": "b"}, []string{"10.0.0.1", "fd00::1"}, tu.WithPort("http", v1.ProtocolTCP, 80))
	pod.Annotations = m{"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	pod.Spec.Volumes = []v1.Volume{{Name: "v"}}
	pod.Spec.Containers[0].Env = []v1.EnvVar{{Name: "E", Value: "x"}}
	pod.Spec.Containers[0].Image = "image"
	pod.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady}}
	pod.ResourceVersion = "7"

	out, err := Transform(pod.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*v1.Pod)
	if got.Annotations != nil || got.ManagedFields != nil || got.Spec.Volumes != nil || got.Status.Conditions != nil ||
		got.Spec.Containers[0].Env != nil || got.Spec.Containers[0].Image != "" {
		t.Errorf("transform kept what the agent never reads: %+v", got)
	}
	// What the model reads must survive: the model of the slim pod equals
	// the model of the full one.
	if a, b := fmt.Sprintf("%+v", model.PodFromAPI(pod)), fmt.Sprintf("%+v", model.PodFromAPI(got)); a != b {
		t.Errorf("model of the transformed pod differs:\n got %s\nwant %s", b, a)
	}
	if got.ResourceVersion != "7" {
		t.Errorf("resourceVersion lost")
	}
	// What the cache keeps per pod is what memory at 50k pods is made of:
	// a pod as a kubelet and kubectl leave it, against its slim copy.
	full := realisticPod()
	out2, _ := Transform(full.DeepCopy())
	fullSize, slimSize := jsonSize(t, full), jsonSize(t, out2)
	if slimSize*4 > fullSize {
		t.Errorf("a transformed pod takes %d bytes as JSON, the full one %d: want at most a quarter", slimSize, fullSize)
	}
	t.Logf("pod as JSON: %d bytes, transformed %d", fullSize, slimSize)
	again, _ := Transform(got.DeepCopy())
	if fmt.Sprintf("%+v", again) != fmt.Sprintf("%+v", got) {
		t.Error("transform is not idempotent")
	}
	// A node keeps its labels, addresses and pod CIDRs.
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: m{"a": "b"}, Annotations: m{"x": "y"}},
		Spec:   v1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, ProviderID: "p"},
		Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "172.18.0.10"}}, Capacity: v1.ResourceList{}}}
	slim, _ := Transform(n.DeepCopy())
	if a, b := fmt.Sprintf("%+v", model.NodeFromAPI(n)), fmt.Sprintf("%+v", model.NodeFromAPI(slim.(*v1.Node))); a != b {
		t.Errorf("model of the transformed node differs:\n got %s\nwant %s", b, a)
	}
	if got := model.NodeFromAPI(slim.(*v1.Node)).PodCIDRs; len(got) != 2 {
		t.Errorf("transformed node's pod CIDRs: %v, want 2", got)
	}
}

// A policy keeps nftpolicy's own annotations through the transform (they
// change what is compiled) and loses the others.
func TestTransformKeepsPolicyAnnotations(t *testing.T) {
	np := tu.Policy("x", "p", nil)
	np.Annotations = m{model.AnnotationEnforcement: model.EnforcementAudit, model.AnnotationLogAccepts: "true",
		"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	out, err := Transform(np.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*networkingv1.NetworkPolicy)
	want := m{model.AnnotationEnforcement: model.EnforcementAudit, model.AnnotationLogAccepts: "true"}
	if fmt.Sprint(got.Annotations) != fmt.Sprint(want) {
		t.Errorf("annotations %v, want %v", got.Annotations, want)
	}
	if p := model.PolicyFromAPI(got); !p.Audit || !p.LogAccepts {
		t.Errorf("model of the transformed policy: audit %v, log accepts %v; want both", p.Audit, p.LogAccepts)
	}
}

func TestRateLimitedLog(t *testing.T) {
	r := rateLimitedLog{every: time.Minute}
	now := time.Now()
	var allowed []bool
	for i, msg := range []string{"a", "a", "a", "b", "b"} {
		_, ok := r.allow(msg, now.Add(time.Duration(i)*time.Second))
		allowed = append(allowed, ok)
	}
	if fmt.Sprint(allowed) != "[true false false true false]" {
		t.Errorf("allowed %v", allowed)
	}
	if n, ok := r.allow("b", now.Add(2*time.Minute)); !ok || n != 1 {
		t.Errorf("after the period: allowed %v with %d suppressed, want true and 1", ok, n)
	}
}

// metric finds one series of a family by an optional label.
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if label == "" {
				return mt
			}
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return mt
				}
			}
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, label, value)
	return nil
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	return metric(t, reg, name, label, value).GetCounter().GetValue()
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	return metric(t, reg, name, label, value).GetGauge().GetValue()
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	return metric(t, reg, name, "", "").GetHistogram().GetSampleCount()
}

func jsonSize(t *testing.T, o any) int {
	data, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return len(data)
}

// realisticPod is a pod with what the API server, kubectl and a kubelet
// typically put in it.
func realisticPod() *v1.Pod {
	p := tu.Pod("shop", "web-5d7c444b-x2kq9", node, m{"app": "web", "pod-template-hash": "5d7c444b"}, []string{"10.244.1.23"}, tu.WithPort("http", v1.ProtocolTCP, 8080))
	p.Annotations = m{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 1500)}
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, FieldsV1: metav1.NewFieldsV1(`{"f:status":{` + strings.Repeat(`"f:x":{},`, 150) + `"f:y":{}}}`)}}
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d7c444b", UID: "u"}}
	c := &p.Spec.Containers[0]
	c.Image = "registry.example/shop/web:1.2.3"
	for i := 0; i < 10; i++ {
		c.Env = append(c.Env, v1.EnvVar{Name: fmt.Sprintf("SETTING_%d", i), Value: "some-value"})
	}
	c.VolumeMounts = []v1.VolumeMount{{Name: "token", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}}
	c.ReadinessProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/healthz"}}}
	p.Spec.Volumes = []v1.Volume{{Name: "token", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{}}}}
	p.Spec.Tolerations = []v1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: v1.TolerationOpExists}, {Key: "node.kubernetes.io/unreachable", Operator: v1.TolerationOpExists}}
	for _, c := range []v1.PodConditionType{v1.PodReady, v1.ContainersReady, v1.PodInitialized, v1.PodScheduled} {
		p.Status.Conditions = append(p.Status.Conditions, v1.PodCondition{Type: c, Status: v1.ConditionTrue, LastTransitionTime: metav1.Now()})
	}
	p.Status.ContainerStatuses = []v1.ContainerStatus{{Name: "c", Ready: true, Image: c.Image, ImageID: "sha256:" + strings.Repeat("a", 64), ContainerID: "containerd://" + strings.Repeat("b", 64)}}
	p.Status.HostIP = "192.168.1.10"
	return p
}

// TestTierPolicyStatus: the agent of the first node marks a policy that
// shares its priority, and one with an invalid field, in their status;
// the agent of another node writes nothing.
func TestTierPolicyStatus(t *testing.T) {
	anp := func(name string, prio int32, action string) *policyv1alpha1.AdminNetworkPolicy {
		p := &policyv1alpha1.AdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "100", Generation: 3}}
		p.Spec.Priority = prio
		p.Spec.Subject.Namespaces = &metav1.LabelSelector{}
		p.Spec.Ingress = []policyv1alpha1.AdminNetworkPolicyIngressRule{{Action: policyv1alpha1.AdminNetworkPolicyRuleAction(action),
			From: []policyv1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}}}
		return p
	}
	nodeObj := func(name string) *v1.Node { return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}} }
	for _, tc := range []struct {
		name   string
		nodes  []string
		writes bool
	}{{"first node writes", []string{node, "zz-node"}, true}, {"other nodes do not", []string{"a-node", node}, false}} {
		t.Run(tc.name, func(t *testing.T) {
			pc := policyfake.NewSimpleClientset(anp("a", 10, "Allow"), anp("b", 10, "Bogus"))
			objs := basic()
			for _, n := range tc.nodes {
				objs = append(objs, nodeObj(n))
			}
			start(t, func(c *Config) { c.PolicyClient = pc }, objs...)
			var got *policyv1alpha1.AdminNetworkPolicy
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				var err error
				got, err = pc.PolicyV1alpha1().AdminNetworkPolicies().Get(context.Background(), "b", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if len(got.Status.Conditions) > 0 || !tc.writes {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if !tc.writes {
				time.Sleep(300 * time.Millisecond)
				if got, _ = pc.PolicyV1alpha1().AdminNetworkPolicies().Get(context.Background(), "b", metav1.GetOptions{}); len(got.Status.Conditions) != 0 {
					t.Fatalf("the agent of a node that does not sort first wrote %v", got.Status.Conditions)
				}
				return
			}
			valid := meta.FindStatusCondition(got.Status.Conditions, model.ConditionValid)
			unique := meta.FindStatusCondition(got.Status.Conditions, model.ConditionUniquePriority)
			if valid == nil || valid.Status != metav1.ConditionFalse || !strings.Contains(valid.Message, "Bogus") || valid.ObservedGeneration != 3 {
				t.Errorf("Valid condition: %+v", valid)
			}
			if unique == nil || unique.Status != metav1.ConditionFalse || !strings.Contains(unique.Message, "AdminNetworkPolicy/a, AdminNetworkPolicy/b") {
				t.Errorf("UniquePriority condition: %+v", unique)
			}
		})
	}
}

// TestClusterNetworkPolicyAsBeta: where the API server serves
// ClusterNetworkPolicy as v1beta1 (network-policy-api v0.3.0) the agent
// watches that version, enforces what it reads as the model's v1alpha2, and
// writes the status conditions through v1beta1.
func TestClusterNetworkPolicyAsBeta(t *testing.T) {
	cnp := func(name string) *policyv1beta1.ClusterNetworkPolicy {
		p := &policyv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "100", Generation: 2}}
		p.Spec.Tier, p.Spec.Priority = policyv1beta1.AdminTier, 7
		p.Spec.Subject.Namespaces = &metav1.LabelSelector{}
		p.Spec.Ingress = []policyv1beta1.ClusterNetworkPolicyIngressRule{{Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
			From: []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}}}
		return p
	}
	pc := policyfake.NewSimpleClientset(cnp("a"), cnp("b"))
	beta := schema.GroupVersion(policyv1beta1.GroupVersion).WithResource("clusternetworkpolicies")
	h := start(t, func(c *Config) {
		c.PolicyClient, c.AdminKinds = pc, map[string]schema.GroupVersionResource{model.KindCNP: beta}
	}, append(basic(), &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}})...)
	h.objects["ClusterNetworkPolicy/a"], h.objects["ClusterNetworkPolicy/b"] = cnp("a"), cnp("b")
	h.wait()
	if got := gaugeValue(t, h.reg, "nftpolicy_policies", "kind", model.KindCNP); got != 2 {
		t.Errorf("nftpolicy_policies{kind=ClusterNetworkPolicy} = %v, want 2", got)
	}
	var unique *metav1.Condition
	for deadline := time.Now().Add(5 * time.Second); unique == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got, err := pc.PolicyV1beta1().ClusterNetworkPolicies().Get(context.Background(), "a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		unique = meta.FindStatusCondition(got.Status.Conditions, model.ConditionUniquePriority)
	}
	if unique == nil || unique.Status != metav1.ConditionFalse || unique.ObservedGeneration != 2 ||
		!strings.Contains(unique.Message, "ClusterNetworkPolicy/a, ClusterNetworkPolicy/b") {
		t.Errorf("UniquePriority condition written through v1beta1: %+v", unique)
	}
}

// TestEventsCostExactOperations: each event sends exactly the operations
// its change needs, through the partial diff (no full resync reads the
// kernel back), and the kernel then holds what a full compile gives.
func TestEventsCostExactOperations(t *testing.T) {
	h := start(t, nil, basic()...)
	h.wait()
	dumps := h.kernel.dumps.Load()
	steps := []struct {
		name     string
		obj      runtime.Object
		ops      int
		elements int
	}{
		// A new client joins the clients' ingress identity: its address in
		// the ingress ids map, one element (no egress rule names clients;
		// the peer set the identity is made of is not in the kernel: no
		// rule reads it).
		{"client added", tu.Pod("x", "client2", "node-2", m{"role": "client"}, []string{"10.244.2.11"}), 1, 1},
		// Relabelled out of it: the same one deleted.
		{"client relabelled", tu.Pod("x", "client2", "node-2", m{"role": "other"}, []string{"10.244.2.11"}), 1, 1},
		// A second server on this node: its dispatch element, its named
		// port in this node's named-port set, its address in the set of known
		// local pods (no longer a pod not yet known), and its element in
		// the map of the clients' identity, to the group its class has.
		{"local server added", tu.Pod("x", "server2", node, m{"role": "server"}, []string{"10.244.1.11"}, tu.WithPort("http", v1.ProtocolTCP, 8080)), 4, 4},
		// The policy's ports change: the one group (servers, clients'
		// identity) is flushed and rewritten with one port lookup; a port
		// map with one element replaces the named-port set it used (add
		// map, add its element, flush, one rule, delete the set).
		{"policy edited", tu.Policy("x", "servers", m{"role": "server"},
			tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(m{"role": "client"})}, tu.Port(v1.ProtocolTCP, 8080, 0))), 5, 1},
	}
	for _, s := range steps {
		h.apply(s.obj)
		h.wait()
		h.checkKernel()
		if got := h.agent.Stats().LastOps; got.Ops != s.ops || got.Elements != s.elements {
			t.Errorf("%s: %d ops and %d elements, want %d and %d", s.name, got.Ops, got.Elements, s.ops, s.elements)
		}
	}
	if got := h.kernel.dumps.Load(); got != dumps {
		t.Errorf("the events read the kernel back %d times, want 0", got-dumps)
	}
}

// TestNoopUpdateDoesNotDelayTheNext: an update that changes nothing the
// agent keeps (a kubelet setting a terminating pod's grace period to 0)
// starts no sync of its own, so the removal that follows a moment later is
// synced at once instead of waiting out --min-sync-period behind it; the
// update's version still reaches the barrier.
func TestNoopUpdateDoesNotDelayTheNext(t *testing.T) {
	const minSync = time.Second
	h := start(t, func(c *Config) { c.MinSyncInterval = minSync }, basic()...)
	h.wait()
	time.Sleep(minSync) // the first sync's interval is over
	syncs := h.agent.Stats().Syncs
	pod := h.objects["Pod/x/client"].(*v1.Pod).DeepCopy()
	zero := int64(0)
	pod.DeletionGracePeriodSeconds = &zero // dropped by Transform
	h.apply(pod)
	time.Sleep(100 * time.Millisecond)
	if got := h.agent.Stats().Syncs; got != syncs {
		t.Fatalf("the no-op update started %d syncs at once, want none", got-syncs)
	}
	if err := h.client.CoreV1().Pods("x").Delete(context.Background(), "client", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	delete(h.objects, "Pod/x/client")
	ctx, cancel := context.WithTimeout(context.Background(), minSync/2)
	defer cancel()
	if err := h.agent.WaitApplied(ctx, h.versions()); err != nil {
		t.Fatalf("the removal after a no-op update was not synced within %v: %v", minSync/2, err)
	}
}
