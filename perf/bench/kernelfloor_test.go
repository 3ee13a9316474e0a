package bench

import (
	"context"
	"strings"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// floorAtL is the floor measured at L on kernel 6.18.
var floorAtL = &KernelFloorResult{
	VerdictElements: 28859, BiggestMap: "ids-v4", BiggestMapElements: 27000,
	GotoAdd: Dist{N: 30, P50: 1.57}, GotoDelete: Dist{N: 30, P50: 0.036}, PlainAdd: Dist{N: 30, P50: 0.043},
	GotoAddCold: Dist{N: 30, P50: 3.2},
}

// The section follows full programming, has a row for each size that
// measured the floor and none for the others, and is absent when no size
// measured it.
func TestKernelFloorMarkdown(t *testing.T) {
	r := &Results{Sizes: []*SizeResult{{Size: gen.S}, {Size: gen.L, KernelFloor: floorAtL}}}
	md := Markdown(r)
	const title = "\n## The kernel's floor per transaction\n\n"
	at := strings.Index(md, title)
	if at < 0 {
		t.Fatalf("no section %q in:\n%s", title, md)
	}
	if full := strings.Index(md, "## Full programming from empty"); full < 0 || full > at {
		t.Errorf("the section is not after full programming (at %d, full programming at %d)", at, full)
	}
	section := md[at+len(title):]
	section = section[:strings.Index(section, "\n## ")]
	if !strings.Contains(section, "p50 of 30 interleaved rounds") {
		t.Errorf("the explanation does not say how many rounds:\n%s", section)
	}
	want := "| size | verdict-map elements | biggest map (elements) | add one goto element p50 | the same, caches cold | its delete p50 | add one plain element p50 | goto ÷ plain |\n" +
		"|---|---|---|---|---|---|---|---|\n" +
		"| L | 28859 | ids-v4 (27000) | 1.57 ms | 3.20 ms | 36 µs | 43 µs | 36.5× |\n"
	if !strings.HasSuffix(section, want) {
		t.Errorf("the table:\n%s\nwant it to end with:\n%s", section, want)
	}

	r.Sizes[1].KernelFloor = nil
	if md := Markdown(r); strings.Contains(md, "kernel's floor") {
		t.Errorf("a section without any floor measured:\n%s", md)
	}
}

// A missed commit target's explanation ends with the floor at L when it
// was measured, and says nothing of it when it was not.
func TestCommitWhyNamesTheKernelFloor(t *testing.T) {
	whyCommit := func(floor *KernelFloorResult) string {
		all := EventResult{Kind: "all"}
		all.Commit.P99, all.Bare.P99, all.Bare.N = 40, 2, 10 // misses the 25 ms goal
		r := &Results{Sizes: []*SizeResult{{Size: gen.L, Events: []EventResult{all}, KernelFloor: floor}}}
		tg := evaluate(r)[0]
		if !strings.HasPrefix(tg.Goal, "event → commit p99 at L") || tg.Status != missed {
			t.Fatalf("first target %q %s, want the commit target missed", tg.Goal, tg.Status)
		}
		return tg.Why
	}
	want := "; the kernel's floor: a batch that adds one goto element costs 1.57 ms at L (3.20 ms with the caches cold) against 43 µs without one (it re-validates the table's 28859 verdict-map elements)"
	if got := whyCommit(floorAtL); !strings.HasPrefix(got, "commit p50 ") || !strings.HasSuffix(got, want) {
		t.Errorf("got  %q\nwant the existing text, then %q", got, want)
	}
	if got := whyCommit(nil); strings.Contains(got, "floor") {
		t.Errorf("without a floor measured: %q", got)
	}
}

// The floor measured for real on S's ruleset: every round timed, the
// elements counted as the ruleset has them, and the table gone afterwards.
func TestKernelFloorMeasured(t *testing.T) {
	testutil.NeedKernel(t)
	j := testJanitor(t)
	mc, err := gen.Generate(gen.S, 1).Model()
	if err != nil {
		t.Fatal(err)
	}
	rs := compile.Node(mc, gen.NodeUnderTest)
	const rounds = 5
	f, err := kernelFloor(context.Background(), j, rs, gen.S, rounds)
	if err != nil {
		t.Fatal(err)
	}
	verdictElements := 0
	for _, s := range rs.Sets {
		if s.Type.IsMap() {
			verdictElements += s.Len()
		}
	}
	if f.VerdictElements != verdictElements || verdictElements == 0 {
		t.Errorf("verdict elements %d, the ruleset has %d", f.VerdictElements, verdictElements)
	}
	if m := rs.Sets[f.BiggestMap]; m == nil || m.Type != nft.MapIPv4Verdict || m.Len() != f.BiggestMapElements {
		t.Errorf("biggest map %s (%d elements): not an IPv4 verdict map of the ruleset with that many", f.BiggestMap, f.BiggestMapElements)
	}
	for name, d := range map[string]Dist{"goto add": f.GotoAdd, "goto delete": f.GotoDelete, "plain add": f.PlainAdd, "cold goto add": f.GotoAddCold} {
		if d.N != rounds || d.Min <= 0 {
			t.Errorf("%s: %d samples, min %v ms; want %d, all > 0", name, d.N, d.Min, rounds)
		}
	}
	ns := &NetNS{Name: j.prefix + "floor-" + gen.S.Name}
	if out, err := ns.Exec(nil, "nft", "list", "tables"); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("after the floor the namespace holds %q (%v), want no table", out, err)
	}
}
