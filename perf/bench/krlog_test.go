package bench

import (
	"strings"
	"testing"
	"time"
)

// A kube-router v2.1.0 log at --v=1 (lines as it writes them): two
// complete syncs, one aborted (it still logs its duration), one running.
const krLogSample = `I1204 23:48:04.101010    4242 network_policy_controller.go:240] Starting sync of iptables with version: 17e0f2a1b
I1204 23:48:04.150000    4242 network_policy_controller.go:269] Saving IPv4 iptables rules took 3.2ms
I1204 23:48:04.562000    4242 network_policy_controller.go:237] sync iptables took 461.0234ms
I1204 23:48:05.000000    4242 network_policy_controller.go:240] Starting sync of iptables with version: 17e0f2a1c
E1204 23:48:05.100000    4242 network_policy_controller.go:309] Aborting sync. Failed to run iptables-restore: exit status 1
*filter
:INPUT ACCEPT [0:0]
I1204 23:48:05.100100    4242 network_policy_controller.go:237] sync iptables took 100.1ms
I1204 23:48:06.000000    4242 network_policy_controller.go:240] Starting sync of iptables with version: 17e0f2a1d
I1204 23:48:06.170000    4242 network_policy_controller.go:237] sync iptables took 170ms
W1204 23:48:06.200000    4242 reflector.go:1] a warning is not an error
E1204 23:48:07.000000    4242 health_controller.go:1] Health controller error
I1204 23:48:08.000000    4242 network_policy_controller.go:240] Starting sync of iptables with version: 17e0f2a1e
`

func TestParseKubeRouterLog(t *testing.T) {
	s := parseKubeRouterLog(krLogSample)
	if s.Started != 4 || s.Ended != 3 || s.Aborted != 1 {
		t.Errorf("started %d, ended %d, aborted %d; want 4, 3, 1", s.Started, s.Ended, s.Aborted)
	}
	want := []time.Duration{461023400 * time.Nanosecond, 100100 * time.Microsecond, 170 * time.Millisecond}
	if len(s.Took) != len(want) {
		t.Fatalf("took %v, want %v", s.Took, want)
	}
	for i := range want {
		if s.Took[i] != want[i] {
			t.Errorf("took[%d] = %v, want %v", i, s.Took[i], want[i])
		}
	}
	if len(s.Errors) != 2 || !strings.Contains(s.Errors[0], "Aborting sync") || !strings.Contains(s.Errors[1], "Health controller") {
		t.Errorf("errors %q: want the two E lines", s.Errors)
	}
	if s.idle() {
		t.Error("a sync started and not ended: not idle")
	}
	if !parseKubeRouterLog(krLogSample[:strings.LastIndex(krLogSample, "I1204 23:48:08")]).idle() {
		t.Error("every sync ended: idle")
	}
	if s := parseKubeRouterLog(""); s.Started != 0 || !s.idle() {
		t.Errorf("empty log: %+v", s)
	}
}

// Part of kube-router's /metrics: histograms with buckets, gauges, and
// metrics the results do not quote.
const krMetricsSample = `# HELP kube_router_controller_iptables_sync_time Time it took for controller to sync iptables
# TYPE kube_router_controller_iptables_sync_time histogram
kube_router_controller_iptables_sync_time_bucket{le="0.005"} 0
kube_router_controller_iptables_sync_time_bucket{le="+Inf"} 9
kube_router_controller_iptables_sync_time_sum 3.5125
kube_router_controller_iptables_sync_time_count 9
# HELP kube_router_controller_policy_chains Active policy chains
# TYPE kube_router_controller_policy_chains gauge
kube_router_controller_policy_chains 149
kube_router_controller_policy_ipsets 439
kube_router_controller_iptables_v4_restore_time_count 9
go_goroutines 57
`

func TestParseKubeRouterMetrics(t *testing.T) {
	m, ok := parseKubeRouterMetrics(krMetricsSample)
	if !ok {
		t.Fatal("sync histogram not found")
	}
	want := krMetrics{SyncCount: 9, SyncSumSecs: 3.5125, Chains: 149, IPSets: 439}
	if m != want {
		t.Errorf("got %+v, want %+v", m, want)
	}
	if _, ok := parseKubeRouterMetrics("go_goroutines 57\n"); ok {
		t.Error("no sync histogram: ok must be false")
	}
	if m, _ := parseKubeRouterMetrics("kube_router_controller_policy_chains not-a-number\n"); m.Chains != 0 {
		t.Errorf("a bad value counted: %+v", m)
	}
}
