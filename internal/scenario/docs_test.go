package scenario

import (
	"os"
	"strings"
	"testing"
)

// TestFormatDocExample: the complete file that docs/scenarios.md opens with
// loads, so the page cannot drift from the loader unnoticed.
func TestFormatDocExample(t *testing.T) {
	const doc = "../../docs/scenarios.md"
	data, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "## A first file\n\n```yaml\n")
	if !ok {
		t.Fatalf("%s has no yaml block under \"A first file\"", doc)
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("%s: the first file's block does not end", doc)
	}
	s, err := Parse(doc, []byte(block))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "deny-all-ingress" || len(s.Nodes) != 2 || len(s.Steps) != 2 {
		t.Errorf("loaded %q with nodes %v and %d steps, want deny-all-ingress, 2 nodes, 2 steps", s.Name, s.Nodes, len(s.Steps))
	}
	// The policy has no policyTypes: defaulting makes it an ingress policy,
	// which is what the page's second probe expects.
	if got := len(s.Steps[1].Apply); got != 1 {
		t.Fatalf("step 2 applies %d objects, want 1", got)
	}
}
