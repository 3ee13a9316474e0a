package bench

import (
	"testing"

	"github.com/nftpolicy/nftpolicy/perf/gen"
)

func TestBreakdown(t *testing.T) {
	for _, tc := range []struct {
		name  string
		total float64
		parts []share
		want  string
	}{
		{"compute first", 10, []share{{"compute", 8}, {"netlink", 1}},
			"10 ms: compute 8.00 ms (80%), netlink 1.00 ms (10%), other 1.00 ms (10%)"},
		{"netlink first", 10, []share{{"compute", 2}, {"netlink", 8}},
			"10 ms: netlink 8.00 ms (80%), compute 2.00 ms (20%)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := breakdown(tc.total, tc.parts...); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestRateLoss(t *testing.T) {
	got := rateLoss(0.9, 0.8, 0.5, 50)
	want := "50% of the rate without a ruleset; lost: 50 policies instead of 2: 30 points, conntrack alone: 10 points, the ruleset with the target in 2 policies: 10 points"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestWhyFollowsTheNumbers: a missed target's explanation names whichever
// event kinds this run measured as the slowest, not a fixed cause.
func TestWhyFollowsTheNumbers(t *testing.T) {
	whyCompute := func(p99 map[string]float64) string {
		var events []EventResult
		for kind, v := range p99 {
			ev := EventResult{Kind: kind}
			ev.Compute.P99 = v
			events = append(events, ev)
		}
		all := EventResult{Kind: "all"}
		all.Compute.P99 = 9 // misses the 2 ms goal
		events = append(events, all)
		r := &Results{Sizes: []*SizeResult{{Size: gen.L, Events: events}}}
		for _, tg := range evaluate(r) {
			if tg.Goal == "agent compute per event p99 ≤ 2 ms at L" {
				return tg.Why
			}
		}
		t.Fatal("no compute target")
		return ""
	}
	got := whyCompute(map[string]float64{"pod-add": 9, "pod-delete": 0.1, "policy-add": 3, "namespace-relabel": 0.5})
	if want := "slowest kinds by compute p99: pod-add 9.00 ms, policy-add 3.00 ms, namespace-relabel 500 µs"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got = whyCompute(map[string]float64{"pod-add": 0.2, "policy-update": 4})
	if want := "slowest kinds by compute p99: policy-update 4.00 ms, pod-add 200 µs"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestConnectP99JudgedPerRound: the data path's p99 target is judged on
// the median of the rounds' own ratios, not on the pooled p99 that one
// stalled round moves; both are shown.
func TestConnectP99JudgedPerRound(t *testing.T) {
	dp := &DataPathResult{
		States: []DPState{
			{Name: stateFew, Connect: Dist{P99: 0.080}},
			{Name: stateHuge, Connect: Dist{P99: 0.105}}, // pooled: 1.31
		},
		P99Ratios: DistOfFloats([]float64{0.9, 1.0, 1.02, 1.05, 1.06, 1.08, 1.6, 2.0}),
	}
	for _, tg := range evaluate(&Results{DataPath: dp}) {
		if tg.Goal != "connect p99, target in 500 policies ÷ in 2, ≤ 1.1" {
			continue
		}
		want := "1.06: median of 8 rounds' ratios (0.90 to 2.00); pooled p99 105 µs vs 80 µs: 1.31"
		if tg.Status != "met" || tg.Measured != want {
			t.Errorf("got %s %q\nwant met %q", tg.Status, tg.Measured, want)
		}
		return
	}
	t.Fatal("no connect p99 target")
}

// TestPairedRatio: the median of the rounds' own ratios, not the ratio of
// the medians (here 1 against 1.25: one round where a ran alone fast).
func TestPairedRatio(t *testing.T) {
	a, b := []float64{20, 10, 40, 30}, []float64{10, 10, 40, 30}
	if got := pairedRatio(a, b); got != 1 {
		t.Errorf("pairedRatio = %v, want 1", got)
	}
}

// TestRelabelBytesNamesXL: the bytes-per-relabel target compares L with S,
// and, when XL ran, gives XL against L beside it.
func TestRelabelBytesNamesXL(t *testing.T) {
	relabel := func(size gen.Size, bytes float64) *SizeResult {
		ev := EventResult{Kind: string(gen.PodRelabel)}
		ev.SentBytes.P50 = bytes
		return &SizeResult{Size: size, Events: []EventResult{ev}}
	}
	measured := func(sizes ...*SizeResult) string {
		for _, tg := range evaluate(&Results{Sizes: sizes}) {
			if tg.Goal == "netlink bytes per pod relabel at L ≤ 1.5× those at S" {
				return tg.Measured
			}
		}
		t.Fatal("no bytes target")
		return ""
	}
	if got, want := measured(relabel(gen.S, 1000), relabel(gen.L, 2000)), "p50 2000 B at L vs 1000 B at S: 2.00×"; got != want {
		t.Errorf("without XL: got %q, want %q", got, want)
	}
	if got, want := measured(relabel(gen.S, 1000), relabel(gen.L, 2000), relabel(gen.XL, 1900)), "p50 2000 B at L vs 1000 B at S: 2.00×; XL 1900 B, 0.95× L"; got != want {
		t.Errorf("with XL: got %q, want %q", got, want)
	}
}

// TestFloorRatio: a ratio just under a goal never prints as the goal, and
// the goal itself does.
func TestFloorRatio(t *testing.T) {
	for x, want := range map[float64]string{0.9498: "0.949", 0.95: "0.950", 0.9473: "0.947", 1.0: "1.000", 0.94999999: "0.949"} {
		if got := floorRatio(x); got != want {
			t.Errorf("floorRatio(%v) = %s, want %s", x, got, want)
		}
	}
}

// TestServiceLossJudgedByItsInterval: the Service target is met or missed
// only when the median loss's 95% interval lies on one side of the 2%
// margin, whatever the median itself reads.
func TestServiceLossJudgedByItsInterval(t *testing.T) {
	for _, tc := range []struct {
		median float64
		ci     [2]float64
		want   string
	}{
		{0.005, [2]float64{-0.002, 0.015}, status(true)},
		{0.03, [2]float64{0.021, 0.04}, status(false)},
		{0.01, [2]float64{-0.01, 0.025}, notMeasured},
		{0.027, [2]float64{0.01, 0.045}, notMeasured},
	} {
		tke := &TKEResult{States: []DPState{{}, {}}, LatLoss: tc.median, LatLossCI: tc.ci}
		var got *Target
		for _, tg := range evaluate(&Results{TKE: tke}) {
			if tg.Goal == "connections/s through a Service (TKE: 1,000 Services, 8,000 pods, real kube-proxy) lose < 2% with our ruleset" {
				got = &tg
			}
		}
		if got == nil {
			t.Fatal("no Service target")
		}
		if got.Status != tc.want {
			t.Errorf("median %v, interval %v: %q, want %q", tc.median, tc.ci, got.Status, tc.want)
		}
	}
}
