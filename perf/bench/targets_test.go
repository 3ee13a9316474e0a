package bench

import (
	"strings"
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
// part this run measured as the largest, not a fixed cause.
func TestWhyFollowsTheNumbers(t *testing.T) {
	whyCompute := func(compute, netlink float64) string {
		ev := EventResult{Kind: "all"}
		ev.Commit.P50, ev.Compute.P50, ev.Netlink.P50 = compute+netlink, compute, netlink
		ev.Compute.P99 = 2 * compute // misses the 1 ms goal
		ev.Compile.P50, ev.Diff.P50 = compute/2, compute/4
		r := &Results{Sizes: []*SizeResult{{Size: gen.L, Events: []EventResult{ev}}}}
		for _, tg := range evaluate(r) {
			if strings.HasPrefix(tg.Goal, "agent compute per event") {
				return tg.Why
			}
		}
		t.Fatal("no compute target")
		return ""
	}
	if got := whyCompute(8, 1); !strings.HasPrefix(got, "compute p50 8.00 ms: compile.Node 4.00 ms (50%)") {
		t.Errorf("compile-heavy run: %q", got)
	}
	r := whyCompute(4, 1)
	if !strings.Contains(r, "compile.Node 2.00 ms (50%), diff.Diff 1.00 ms (25%), other 1.00 ms (25%)") {
		t.Errorf("the parts are not those measured: %q", r)
	}
}
