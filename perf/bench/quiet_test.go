package bench

import (
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// TestQuietEventsAreTheEmptyOnes checks quietEvents against from-scratch
// compiles: an event is quiet exactly when the node's ruleset is the same
// before and after it. Forty rounds at S meet quiet policy updates (twenty,
// the suite's default, meet none); a run that waited for their commit
// hung for its ten-minute timeout.
func TestQuietEventsAreTheEmptyOnes(t *testing.T) {
	c := gen.Generate(gen.S, 1)
	node := gen.NodeName(0)
	events := c.Events(node, 40)
	quiet, err := quietEvents(c, node, events)
	if err != nil {
		t.Fatal(err)
	}
	if len(quiet) == 0 {
		t.Fatal("no quiet event in 40 rounds at S: the test checks nothing")
	}
	mc, err := c.Model()
	if err != nil {
		t.Fatal(err)
	}
	before := compile.Node(mc, node)
	for i, ev := range events {
		if err := applyToModel(mc, ev); err != nil {
			t.Fatal(err)
		}
		after := compile.Node(mc, node)
		if empty := diff.Diff(before, after).Empty(); empty != quiet[i] {
			t.Errorf("event %d (%s): quiet %v, but its from-scratch transaction is empty: %v", i, ev.Kind, quiet[i], empty)
		}
		before = after
	}
}
